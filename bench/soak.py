"""Soak: M minutes of ~1M tracepoint events/s into two consumers, with exact accounting.

    .venv/bin/python bench/soak.py --minutes M [--rate 1000000]

One workload (a shell running bench/loops.c ``sys 1000000 RATE`` again and
again until M minutes have passed: ``syscall(SYS_getppid)`` paced to at most
RATE calls/s; produced = 1,000,000 x the runs that reported back, + 1: dash
calls getppid once at start for $PPID, seen with strace) is traced at
the same time by

  handler  this process: a library Session with a per-event handler counting
  json     ``kprobes trace t:syscalls:sys_enter_getppid --json -o FIFO -p PID``,
           its JSON lines counted by a reader process on the other end of a
           named pipe (a file: the writer cannot tell; a disk would fill at
           ~200 MB/s)

Both are armed before the workload starts (it is forked, then exec'd when
both say so) and traced by its pid. Every minute one line per consumer:
RSS (MB) and open fds. At the end, for each: delivered + lost = produced (N),
exactly, and whether RSS stayed within 10% of its value after minute 1 and
the fd count never changed. Exit status 0 only if all of that holds.

Ctrl-C ends the soak early with its summary so far: the workload finishes its
current run of 1,000,000 calls (so produced stays exact) and stops; a second
Ctrl-C kills it at once (the accounting is then reported as not checkable).
The children run in their own sessions, so the terminal's Ctrl-C reaches only
this process.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
SPEC = "t:syscalls:sys_enter_getppid"

# counts newline-terminated lines in the fifo argv[1]; prints "LINES\nLAST-LINE"
_COUNTER = r"""
import os, sys
fd = os.open(sys.argv[1], os.O_RDONLY)     # blocks until the writer opens it
n, tail = 0, b""
while True:
    b = os.read(fd, 1 << 20)
    if not b:
        break
    n += b.count(b"\n")
    tail = (tail + b)[-4096:]
last = tail.rstrip(b"\n").rsplit(b"\n", 1)[-1]
sys.stdout.write(f"{n}\n{last.decode()}\n")
"""


def _rss_fds(pid: int | str) -> tuple[float, int]:
    rss = 0.0
    with open(f"/proc/{pid}/status") as f:
        for ln in f:
            if ln.startswith("VmRSS:"):
                rss = int(ln.split()[1]) / 1024
    return rss, len(os.listdir(f"/proc/{pid}/fd"))


def _check(name: str, samples: list[tuple[float, int]]) -> tuple[bool, str]:
    if len(samples) < 2:
        return True, f"{name}: fewer than 2 samples after minute 1 (run longer)"
    base_rss, base_fds = samples[0]
    worst = max(abs(r - base_rss) / base_rss for r, _ in samples)
    last = (samples[-1][0] - base_rss) / base_rss
    fds = sorted({f for _, f in samples})
    ok = worst <= 0.10 and len(fds) == 1
    return ok, (f"{name}: RSS after minute 1 {base_rss:.1f} MB, at the end {samples[-1][0]:.1f} "
                f"MB ({last:+.1%}), largest deviation {worst:.1%}; fds {fds}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--minutes", type=float, default=20)
    ap.add_argument("--rate", type=float, default=1e6, help="events per second (paced)")
    args = ap.parse_args()
    chunk = 1_000_000
    from kprobes import Session

    tmp = tempfile.mkdtemp(prefix="kprobes-soak-")
    loops = os.path.join(tmp, "loops")
    subprocess.run(["gcc", "-O2", "-o", loops, os.path.join(HERE, "loops.c")], check=True)
    fifo = os.path.join(tmp, "json.fifo")
    os.mkfifo(fifo)
    counter = subprocess.Popen([sys.executable, "-c", _COUNTER, fifo], stdout=subprocess.PIPE,
                               text=True, start_new_session=True)
    stop = os.path.join(tmp, "stop")
    report = os.path.join(tmp, "runs")
    # dash calls getppid() once at start (for $PPID): one event of its own
    script = (f'while [ ! -e {stop} ]; do {loops} sys {chunk} {args.rate:.0f} 2>>{report} '
              f'|| exit 1; done')
    r, w = os.pipe()
    wl = os.fork()
    if wl == 0:
        os.close(w)
        os.setsid()                    # the terminal's Ctrl-C is for soak.py only
        if not os.read(r, 1):          # soak.py ended before the start: so do we
            os._exit(1)                # (and the CLI tracing us, and the counter)
        os.execv("/bin/sh", ["sh", "-c", script])
    os.close(r)
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    cli = subprocess.Popen([sys.executable, "-m", "kprobes", "trace", SPEC, "--json", "-o", fifo,
                            "-p", str(wl), "--armed"], env=env, stderr=subprocess.PIPE, text=True,
                           start_new_session=True)
    count = 0
    status: list[int] = []
    samples: dict[str, list[tuple[float, int]]] = {"handler": [], "json": []}
    t0 = 0.0
    next_minute = 1
    interrupts: list[float] = []

    def on_interrupt(signum: int, frame: object) -> None:
        interrupts.append(time.monotonic())
        if len(interrupts) == 1:
            open(stop, "w").close()    # the workload ends after its current run
            print("interrupted: the workload stops after its current run of "
                  f"{chunk:,} calls (Ctrl-C again: at once)", flush=True)
        else:
            try:
                os.killpg(wl, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def until() -> bool:
        nonlocal next_minute
        # Session.run ends a run on Ctrl-C (its handler is installed now): ours
        # instead lets the workload finish its current run, so produced stays exact
        if signal.getsignal(signal.SIGINT) is not on_interrupt:
            signal.signal(signal.SIGINT, on_interrupt)
        if not status:
            p, st = os.waitpid(wl, os.WNOHANG)
            if p:
                status.append(st)
        if t0 and time.monotonic() - t0 >= args.minutes * 60 and not os.path.exists(stop):
            open(stop, "w").close()
        if t0 and time.monotonic() - t0 >= next_minute * 60:
            line = [f"minute {next_minute}:"]
            for name, pid in (("handler", "self"), ("json", cli.pid)):
                try:
                    rss, fds = _rss_fds(pid)
                except OSError:
                    continue
                if next_minute >= 1:
                    samples[name].append((rss, fds))
                line.append(f"{name} rss={rss:.1f}MB fds={fds}")
            line.append(f"delivered={count:,}")
            print(" ".join(line), flush=True)
            next_minute += 1
        return bool(status)

    def on_event(ev: object) -> None:
        nonlocal count
        count += 1

    with Session(pid=wl) as s:
        s.add(SPEC, on_event)
        s.start()
        assert cli.stderr is not None
        for ln in cli.stderr:          # the CLI says "armed NS" once its probes are on
            if ln.startswith("armed"):
                break
            sys.stderr.write(ln)
        else:
            print("error: kprobes trace did not arm", file=sys.stderr)
            return 1
        t0 = time.monotonic()
        os.write(w, b"g")
        os.close(w)
        stats = s.run(until=until)
    wall = time.monotonic() - t0
    with open(report) as f:
        n = chunk * sum(1 for ln in f if ln.startswith("start_ns=")) + 1
    cli_err = cli.stderr.read()
    cli_rc = cli.wait()
    out, _ = counter.communicate()
    lines, _, last = out.partition("\n")
    try:
        summary = json.loads(last)["summary"]
        json_events = int(lines) - 1
    except (ValueError, KeyError, TypeError):
        summary, json_events = {"lost": 0}, 0
        print(f"json consumer wrote no summary (exit {cli_rc}): {cli_err[-2000:]}")
        cli_rc = cli_rc or 1
    killed = len(interrupts) > 1
    ok = not interrupts
    print(f"produced {n:,} events in {wall:.0f} s ({n / wall:,.0f}/s)"
          + (" (interrupted)" if interrupts else ""))
    for name, delivered, lost in (("handler", count, stats.lost),
                                  ("json", json_events, summary["lost"])):
        if killed:   # the workload died mid-run: how many calls it made is unknown
            print(f"{name}: delivered {delivered:,} + lost {lost:,} = {delivered + lost:,} "
                  f"(produced unknown: the workload was killed mid-run)")
            continue
        exact = delivered + lost == n
        ok &= exact
        print(f"{name}: delivered {delivered:,} + lost {lost:,} = {delivered + lost:,} "
              f"{'==' if exact else '!='} produced {n:,}")
        good, text = _check(name, samples[name])
        ok &= good
        print(text)
    if cli_rc:
        ok = False
        print(f"json consumer exited {cli_rc}: {cli_err[-2000:]}")
    if interrupts:
        print("soak: INTERRUPTED (the figures above are the run so far)")
        return 130
    print("soak: OK" if ok else "soak: FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:      # before the workload started: nothing to report
        print("soak: interrupted before the workload started", file=sys.stderr)
        sys.exit(130)

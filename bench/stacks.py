"""Stacks: cost per traced call and consumer CPU, kprobes against bpftrace, same run.

1. Cost per traced call: the target (tests/targets/stackchain.c, frame
   pointers, main -> top -> mid -> leaf, leaf does one getppid()) times its own
   loop; cost = (traced ns/call - untraced ns/call). User stacks: a uprobe on
   ``leaf``; kernel stacks: the host tracepoint ``syscalls:sys_enter_getppid``
   of the target. kprobes ``trace --stack user|kernel`` (text, to a file)
   against bpftrace printing ``ustack`` / ``kstack`` (to a file); both print
   every stack symbolized. Also the consumer's CPU per event (the tracer's
   own user+system time, from wait4) and how many events each printed.
2. Counting stacks: ``kprobes stacks SPEC --folded`` against bpftrace's
   ``@[kstack] = count()`` / ``@[ustack] = count()`` on the same probe, same
   target: cost per traced call, the tracer's CPU (user+system, from wait4,
   start-up included) and the events each counted (must be N). Kernel stacks
   with the user backend (stack records read here) and, where the kernel has
   hist triggers, the kernel backend (``hist:keys=stacktrace``). The kernel
   probe is the tracepoint ``syscalls:sys_enter_getppid`` on a host without
   kprobes, the kprobe ``p:__x64_sys_getppid`` in the guest.
3. Symbolization alone, per stack: cold (new symbolizer, empty file cache:
   reads /proc/PID/maps, loads the ELF symbols / kallsyms) and warm.

Usage: ``python bench/stacks.py [N] [--vm KERNEL]`` (default 20000 calls; root;
gcc, bpftrace). ``--vm 6.1`` runs it all in that Debian guest (TCG: ratios only).
The load average is printed before and after: the machine may be shared.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
SRC = os.path.join(HERE, "..", "tests", "targets", "stackchain.c")

from kprobes.runtime.session import Session  # noqa: E402
from kprobes.symbolize import KernelSymbolizer, UserSymbolizer, elfsyms  # noqa: E402


def _settled(files: list[str], p: subprocess.Popen) -> None:
    """Wait until the target said 'done' and the outputs stopped growing for 0.5 s."""
    last, since = -1, time.monotonic()
    while p.poll() is None:
        size, done = 0, False
        for fn in files:
            try:
                with open(fn, "rb") as f:
                    data = f.read()
            except FileNotFoundError:
                continue
            size += len(data)
            done = done or b"\ndone " in b"\n" + data
        if size != last:
            last, since = size, time.monotonic()
        elif done and time.monotonic() - since > 0.5:
            return
        time.sleep(0.05)


def run(cmd: list[str], out: str, events: str) -> tuple[float, float, str]:
    """(target ns/call, tracer CPU s, tracer stderr) of one traced run. The target
    (``-w``) starts on a byte from stdin and exits when stdin closes: after the
    tracer printed everything (bpftrace aborts when it symbolizes the user stack
    of a process that already exited: it reads /proc/PID/exe)."""
    with open(out, "w") as f, tempfile.TemporaryFile("w+") as err:
        p = subprocess.Popen(cmd, stdout=f, stderr=err, stdin=subprocess.PIPE)
        p.stdin.write(b"g")
        p.stdin.flush()
        _settled([out, events], p)
        p.stdin.close()
        _pid, status, ru = os.wait4(p.pid, 0)
        err.seek(0)
        e = err.read()
    if os.waitstatus_to_exitcode(status):
        raise RuntimeError(f"{cmd[0]} failed: {e[-500:]}")
    with open(out) as f:
        text = f.read()
    m = re.search(r"^done (\d+) (\d+)$", text + "\n" + e, re.M)
    if m is None:
        raise RuntimeError(f"no 'done' line from the target of {cmd[:3]}")
    return int(m[2]) / int(m[1]), ru.ru_utime + ru.ru_stime, e


def base_ns(exe: str, n: int) -> float:
    best = float("inf")
    for _ in range(3):
        out = subprocess.run([exe, str(n)], capture_output=True, text=True, check=True).stdout
        m = re.search(r"done (\d+) (\d+)", out)
        assert m is not None
        best = min(best, int(m[2]) / int(m[1]))
    return best


def per_call(exe: str, n: int, d: str) -> None:
    base = base_ns(exe, n)
    kp = [sys.executable, "-m", "kprobes", "trace"]
    tp = "syscalls:sys_enter_getppid"
    cases = [
        ("user", "kprobes", kp + [f"u:{exe}:leaf", "--stack", "user", "-c", f"{exe} -w {n}"]),
        ("user", "bpftrace", ["bpftrace", "-e",
                              f'uprobe:{exe}:leaf {{ printf("%s\\n", ustack); }}',
                              "-c", f"{exe} -w {n}"]),
        ("kernel", "kprobes", kp + [f"t:{tp}", "--stack", "kernel", "-c", f"{exe} -w {n}"]),
        ("kernel", "bpftrace", ["bpftrace", "-e",
                                f'tracepoint:{tp.replace(":", ":")} /pid == cpid/ '
                                f'{{ printf("%s\\n", kstack); }}', "-c", f"{exe} -w {n}"]),
    ]
    if not shutil.which("bpftrace"):
        cases = [c for c in cases if c[1] == "kprobes"]
    print(f"target: {n} calls of main->top->mid->leaf, untraced {base:.0f} ns/call")
    print(f"{'stack':<7} {'tool':<9} {'ns/call':>9} {'cost ns':>9} {'events':>7} "
          f"{'tracer CPU us/event':>20}")
    res: dict[tuple[str, str], float] = {}
    for kind, tool, cmd in cases:
        out = os.path.join(d, f"{kind}-{tool}.out")
        evf = out
        if tool == "kprobes":
            evf = os.path.join(d, f"{kind}-{tool}.events")
            cmd = cmd + ["-o", evf]
        ns, cpu, _err = run(cmd, out, evf)
        with open(evf) as f:
            text = f.read()
        if tool == "kprobes":
            events = sum(1 for ln in text.splitlines() if ln and not ln.startswith(("\t", "done")))
        else:
            # one line per stack starts with the innermost frame of the first stack printed
            frames = [ln.strip() for ln in text.splitlines() if "+" in ln and ln[:1].isspace()]
            first = frames[0].split("+")[0] + "+" if frames else "\0"
            events = sum(1 for f in frames if f.startswith(first))
        res[kind, tool] = ns - base
        print(f"{kind:<7} {tool:<9} {ns:9.0f} {ns - base:9.0f} {events:7d} "
              f"{cpu / max(events, 1) * 1e6:20.1f}")
    for kind in ("user", "kernel"):
        a, b = res.get((kind, "kprobes")), res.get((kind, "bpftrace"))
        if a is not None and b:
            print(f"{kind} stacks: cost per traced call, kprobes / bpftrace = {a / b:.2f}")


def _hist_triggers() -> bool:
    return any(os.path.exists(f"{t}/events/syscalls/sys_enter_getppid/hist")
               for t in ("/sys/kernel/tracing", "/sys/kernel/debug/tracing"))


def counting(exe: str, n: int, d: str) -> None:
    """Stacks counted: kprobes stacks (each backend) against bpftrace count()."""
    base = base_ns(exe, n)
    kp = [sys.executable, "-m", "kprobes", "stacks"]
    vm = os.environ.get("KPROBES_IN_VM")
    kspec, kbt = (("p:__x64_sys_getppid", "kprobe:__x64_sys_getppid") if vm else
                  ("t:syscalls:sys_enter_getppid", "tracepoint:syscalls:sys_enter_getppid"))
    target = ["-c", f"{exe} -w {n}"]
    cases = [
        ("kstack", "kprobes-user", kp + [kspec, "--kernel", "--backend", "user", "--folded"]),
        ("kstack", "kprobes-kernel", kp + [kspec, "--kernel", "--backend", "kernel", "--folded"]),
        ("kstack", "bpftrace", ["bpftrace", "-e", f"{kbt} /pid == cpid/ {{ @[kstack] = count(); }}"]),
        ("ustack", "kprobes-user", kp + [f"u:{exe}:leaf", "--user", "--folded"]),
        ("ustack", "bpftrace", ["bpftrace", "-e", f"uprobe:{exe}:leaf {{ @[ustack] = count(); }}"]),
    ]
    if not _hist_triggers():
        cases = [c for c in cases if c[1] != "kprobes-kernel"]
    if not shutil.which("bpftrace"):
        cases = [c for c in cases if c[1] != "bpftrace"]
    print(f"\ncounting stacks: {n} calls, untraced {base:.0f} ns/call ({kspec}; u:{exe}:leaf)")
    print(f"{'stack':<7} {'tool':<15} {'ns/call':>9} {'cost ns':>9} {'counted':>8} "
          f"{'tracer CPU s':>13} {'stacks':>7}")
    res: dict[tuple[str, str], tuple[float, float]] = {}
    for kind, tool, cmd in cases:
        out = os.path.join(d, f"count-{kind}-{tool}.out")
        ns, cpu, _err = run(cmd + target, out, out)
        with open(out) as f:
            text = f.read()
        if tool == "bpftrace":
            counts = [int(m) for m in re.findall(r"^\]: (\d+)$", text, re.M)]
        else:
            counts = [int(ln.rsplit(" ", 1)[1]) for ln in text.splitlines()
                      if ";" in ln and ln.rsplit(" ", 1)[-1].isdigit()]
        res[kind, tool] = (ns - base, cpu)
        print(f"{kind:<7} {tool:<15} {ns:9.0f} {ns - base:9.0f} {sum(counts):8d} {cpu:13.2f} "
              f"{len(counts):7d}")
    for kind in ("kstack", "ustack"):
        b = res.get((kind, "bpftrace"))
        for tool in ("kprobes-user", "kprobes-kernel"):
            a = res.get((kind, tool))
            if a is not None and b:
                print(f"{kind} counted, {tool} / bpftrace: cost per call {a[0] / b[0]:.2f}, "
                      f"tracer CPU {a[1] / b[1]:.2f}")


def symbolize(exe: str, n: int) -> None:
    """Per-stack symbolization time, cold and warm, on stacks recorded from the target."""
    raw: list[tuple[int, tuple[int, ...], tuple[int, ...]]] = []
    p = subprocess.Popen([exe, "-w", str(n)], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL)
    try:
        with Session(pid=p.pid) as s:
            def keep(ev: object) -> None:
                raw.append((ev.pid, ev.ustack_addrs, ev.kstack_addrs))  # type: ignore[attr-defined]
            s.add(f"u:{exe}:leaf", keep, stack="both")
            s.start()
            p.stdin.write(b"g")
            p.stdin.flush()
            s.run(until=lambda: len(raw) >= n, duration=120)
            elfsyms._cache.clear()
            t = time.perf_counter()
            us = UserSymbolizer()
            us.frames(raw[0][0], raw[0][1])
            u_cold = time.perf_counter() - t
            t = time.perf_counter()
            for tgid, ua, _ka in raw:
                us.frames(tgid, ua)
            u_warm = (time.perf_counter() - t) / len(raw)
    finally:
        p.stdin.close()
        p.wait()
    t = time.perf_counter()
    ks = KernelSymbolizer()
    ks.frames(raw[0][2])
    k_cold = time.perf_counter() - t
    t = time.perf_counter()
    for _tgid, _ua, ka in raw:
        ks.frames(ka)
    k_warm = (time.perf_counter() - t) / len(raw)
    print(f"symbolize one user stack ({len(raw[0][1])} frames): cold {u_cold * 1e3:.1f} ms "
          f"(maps + ELF symbols of {exe} and libc), warm {u_warm * 1e6:.1f} us")
    print(f"symbolize one kernel stack ({len(raw[0][2])} frames): cold {k_cold * 1e3:.1f} ms "
          f"(kallsyms), warm {k_warm * 1e6:.1f} us")


def main() -> int:
    args = sys.argv[1:]
    if "--vm" in args:
        i = args.index("--vm")
        kernel = args[i + 1]
        rest = args[:i] + args[i + 2:]
        root = os.path.dirname(HERE)
        rw = tempfile.mkdtemp(prefix="kpstacks-vm")
        cmd = [sys.executable, "-m", "kprobes", "vm", "--kernel", kernel, "--cpus", "2",
               "--memory", "4G", "--cwd", root, "--rwdir", rw, "--timeout", "3000",
               "--env", f"KPROBES_IN_VM={kernel}", "--env", f"PYTHONPATH={root}", "--",
               sys.executable, os.path.abspath(__file__), *rest]
        try:
            return subprocess.run(cmd, cwd=root).returncode
        finally:
            shutil.rmtree(rw, ignore_errors=True)
    n = int(args[0]) if args else 20000
    print(f"{os.uname().release}, load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    d = tempfile.mkdtemp()
    try:
        exe = os.path.join(d, "chain")
        subprocess.run(["gcc", "-O1", "-fno-omit-frame-pointer", "-no-pie", "-o", exe, SRC],
                       check=True)
        per_call(exe, n, d)
        counting(exe, n, d)
        symbolize(exe, min(n, 5000))
    finally:
        shutil.rmtree(d)
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

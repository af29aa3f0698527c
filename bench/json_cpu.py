"""Consumer CPU per event of the ``trace --json`` batch encoder against counting.

    .venv/bin/python bench/json_cpu.py [--events N] [--rate R] [--repeat K]

A paced ``syscall(SYS_getppid)`` loop (bench/loops.c) is traced by one
session with a batch handler that either counts (``len(batch)``) or encodes the
batch as ``kprobes trace --json`` does (``kprobes.cli.trace_out.json_batch``)
into /dev/null. Prints, per run, events delivered and lost and the session's
own CPU time (user + sys, getrusage) per delivered event: the cost of decoding
and encoding, without the disk. Runs alternate so drift hits both alike.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))


def run(loops: str, mode: str, n: int, rate: int) -> tuple[int, int, float]:
    from kprobes import Session
    from kprobes.cli.trace_out import Sink, json_batch
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(w)
        os.read(r, 1)
        fd = os.open(os.devnull, os.O_WRONLY)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.execv(loops, [loops, "sys", str(n), str(rate)])
    os.close(r)
    sink = Sink(os.devnull)
    counted = 0

    def count(b: object) -> None:
        nonlocal counted
        counted += len(b)  # type: ignore[arg-type]

    with Session(pid=pid) as s:
        s.add_batch("t:syscalls:sys_enter_getppid", json_batch(sink) if mode == "json" else count)
        s.start()
        t0 = resource.getrusage(resource.RUSAGE_SELF)
        os.write(w, b"g")
        os.close(w)
        st = s.run(until=lambda: os.waitpid(pid, os.WNOHANG)[0] != 0)
        t1 = resource.getrusage(resource.RUSAGE_SELF)
    sink.close()
    cpu = t1.ru_utime - t0.ru_utime + t1.ru_stime - t0.ru_stime
    return st.events, st.lost, cpu / max(st.events, 1) * 1e9


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, default=300_000)
    ap.add_argument("--rate", type=int, default=300_000, help="loop pace, calls/s")
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="kpjson") as tmp:
        loops = os.path.join(tmp, "loops")
        subprocess.run(["gcc", "-O2", "-o", loops, os.path.join(HERE, "loops.c")], check=True)
        print(f"load average at start: {os.getloadavg()[0]:.2f}")
        for _ in range(a.repeat):
            for mode in ("count", "json"):
                ev, lost, ns = run(loops, mode, a.events, a.rate)
                print(f"{mode:5}  delivered {ev:>9,}  lost {lost:>9,}  CPU {ns:>6,.0f} ns/event",
                      flush=True)
        print(f"load average at end: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

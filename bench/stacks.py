"""Cost per traced call with stacks: kprobes ``trace --stack user|kernel`` against
bpftrace printing ``ustack``/``kstack`` on the same uprobe, same run.

Per-call cost = (wall time with N calls - wall time with 0 calls) / N, which
includes start-up differences cancelling out and the consumer keeping up
(everything is printed to /dev/null). Usage: ``python bench/stacks.py [N]``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.join(HERE, "..", "tests", "targets", "stackchain.c")


def wall(cmd: list[str]) -> float:
    t = time.perf_counter()
    r = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    if r.returncode:
        return float("nan")       # e.g. bpftrace aborting (reported as nan)
    return time.perf_counter() - t


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 20000
    d = tempfile.mkdtemp()
    exe = os.path.join(d, "chain")
    subprocess.run(["gcc", "-O1", "-fno-omit-frame-pointer", "-no-pie", "-o", exe, SRC], check=True)
    kp = [sys.executable, "-m", "kprobes", "trace", f"u:{exe}:leaf", "-o", "/dev/null"]
    runs = {
        "kprobes --stack user": lambda k: kp + ["--stack", "user", "-c", f"{exe} {k}"],
        "bpftrace ustack": lambda k: ["bpftrace", "-e", f'uprobe:{exe}:leaf {{ printf("%s\\n", ustack); }}',
                                      "-c", f"{exe} {k}"],
        "kprobes --stack kernel": lambda k: kp + ["--stack", "kernel", "-c", f"{exe} {k}"],
        "bpftrace kstack": lambda k: ["bpftrace", "-e", f'uprobe:{exe}:leaf {{ printf("%s\\n", kstack); }}',
                                      "-c", f"{exe} {k}"],
    }
    if not shutil.which("bpftrace"):
        runs = {k: v for k, v in runs.items() if k.startswith("kprobes")}
    per: dict[str, float] = {}
    for name, cmd in runs.items():
        t0 = min(wall(cmd(0)) for _ in range(2))
        tn = min(wall(cmd(n)) for _ in range(2))
        per[name] = (tn - t0) / n * 1e6
        print(f"{name:<24} {per[name]:8.2f} us/call  (start-up {t0:.2f} s)")
    for kind in ("user", "kernel"):
        a, b = per.get(f"kprobes --stack {kind}"), per.get(f"bpftrace {kind[0]}stack")
        if a and b:
            print(f"{kind} stacks: kprobes / bpftrace = {a / b:.2f}")
    shutil.rmtree(d)


if __name__ == "__main__":
    main()

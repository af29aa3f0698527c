"""Whole-process time to look up one function prototype / struct layout in BTF.

Compares ``kprobes.cli.info_btf.describe`` (cold: index cache removed before
each run; warm: cache present) with what a user would run instead: bpftool,
which has no single-type lookup, so it dumps everything (``format c``,
``format raw``, and ``format raw | grep``).  Median of N runs each, measured
in the same run; ratios are against the warm lookup.

    .venv/bin/python bench/btf_lookup.py [-n 9] [--btf /sys/kernel/btf/vmlinux]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time


def run(cmd: list[str] | str, env: dict[str, str], before=None, n: int = 9) -> float:
    times = []
    for _ in range(n):
        if before:
            before()
        t = time.perf_counter()
        subprocess.run(cmd, env=env, shell=isinstance(cmd, str), check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=9, help="runs per measurement (median)")
    ap.add_argument("--btf", default="/sys/kernel/btf/vmlinux")
    args = ap.parse_args()
    py = sys.executable
    cache = tempfile.mkdtemp(prefix="kprobes-btf-bench-")
    env = dict(os.environ, KPROBES_CACHE_DIR=cache)

    def clear() -> None:
        shutil.rmtree(os.path.join(cache, "btf"), ignore_errors=True)

    def describe_cmd(target: str) -> list[str]:
        code = ("from kprobes.cli.info_btf import describe; from kprobes.btf import BTF; "
                f"print(describe({target!r}, BTF.load({args.btf!r})))")
        return [py, "-c", code]

    rows: list[tuple[str, float]] = []
    rows.append(("python -c pass (interpreter start)", run([py, "-c", "pass"], env, n=args.n)))
    rows.append(("python: import kprobes.btf",
                 run([py, "-c", "import kprobes.btf"], env, n=args.n)))
    for target in ("vfs_read", "struct task_struct"):
        rows.append((f"kprobes describe({target!r}) cold",
                     run(describe_cmd(target), env, before=clear, n=args.n)))
        subprocess.run(describe_cmd(target), env=env, check=True, stdout=subprocess.DEVNULL)
        rows.append((f"kprobes describe({target!r}) warm", run(describe_cmd(target), env,
                                                              n=args.n)))
    tool = shutil.which("bpftool")
    if tool:
        for fmt in ("c", "raw"):
            rows.append((f"bpftool btf dump format {fmt}",
                         run([tool, "btf", "dump", "file", args.btf, "format", fmt], env,
                             n=args.n)))
        rows.append(("bpftool btf dump format raw | grep vfs_read",
                     run(f"{tool} btf dump file {args.btf} format raw | grep -A5 \"FUNC 'vfs_read'\"",
                         env, n=args.n)))
    else:
        print("bpftool not found (apt-get install bpftool): no comparison", file=sys.stderr)
    shutil.rmtree(cache, ignore_errors=True)

    ref = dict(rows)["kprobes describe('vfs_read') warm"]
    width = max(len(r[0]) for r in rows)
    print(f"{'what':<{width}}  {'median s':>9}  {'x warm vfs_read':>15}")
    for name, secs in rows:
        print(f"{name:<{width}}  {secs:9.4f}  {secs / ref:15.2f}")
    print(f"(median of {args.n} runs each; BTF {args.btf}, "
          f"{os.path.getsize(args.btf) / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()

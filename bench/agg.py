"""Counting in the kernel (perf counters, hist triggers) and in this process, next to bpftrace ``count()``.

    .venv/bin/python bench/agg.py [--events N] [--repeat K] [--only V,...] [--vm]

Same workload and harness as bench/throughput.py (bench/loops.c ``sys``: a
``syscall(SYS_getppid)`` loop; consumer CPU from wait4 minus the workload's
own), every variant in the same run, interleaved:

  none          no tracing
  bt-count      bpftrace ``@ = count()`` on the same probe
  count-user    ``kprobes count SPEC --backend user --json -c CMD`` (batch columns)
  count-kernel  ``kprobes count SPEC --backend kernel --json -c CMD`` (a plain count of
                one command: perf counters on it)
  count-hist    ``kprobes count SPEC --by cpu --backend kernel --json -c CMD`` (a hist
                trigger keyed by CPU, in an instance with ``set_event_pid``: how a
                keyed count, and before perf counters a plain one, is counted)

On this host (no hist triggers: no count-hist) the probe is the tracepoint
``syscalls:sys_enter_getppid``; ``--vm`` runs the kprobe ``p:__x64_sys_getppid``
in the Debian 6.1 guest (TCG: ratios only). "delivered" is what the tool
counted: it must equal N.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import throughput as tp  # noqa: E402

ALL = ["none", "bt-count", "count-user", "count-kernel", "count-hist"]


def measure(variant: str, t: tp.Target, n: int, tmp: str) -> dict:
    if variant in ("none", "bt-count"):
        return tp.measure(variant, t, n, tmp)
    backend = variant.split("-", 1)[1]
    by = []
    if backend == "hist":
        backend, by = "kernel", ["--by", "cpu"]
    r = tp._run([*tp.KPROBES, "count", t.spec, *by, "--backend", backend, "--json",  # noqa: SLF001
                 "-c", " ".join(t.cmd(n))], tmp)
    lines = [json.loads(ln) for ln in open(r["stdout"]).read().splitlines()
             if ln.startswith("{")]
    counted = sum(row["count"] for ln in lines if "aggregation" in ln for row in ln["rows"])
    summary = lines[-1]["summary"]
    if summary["backend"] != backend:
        raise RuntimeError(f"asked for {backend}, ran {summary['backend']}")
    return tp._row(r, n, counted, summary["lost"] + summary["dropped"])  # noqa: SLF001


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, default=1_000_000, help="calls per run (N)")
    ap.add_argument("--repeat", type=int, default=3, help="runs per variant (K)")
    ap.add_argument("--only", default=None, help="comma-separated variants (default: all)")
    ap.add_argument("--vm", action="store_true", help="the kprobe variants in the 6.1 guest")
    ap.add_argument("--in-vm", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.vm:
        cmd = [*tp.KPROBES, "vm", "--kernel", "6.1", "--memory", "2G", "--timeout", "3000",
               "--", tp.PY, os.path.abspath(__file__), "--in-vm", "--events", str(a.events),
               "--repeat", str(a.repeat)] + (["--only", a.only] if a.only else [])
        r = subprocess.run(cmd, cwd=tp.ROOT, stdout=subprocess.PIPE, text=True)
        print(r.stdout, end="")
        return r.returncode
    variants = a.only.split(",") if a.only else list(ALL)
    if not a.in_vm:
        variants = [v for v in variants if v != "count-hist"]
    if shutil.which("bpftrace") is None:
        variants = [v for v in variants if v != "bt-count"]
    with tempfile.TemporaryDirectory(prefix="kpagg") as tmp:
        loops = tp.build(tmp)
        t = tp.targets(loops, a.in_vm)[0]
        results: dict[str, list[dict]] = {v: [] for v in variants}
        for k in range(a.repeat):
            for v in variants:
                try:
                    results[v].append(measure(v, t, a.events, tmp))
                except Exception as e:  # noqa: BLE001 - report and go on
                    print(f"  {v} run {k + 1}: failed: {e}", file=sys.stderr)
                print(f"  {v} run {k + 1} done", file=sys.stderr, flush=True)
        title = f"### count: {t.name}, N = {a.events:,}, median of {a.repeat}"
        if a.in_vm:
            title += " (Debian 6.1 guest under TCG: ratios only)"
        table = tp.fmt_table({v: r for v, r in results.items() if r}, a.events,
                             ratios_only=a.in_vm)
        print(f"\n{title}\n\n{table}\n", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Throughput of kprobes next to bpftrace and the raw ring-buffer copy, in one run.

    .venv/bin/python bench/throughput.py [--events N] [--repeat K] [--only NAME,...] [--vm]

Builds the load generator (bench/loops.c) with gcc into a temporary folder and
runs, K times each, in the same run, for the tracepoint
``syscalls:sys_enter_getppid`` (a ``syscall(SYS_getppid)`` loop) and for a uprobe
on ``bench_target`` (a function-call loop):

  none        no tracing
  idle        event enabled in an instance nobody reads (kprobes Session, bench/consumer.py)
  raw         raw-copy ceiling: bench/rawcopy.c reads every CPU's trace_pipe_raw
              (non-blocking, poll, whole pages) and counts the workload's records
  bt-count    bpftrace ``@ = count()``
  bt-printf   bpftrace ``printf`` per event (to a file, lines counted)
  json        ``kprobes trace SPEC --json -o FILE -c CMD``
  text        ``kprobes trace SPEC -o FILE -c CMD`` (text lines, the default output)
  quiet       ``kprobes trace SPEC --json -q -c CMD`` (count per batch, nothing decoded)
  handler     library, per-event handler counting (bench/consumer.py event)
  fields      library, per-event handler reading tid, comm and args (bench/consumer.py fields)
  batch       library, batch handler (bench/consumer.py batch)
  handler@1M, fields@1M, batch@1M, json@1M, text@1M  the same, loop paced to 1,000,000 calls/s

Columns (medians over K): ns per traced call (loop wall time / N, measured
inside the workload), slowdown vs ``none``, events delivered / produced (N),
lost as reported by the tool, consumer CPU per delivered event (user+sys of the
consumer from wait4, minus the workload's own), start-up (command start ->
workload running, i.e. probes armed + one exec), consumer peak RSS.

``--vm`` runs the kprobe variants (``p:__x64_sys_getppid`` vs bpftrace
``kprobe:__x64_sys_getppid``) in the Debian 6.1 guest via ``kprobes vm`` and
prints ratios only (TCG emulation: absolute times mean nothing).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
PY = sys.executable
KPROBES = [PY, "-m", "kprobes"]
ALL = ["none", "idle", "raw", "bt-count", "bt-printf", "json", "text", "quiet", "handler",
       "fields", "batch", "handler@1M", "fields@1M", "batch@1M", "json@1M", "text@1M"]


RUSAGE = ""
RAWCOPY = ""


def build(tmp: str) -> str:
    global RUSAGE, RAWCOPY
    out = os.path.join(tmp, "loops")
    subprocess.run(["gcc", "-O2", "-o", out, os.path.join(HERE, "loops.c")], check=True)
    RUSAGE = os.path.join(tmp, "rusage")
    subprocess.run(["gcc", "-O2", "-o", RUSAGE, os.path.join(HERE, "rusage.c")], check=True)
    RAWCOPY = os.path.join(tmp, "rawcopy")
    subprocess.run(["gcc", "-O2", "-o", RAWCOPY, os.path.join(HERE, "rawcopy.c")], check=True)
    return out


def _workload_line(text: str) -> dict[str, int]:
    m = re.search(r"start_ns=(\d+) loop_ns=(\d+) n=(\d+) utime_us=(\d+) stime_us=(\d+)", text)
    if not m:
        raise RuntimeError(f"no workload report in: {text[-2000:]}")
    k = ("start_ns", "loop_ns", "n", "utime_us", "stime_us")
    return dict(zip(k, map(int, m.groups()), strict=True))


def _run(argv: list[str], tmp: str, stdout_file: str | None = None) -> dict:
    """Run a consumer (or the bare workload) under the rusage launcher."""
    err = os.path.join(tmp, "stderr")
    out = stdout_file or os.path.join(tmp, "stdout")
    ruf = os.path.join(tmp, "rusage.out")
    t0 = time.monotonic_ns()
    with open(err, "w") as fe, open(out, "w") as fo:
        subprocess.run([RUSAGE, ruf, *argv], stdout=fo, stderr=fe, cwd=ROOT, check=True)
    text = open(err).read()
    ut, st, rss, rc = map(int, open(ruf).read().split())
    if rc:
        raise RuntimeError(f"{argv[:6]} exited {rc}: {text[-2000:]}")
    w = _workload_line(text)
    cpu = (ut + st - w["utime_us"] - w["stime_us"]) / 1e6
    return {"t0": t0, "w": w, "cpu": max(cpu, 0.0), "rss_kb": rss, "stderr": text,
            "stdout": out}


class Target:
    def __init__(self, name: str, loops: str, kind: str, spec: str, bt_probe: str,
                 bt_printf: str) -> None:
        self.name, self.loops, self.kind = name, loops, kind
        self.spec, self.bt_probe, self.bt_printf = spec, bt_probe, bt_printf

    def cmd(self, n: int, rate: float | None = None) -> list[str]:
        return [self.loops, self.kind, str(n)] + ([str(rate)] if rate else [])


def measure(variant: str, t: Target, n: int, tmp: str) -> dict:
    """One run: {'ns': per call, 'delivered', 'lost', 'cpu_ns', 'startup', 'rss_mb'}."""
    rate = 1e6 if variant.endswith("@1M") else None
    base = variant.split("@")[0]
    cmd = t.cmd(n, rate)
    delivered = lost = None
    if base == "none":
        r = _run(cmd, tmp)
        return _row(r, n, None, None, startup=False)
    if base == "raw":
        return _raw(t, cmd, n, tmp)
    if base in ("idle", "handler", "fields", "batch"):
        mode = {"idle": "idle", "handler": "event", "fields": "fields", "batch": "batch"}[base]
        r = _run([PY, os.path.join(HERE, "consumer.py"), mode, t.spec, "--", *cmd], tmp)
        res = json.loads(open(r["stdout"]).read().strip().splitlines()[-1])
        delivered, lost = res["delivered"], res["lost"]
        row = _row(r, n, delivered, lost)
        if base == "idle":
            row["cpu_ns"] = None
            row["delivered"] = None      # recorded, not delivered: see 'recorded'
            row["recorded"] = delivered
        return row
    if base in ("json", "quiet"):
        outf = os.path.join(tmp, "events.json")
        argv = [*KPROBES, "trace", t.spec, "--json", "-o", outf, "-c", " ".join(cmd)]
        if base == "quiet":
            argv.insert(5, "-q")
        r = _run(argv, tmp)
        with open(outf, "rb") as f:
            lines = f.read().splitlines()
        summ = json.loads(lines[-1])["summary"]
        delivered, lost = len(lines) - 1 if base == "json" else summ["events"], summ["lost"]
        if base == "json" and delivered != summ["events"]:
            raise RuntimeError(f"{delivered} lines but summary says {summ['events']}")
        os.unlink(outf)
        return _row(r, n, delivered, lost)
    if base == "text":
        outf = os.path.join(tmp, "events.txt")
        r = _run([*KPROBES, "trace", t.spec, "-o", outf, "-c", " ".join(cmd)], tmp)
        with open(outf, "rb") as f:
            delivered = f.read().count(b"\n")
        m = re.search(r"events delivered: (\d+), lost in ring buffer: (\d+)", r["stderr"])
        if not m or int(m.group(1)) != delivered:
            raise RuntimeError(f"{delivered} lines; summary: {r['stderr'][-500:]}")
        os.unlink(outf)
        return _row(r, n, delivered, int(m.group(2)))
    if base == "bt-count":
        prog = f"{t.bt_probe} /pid == cpid/ {{ @ = count(); }}"
        r = _run(["bpftrace", "-e", prog, "-c", " ".join(cmd)], tmp)
        m = re.search(r"^@: (\d+)", open(r["stdout"]).read(), re.M)
        return _row(r, n, int(m.group(1)) if m else 0, None)
    if base == "bt-printf":
        outf = os.path.join(tmp, "bt.txt")
        prog = f"{t.bt_probe} /pid == cpid/ {{ {t.bt_printf} }}"
        r = _run(["bpftrace", "-e", prog, "-c", " ".join(cmd)], tmp, stdout_file=outf)
        text = open(outf).read()
        lines = text.splitlines()
        delivered = sum(1 for ln in lines if ln.startswith("E "))
        lost = sum(int(x) for x in re.findall(r"Lost (\d+) events", text + r["stderr"]))
        os.unlink(outf)
        return _row(r, n, delivered, lost)
    raise ValueError(variant)


def _row(r: dict, n: int, delivered: int | None, lost: int | None,
         startup: bool = True) -> dict:
    w = r["w"]
    return {"ns": w["loop_ns"] / w["n"], "delivered": delivered, "lost": lost,
            "cpu_ns": r["cpu"] * 1e9 / delivered if delivered else None,
            "startup": (w["start_ns"] - r["t0"]) / 1e9 if startup else None,
            "rss_mb": r["rss_kb"] / 1024 if startup else None}


def _raw(t: Target, cmd: list[str], n: int, tmp: str) -> dict:
    """Arm the probe in a session that never reads; ``bench/rawcopy.c`` copies
    every CPU's trace_pipe_raw pages and counts the workload's records in them."""
    from kprobes import Session
    with Session() as s:
        h = s.add(t.spec)
        s.start()
        inst = s._inst                 # noqa: SLF001 - bench only
        reader = s._reader             # noqa: SLF001
        ncpu, page_size = reader.ncpus, reader.page_size
        reader.close()                 # rawcopy is the only reader
        ruf = os.path.join(tmp, "rusage.raw")
        outf = os.path.join(tmp, "raw.out")
        # the workload's pid is not known before it runs: every pid's records
        # of the event count (only the workload makes them in practice)
        with open(outf, "w") as fo:
            raw = subprocess.Popen([RUSAGE, ruf, RAWCOPY, str(page_size), str(h.type_id), "0",
                                    *(inst.pipe_path(c) for c in range(ncpu))], stdout=fo)
            try:
                r = _run(cmd, tmp)
                inst.write("tracing_on", "0")
            finally:   # SIGTERM: rawcopy reads what is left, prints, exits
                subprocess.run(["pkill", "-TERM", "-P", str(raw.pid)])
                raw.wait()
        lost = s.lost()
    m = re.search(r"matched=(\d+)", open(outf).read())
    read = int(m.group(1)) if m else 0
    ut, st, _rss, _rc = map(int, open(ruf).read().split())
    w = r["w"]
    return {"ns": w["loop_ns"] / w["n"], "delivered": read, "lost": lost,
            "cpu_ns": (ut + st) * 1e3 / read if read else None, "startup": None,
            "rss_mb": None}


def fmt_table(results: dict[str, list[dict]], n: int, ratios_only: bool = False) -> str:
    def med(rows: list[dict], k: str) -> float | None:
        vals = [r[k] for r in rows if r.get(k) is not None]
        return statistics.median(vals) if vals else None

    none = med(results.get("none", []), "ns")
    if ratios_only:
        head = ("| variant | slowdown vs none | delivered / produced | lost | "
                "consumer CPU per event vs raw |")
        sep = "| --- | ---: | ---: | ---: | ---: |"
    else:
        head = ("| variant | ns per traced call | vs none | delivered / produced | lost | "
                "consumer CPU ns/event | start-up s | peak RSS MB |")
        sep = "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    lines = [head, sep]
    raw_cpu = med(results.get("raw", []), "cpu_ns")
    for v, rows in results.items():
        ns = med(rows, "ns")
        d = med(rows, "delivered")
        rec = med(rows, "recorded")
        lost = med(rows, "lost")
        cpu = med(rows, "cpu_ns")
        produced = n
        if d is not None:
            dp = f"{d:,.0f} / {produced:,} ({d / produced:.0%})"
        elif rec is not None:
            dp = f"(recorded {rec:,.0f}) / {produced:,}"
        else:
            dp = "–"
        slow = f"{ns / none:.2f}x" if none and ns else "–"
        lo = f"{lost:,.0f}" if lost is not None else "–"
        if ratios_only:
            c = f"{cpu / raw_cpu:.2f}x" if cpu and raw_cpu else "–"
            lines.append(f"| {v} | {slow} | {dp} | {lo} | {c} |")
            continue
        su, rss = med(rows, "startup"), med(rows, "rss_mb")
        lines.append(f"| {v} | {ns:,.0f} | {slow} | {dp} | {lo} | "
                     f"{f'{cpu:,.0f}' if cpu else '–'} | {f'{su:.3f}' if su else '–'} | "
                     f"{f'{rss:.1f}' if rss else '–'} |")
    return "\n".join(lines)


def targets(loops: str, vm: bool) -> list[Target]:
    if vm:
        return [Target("kprobe p:__x64_sys_getppid", loops, "sys", "p:__x64_sys_getppid",
                       "kprobe:__x64_sys_getppid", 'printf("E %d %s\\n", tid, comm);')]
    return [
        Target("tracepoint syscalls:sys_enter_getppid", loops, "sys",
               "t:syscalls:sys_enter_getppid", "tracepoint:syscalls:sys_enter_getppid",
               'printf("E %d %s %d\\n", tid, comm, args->__syscall_nr);'),
        Target("uprobe loops:bench_target", loops, "call", f"u:{loops}:bench_target",
               f"uprobe:{loops}:bench_target", 'printf("E %d %s\\n", tid, comm);'),
    ]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=2_000_000, help="calls per run (N)")
    ap.add_argument("--uprobe-events", type=int, default=None,
                    help="calls per uprobe run (default: N/10; a uprobe hit traps, ~10 us)")
    ap.add_argument("--repeat", type=int, default=3, help="runs per variant (K)")
    ap.add_argument("--only", default=None, help="comma-separated variants (default: all)")
    ap.add_argument("--vm", action="store_true", help="kprobe variants in the 6.1 guest")
    ap.add_argument("--in-vm", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--out", default=None, help="also write the markdown tables here")
    a = ap.parse_args()
    if a.vm:
        cmd = [*KPROBES, "vm", "--kernel", "6.1", "--timeout", "3000", "--", PY,
               os.path.abspath(__file__), "--in-vm", "--events", str(a.events),
               "--repeat", str(a.repeat)] + (["--only", a.only] if a.only else [])
        # the checkout is read-only in the guest: the tables come back on stdout
        r = subprocess.run(cmd, cwd=ROOT, stdout=subprocess.PIPE, text=True)
        print(r.stdout, end="")
        if a.out:
            with open(a.out, "w") as f:
                f.write(r.stdout[r.stdout.find("### "):] if "### " in r.stdout else "")
        return r.returncode
    variants = a.only.split(",") if a.only else list(ALL)
    if a.in_vm:
        variants = [v for v in variants if not v.endswith("@1M")]
    if shutil.which("bpftrace") is None:
        variants = [v for v in variants if not v.startswith("bt-")]
    out: list[str] = []
    with tempfile.TemporaryDirectory(prefix="kpbench") as tmp:
        loops = build(tmp)
        for t in targets(loops, a.in_vm):
            n = a.events if t.kind == "sys" else (a.uprobe_events or max(a.events // 10, 1))
            results: dict[str, list[dict]] = {v: [] for v in variants}
            for k in range(a.repeat):          # interleave variants: drift hits all alike
                for v in variants:
                    try:
                        results[v].append(measure(v, t, n, tmp))
                    except Exception as e:  # noqa: BLE001 - report and go on
                        print(f"  {t.name} {v} run {k + 1}: failed: {e}", file=sys.stderr)
                    print(f"  {t.name} {v} run {k + 1} done", file=sys.stderr, flush=True)
            title = f"### {t.name}, N = {n:,}, median of {a.repeat}"
            if a.in_vm:
                title += " (Debian 6.1 guest under TCG: ratios only)"
            table = fmt_table({v: r for v, r in results.items() if r}, n,
                              ratios_only=a.in_vm)
            print(f"\n{title}\n\n{table}\n", flush=True)
            out.append(f"{title}\n\n{table}\n")
    if a.out:
        with open(a.out, "w") as f:
            f.write("\n".join(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())

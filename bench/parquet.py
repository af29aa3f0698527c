"""Parquet writing rate next to JSON lines and bpftrace printf, in one run.

    .venv/bin/python bench/parquet.py [--events N] [--repeat K] [--rate R]

The tracepoint ``syscalls:sys_enter_getppid`` on the ``bench/loops.c``
``syscall(SYS_getppid)`` loop (the workload of bench/throughput.py), K runs
each, unpaced and paced to R calls/s:

  raw        raw-copy ceiling (bench/rawcopy.c reads every CPU's trace_pipe_raw)
  bt-printf  bpftrace ``printf`` per event, to a file
  json       ``kprobes trace SPEC --json -o FILE -c CMD``
  parquet    ``kprobes trace SPEC --format parquet -o FILE -c CMD``

Columns (medians): events delivered / produced, lost, consumer CPU per
delivered event and the rate it allows (events per CPU-second), bytes per
event in the output file, and the file's size against the JSON file's.

Then, in this process (paced, so nothing is lost), where a Parquet event's CPU
goes: building the batch's columns (``Batch.ts/cpu/pid/tid/comm/args``, shared
with every batch consumer) and Arrow conversion + Parquet writing (this
module's own cost), in CPU ns per event (``time.process_time``).
"""

from __future__ import annotations

import argparse
import os
import re
import select
import statistics
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import throughput as tp  # noqa: E402


def measure(variant: str, t: tp.Target, n: int, rate: float | None, tmp: str) -> dict:
    cmd = t.cmd(n, rate)
    if variant == "raw":
        return tp._raw(t, cmd, n, tmp)
    if variant == "bt-printf":
        outf = os.path.join(tmp, "bt.txt")
        prog = f"{t.bt_probe} /pid == cpid/ {{ {t.bt_printf} }}"
        r = tp._run(["bpftrace", "-e", prog, "-c", " ".join(cmd)], tmp, stdout_file=outf)
        text = open(outf).read()
        delivered = sum(1 for ln in text.splitlines() if ln.startswith("E "))
        lost = sum(int(x) for x in re.findall(r"Lost (\d+) events", text + r["stderr"]))
        size = os.path.getsize(outf)
        os.unlink(outf)
        return {**tp._row(r, n, delivered, lost), "bytes": size}
    if variant == "json":
        outf = os.path.join(tmp, "events.json")
        r = tp._run([*tp.KPROBES, "trace", t.spec, "--json", "-o", outf, "-c", " ".join(cmd)],
                    tmp)
        with open(outf, "rb") as f:
            lines = f.read().splitlines()
        size = sum(len(ln) + 1 for ln in lines[:-1])        # the events, not the summary
        m = re.search(rb'"events": (\d+), "lost": (\d+)', lines[-1])
        os.unlink(outf)
        return {**tp._row(r, n, len(lines) - 1, int(m.group(2))), "bytes": size}
    if variant == "parquet":
        outf = os.path.join(tmp, "events.parquet")
        r = tp._run([*tp.KPROBES, "trace", t.spec, "--format", "parquet", "-o", outf,
                     "-c", " ".join(cmd)], tmp)
        import pyarrow.parquet as pq
        rows = pq.ParquetFile(outf).metadata.num_rows
        m = re.search(r"lost in ring buffer: (\d+)", r["stderr"])
        w = re.search(r"wrote (\d+) events", r["stderr"])
        if not w or int(w.group(1)) != rows:
            raise RuntimeError(f"file has {rows} rows; tracer said: {r['stderr'][-500:]}")
        size = os.path.getsize(outf)
        os.unlink(outf)
        return {**tp._row(r, n, rows, int(m.group(1)) if m else None), "bytes": size}
    raise ValueError(variant)


def split(loops: str, n: int, rate: float, tmp: str) -> dict[str, float]:
    """CPU ns per event: Batch columns, and Arrow + Parquet (incl. close)."""
    import time

    from kprobes import Session
    from kprobes.output.arrow import ParquetSink, pyarrow
    pyarrow(parquet=True)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(w)
        os.read(r, 1)
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, 1)
        os.dup2(null, 2)
        os.execv(loops, [loops, "sys", str(n), str(rate)])
    os.close(r)
    cpu = {"columns": 0.0, "arrow+parquet": 0.0}
    rows = 0
    pidfd = os.pidfd_open(pid)          # readable once the workload exits

    def exited() -> bool:
        return bool(select.select([pidfd], [], [], 0)[0])

    out = os.path.join(tmp, "split.parquet")
    with Session(pid=pid) as s:
        h = s.add(tp.targets(loops, vm=False)[0].spec)
        s.start()
        sink = ParquetSink(out, s.reader.targets())

        def on_batch(b: object) -> None:
            nonlocal rows
            t0 = time.process_time()
            b.ts, b.cpu, b.pid, b.tid, b.comm, b.args  # type: ignore[attr-defined] # noqa: B018
            t1 = time.process_time()
            sink.add(b)  # type: ignore[arg-type]
            cpu["columns"] += t1 - t0
            cpu["arrow+parquet"] += time.process_time() - t1
            rows += len(b)  # type: ignore[arg-type]
        h.batch = on_batch
        s.wake_on(pidfd)
        os.write(w, b"g")
        os.close(w)
        stats = s.run(until=exited)
        os.waitpid(pid, 0)
        os.close(pidfd)
        t0 = time.process_time()
        sink.close()
        cpu["arrow+parquet"] += time.process_time() - t0
    size = os.path.getsize(out)
    os.unlink(out)
    return {"rows": rows, "lost": stats.lost, "bytes": size / rows if rows else 0,
            **{k: v * 1e9 / rows if rows else 0 for k, v in cpu.items()}}


def table(results: dict[str, list[dict]], n: int) -> str:
    def med(rows: list[dict], k: str) -> float | None:
        vals = [r[k] for r in rows if r.get(k) is not None]
        return statistics.median(vals) if vals else None

    lines = ["| variant | delivered / produced | lost | consumer CPU ns/event | "
             "events per CPU-second | bytes/event | file vs json |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    json_b = None
    for v, rows in results.items():
        if v.startswith("json"):
            d, b = med(rows, "delivered"), med(rows, "bytes")
            json_b = b / d if d and b else None
    for v, rows in results.items():
        d, lost, cpu, b = (med(rows, k) for k in ("delivered", "lost", "cpu_ns", "bytes"))
        per = b / d if b and d else None
        lines.append(
            f"| {v} | {f'{d:,.0f} / {n:,} ({d / n:.0%})' if d is not None else '–'} | "
            f"{f'{lost:,.0f}' if lost is not None else '–'} | "
            f"{f'{cpu:,.0f}' if cpu else '–'} | {f'{1e9 / cpu:,.0f}' if cpu else '–'} | "
            f"{f'{per:.1f}' if per else '–'} | "
            f"{f'{per / json_b:.2f}x' if per and json_b else '–'} |")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=1_000_000, help="calls per run (N)")
    ap.add_argument("--repeat", type=int, default=3, help="runs per variant (K)")
    ap.add_argument("--rate", type=float, default=500_000, help="paced calls/s (0: none)")
    ap.add_argument("--only", default=None, help="comma-separated variants")
    args = ap.parse_args()
    variants = ["raw", "bt-printf", "json", "parquet"]
    if args.only:
        variants = [v for v in variants if v in args.only.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        loops = tp.build(tmp)
        t = tp.targets(loops, vm=False)[0]
        for rate in [None] + ([args.rate] if args.rate else []):
            results: dict[str, list[dict]] = {}
            for _ in range(args.repeat):
                for v in variants:
                    if v == "raw" and rate:
                        continue
                    results.setdefault(v, []).append(measure(v, t, args.events, rate, tmp))
            pace = f"paced to {rate:,.0f}/s" if rate else "unpaced"
            print(f"\n{t.name}, N={args.events:,}, {pace}, median of {args.repeat}\n")
            print(table(results, args.events), flush=True)
        if args.rate:
            runs = [split(loops, args.events, args.rate, tmp) for _ in range(args.repeat)]
            med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
            print(f"\nin-process, paced to {args.rate:,.0f}/s, median of {args.repeat}: "
                  f"{med['rows']:,.0f} events, {med['lost']:,.0f} lost; CPU per event: "
                  f"Batch columns {med['columns']:,.0f} ns, Arrow + Parquet "
                  f"{med['arrow+parquet']:,.0f} ns; {med['bytes']:.1f} bytes/event", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""What ``kprobes count``, ``hist`` and ``latency`` share: options, the run, the output.

Each prints its rows at the end (or every ``-i`` seconds, with a timestamp,
each interval's rows only), as ``@[key]: value`` lines sorted by value or as
histogram bars, or with ``--json`` one line per aggregation per interval
then ``{"summary": {...}}``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable

from ..agg.model import Aggregation, Row
from ..agg.render import text_rows
from ..errors import KprobesError
from ..runtime.aggregate import BACKENDS
from ..runtime.session import Session
from .export import add_serve_argument, check_serve, start_exporter
from .running import Target, Watch, add_run_options

__all__ = ["add_common", "run_aggregations", "split_keys"]


def add_common(p: argparse.ArgumentParser, *, by_default: str = "") -> None:
    """The options every aggregation subcommand takes."""
    p.add_argument("--by", default=by_default, metavar="KEY[,KEY...]",
                   help="keys: comm, pid, tid, cpu, or the probe's args (e.g. filename)"
                        + (f" (default: {by_default})" if by_default else ""))
    p.add_argument("--top", type=int, metavar="N", help="print only the N largest rows")
    p.add_argument("-i", "--interval", type=float, metavar="SEC",
                   help="print (and start over) every SEC seconds, with a timestamp")
    add_run_options(p)
    p.add_argument("--filter", metavar="EXPR",
                   help="in-kernel filter on the probe's fields, e.g. 'ret < 0'")
    p.add_argument("--backend", choices=BACKENDS, default="auto",
                   help="kernel: hist triggers, nothing per event leaves the kernel; user: "
                        "count in this process; auto: kernel where it can (default)")
    p.add_argument("--size", type=int, default=2048, metavar="N",
                   help="keys the kernel keeps (a power of 2 >= 128; more are counted as "
                        "dropped); the user side keeps 5x as many")
    p.add_argument("--json", action="store_true",
                   help="one JSON line per aggregation (per interval), then {\"summary\": ...}")
    add_serve_argument(p)


def split_keys(text: str) -> tuple[str, ...]:
    return tuple(k.strip() for k in text.split(",") if k.strip()) if text else ()


def _print_rows(aggs: list[Aggregation], rows: list[list[Row]], args: argparse.Namespace,
                interval: int | None) -> None:
    out = sys.stdout
    if args.json:
        for a, r in zip(aggs, rows, strict=True):
            out.write(json.dumps(a.to_json(interval, r), ensure_ascii=False) + "\n")
        out.flush()
        return
    if interval is not None:
        out.write(time.strftime("%H:%M:%S") + "\n")
    for a, r in zip(aggs, rows, strict=True):
        if args.top:
            r = r[-args.top:]
        if len(aggs) > 1:
            out.write(f"{a.name}:\n")
        text = text_rows(r, a.kind, a.unit)
        if text:
            out.write(text + "\n")
        if len(aggs) > 1 or interval is not None:
            out.write("\n")
    out.flush()


def run_aggregations(args: argparse.Namespace, what: str,
                     build: Callable[[Session], list[Aggregation]],
                     show: Callable[..., None] | None = None, pid_filter: bool = True,
                     banner: str | None = None) -> int:
    """Create the session and aggregations (``build``), run, print; -c/-p/-d/-i.
    ``show(aggs, rows, args, interval)`` replaces the default printing (bcc-style tools);
    ``pid_filter=False``: -c ends the run but does not limit the events to CMD (events
    in interrupts, such as block I/O completions); ``banner`` replaces the "what, which
    backend" line on stderr (printed also with --json: a script may wait for it)."""
    print_rows = show or _print_rows
    if args.interval is not None and args.interval <= 0:
        raise KprobesError(f"-i {args.interval:g}: must be more than 0", hint="seconds, e.g. -i 1")
    if args.top is not None and args.top < 1:
        raise KprobesError(f"--top {args.top}: must be 1 or more", hint="e.g. --top 10")
    if getattr(args, "serve", None) and args.interval:
        raise KprobesError("--serve and -i do not go together: Prometheus counters only grow, "
                           "and -i starts every interval over",
                           hint="leave out -i: Prometheus computes rates over time itself")
    check_serve(args)
    target = Target(args)
    exporter = None
    try:
        target.open()
        with Session(pid=target.pid if pid_filter else None) as s:
            aggs = build(s)
            s.start()
            exporter = start_exporter(args, s, aggs)
            if banner:          # on stderr, also with --json: a script may wait for it
                print(banner, file=sys.stderr, flush=True)
            elif not args.json:
                how = "; ".join(f"{a.name}: {a.backend} backend ({a.backend_reason})"
                                for a in aggs)
                print(f"{what} {how}. Ctrl-C to end.", file=sys.stderr, flush=True)
            target.start(s)
            watch = Watch(s, target)
            n = 0
            until: Callable[[], bool] = watch
            if args.interval:
                next_t = time.monotonic() + args.interval

                def until() -> bool:
                    nonlocal next_t, n
                    if watch():
                        return True
                    if time.monotonic() >= next_t:
                        n += 1
                        print_rows(aggs, [a.interval() for a in aggs], args, n)
                        next_t += args.interval
                    return False
            stats = s.run(duration=args.duration,
                          until=exporter.until(until) if exporter else until,
                          tick=min(0.2, args.interval or 0.2))
            if args.interval:
                rows = [a.interval() for a in aggs]
                if any(rows) or n == 0:
                    print_rows(aggs, rows, args, n + 1)
            else:
                print_rows(aggs, [a.read() for a in aggs], args, None)
            extra = target.ended()
            backends = sorted({a.backend for a in aggs})
            summary = stats.as_dict()
            summary.update(extra)
            summary["backend"] = backends[0] if len(backends) == 1 else backends
            summary["backend_reason"] = "; ".join(dict.fromkeys(a.backend_reason for a in aggs))
            summary["dropped"] = sum(a.dropped for a in aggs)
            if args.json:
                print(json.dumps({"summary": summary}), flush=True)
            else:
                drops = f", {summary['dropped']} dropped for lack of room" \
                    if summary["dropped"] else ""
                print(f"{stats.lost} lost{drops}", file=sys.stderr)
                if target.target_exited:
                    print(f"kprobes: process {args.pid} exited", file=sys.stderr)
            for problem in s.cleanup_problems:
                print(f"warning: {problem}", file=sys.stderr)
    finally:
        if exporter is not None:
            exporter.close()
        target.close()
    return 0

"""funclatency: time functions and print their latency as a log2 histogram,
as bcc's ``funclatency``.

Kernel side: an entry and a return probe per matched function
(:func:`kprobes.expand_pattern`), paired per thread by
:meth:`Session.funclatency`: in the kernel (hist triggers and a synthetic
event) where it can, else in this process. All functions in one
histogram, or one per function with ``-F``; ``--json``: the aggregation
JSON lines (one per function with ``-F``, key ``func``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from kprobes import Aggregation, KprobesError, Row, Session, expand_pattern

from ..agg.model import merge_rows
from ..agg.render import log2_hist_text
from ..cli.aggregate import run_aggregations
from ..runtime.aggregate import BACKENDS
from .common import tool

__all__ = ["NAME", "register", "run", "main"]

NAME = "funclatency"
DESCRIPTION = "Time functions and print latency as a histogram"
EXAMPLES = """examples:
    kprobes funclatency do_sys_openat2     # time the do_sys_openat2() kernel function
    kprobes funclatency c:read             # time the read() C library function
    kprobes funclatency -u vfs_read        # time vfs_read(), in microseconds
    kprobes funclatency -m do_nanosleep    # time do_nanosleep(), in milliseconds
    kprobes funclatency -i 2 -d 10 c:open  # output every 2 seconds, for duration 10s
    kprobes funclatency -mTi 5 vfs_read    # output every 5 seconds, with timestamps
    kprobes funclatency -p 181 vfs_read    # time process 181 only
    kprobes funclatency 'vfs_fstat*'       # time both vfs_fstat() and vfs_fstatat()
    kprobes funclatency 'c:*printf'        # time the *printf family of functions
    kprobes funclatency -F 'vfs_r*'        # show one histogram per matched function
    kprobes funclatency --json -u -c 'sleep 1' do_nanosleep   # one JSON line

Buckets are the kernel's log2 buckets: each line's range is exact
(2^(k-1)+1 -> 2^k). Nested or recursive calls pair innermost first.
At most 1000 functions per pattern.
"""

UNITS = {"ns": "nsecs", "us": "usecs", "ms": "msecs"}


def options(p: argparse.ArgumentParser) -> None:
    p.add_argument("-p", "--pid", type=int, help="trace this PID only")
    p.add_argument("-i", "--interval", type=float, metavar="SEC",
                   help="summary interval, in seconds")
    p.add_argument("-T", "--timestamp", action="store_true", help="include timestamp on output")
    unit = p.add_mutually_exclusive_group()
    unit.add_argument("-u", "--microseconds", action="store_true",
                      help="microsecond histogram")
    unit.add_argument("-m", "--milliseconds", action="store_true",
                      help="millisecond histogram")
    p.add_argument("-F", "--function", action="store_true",
                   help="show a separate histogram per function")
    p.add_argument("-r", "--regexp", action="store_true",
                   help='use regular expressions. Default is "*" wildcards only.')
    p.add_argument("--backend", choices=BACKENDS, default="auto",
                   help="kernel: hist triggers + synthetic events; user: pair in this "
                        "process; auto (default)")
    p.add_argument("pattern", help="search expression for functions")


def _hist(out: object, r: Row, label: str) -> None:
    write = out.write                            # type: ignore[attr-defined]
    text = log2_hist_text(r.buckets or [], label)
    if text:
        write(text + "\n")
    if r.count:
        total = r.sum or 0
        write(f"\navg = {total // r.count} {label}, total: {total} {label}, "
              f"count: {r.count}\n")


def execute(args: argparse.Namespace) -> int:
    unit = "ms" if args.milliseconds else "us" if args.microseconds else "ns"
    label = UNITS[unit]
    matches = [m for m in expand_pattern(args.pattern, regex=args.regexp)]
    seen: dict[str, object] = {}
    for m in matches:                # latency pairs by name: one probe per function
        seen.setdefault(m.label, m.probe)
    if any(getattr(p, "symbol", "") is None for p in seen.values()):
        dup = next(k for k, p in seen.items() if getattr(p, "symbol", "") is None)
        raise KprobesError(f"{dup!r} is defined more than once in the kernel: its latency "
                           "cannot be paired by name", hint="leave it out of the pattern")
    labels = list(seen)
    args.top = None

    def build(s: Session) -> list[Aggregation]:
        return [s.funclatency(seen[f], by=(), unit=unit, backend=args.backend)   # type: ignore[arg-type]
                for f in labels]

    def printer(aggs: list[Aggregation], rows: list[list[Row]], a: argparse.Namespace,
                interval: int | None) -> None:
        out = sys.stdout
        if args.function:
            per = [(f, merge_rows(rs)) for f, rs in zip(labels, rows, strict=True)]
        else:
            allr = merge_rows([r for rs in rows for r in rs])
            per = [(args.pattern, allr)]
        if args.json:
            for f, rs in per:
                d = aggs[0].to_json(interval, [Row({"func": f}, r.count, r.sum, None, None,
                                                    r.buckets) for r in rs])
                d["name"] = f
                out.write(json.dumps(d, ensure_ascii=False) + "\n")
            out.flush()
            return
        out.write("\n")
        if args.timestamp:
            out.write(time.strftime("%H:%M:%S") + "\n")
        for f, rs in per:
            if not rs:
                continue
            if args.function:
                out.write(f"\nFunction = {f}\n")
            _hist(out, rs[0], label)
        out.flush()

    return run_aggregations(args, "Timing", build, show=printer,
                            banner=f'Tracing {len(labels)} functions for "{args.pattern}"... '
                                   "Hit Ctrl-C to end.")


register, run, main = tool(__name__)

if __name__ == "__main__":
    sys.exit(main())

"""funccount: count calls of the functions or tracepoints a pattern matches,
as bcc's ``funccount``.

Kernel side: one probe per match (:func:`kprobes.expand_pattern`), each
counted by :meth:`Session.count` in the kernel, nothing per call leaving it:
system-wide by the probe's own hit counter (``kprobe_profile``/``uprobe_profile``),
with ``-p PID`` by perf counters on that process, else (tracepoints
system-wide) by a hist trigger where there are hist triggers; without them, in
this process from the ring buffer. Prints ``FUNC COUNT`` (``--json``: the
aggregation JSON line with one row per function, key ``func``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from kprobes import Aggregation, Row, Session, expand_pattern

from ..cli.aggregate import run_aggregations
from ..runtime.aggregate import BACKENDS
from .common import tool

__all__ = ["NAME", "funcs_rows", "register", "run", "main"]

NAME = "funccount"
DESCRIPTION = "Count functions, tracepoints, and user functions"
EXAMPLES = """examples:
    kprobes funccount 'vfs_*'             # count kernel fns starting with "vfs"
    kprobes funccount -r '^vfs.*'         # same as above, using regular expressions
    kprobes funccount -Ti 5 'vfs_*'       # output every 5 seconds, with timestamps
    kprobes funccount -d 10 'vfs_*'       # trace for 10 seconds only
    kprobes funccount -p 185 'vfs_*'      # count vfs calls for PID 185 only
    kprobes funccount t:sched:sched_fork  # count calls to the sched_fork tracepoint
    kprobes funccount 't:sched:*'         # count all sched tracepoints
    kprobes funccount c:malloc            # count all malloc() calls in libc
    kprobes funccount u:/bin/bash:'read*' # count bash's read* functions
    kprobes funccount --json -c 'ls /' 'vfs_*'   # only ls; one JSON line, key "func"

patterns: [p:][MOD:]FUNC kernel functions, t:GROUP:EVENT tracepoints,
u:LIB:FUNC or LIB:FUNC user functions (LIB: a path, a program, or a library
such as c for libc); '*' wildcards, or regular expressions with -r.
At most 1000 probes per pattern.
"""


def options(p: argparse.ArgumentParser) -> None:
    p.add_argument("-p", "--pid", type=int, help="trace this PID only")
    p.add_argument("-i", "--interval", type=float, metavar="SEC",
                   help="summary interval, seconds")
    p.add_argument("-T", "--timestamp", action="store_true", help="include timestamp on output")
    p.add_argument("-r", "--regexp", action="store_true",
                   help='use regular expressions. Default is "*" wildcards only.')
    p.add_argument("--backend", choices=BACKENDS, default="auto",
                   help="kernel: hit counters, perf counters (-p) or hist triggers; user: "
                        "count in this process; auto (default)")
    p.add_argument("pattern", help="search expression for events")


def funcs_rows(labels: list[str], rows: list[list[Row]]) -> list[Row]:
    """One row per function (``{"func": label}``), probes of one name added up,
    uncalled ones left out, ascending by count as bcc prints them.

    >>> [(r.key["func"], r.count) for r in funcs_rows(["b", "a", "b"], [[Row({}, 2)], [], [Row({}, 1)]])]
    [('b', 3)]
    """
    total: dict[str, int] = {}
    for label, rs in zip(labels, rows, strict=True):
        n = sum(r.count for r in rs)
        if n:
            total[label] = total.get(label, 0) + n
    return [Row({"func": f}, n) for f, n in sorted(total.items(), key=lambda x: (x[1], x[0]))]


def execute(args: argparse.Namespace) -> int:
    matches = expand_pattern(args.pattern, regex=args.regexp)
    labels = [m.label for m in matches]
    args.top = None

    def build(s: Session) -> list[Aggregation]:
        return [s.count(m.probe, backend=args.backend) for m in matches]

    def printer(aggs: list[Aggregation], rows: list[list[Row]], a: argparse.Namespace,
                interval: int | None) -> None:
        merged = funcs_rows(labels, rows)
        out = sys.stdout
        if args.json:
            d = aggs[0].to_json(interval, merged)
            d["name"] = args.pattern
            out.write(json.dumps(d, ensure_ascii=False) + "\n")
        else:
            out.write("\n")
            if args.timestamp:
                out.write(time.strftime("%H:%M:%S") + "\n")
            out.write(f"{'FUNC':<36} {'COUNT':>8}\n")
            for r in merged:
                out.write(f"{r.key['func']:<36} {r.count:>8}\n")
        out.flush()

    n = len(set(labels))
    return run_aggregations(args, "Counting", build, show=printer,
                            banner=f'Tracing {n} functions for "{args.pattern}"... '
                                   "Hit Ctrl-C to end.")


register, run, main = tool(__name__)

if __name__ == "__main__":
    sys.exit(main())

"""``kprobes latency FUNC``: time from entry to return per call (bcc ``funclatency``)."""

from __future__ import annotations

import argparse

from ..errors import KprobesError
from .aggregate import add_common, run_aggregations, split_keys

__all__ = ["register", "run"]

EXAMPLES = """examples:
  kprobes latency vfs_read --by comm
  kprobes latency u:/bin/bash:readline --unit ms
FUNC is a kernel function (FUNC or p:FUNC) or a user one (u:PATH:SYMBOL). The time is
from entry to return of the same call on the same thread (innermost call first).
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("latency", help="latency histogram of a function, in the kernel where "
                                       "it can",
                       description="A log2 histogram of the time from entry to return of FUNC "
                                   "per key.", epilog=EXAMPLES,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("function", metavar="FUNC", help="FUNC, p:FUNC or u:PATH:SYMBOL")
    p.add_argument("--unit", choices=("ns", "us", "ms"), default="us", help="default: us")
    add_common(p, by_default="comm")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.filter:
        raise KprobesError("latency takes no --filter",
                           hint="use -p/-c to pick a process, --by to split the rows")
    by = split_keys(args.by)
    return run_aggregations(args, "Timing", lambda s: [
        s.funclatency(args.function, by=by, unit=args.unit, backend=args.backend, size=args.size,
                      cap=args.size * 5)])

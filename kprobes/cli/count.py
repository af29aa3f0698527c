"""``kprobes count SPEC... [--by KEY,...]``: how often, by whom (bpftrace ``count()``)."""

from __future__ import annotations

import argparse

from ..probes.spec import SPEC_HELP
from .aggregate import add_common, run_aggregations, split_keys

__all__ = ["register", "run"]

EXAMPLES = """examples:
  kprobes count t:syscalls:sys_enter_openat --by comm
  kprobes count 'p:do_sys_openat2 filename' --by comm,filename --top 10
  kprobes count 'r:do_sys_openat2 $retval' --filter 'retval < 0' --by comm -i 1
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("count", help="count events per key, in the kernel where it can",
                       description="Count each probe's events per key (comm, pid, tid, cpu, "
                                   "args) in the kernel where it can: a plain count by the probe's own "
                                   "hit counter, or with -p/-c by perf counters on the task; keyed "
                                   "counts by hist triggers.",
                       epilog=EXAMPLES + "\n" + SPEC_HELP,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("specs", nargs="+", metavar="SPEC", help="probe spec (quote each one)")
    add_common(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    by = split_keys(args.by)
    size = args.size
    return run_aggregations(args, "Counting", lambda s: [
        s.count(spec, by=by, backend=args.backend, filter=args.filter, size=size, cap=size * 5)
        for spec in args.specs])

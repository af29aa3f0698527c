"""``kprobes hist SPEC --value EXPR``: the distribution of a value (bpftrace ``hist()``)."""

from __future__ import annotations

import argparse

from ..errors import KprobesError
from ..probes.spec import SPEC_HELP
from .aggregate import add_common, run_aggregations, split_keys

__all__ = ["register", "run"]

EXAMPLES = """examples:
  kprobes hist 'p:do_sys_openat2' --value how->mode
  kprobes hist 'u:/bin/bash:readline' --value %di --by comm
  kprobes hist 'r:vfs_read $retval:s64' --value retval --linear 0,4096,512
Buckets: --log2 (default) as the kernel's .log2: [2^(k-1)+1, 2^k+1); --linear LO,HI,STEP
with LO and HI multiples of STEP, plus (..., LO) and [HI, ...) for the rest.
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("hist", help="histogram of a value, in the kernel where it can",
                       description="A histogram of VALUE (an arg of the probe, or a fetch/BTF "
                                   "expression added to it) per key, with count and sum.",
                       epilog=EXAMPLES + "\n" + SPEC_HELP,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("spec", metavar="SPEC", help="probe spec (quoted)")
    p.add_argument("--value", required=True, metavar="EXPR", help="the value to bucket")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--log2", action="store_true", help="power-of-2 buckets (default)")
    g.add_argument("--linear", metavar="LO,HI,STEP", help="linear buckets")
    add_common(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    linear = None
    if args.linear:
        try:
            lo, hi, step = (int(x, 0) for x in args.linear.split(","))
        except ValueError:
            raise KprobesError(f"--linear {args.linear}: expected three integers LO,HI,STEP",
                               hint="e.g. --linear 0,1000,100") from None
        linear = (lo, hi, step)
    by = split_keys(args.by)
    return run_aggregations(args, "Histogram", lambda s: [
        s.hist(args.spec, value=args.value, by=by, linear=linear, backend=args.backend,
               filter=args.filter, size=args.size, cap=args.size * 5)])

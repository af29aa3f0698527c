"""stackcount: count the distinct stacks leading to the functions or
tracepoints a pattern matches, as bcc's ``stackcount``.

Kernel side: one probe per match (:func:`kprobes.expand_pattern`) with
the instance's ``stacktrace`` / ``userstacktrace`` options
(:meth:`Session.stacks`); stacks are counted in this process on their raw
addresses and symbolized once each. Printed at the end, least frequent
first: frames innermost first, then the count (``-f``: folded lines for
flame graphs; ``--json``: one object with every stack).
"""

from __future__ import annotations

import argparse
import json
import sys

from kprobes import KprobesError, Session, StackCounts, expand_pattern

from ..cli.running import Target, Watch
from ..runtime.aggregate import BACKENDS
from .common import tool

__all__ = ["NAME", "register", "run", "main"]

NAME = "stackcount"
DESCRIPTION = "Count events and their stack traces"
EXAMPLES = """examples:
    kprobes stackcount submit_bio          # count kernel and user stacks for submit_bio
    kprobes stackcount -K submit_bio       # kernel stacks only
    kprobes stackcount 'tcp_send*'         # count stacks for funcs matching tcp_send*
    kprobes stackcount -r '^tcp_send.*'    # same as above, using regular expressions
    kprobes stackcount -p 185 ip_output    # count ip_output stacks for PID 185 only
    kprobes stackcount -P do_sys_openat2   # stacks separately for each process
    kprobes stackcount -p 185 c:malloc     # count stacks for malloc in PID 185
    kprobes stackcount t:sched:sched_fork  # count stacks for sched_fork tracepoint
    kprobes stackcount -K t:sched:sched_switch   # kernel stacks only
    kprobes stackcount -U t:sched:sched_switch   # user stacks only
    kprobes stackcount -f -c 'ls /' vfs_read > out.folded   # folded, for flamegraph.pl

Differences from bcc: -d is the duration (bcc: -D, also taken; bcc's -d
delimiter is --delimited) and -c runs a command (bcc: CPU). User stacks
follow frame pointers: code built without them loses frames.
At most 1000 probes per pattern.
"""


def options(p: argparse.ArgumentParser) -> None:
    p.add_argument("-p", "--pid", type=int, help="trace this PID only")
    p.add_argument("-r", "--regexp", action="store_true",
                   help='use regular expressions. Default is "*" wildcards only.')
    p.add_argument("-P", "--perpid", action="store_true",
                   help="display stacks separately for each process")
    k = p.add_mutually_exclusive_group()
    k.add_argument("-K", "--kernel-stacks-only", action="store_true", help="kernel stack only")
    k.add_argument("-U", "--user-stacks-only", action="store_true", help="user stack only")
    p.add_argument("--delimited", action="store_true",
                   help="insert delimiter between kernel/user stacks (always there in text)")
    p.add_argument("-f", "--folded", action="store_true", help="output folded format")
    p.add_argument("--backend", choices=BACKENDS, default="auto",
                   help="kernel: a hist trigger keyed by stacktrace (-K only); user: stack "
                        "records through the ring buffer; auto (default)")
    p.add_argument("-D", dest="duration", type=float, metavar="SEC", help=argparse.SUPPRESS)
    p.add_argument("pattern", help="search expression for events")


def execute(args: argparse.Namespace) -> int:
    kind = "kernel" if args.kernel_stacks_only else "user" if args.user_stacks_only else "both"
    if args.duration is not None and args.duration <= 0:
        raise KprobesError(f"-d {args.duration:g}: must be more than 0", hint="seconds, e.g. -d 10")
    matches = expand_pattern(args.pattern, regex=args.regexp)
    with Target(args) as target, Session(pid=target.pid) as s:
        counts = [s.stacks(m.probe, kind, per_process=args.perpid, backend=args.backend)
                  for m in matches]
        s.start()
        # on stderr, always: a script may wait for it
        print(f'Tracing {len({m.label for m in matches})} functions for '
              f'"{args.pattern}"... Hit Ctrl-C to end.', file=sys.stderr, flush=True)
        target.start(s)
        stats = s.run(duration=args.duration, until=Watch(s, target))
    total = StackCounts(kind, per_process=args.perpid, name=args.pattern,
                        backend=counts[0].backend, reason=counts[0].backend_reason)
    for c in counts:
        total.merge(c)
    if args.json:
        print(json.dumps(total.to_json(), ensure_ascii=False))
    else:
        text = total.to_folded() if args.folded else total.to_text()
        if text:
            print(text)
    if total.missing or stats.lost or total.dropped:
        print(f"stackcount: {total.missing} events without a stack, {stats.lost} lost in "
              f"the ring buffer, {total.dropped} stacks the kernel had no room for",
              file=sys.stderr)
    return 0


register, run, main = tool(__name__)

if __name__ == "__main__":
    sys.exit(main())

"""``kprobes stacks SPEC``: count the distinct stacks at a probe (like bcc's stackcount)."""

from __future__ import annotations

import argparse
import json
import sys

from ..probes.spec import SPEC_HELP, parse_spec
from ..runtime.session import Session
from .running import Target, add_run_options

__all__ = ["register", "run"]

EXAMPLES = """examples:
  kprobes stacks 'u:/usr/bin/python3:PyObject_Malloc' --user -d 5
  kprobes stacks 'p:do_sys_openat2' --kernel --folded -c 'cat /etc/hostname' > out.folded
  kprobes stacks 't:syscalls:sys_enter_write' --both -p 1234 --svg write.svg
  kprobes stacks 'p:vfs_read' -P --backend user -d 5

Kernel stacks are counted in the kernel (a hist:keys=stacktrace trigger; at most
16 frames) where it has hist triggers (--backend auto); user stacks, and kernels
without hist triggers, record the stack with each event and count here (user).

Output: each stack innermost frame first, then its count, most frequent last.
--folded: root-first frames joined by ';', a space, the count (flamegraph.pl,
inferno, speedscope read it). User stacks follow frame pointers: code built
without them loses frames.

"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "stacks", help="count distinct kernel/user stacks at a probe; flame graphs",
        description="Record the stack with every event of SPEC, count the distinct stacks, "
                    "and print them when the run ends (Ctrl-C, -d, or when the -c command "
                    "or -p process exits).",
        epilog=EXAMPLES + SPEC_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("spec", metavar="SPEC", help="probe spec (quoted)")
    kind = p.add_mutually_exclusive_group()
    kind.add_argument("--kernel", dest="kind", action="store_const", const="kernel",
                      help="kernel stacks (the default)")
    kind.add_argument("--user", dest="kind", action="store_const", const="user",
                      help="user stacks")
    kind.add_argument("--both", dest="kind", action="store_const", const="both",
                      help="kernel and user stacks")
    add_run_options(p)
    p.add_argument("-P", "--per-process", action="store_true",
                   help="count stacks separately for each process (pid and comm)")
    p.add_argument("--backend", choices=("auto", "kernel", "user"), default="auto",
                   help="where to count: kernel (hist trigger, kernel stacks only), user "
                        "(stack records read here), auto (kernel where it can; default)")
    p.add_argument("--filter", metavar="EXPR", help="in-kernel filter for the probe")
    out = p.add_mutually_exclusive_group()
    out.add_argument("--folded", action="store_true", help="folded stacks, one per line")
    out.add_argument("--svg", metavar="FILE", help="write an interactive flame graph to FILE")
    out.add_argument("--json", action="store_true", help="one JSON object with every stack")
    p.add_argument("--buffer-kb", type=int, metavar="KB", help="per-CPU ring buffer size")
    p.set_defaults(func=run, kind="kernel")


def run(args: argparse.Namespace) -> int:
    probe = parse_spec(args.spec, filter=args.filter)
    target = Target(args)
    try:
        target.open()
        with Session(buffer_kb=args.buffer_kb, pid=target.pid) as s:
            counts = s.stacks(probe, kind=args.kind, backend=args.backend,
                              per_process=args.per_process)
            s.start()
            # on stderr, always: a script may wait for it before starting its workload
            print(f"Counting {args.kind} stacks at {counts.handle.name}: {counts.backend} "
                  f"backend ({counts.backend_reason}). Ctrl-C to end.",
                  file=sys.stderr, flush=True)
            target.start(s)
            s.run(duration=args.duration, until=target)
            stats = s.stats()
        if args.folded:
            text = counts.to_folded()
            print(text) if text else None
        elif args.json:
            print(json.dumps(counts.to_json()))
        elif args.svg:
            counts.to_svg(args.svg, title=f"{args.kind} stacks: {args.spec}")
            print(f"wrote {args.svg}: {len(counts.read())} stacks, {counts.total} events",
                  file=sys.stderr)
        else:
            text = counts.to_text()
            if text:
                print(text)
        if not counts.total:
            print(f"kprobes: no events at {counts.handle.name}", file=sys.stderr)
        if counts.dropped:
            print(f"kprobes: {counts.dropped} events of stacks the kernel had no room for",
                  file=sys.stderr)
        if counts.missing or stats.lost:
            print(f"kprobes: {counts.missing} events without a stack, {stats.lost} lost in the "
                  "ring buffer", file=sys.stderr)
    finally:
        target.close()
    return 0

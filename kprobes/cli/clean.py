"""``kprobes clean``: remove what crashed sessions left (never anything else)."""

from __future__ import annotations

import argparse

from ..kernel import dynevents
from ..kernel.tracefs import Tracefs
from ..runtime import owner

__all__ = ["register", "run"]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("clean", help="remove probes and instances left by dead kprobes sessions",
                       description="Removes event groups and tracefs instances named "
                                   "kprobes_<pid>_<start>_<n> whose owner process is gone. "
                                   "Live sessions and anything not created by kprobes are "
                                   "never touched.")
    p.add_argument("-n", "--dry-run", action="store_true", help="only list what would go")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    tfs = Tracefs.open()
    insts, evs = owner.find_orphans(tfs)
    for i in insts:
        print(f"{'would remove' if args.dry_run else 'removing'} instance {i}")
    for e in evs:
        print(f"{'would remove' if args.dry_run else 'removing'} event {e.group}/{e.event}")
    synth = owner.orphan_synthetic(tfs)
    for n in synth:
        print(f"{'would remove' if args.dry_run else 'removing'} synthetic event {n}")
    problems = [] if args.dry_run else owner.remove_owned(tfs, insts, evs)
    if not args.dry_run:
        problems += owner.remove_synthetic(tfs, synth)
    for p in problems:
        print(f"warning: {p}")
    live = {e.group for e in dynevents.list_defined(tfs)
            if owner.parse_owner(e.group) and owner.owner_alive(e.group)}
    if live:
        print(f"left alone (owner alive): {', '.join(sorted(live))}")
    if not insts and not evs and not synth:
        print("nothing to clean")
    return 1 if problems else 0

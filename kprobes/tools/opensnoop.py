"""opensnoop: trace open() calls with their path and result, as bcc's ``opensnoop``.

Kernel side: a kprobe on ``do_sys_openat2`` (every open, openat, openat2
and creat goes through it) fetching ``filename``, ``how->flags`` and
``how->mode`` by their BTF names, and a kretprobe on it for the fd or
error, paired per thread on the batch path (:meth:`Session.add_calls`: columns,
no event objects).
``-x`` filters the return in the kernel. A kernel without kprobes is
refused: the ``syscalls:sys_enter_openat`` tracepoint carries the path only
as a user pointer, which tracepoints cannot read.
"""

from __future__ import annotations

import argparse
import os
import sys

from kprobes import FAULT, KprobesError, Session, parse_spec

from .common import Column, Rows, tool, uid_of

TYPE_CHECKING = False   # typing's, without importing typing at run time
if TYPE_CHECKING:
    from typing import Any

    from kprobes import Calls

__all__ = ["NAME", "parse_flags", "register", "run", "main"]

NAME = "opensnoop"
DESCRIPTION = "Trace open() syscalls"
EXAMPLES = """examples:
    kprobes opensnoop                        # trace all open() syscalls
    kprobes opensnoop -T                     # include timestamps
    kprobes opensnoop -U                     # include UID
    kprobes opensnoop -x                     # only show failed opens
    kprobes opensnoop -p 181                 # only trace PID 181
    kprobes opensnoop -t 123                 # only trace TID 123
    kprobes opensnoop -u 1000                # only trace UID 1000
    kprobes opensnoop -d 10                  # trace for 10 seconds only
    kprobes opensnoop -n main                # only print process names containing "main"
    kprobes opensnoop -e                     # show extended fields
    kprobes opensnoop -f O_WRONLY -f O_RDWR  # only print calls for writing
    kprobes opensnoop --json -c 'cat /etc/hostname'   # JSON rows, only this command
"""

NOT_SUPPORTED_HINT = (
    "opensnoop needs kprobes (do_sys_openat2): the syscalls:sys_enter_openat tracepoint has "
    "the path only as a user pointer, unreadable from a tracepoint; run it in a VM: "
    "kprobes vm -- kprobes opensnoop ...")


def parse_flags(names: list[str]) -> int:
    """The OR of ``O_*`` flag names (``-f O_WRONLY -f O_RDWR``).

    >>> oct(parse_flags(["O_WRONLY", "o_creat"]))
    '0o101'
    """
    out = 0
    for n in names:
        name = n.upper() if n.upper().startswith("O_") else "O_" + n.upper()
        v = getattr(os, name, None)
        if not isinstance(v, int):
            raise KprobesError(f"-f {n!r}: unknown open flag",
                               hint="an O_* name such as O_WRONLY, O_RDWR, O_CREAT, O_TRUNC")
        out |= v
    return out


def options(p: argparse.ArgumentParser) -> None:
    p.add_argument("-T", "--timestamp", action="store_true", help="include timestamp on output")
    p.add_argument("-U", "--print-uid", action="store_true", help="print UID column")
    p.add_argument("-x", "--failed", action="store_true", help="only show failed opens")
    p.add_argument("-p", "--pid", type=int, help="trace this PID only")
    p.add_argument("-t", "--tid", type=int, help="trace this TID only")
    p.add_argument("-u", "--uid", type=int, help="trace this UID only")
    p.add_argument("-n", "--name", help="only print process names containing this name")
    p.add_argument("-e", "--extended_fields", action="store_true", help="show extended fields")
    p.add_argument("-f", "--flag_filter", action="append", metavar="FLAG",
                   help="filter on flags argument (e.g., O_WRONLY)")


def columns(args: argparse.Namespace) -> list[Column]:
    cols: list[Column] = []
    if args.timestamp:
        cols.append(("TIME(s)", -14))
    if args.print_uid:
        cols.append(("UID", -6))
    cols += [("TID" if args.tid else "PID", -6), ("COMM", -16), ("FD", 4), ("ERR", 3)]
    if args.extended_fields:
        cols.append(("FLAGS", -8))
    return cols + [("PATH", 0)]


def setup(s: Session, args: argparse.Namespace, rows: Rows) -> None:
    flag_mask = parse_flags(args.flag_filter) if args.flag_filter else None
    t0: list[int] = []

    def on_calls(c: Calls) -> None:
        a = c.args
        for ts, pid, tid, comm, filename, flags, ret in zip(
                c.ts, c.pid, c.tid, c.comm, a["filename"], a["how_flags"], a["retval"],
                strict=True):
            if args.pid and pid != args.pid or args.tid and tid != args.tid:
                continue
            if args.name and args.name not in comm:
                continue
            if flag_mask is not None and not flags & flag_mask:
                continue
            uid = uid_of(pid) if args.uid is not None or args.print_uid else None
            if args.uid is not None and uid != args.uid:
                continue
            fd, err = (ret, 0) if ret >= 0 else (-1, -ret)
            lead: list[Any] = []
            if args.timestamp:
                if not t0:
                    t0.append(ts)
                lead.append(round((ts - t0[0]) / 1e9, 9))
            if args.print_uid:
                lead.append(uid if uid is not None else "?")
            ext = [f"{flags:08o}"] if args.extended_fields else []
            path = None if filename is FAULT else filename
            vals = [*lead, tid if args.tid else pid, comm, fd, err, *ext, path]
            text = list(vals)
            if args.timestamp:
                text[0] = f"{lead[0]:.9f}"
            text[-1] = str(filename)
            if args.extended_fields:
                vals[-2] = flags
            rows.emit(*vals, text=text)

    ret = parse_spec("r:do_sys_openat2 retval=$retval:s64",
                     filter="retval < 0" if args.failed else None)
    s.add_calls(ret, on_calls, entry_args=("filename", "how->flags", "how->mode"))


register, run, main = tool(__name__)

if __name__ == "__main__":
    sys.exit(main())

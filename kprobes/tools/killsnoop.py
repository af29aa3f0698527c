"""killsnoop: trace signals sent by kill(2), as bcc's ``killsnoop``.

Kernel side: ``syscalls:sys_enter_kill`` (target pid, signal; ``-s`` filters
it in the kernel) and ``syscalls:sys_exit_kill`` (result; ``-x`` filters it
in the kernel), paired per thread.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time

from kprobes import Event, KprobesError, Session, parse_spec

from .common import Column, Pending, Rows, tool

__all__ = ["NAME", "parse_signal", "register", "run", "main"]

NAME = "killsnoop"
DESCRIPTION = "Trace signals issued by the kill() syscall"
EXAMPLES = """examples:
    kprobes killsnoop           # trace all kill() signals
    kprobes killsnoop -x        # only show failed kills
    kprobes killsnoop -p 181    # only trace PID 181
    kprobes killsnoop -s 9      # only trace signal 9 (or: -s KILL, -s SIGKILL)
    kprobes killsnoop --json -c './workload'   # JSON rows, only this command
"""


def parse_signal(text: str) -> int:
    """A signal number from ``9``, ``KILL`` or ``SIGKILL``.

    >>> parse_signal("9"), parse_signal("term"), parse_signal("SIGUSR1")
    (9, 15, 10)
    """
    t = text.strip().upper()
    if t.isdigit() and 0 <= int(t) <= 64:
        return int(t)
    name = t if t.startswith("SIG") else "SIG" + t
    try:
        return int(signal.Signals[name])
    except KeyError:
        raise KprobesError(f"-s {text!r}: unknown signal",
                           hint="a number 0-64 or a name such as KILL, TERM, USR1") from None


def options(p: argparse.ArgumentParser) -> None:
    p.add_argument("-x", "--failed", action="store_true", help="only show failed kill syscalls")
    p.add_argument("-p", "--pid", type=int, help="trace this PID only (which is the sender of signal)")
    p.add_argument("-s", "--signal", metavar="SIGNAL",
                   help="trace this signal only (number or name)")


def columns(args: argparse.Namespace) -> list[Column]:
    return [("TIME", -9), ("PID", -7), ("COMM", -16), ("SIG", -4), ("TPID", -7), ("RESULT", 0)]


def setup(s: Session, args: argparse.Namespace, rows: Rows) -> None:
    sig = parse_signal(args.signal) if args.signal is not None else None
    pending = Pending()

    def on_enter(ev: Event) -> None:
        pending.put(ev.tid, (ev.args["pid"], ev.args["sig"]))

    def on_exit(ev: Event) -> None:
        sent = pending.take(ev.tid)
        if sent is None or (args.pid and ev.pid != args.pid):
            return
        tpid, signo = sent
        # pid_t stored in a u64 field: show -1 (every process), -PGID as the kernel sees them
        tpid = tpid - (1 << 32) if tpid >= 1 << 31 else tpid
        rows.emit(time.strftime("%H:%M:%S"), ev.pid, ev.comm, signo, tpid, ev.args["ret"])

    s.add(parse_spec("t:syscalls:sys_enter_kill",
                     filter=None if sig is None else f"sig == {sig}"), on_enter)
    s.add(parse_spec("t:syscalls:sys_exit_kill", filter="ret < 0" if args.failed else None),
          on_exit)


register, run, main = tool(__name__)

if __name__ == "__main__":
    sys.exit(main())

"""Running what a subcommand traces: the ``-c`` command (forked now, exec'd once the
probes are armed), the ``-p`` process's pidfd, and the per-cycle watch that warns
about drops and ends the run when that command or process exits.

Shared by ``kprobes trace`` and the aggregation subcommands.
"""

from __future__ import annotations

import os
import select
import shlex
import sys
import time

from ..errors import KprobesError
from ..runtime.session import Session

__all__ = ["Child", "Watch", "pidfd", "readable"]


def pidfd(pid: int) -> int | None:
    """A pidfd for ``pid`` (readable once it exits), or None if unavailable."""
    try:
        return os.pidfd_open(pid)
    except (OSError, AttributeError):
        return None


def readable(fd: int) -> bool:
    p = select.poll()
    p.register(fd, select.POLLIN)
    return bool(p.poll(0))


class Child:
    """A command forked now, exec'd only once the probes are armed."""

    def __init__(self, cmd: str) -> None:
        argv = shlex.split(cmd)
        if not argv:
            raise KprobesError("empty -c command")
        self.argv = argv
        self.r, self.w = os.pipe()
        self.pid = os.fork()
        if self.pid == 0:   # child: wait for the go, then exec
            try:
                os.close(self.w)
                os.read(self.r, 1)
                os.close(self.r)
                os.execvp(argv[0], argv)
            except OSError as e:
                os.write(2, f"kprobes: cannot run {argv[0]}: {e.strerror}\n".encode())
            finally:
                os._exit(127)
        os.close(self.r)
        self.status: int | None = None
        self.pidfd = pidfd(self.pid)

    def go(self) -> None:
        os.write(self.w, b"g")
        os.close(self.w)

    def exited(self) -> bool:
        if self.status is None:
            pid, st = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.status = os.waitstatus_to_exitcode(st)
        return self.status is not None

    def kill(self) -> None:
        if self.status is None:
            try:
                os.kill(self.pid, 9)
                os.waitpid(self.pid, 0)
            except (ProcessLookupError, ChildProcessError):
                pass
            self.status = -9


class Watch:
    """Called after every read cycle: warns (rate-limited, on stderr) when the
    ring buffer drops events or the backlog keeps growing; ends the run when
    the -c command exits."""

    def __init__(self, s: Session, child: Child | None, every: float = 1.0,
                 quiet_for: float = 5.0, target: int | None = None) -> None:
        self.s = s
        self.child = child
        self.target = target        # pidfd of the -p process: its exit ends the run
        self.target_exited = False
        self.every = every
        self.quiet_for = quiet_for
        now = time.monotonic()
        self.t_check = now + every
        self.t_warned = 0.0
        self.lost = 0
        self.lost_warned = 0
        self.backlog: list[int] = []
        self.t_start = now
        self.h_time = 0.0

    def __call__(self) -> bool:
        now = time.monotonic()
        if now >= self.t_check:
            self.check(now)
        if self.child:
            return self.child.exited()
        if self.target is not None and readable(self.target):
            self.target_exited = True
        return self.target_exited

    def check(self, now: float) -> None:
        s = self.s
        dt = now - (self.t_check - self.every)
        self.t_check = now + self.every
        lost = s.lost()
        waiting = sum(s.backlog().values())
        busy = (s.handler_time - self.h_time) / dt if dt > 0 else 0.0
        self.h_time = s.handler_time
        self.backlog = (self.backlog + [waiting])[-3:]
        growing = len(self.backlog) == 3 and self.backlog[0] < self.backlog[1] < self.backlog[2]
        self.lost = lost
        if now - self.t_warned < self.quiet_for:
            return
        if lost > self.lost_warned:
            msg = (f"ring buffer dropped {lost - self.lost_warned} events "
                   f"({lost} in all)")
        elif growing:
            msg = "falling behind"
        else:
            return
        self.t_warned = now
        self.lost_warned = lost
        print(f"kprobes: warning: {msg}; {waiting} events waiting, handlers busy "
              f"{min(busy, 1.0):.0%} of the time (try --buffer-kb, -q, a --filter)",
              file=sys.stderr, flush=True)

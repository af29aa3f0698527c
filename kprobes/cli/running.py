"""Running what a subcommand traces: the ``-d/-p/-c`` options every tracing
subcommand and tool takes, the ``-c`` command (forked now, exec'd once the
probes are armed) and the ``-p`` process (:class:`Target`), and the per-cycle
:class:`Watch` that flushes output, warns about drops and ends the run when
that command or process exits.

Shared by ``kprobes trace``, ``stacks``, the aggregation subcommands and the tools.
"""

from __future__ import annotations

import argparse
import os
import select
import shlex
import sys
import time
from collections.abc import Callable
from types import TracebackType

from ..errors import KprobesError
from ..output.render import escape_text

TYPE_CHECKING = False   # typing's, without importing typing at run time
if TYPE_CHECKING:
    from typing import IO, Any

__all__ = ["Child", "Target", "Watch", "add_run_options", "pidfd", "readable", "FILL_WARN"]

#: warn when a CPU's ring buffer is this full: loss is near
FILL_WARN = 0.5


def add_run_options(p: argparse.ArgumentParser, *, pid: bool = True) -> None:
    """``-d SEC``, ``-c 'CMD ARGS'`` and (unless the caller words its own) ``-p PID``;
    ``-p`` and ``-c`` exclude each other."""
    p.add_argument("-d", "--duration", type=float, metavar="SEC", help="stop after SEC seconds")
    who = p.add_mutually_exclusive_group() if pid else p
    if pid:
        who.add_argument("-p", "--pid", type=int,
                         help="trace only this process (and its children); end when it exits")
    who.add_argument("-c", "--command", metavar="'CMD ARGS'",
                     help="run CMD with the probes already armed; trace only it (and its "
                          "children) and stop when it exits")


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
                if os.read(self.r, 1) != b"g":     # the tracer died before arming
                    os._exit(127)
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


class Target:
    """What one run traces, from ``-c`` and ``-p``: ``Target(args)`` checks the
    options, ``with target:`` (or :meth:`open`) forks the command, then
    ``Session(pid=target.pid)`` and ``target.start(s)`` once armed; calling
    ``target()`` tells whether the command or process has exited (the run's
    end). Leaving the block closes the pidfds and kills a command that is
    still running."""

    def __init__(self, args: argparse.Namespace) -> None:
        command, pid = getattr(args, "command", None), getattr(args, "pid", None)
        duration = getattr(args, "duration", None)
        if duration is not None and duration < 0:     # -d 0: arm, then stop at once
            raise KprobesError(f"-d {duration:g}: must be 0 or more", hint="seconds, e.g. -d 10")
        if pid and not command and not os.path.exists(f"/proc/{pid}"):
            raise KprobesError(f"-p {pid}: no such process", hint="see: ps -e")
        self.command, self.pid = command, pid
        self.child: Child | None = None
        self.target: int | None = None
        self.target_exited = False

    def open(self) -> None:
        """Fork the ``-c`` command (it waits for :meth:`start`) or open the ``-p``
        process's pidfd; ``pid`` is then the process to trace."""
        if self.command:
            self.child = Child(self.command)
            self.pid = self.child.pid
        elif self.pid:
            self.target = pidfd(self.pid)

    def start(self, s: Any) -> None:
        """Probes are armed: let the command run; wake the session when it or the
        process exits."""
        if self.child:
            if self.child.pidfd is not None:
                s.wake_on(self.child.pidfd)
            self.child.go()
        elif self.target is not None:
            s.wake_on(self.target)

    def __call__(self) -> bool:
        if self.child:
            return self.child.exited()
        if self.target is not None and not self.target_exited and readable(self.target):
            self.target_exited = True
        return self.target_exited

    def ended(self) -> dict[str, Any]:
        """For the summary: ``command_exit`` (its status) or ``process_exited`` (the pid)."""
        if self.child and self.child.exited():
            return {"command_exit": self.child.status}
        if self.target_exited:
            return {"process_exited": self.pid}
        return {}

    def close(self) -> None:
        for fd in (self.target, self.child.pidfd if self.child else None):
            if fd is not None:
                os.close(fd)
        self.target = None
        if self.child:
            self.child.pidfd = None
            if self.child.status is None and not self.child.exited():
                self.child.kill()

    def __enter__(self) -> Target:
        self.open()
        return self

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


class Watch:
    """Called after every read cycle: flushes the sink (if any); warns
    (rate-limited, on stderr) when the ring buffer drops events or a CPU's
    buffer is :data:`FILL_WARN` full (loss is near); draws the status line;
    ends the run when ``done()`` says so (the -c command or -p process exited)."""

    def __init__(self, s: Any, done: Callable[[], bool], *, sink: Any = None,
                 status: bool = False, every: float = 1.0, quiet_for: float = 5.0,
                 err: IO[str] | None = None) -> None:
        self.s = s
        self.sink = sink
        self.done = done
        self.status = status
        self.every = every
        self.quiet_for = quiet_for
        self.err = err or sys.stderr
        now = time.monotonic()
        self.t_start = self.t_last = now
        self.t_check = now + every
        self.t_warned = -quiet_for
        self.lost_warned = 0
        self.events_last = 0
        self.h_time = 0.0
        self.drawn = False

    def __call__(self) -> bool:
        if self.sink is not None:
            self.sink.flush()
        now = time.monotonic()
        if now >= self.t_check:
            self.check(now)
        return self.done()

    def _events(self) -> int:
        return sum(h.stats.events for h in self.s.handles)

    def check(self, now: float) -> None:
        s = self.s
        dt = now - self.t_last
        self.t_last, self.t_check = now, now + self.every
        lost = s.lost()
        fill = s.buffer_fill()
        waiting = sum(s.backlog().values())
        full = max(fill.values(), default=0.0)
        busy = (s.handler_time - self.h_time) / dt if dt > 0 else 0.0
        self.h_time = s.handler_time
        events = self._events()
        rate = (events - self.events_last) / dt if dt > 0 else 0.0
        self.events_last = events
        msg = None
        if now - self.t_warned >= self.quiet_for:
            if lost > self.lost_warned:
                msg = f"ring buffer dropped {lost - self.lost_warned} events ({lost} in all)"
            elif full >= FILL_WARN:
                msg = f"ring buffer {full:.0%} full: events will be lost soon"
        if msg:
            self.t_warned = now
            self.lost_warned = lost
            self.clear()
            print(f"kprobes: warning: {msg}; {waiting} events waiting, handlers busy "
                  f"{min(busy, 1.0):.0%} of the time (try --buffer-kb, -q, a --filter)",
                  file=self.err, flush=True)
        if self.status:
            self.draw(now - self.t_start, events, rate, lost, waiting, full)

    def draw(self, elapsed: float, events: int, rate: float, lost: int, waiting: int,
             full: float) -> None:
        line = (f"kprobes: {elapsed:,.0f} s  {events:,} events  {rate:,.0f}/s  lost {lost:,}  "
                f"backlog {waiting:,} ({full:.0%} of buffer)")
        try:
            self.err.write(f"\r\x1b[K{escape_text(line)}")
            self.err.flush()
            self.drawn = True
        except OSError:
            self.status = False

    def clear(self) -> None:
        """Remove the status line (before a warning or the summary)."""
        if self.drawn:
            try:
                self.err.write("\r\x1b[K")
                self.err.flush()
            except OSError:
                pass
            self.drawn = False

"""Counting a trace event's hits in chosen tasks with perf counters.

``perf_event_open(2)`` on a trace event (``PERF_TYPE_TRACEPOINT``, the event's
tracefs ``id``; kprobe, uprobe and tracepoint events alike) for one task, in
counting mode, with ``inherit``: the kernel adds one to the counter per hit in
that task or in anything it starts afterwards, and ``read(2)`` returns the sum.
Nothing is recorded: a kprobe's perf path returns at once for the tasks no
counter is attached to (their CPU's list of perf events is empty) and adds to a
counter for the others, and a uprobe is inserted only in the traced tasks'
memory. This is what ``perf stat -e GROUP:EVENT -p PID`` does.

The system call has no wrapper in Python's standard library and no
maintained package offers it alone (the ``perf`` bindings ship with the
kernel's tools, not on PyPI), so it is called through ``ctypes``, imported on
first use: its import costs start-up time.
"""

from __future__ import annotations

import errno as _errno
import os
import struct

from ..errors import KprobesError, NotSupported, PermissionDenied

__all__ = ["TaskCounter", "available"]

#: perf_event_open's number per machine (``uname -m``)
_NR = {"x86_64": 298, "aarch64": 241, "riscv64": 241, "ppc64le": 319, "ppc64": 319,
       "s390x": 331, "i686": 336, "i386": 336, "armv7l": 364, "loongarch64": 241}
_MY_NR = _NR.get(os.uname().machine)
PERF_TYPE_TRACEPOINT = 2
PERF_FLAG_FD_CLOEXEC = 1 << 3
_INHERIT = 1 << 1           # attr.inherit: counters follow forks and new threads
#: perf_event_attr up to config1 (PERF_ATTR_SIZE_VER0, 64 bytes): type, size, config,
#: sample_period, sample_type, read_format, the flag bits, wakeup_events, bp_type, config1
_ATTR = struct.Struct("=IIQQQQQIIQ")
_COUNT = struct.Struct("=Q")
_call: list = []            # [syscall function], set on first use


def available() -> bool:
    """Whether this kernel and machine can count events with perf."""
    return _MY_NR is not None and os.path.exists("/proc/sys/kernel/perf_event_paranoid")


def _syscall():     # -> the libc syscall function
    if not _call:
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        f = libc.syscall
        f.restype = ctypes.c_long
        f.argtypes = (ctypes.c_long, ctypes.c_char_p, ctypes.c_int, ctypes.c_int,
                      ctypes.c_int, ctypes.c_ulong)
        _call.extend((f, ctypes.get_errno))
    return _call


def open_counter(event_id: int, tid: int) -> int:
    """A counting perf event of trace event ``event_id`` on task ``tid`` (any CPU),
    inherited by what it starts; raises ``OSError`` with the kernel's errno. Out of
    file descriptors (a pattern of many functions times many threads), the soft
    limit is raised to the hard one once, as perf does."""
    f, get_errno = _syscall()
    attr = _ATTR.pack(PERF_TYPE_TRACEPOINT, _ATTR.size, event_id, 0, 0, 0, _INHERIT, 0, 0, 0)
    for attempt in (0, 1):
        fd = f(_MY_NR, attr, tid, -1, -1, PERF_FLAG_FD_CLOEXEC)
        if fd >= 0:
            return int(fd)
        e = get_errno()
        if e != _errno.EMFILE or attempt or not _raise_nofile():
            raise OSError(e, os.strerror(e))
    raise AssertionError("unreachable")


def _raise_nofile() -> bool:
    """Raise the soft limit of open files to the hard limit; False if it already is."""
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == hard:
        return False
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return True


def _refusal(e: OSError, what: str) -> KprobesError:
    """One error line for a counter the kernel would not open."""
    if e.errno in (_errno.EACCES, _errno.EPERM):
        return PermissionDenied(f"cannot count {what} with perf: {e.strerror}",
                                hint="needs root (or CAP_PERFMON); check "
                                     "/proc/sys/kernel/perf_event_paranoid and kernel lockdown")
    if e.errno in (_errno.EMFILE, _errno.ENFILE):
        return NotSupported(f"cannot count {what} with perf: {e.strerror}",
                            feature="perf trace-event counters",
                            hint="one counter per function per thread: raise the limit "
                                 "(ulimit -n), trace fewer functions, or use --backend user")
    if e.errno in (_errno.ENOENT, _errno.ENODEV, _errno.EOPNOTSUPP, _errno.ENOSYS,
                   _errno.EINVAL):
        return NotSupported(f"cannot count {what} with perf: {e.strerror}",
                            feature="perf trace-event counters",
                            hint="use --backend user (or a kernel with CONFIG_PERF_EVENTS)")
    return KprobesError(f"cannot count {what} with perf: {e.strerror}",
                        hint="use --backend user")


class TaskCounter:
    """Hits of one trace event in the given threads (and what they start after
    this): one perf counter per thread, summed on read. A thread that exits
    between listing and opening is skipped; the others must open. ``close()``
    (or the owner's undo) releases the counters, which the kernel needs before
    the event's definition can be removed."""

    def __init__(self, event_id: int, tids: list[int], what: str) -> None:
        self.fds: list[int] = []
        try:
            for tid in tids:
                try:
                    self.fds.append(open_counter(event_id, tid))
                except OSError as e:
                    if e.errno != _errno.ESRCH:
                        raise _refusal(e, what) from None
        except BaseException:
            self.close()
            raise
        if not self.fds:
            raise KprobesError(f"cannot count {what}: the traced process exited",
                               hint="check the pid with: ps -p PID")

    def read(self) -> int:
        return sum(_COUNT.unpack(os.read(fd, 8))[0] for fd in self.fds)

    def close(self) -> None:
        fds, self.fds = self.fds, []
        for fd in fds:
            os.close(fd)

"""Thin I/O on tracefs: discovery, one-line writes with the kernel's reason, instances.

No policy lives here: which probes to create, in which order, and when to remove
them is :mod:`kprobes.runtime.session`'s business.

>>> tfs = Tracefs.open()                       # doctest: +SKIP
>>> tfs.has("kprobe_events")                   # doctest: +SKIP
False
"""

from __future__ import annotations

import errno as _errno
import os
import re
import time
from collections.abc import Callable, Iterator
from fnmatch import fnmatchcase

from ..errors import KernelRefused, NotSupported, PermissionDenied, SpecError
from ..values import Frozen, _set
from . import faults

__all__ = ["Tracefs", "Instance", "CpuStats", "check_line", "DEFAULT_ROOTS"]

DEFAULT_ROOTS = ("/sys/kernel/tracing", "/sys/kernel/debug/tracing")

_BAD_CHARS = re.compile(r"[\x00-\x1f\x7f]")


def check_line(line: str, what: str = "definition", *,
               hint: str = "newlines, tabs and other control characters are never allowed "
                           "in probe specs") -> None:
    """Refuse anything that could write more than one line into a tracefs file
    (any character below 0x20, and 0x7f): :class:`SpecError` with the column.

    >>> check_line("p:do_sys_openat2\\n-:kprobes/")
    Traceback (most recent call last):
    ...
    kprobes.errors.SpecError: control character '\\n' in definition: refused (one definition per line)
    """
    m = _BAD_CHARS.search(line)
    if m:
        raise SpecError(
            f"control character {m.group()!r} in {what}: refused (one definition per line)",
            spec=line.encode("unicode_escape").decode(), column=m.start(), hint=hint)


def _is_tracefs(path: str) -> bool:
    return os.path.exists(os.path.join(path, "events")) and os.path.exists(
        os.path.join(path, "instances"))


class CpuStats(Frozen):
    """One CPU's ``per_cpu/cpuN/stats`` of an instance (``bytes``: of unread events
    in this CPU's buffer)."""

    __slots__ = _fields = ("cpu", "entries", "overrun", "commit_overrun", "dropped",
                           "read_events", "bytes")
    cpu: int
    entries: int
    overrun: int
    commit_overrun: int
    dropped: int
    read_events: int
    bytes: int

    def __init__(self, cpu: int, entries: int, overrun: int, commit_overrun: int,
                 dropped: int, read_events: int, bytes: int = 0) -> None:
        _set(self, "cpu", cpu)
        _set(self, "entries", entries)
        _set(self, "overrun", overrun)
        _set(self, "commit_overrun", commit_overrun)
        _set(self, "dropped", dropped)
        _set(self, "read_events", read_events)
        _set(self, "bytes", bytes)

    @property
    def lost(self) -> int:
        return self.overrun + self.dropped + self.commit_overrun


class Tracefs:
    """A tracefs mount. All paths are relative to ``root``."""

    def __init__(self, root: str) -> None:
        self.root = root

    # -- discovery ---------------------------------------------------------
    @classmethod
    def open(cls, root: str | None = None, *, mount: bool = True) -> Tracefs:
        """Find tracefs, mounting it at /sys/kernel/tracing when it is not mounted."""
        if root is not None:
            if not _is_tracefs(root):
                raise NotSupported(f"{root} is not a tracefs mount", feature="tracefs",
                                   hint=f"mount it: mount -t tracefs nodev {root}")
            return cls(root)
        for r in DEFAULT_ROOTS:
            if _is_tracefs(r):
                return cls(r)
        if os.geteuid() != 0:
            if os.path.ismount(DEFAULT_ROOTS[0]):     # there, but closed to us
                raise PermissionDenied(
                    f"tracefs at {DEFAULT_ROOTS[0]} is accessible to root only",
                    hint="run as root (sudo)")
            raise PermissionDenied(
                "tracefs is not mounted and only root can mount it",
                hint="run as root (sudo), or ask root to: mount -t tracefs nodev /sys/kernel/tracing")
        target = DEFAULT_ROOTS[0]
        if mount and os.path.isdir(target):
            _mount_tracefs(target)
            if _is_tracefs(target):
                return cls(target)
        raise NotSupported("tracefs is not available on this kernel", feature="tracefs",
                           hint="the kernel needs CONFIG_TRACING; try: mount -t tracefs nodev "
                                "/sys/kernel/tracing")

    def path(self, *parts: str) -> str:
        return os.path.join(self.root, *parts)

    def has(self, rel: str) -> bool:
        return os.path.exists(self.path(rel))

    def read(self, rel: str) -> str:
        try:
            if faults.plan is not None:
                faults.plan.hit("open", self.path(rel))
            with open(self.path(rel), encoding="utf-8", errors="replace") as f:
                return f.read()
        except PermissionError as e:
            raise PermissionDenied(f"cannot read {self.path(rel)}: {e.strerror}",
                                   hint="tracing needs root (or CAP_SYS_ADMIN/CAP_PERFMON)") from e
        except OSError as e:    # gone (removed behind our back), ENOMEM, ...
            raise KernelRefused(f"cannot read {self.path(rel)}: {e.strerror}", errno=e.errno or 0,
                                file=rel, command="") from e

    def read_lines(self, rel: str) -> list[str]:
        return [ln for ln in self.read(rel).splitlines() if ln and not ln.startswith("#")]

    # -- writing -----------------------------------------------------------
    def write(self, rel: str, line: str, *, append: bool = True, reason_from: str | None = None,
              hint: str | None = None) -> None:
        """Write exactly one line with one ``write(2)``.

        On refusal raise :class:`KernelRefused` carrying errno and the kernel's
        reason from ``error_log`` (or, for filters, from ``reason_from``).
        """
        check_line(line, what=f"write to {rel}")
        # a command-line argument with invalid UTF-8 arrives surrogate-escaped:
        # the kernel gets the user's bytes back
        data = (line + "\n").encode("utf-8", "surrogateescape")
        flags = os.O_WRONLY | (os.O_APPEND if append else os.O_TRUNC)
        use_log = reason_from is None and self._error_log_relevant(rel)
        if use_log:
            self.clear_error_log()
        try:
            if faults.plan is not None:
                faults.plan.hit("open", self.path(rel))
            fd = os.open(self.path(rel), flags)
        except PermissionError as e:
            raise PermissionDenied(f"cannot write {self.path(rel)}: {e.strerror}",
                                   hint="tracing needs root (sudo)") from e
        except FileNotFoundError as e:
            raise NotSupported(f"{self.path(rel)} does not exist", feature=rel,
                               hint="this kernel lacks the feature (see: kprobes info)") from e
        except OSError as e:
            raise KernelRefused(f"cannot open {rel} to write {line!r}: {e.strerror}",
                                errno=e.errno or 0, file=rel, command=line) from e
        try:
            if faults.plan is not None:
                faults.plan.hit("write", self.path(rel))
            os.write(fd, data)
        except OSError as e:
            reason, column = (None, None)
            if use_log:
                reason, column = self.last_error(line)
            elif reason_from is not None:
                reason = self._filter_reason(reason_from)
            if e.errno == _errno.EPERM and reason is None:
                raise PermissionDenied(f"kernel refused write to {rel}: {e.strerror}",
                                       hint="needs root; kernel lockdown may also forbid it") from e
            msg = f"kernel refused {line!r} in {rel}: {reason or e.strerror}"
            raise KernelRefused(msg, errno=e.errno or 0, file=rel, command=line, reason=reason,
                                column=column, hint=hint) from e
        finally:
            os.close(fd)

    @staticmethod
    def _error_log_relevant(rel: str) -> bool:
        return rel.rsplit("/", 1)[-1] in ("kprobe_events", "uprobe_events", "dynamic_events")

    def clear_error_log(self) -> None:
        try:
            if faults.plan is not None:
                faults.plan.hit("open", self.path("error_log"))
            fd = os.open(self.path("error_log"), os.O_WRONLY | os.O_TRUNC)
        except OSError:
            return
        try:
            os.write(fd, b"")
        except OSError:
            pass
        finally:
            os.close(fd)

    def last_error(self, command: str | None = None) -> tuple[str | None, int | None]:
        """The newest ``error_log`` entry: (message, caret column within the command)."""
        try:
            text = self.read("error_log")
        except (OSError, PermissionDenied):
            return None, None
        lines = text.rstrip("\n").splitlines()
        # Entries: "[ts] subsys: error: MSG", "  Command: CMD", "           ^"
        for i in range(len(lines) - 1, -1, -1):
            m = re.match(r"^\[\s*[\d.]+\]\s+(\S+):\s+error:\s+(.*)$", lines[i])
            if not m:
                continue
            msg = m.group(2).strip()
            column = None
            if i + 2 < len(lines) and lines[i + 1].lstrip().startswith("Command:"):
                cmd_line = lines[i + 1]
                caret = lines[i + 2]
                start = cmd_line.index("Command:") + len("Command: ")
                pos = caret.find("^")
                if pos >= start:
                    column = pos - start
            return msg, column
        return None, None

    def _filter_reason(self, filter_rel: str) -> str | None:
        try:
            text = self.read(filter_rel).strip()
        except (OSError, PermissionDenied):
            return None
        # The filter file shows the bad filter, then "^\nparse_error: REASON"
        for ln in text.splitlines():
            if ln.startswith("parse_error:"):
                return ln.split(":", 1)[1].strip()
        return text.splitlines()[-1] if text else None

    # -- instances ---------------------------------------------------------
    def instance(self, name: str) -> Instance:
        return Instance(self, name)

    def instances(self) -> list[str]:
        try:
            return sorted(os.listdir(self.path("instances")))
        except FileNotFoundError:
            return []

    def event_id(self, group: str, event: str) -> int:
        return int(self.read(f"events/{group}/{event}/id"))

    def event_format(self, group: str, event: str) -> str:
        return self.read(f"events/{group}/{event}/format")

    def profile(self, kind: str) -> dict[str, tuple[int, int]]:
        """Hit/miss counters by EVENT name from kprobe_/uprobe_profile.

        The kernel lists event names without their group, so callers must use
        event names that are unique across groups.
        """
        out: dict[str, tuple[int, int]] = {}
        rel = f"{kind}_profile"
        if not self.has(rel):
            return out
        for ln in self.read_lines(rel):
            parts = ln.split()
            try:
                if kind == "kprobe" and len(parts) >= 3:
                    out[parts[0]] = (int(parts[1]), int(parts[2]))
                elif kind == "uprobe" and len(parts) >= 3:
                    out[parts[-2]] = (int(parts[-1]), 0)
            except ValueError:
                continue
        return out

    def ncpus(self) -> int:
        try:
            return len([d for d in os.listdir(self.path("per_cpu")) if d.startswith("cpu")])
        except FileNotFoundError:
            return os.cpu_count() or 1

    # -- listings ----------------------------------------------------------
    def _raw(self, rel: str) -> bytes | None:
        try:
            with open(self.path(rel), "rb") as f:
                return f.read()
        except OSError:
            return None

    def filter_functions(self) -> frozenset[str] | None:
        """Names in ``available_filter_functions`` (ftrace-able), or None if unreadable."""
        data = self._raw("available_filter_functions")
        if data is None:
            return None
        return frozenset(ln.split(maxsplit=1)[0].decode("utf-8", "replace")
                         for ln in data.splitlines() if ln.strip())

    def is_filter_function(self, name: str) -> bool | None:
        """Is ``name`` in ``available_filter_functions``?  None if unreadable.

        One C-speed search of the file's bytes (``NAME`` or ``NAME [MOD]`` lines),
        as perf-tools' ``grep`` does, not a set of all of it.
        """
        test = self.filter_function_test()
        return None if test is None else test(name)

    def filter_function_test(self) -> Callable[[str], bool] | None:
        """A test of names against ``available_filter_functions``, read once (bytes
        searches, as :meth:`is_filter_function`), or None if unreadable."""
        data = self._raw("available_filter_functions")
        if data is None:
            return None
        text = b"\n" + data

        def test(name: str) -> bool:
            raw = b"\n" + name.encode()
            return raw + b"\n" in text or raw + b" [" in text
        return test

    def ftrace_locations(self, name: str | None = None) -> dict[str, list[int]] | None:
        """``available_filter_functions_addrs``: name -> ftrace call-site addresses
        (only ``name``'s when given), or None when unreadable (before 6.5, or EPERM)."""
        data = self._raw("available_filter_functions_addrs")
        if data is None:
            return None
        out: dict[str, list[int]] = {}
        try:
            if name is None:
                for ln in data.splitlines():
                    parts = ln.split()
                    if len(parts) >= 2:
                        out.setdefault(parts[1].decode(), []).append(int(parts[0], 16))
                return out
            for key in (b" " + name.encode() + b"\n", b" " + name.encode() + b" ["):
                i = data.find(key)
                while i >= 0:
                    start = data.rfind(b"\n", 0, i) + 1
                    out.setdefault(name, []).append(int(data[start:i], 16))
                    i = data.find(key, i + len(key))
        except ValueError:
            return None
        return out

    def tracepoints(self, pattern: str | None = None) -> Iterator[str]:
        """``group:event`` names under ``events/`` that can be enabled, sorted.

        A pattern with ``:`` is a glob on ``group:event``, otherwise on the event name.
        """
        base = self.path("events")
        try:
            groups = [e for e in os.scandir(base) if e.is_dir()]
        except FileNotFoundError:
            raise NotSupported(f"{base} does not exist", feature="tracefs",
                               hint="mount tracefs: mount -t tracefs nodev /sys/kernel/tracing"
                               ) from None
        for g in sorted(groups, key=lambda e: e.name):
            try:
                events = sorted(os.listdir(g.path))
            except FileNotFoundError:      # another session's probe group, just removed
                continue
            for ev in events:
                if not os.path.isfile(os.path.join(g.path, ev, "enable")):
                    continue
                full = f"{g.name}:{ev}"
                if pattern is None or fnmatchcase(full if ":" in pattern else ev, pattern):
                    yield full


class Instance:
    """A tracefs instance (``instances/NAME``): a private ring buffer and event switches."""

    def __init__(self, tfs: Tracefs, name: str) -> None:
        self.tfs = tfs
        self.name = name
        self.rel = f"instances/{name}"

    @property
    def path(self) -> str:
        return self.tfs.path(self.rel)

    def exists(self) -> bool:
        return os.path.isdir(self.path)

    def create(self) -> None:
        check_line(self.name, "instance name")
        try:
            if faults.plan is not None:
                faults.plan.hit("mkdir", self.path)
            os.mkdir(self.path)
        except FileExistsError:
            raise KernelRefused(f"tracefs instance {self.name} already exists", errno=_errno.EEXIST,
                                file="instances", command=self.name) from None
        except PermissionError as e:
            raise PermissionDenied(f"cannot create tracefs instance: {e.strerror}",
                                   hint="tracing needs root (sudo)") from e
        except OSError as e:
            ro = e.errno == _errno.EROFS
            raise KernelRefused(f"cannot create tracefs instance {self.name}: {e.strerror}",
                                errno=e.errno or 0, file="instances", command=self.name,
                                hint=f"tracefs is mounted read-only: mount -o remount,rw "
                                     f"{self.tfs.root}" if ro else None) from e

    def remove(self, *, busy_for: float = 2.0) -> None:
        """rmdir the instance, retrying for up to ``busy_for`` seconds while
        the kernel holds it busy (EBUSY: a file of it is open, e.g. another
        process reading its ``trace`` or ``tracing_on`` at that moment)."""
        deadline = time.monotonic() + busy_for
        delay = 0.005
        while True:
            try:
                if faults.plan is not None:
                    faults.plan.hit("rmdir", self.path)
                os.rmdir(self.path)
                return
            except FileNotFoundError:
                if not os.path.isdir(self.path):    # gone (not a stray ENOENT)
                    return
                raise
            except OSError as e:
                if e.errno != _errno.EBUSY or time.monotonic() >= deadline:
                    raise
            time.sleep(delay)
            delay = min(delay * 2, 0.1)

    def write(self, rel: str, value: str, **kw) -> None:
        self.tfs.write(f"{self.rel}/{rel}", value, append=False, **kw)

    def read(self, rel: str) -> str:
        return self.tfs.read(f"{self.rel}/{rel}")

    def set_event_enabled(self, group: str, event: str, on: bool) -> None:
        self.write(f"events/{group}/{event}/enable", "1" if on else "0")

    def set_filter(self, group: str, event: str, expr: str) -> None:
        rel = f"events/{group}/{event}/filter"
        self.write(rel, expr, reason_from=f"{self.rel}/{rel}",
                   hint="filter syntax: FIELD OP VALUE joined by && || (), e.g. 'pid == 42' "
                        "— fields are the event's args and common_pid")

    def clear_filter(self, group: str, event: str) -> None:
        try:
            self.write(f"events/{group}/{event}/filter", "0")
        except (KernelRefused, NotSupported):
            pass

    def enabled_events(self) -> Iterator[tuple[str, str]]:
        base = os.path.join(self.path, "events")
        try:
            groups = os.listdir(base)
        except FileNotFoundError:
            return
        for g in groups:
            gdir = os.path.join(base, g)
            if not os.path.isdir(gdir):
                continue
            for e in os.listdir(gdir):
                en = os.path.join(gdir, e, "enable")
                try:
                    with open(en) as f:
                        if f.read(1) == "1":
                            yield g, e
                except OSError:     # gone, or ENODEV while the instance is removed
                    continue

    def cpu_stats(self, cpu: int) -> CpuStats:
        vals: dict[str, int] = {}
        for ln in self.read(f"per_cpu/cpu{cpu}/stats").splitlines():
            k, _, v = ln.partition(":")
            v = v.strip().split()[0] if v.strip() else ""
            try:
                vals[k.strip()] = int(v)
            except ValueError:
                continue
        return CpuStats(cpu=cpu, entries=vals.get("entries", 0), overrun=vals.get("overrun", 0),
                        commit_overrun=vals.get("commit overrun", 0),
                        dropped=vals.get("dropped events", 0),
                        read_events=vals.get("read events", 0), bytes=vals.get("bytes", 0))

    def pipe_path(self, cpu: int) -> str:
        return os.path.join(self.path, "per_cpu", f"cpu{cpu}", "trace_pipe_raw")


def _mount_tracefs(target: str) -> None:
    from .mount import mount

    try:
        mount("nodev", target, "tracefs")
    except OSError as e:
        if e.errno == _errno.EPERM:
            raise PermissionDenied("tracefs is not mounted and mounting it was refused (EPERM)",
                                   hint="mounting needs root with CAP_SYS_ADMIN: "
                                        "mount -t tracefs nodev /sys/kernel/tracing") from None
        raise NotSupported(f"cannot mount tracefs: {e.strerror}", feature="tracefs",
                           hint="the kernel needs CONFIG_TRACING") from None

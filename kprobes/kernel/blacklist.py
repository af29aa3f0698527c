"""The kprobe blacklist (debugfs ``kprobes/blacklist``), mounting debugfs for the read.

>>> bl = Blacklist.parse("0xffffffff81001000-0xffffffff81001080\\tdo_int3\\n")
>>> bl.contains(0xffffffff81001010), bl.contains(0xffffffff81001080)
('do_int3', None)
"""

from __future__ import annotations

import errno
import os
from bisect import bisect_right
from collections.abc import Iterable

from kprobes.errors import NotSupported, PermissionDenied
from kprobes.values import Frozen, _set

from .mount import is_mounted, mount, umount

__all__ = ["BlacklistEntry", "Blacklist", "ensure_debugfs", "load_blacklist", "DEBUGFS"]

DEBUGFS = "/sys/kernel/debug"


class BlacklistEntry(Frozen):
    """One ``kprobes/blacklist`` line: ``[start, end)`` and the symbol."""

    __slots__ = _fields = ("start", "end", "name", "module")
    start: int
    end: int
    name: str
    module: str | None

    def __init__(self, start: int, end: int, name: str, module: str | None = None) -> None:
        _set(self, "start", start)
        _set(self, "end", end)
        _set(self, "name", name)
        _set(self, "module", module)

    def __str__(self) -> str:
        return f"{self.name} [0x{self.start:x}-0x{self.end:x})"


class Blacklist:
    """Address ranges the kernel refuses to probe (NOKPROBE_SYMBOL, __kprobes, noinstr, entry).

    >>> Blacklist.parse("0x10-0x20\\tfoo [mod]\\n").entry_at(0x18)
    BlacklistEntry(start=16, end=32, name='foo', module='mod')
    """

    def __init__(self, entries: Iterable[BlacklistEntry]) -> None:
        self.entries = sorted(entries, key=lambda e: (e.start, e.end))
        self._starts = [e.start for e in self.entries]
        self._maxend: list[int] = []
        top = 0
        for e in self.entries:
            top = max(top, e.end)
            self._maxend.append(top)
        self.names = frozenset(e.name for e in self.entries)
        self.addresses_hidden = bool(self.entries) and not any(e.end for e in self.entries)

    @classmethod
    def parse(cls, text: str) -> Blacklist:
        entries = []
        for line in text.splitlines():
            rng, _, rest = line.partition("\t")
            lo, sep, hi = rng.strip().partition("-")
            if not sep:
                continue
            name, _, mod = rest.strip().partition(" ")
            try:
                lo_addr, hi_addr = int(lo, 16), int(hi, 16)
            except ValueError:      # not an entry (a corrupt or foreign line)
                continue
            entries.append(BlacklistEntry(lo_addr, hi_addr, name, mod.strip().strip("[]") or None))
        return cls(entries)

    @classmethod
    def load(cls, debugfs: str = DEBUGFS) -> Blacklist:
        """Read ``DEBUGFS/kprobes/blacklist``; NotSupported when it is not there."""
        path = os.path.join(debugfs, "kprobes", "blacklist")
        try:
            with open(path) as f:
                return cls.parse(f.read())
        except FileNotFoundError:
            mounted = (os.path.isdir(os.path.join(debugfs, "kprobes"))
                       or is_mounted(debugfs, "debugfs"))
            hint = ("this kernel has no kprobes (CONFIG_KPROBES is off)" if mounted
                    else f"mount debugfs first: mount -t debugfs none {debugfs}")
            raise NotSupported(f"cannot read {path}", feature="kprobes blacklist",
                               hint=hint) from None
        except PermissionError:
            raise PermissionDenied(f"cannot read {path}", hint="run as root") from None

    @classmethod
    def try_load(cls, debugfs: str = DEBUGFS) -> Blacklist | None:
        """Like :meth:`load` but None when the blacklist cannot be read."""
        try:
            return cls.load(debugfs)
        except (NotSupported, PermissionDenied, OSError):
            return None

    def __len__(self) -> int:
        return len(self.entries)

    def entry_at(self, addr: int) -> BlacklistEntry | None:
        i = bisect_right(self._starts, addr) - 1
        while i >= 0 and self._maxend[i] > addr:
            if self.entries[i].start <= addr < self.entries[i].end:
                return self.entries[i]
            i -= 1
        return None

    def contains(self, addr: int) -> str | None:
        """The blacklisted symbol covering ``addr``, or None."""
        e = self.entry_at(addr)
        return e.name if e else None


def ensure_debugfs(path: str = DEBUGFS) -> bool:
    """Mount debugfs at ``path`` if it is not mounted there; True if we mounted it."""
    if is_mounted(path, "debugfs"):
        return False
    try:
        mount("debugfs", path, "debugfs")
    except OSError as e:
        msg = f"cannot mount debugfs at {path}: {e.strerror}"
        if e.errno in (errno.EPERM, errno.EACCES):
            raise PermissionDenied(msg, hint="run as root (lockdown may also forbid it)") from None
        raise NotSupported(msg, feature="debugfs",
                           hint="the kernel may lack CONFIG_DEBUG_FS") from None
    return True


def load_blacklist(path: str = DEBUGFS) -> Blacklist | None:
    """The kprobe blacklist, mounting debugfs just for the read when it is not
    mounted (and unmounting it again); None when it cannot be had."""
    bl = Blacklist.try_load(path)
    if bl is not None:
        return bl
    try:
        mounted = ensure_debugfs(path)
    except (NotSupported, PermissionDenied):
        return None
    try:
        return Blacklist.try_load(path)
    finally:
        if mounted:
            try:
                umount(path)
            except OSError:
                pass

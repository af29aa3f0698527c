"""Kernel addresses -> symbols, from ``/proc/kallsyms``.

Only text symbols are kept, as one sorted array of addresses built on the
first lookup (about 0.2 s for 122k symbols on the project's host) and shared
by every session of the process; names are decoded per hit. A symbol ends
where the next one starts (kallsyms has no sizes, the kernel's own ``%pS``
does the same); an address past the last symbol, below the first, or with
the addresses hidden (all zero) stays unresolved: ``0xADDR``.

>>> ks = KernelSymbolizer(text=b"ffffffff81000000 T _stext\\n"
...                            b"ffffffff81000100 T do_work\\n"
...                            b"ffffffffc0001000 t helper\\t[ext4]\\n"
...                            b"ffffffffc0001100 t other\\t[ext4]\\n")
>>> [str(f) for f in ks.frames([0xffffffff81000104, 0xffffffffc0001010])]
['do_work+0x4', 'helper+0x10 [ext4]']
"""

from __future__ import annotations

import threading
from array import array
from bisect import bisect_right
from collections.abc import Sequence
from itertools import repeat

from .frame import Frame

__all__ = ["KernelSymbolizer", "kernel_symbolizer"]

_TEXT = frozenset(b"TtWw")
_CACHE_MAX = 65536


class KernelSymbolizer:
    """Address -> :class:`Frame` for kernel text (vmlinux and modules)."""

    def __init__(self, path: str = "/proc/kallsyms", *, text: bytes | None = None) -> None:
        self.path = path
        self._text = text
        self._addrs: array | None = None
        self._lines: list[bytes] = []
        self._cache: dict[int, Frame] = {}
        self._stacks: dict[tuple[int, ...], list[Frame]] = {}
        self._lock = threading.Lock()

    def _load(self) -> array:
        with self._lock:
            if self._addrs is not None:
                return self._addrs
            data = self._text
            if data is None:
                try:
                    with open(self.path, "rb") as f:
                        data = f.read()
                except OSError:
                    data = b""
            lines = [ln for ln in data.split(b"\n") if len(ln) > 19 and ln[17] in _TEXT
                     and ln[16] == 32]
            addrs = array("Q", map(int, (ln[:16] for ln in lines), repeat(16)))
            if any(map(int.__gt__, addrs, addrs[1:])):
                order = sorted(range(len(addrs)), key=addrs.__getitem__)
                addrs = array("Q", [addrs[i] for i in order])
                lines = [lines[i] for i in order]
            if not any(addrs[:16]):             # kptr_restrict: addresses are hidden
                addrs, lines = array("Q"), []
            self._lines = lines
            self._addrs = addrs
            return addrs

    def frame(self, addr: int, ret: bool = False) -> Frame:
        """The frame for ``addr``; ``ret``: it is a return address (looked up at addr-1)."""
        key = addr - 1 if ret else addr
        f = self._cache.get(key)
        if f is not None:
            return f._replace(addr=addr, offset=f.offset + (addr - key)) if ret else f
        addrs = self._addrs if self._addrs is not None else self._load()
        i = bisect_right(addrs, key) - 1
        if i < 0 or i + 1 >= len(addrs):
            f = Frame(key, None, 0, None)
        else:
            # aliases share an address: take the first listed (kallsyms lists the
            # global name before local aliases)
            start = addrs[i]
            while i > 0 and addrs[i - 1] == start:
                i -= 1
            ln = self._lines[i]
            name, _, mod = ln[19:].partition(b"\t")
            module = mod.strip(b"[]").decode() if mod else None
            nxt = bisect_right(addrs, start)
            nxt_mod = self._lines[nxt][19:].partition(b"\t")[2]
            if nxt_mod != mod and key - addrs[i] >= 0x10000:
                f = Frame(key, None, 0, module)       # no end known: never a wrong name
            else:
                f = Frame(key, name.decode(errors="replace"), key - addrs[i], module)
        if len(self._cache) >= _CACHE_MAX:
            self._cache.clear()
        self._cache[key] = f
        return f._replace(addr=addr, offset=f.offset + (addr - key)) if ret else f

    def frames(self, addrs: Sequence[int]) -> list[Frame]:
        """Frames of a stack, innermost first: entries after the first are return
        addresses, looked up at ``addr - 1`` (a call at a function's very end
        returns into the next function)."""
        key = tuple(addrs)
        out = self._stacks.get(key)
        if out is None:
            fr = self.frame
            out = [fr(a, i > 0) for i, a in enumerate(key)]
            if len(self._stacks) >= _CACHE_MAX:
                self._stacks.clear()
            self._stacks[key] = out
        return list(out)


_shared: KernelSymbolizer | None = None


def kernel_symbolizer() -> KernelSymbolizer:
    """The process-wide symbolizer for ``/proc/kallsyms`` (loaded on first lookup)."""
    global _shared
    if _shared is None:
        _shared = KernelSymbolizer()
    return _shared

"""User addresses -> symbols: the task's mappings, then the mapped file's ELF symbols.

A task's executable mappings come from ``/proc/PID/maps``, read the first
time the process is seen and again when an address falls in none of them
(after an ``exec`` or a ``dlopen``), at most once per :meth:`new_batch`.
A process that exited before its maps were read still gets the symbols of
the probed binary: a uprobe's first frame is the probed address, which
gives the load bias of that file (PIE or not).

Address -> file offset (``addr - start + pgoff``) -> virtual address in the
file (PT_LOAD) -> symbol (:mod:`.elfsyms`). What does not resolve is
``0xADDR`` with its file (or with no file when in no mapping).

>>> m = Mapping(0x555555554000, 0x555555556000, 0x1000, "/tmp/a")
>>> m.file_offset(0x555555554010)
4112
"""

from __future__ import annotations

from bisect import bisect_right
from collections import OrderedDict
from collections.abc import Sequence
from typing import NamedTuple

from .elfsyms import DEBUG_ROOT, ElfSymtab, load_symtab
from .frame import Frame

__all__ = ["Mapping", "read_maps", "UserSymbolizer"]

_MISS: tuple[str, int] = ("", -1)
_MAX_HITS = 65536          # resolved (file, offset) pairs kept
_MAX_STACKS = 4096         # symbolized stacks kept per process


class Mapping(NamedTuple):
    start: int
    end: int
    offset: int
    path: str

    def file_offset(self, addr: int) -> int:
        return addr - self.start + self.offset


def read_maps(pid: int, root: str = "/proc") -> list[Mapping] | None:
    """Executable file mappings of ``pid``, sorted; None if the process is gone."""
    try:
        with open(f"{root}/{pid}/maps", "rb") as f:
            data = f.read()
    except OSError:
        return None
    out = []
    for line in data.split(b"\n"):
        parts = line.split(None, 5)
        if len(parts) < 6 or parts[1][2:3] != b"x":
            continue
        path = parts[5].decode(errors="replace")
        if not path.startswith("/") and path != "[vdso]":
            continue
        lo, _, hi = parts[0].partition(b"-")
        out.append(Mapping(int(lo, 16), int(hi, 16), int(parts[2], 16),
                           path.removesuffix(" (deleted)")))
    out.sort()
    return out or None          # an exiting process shows no mappings: same as gone


class _Task:
    __slots__ = ("maps", "starts", "refreshed", "stacks")

    def __init__(self, maps: list[Mapping]) -> None:
        self.maps = maps
        self.starts = [m.start for m in maps]
        self.refreshed = False
        self.stacks: dict[tuple[int, ...], list[Frame]] = {}   # symbolized, for these maps

    def find(self, addr: int) -> Mapping | None:
        i = bisect_right(self.starts, addr) - 1
        if i >= 0 and addr < self.maps[i].end:
            return self.maps[i]
        return None


class UserSymbolizer:
    """Per-process address -> :class:`Frame`, with bounded caches.

    ``debug_root``: where separate debug files are looked up by build-id;
    ``max_tasks``: processes whose mappings are kept; ``proc``: the procfs root.
    """

    def __init__(self, debug_root: str = DEBUG_ROOT, *, max_tasks: int = 1024,
                 proc: str = "/proc") -> None:
        self.debug_root = debug_root
        self.max_tasks = max_tasks
        self.proc = proc
        self._tasks: OrderedDict[int, _Task] = OrderedDict()
        self._files: dict[str, ElfSymtab] = {}         # checked once per batch
        self._hits: dict[tuple[str, int], tuple[str, int] | None] = {}
        self._keys: dict[str, tuple | None] = {}

    def new_batch(self) -> None:
        """Allow one more re-read of each process's maps and a check of each
        file for changes (call once per read cycle)."""
        for t in self._tasks.values():
            t.refreshed = False
        self._files.clear()

    def _symtab(self, path: str) -> ElfSymtab:
        st = self._files.get(path)
        if st is None:
            st = self._files[path] = load_symtab(path, self.debug_root)
            if st.key != self._keys.get(path):        # the file changed: forget its names
                self._keys[path] = st.key
                self._hits = {k: v for k, v in self._hits.items() if k[0] != path}
        return st

    def _task(self, tgid: int) -> _Task | None:
        t = self._tasks.get(tgid)
        if t is not None:
            self._tasks.move_to_end(tgid)
            return t
        maps = read_maps(tgid, self.proc)
        if maps is None:
            return None
        return self._keep(tgid, _Task(maps))

    def _keep(self, tgid: int, t: _Task) -> _Task:
        self._tasks[tgid] = t
        while len(self._tasks) > self.max_tasks:
            self._tasks.popitem(last=False)
        return t

    def seen(self, tgid: int) -> None:
        """Read the maps of a process now (while it still exists), if not known yet."""
        if tgid > 0 and tgid not in self._tasks:
            self._task(tgid)

    def forget(self, tgid: int) -> None:
        self._tasks.pop(tgid, None)

    def _from_hint(self, tgid: int, addrs: Sequence[int],
                   hint: tuple[str, int] | None) -> _Task | None:
        """Mappings of the probed file, placed by the probed address (frame 0)."""
        if hint is None or not addrs:
            return None
        path, file_off = hint
        st = self._symtab(path)
        vaddr = st.vaddr_of_offset(file_off)
        if vaddr is None:
            return None
        bias = addrs[0] - vaddr
        maps = sorted(Mapping(bias + v, bias + v + memsz, poff, path)
                      for v, memsz, poff, _fs in st.loads)
        return self._keep(tgid, _Task(maps))

    def frames(self, tgid: int, addrs: Sequence[int],
               hint: tuple[str, int] | None = None) -> list[Frame]:
        """Frames of one user stack of process ``tgid``, innermost first.

        ``hint``: (binary, file offset) of a uprobe whose address is ``addrs[0]``,
        used when the process's maps cannot be read. Entries after the first
        are return addresses, looked up at ``addr - 1``.
        """
        t = self._task(tgid) or self._from_hint(tgid, addrs, hint)
        skey = tuple(addrs)
        if t is not None:
            done = t.stacks.get(skey)
            if done is not None:
                return list(done)
        out = []
        complete = True
        for i, addr in enumerate(addrs):
            key = addr - 1 if i else addr
            m = t.find(key) if t is not None else None
            if m is None and t is not None and not t.refreshed:
                t.refreshed = True          # exec, dlopen: read the maps again
                maps = read_maps(tgid, self.proc)
                if maps is None:            # gone meanwhile: place the probed file
                    h = self._from_hint(tgid, addrs, hint)
                    maps = h.maps if h is not None else None
                if maps is not None:
                    t.maps, t.starts = maps, [x.start for x in maps]
                    t.stacks.clear()
                    self._tasks[tgid] = t
                    m = t.find(key)
            complete = complete and m is not None
            out.append(self._frame(addr, key, m))
        if t is not None and complete:           # misses may resolve after a re-read
            if len(t.stacks) >= _MAX_STACKS:
                t.stacks.clear()
            t.stacks[skey] = out
        return list(out)

    def _frame(self, addr: int, key: int, m: Mapping | None) -> Frame:
        if m is None:
            return Frame(addr, None, 0, None)
        if m.path.startswith("["):
            return Frame(addr, None, 0, m.path)
        st = self._symtab(m.path)
        hk = (m.path, m.file_offset(key))
        hit = self._hits.get(hk, _MISS)
        if hit is _MISS:
            v = st.vaddr_of_offset(hk[1])
            hit = st.lookup(v) if v is not None else None
            if len(self._hits) >= _MAX_HITS:
                self._hits.clear()
            self._hits[hk] = hit
        if hit is None:
            return Frame(addr, None, 0, m.path)
        return Frame(addr, hit[0], hit[1] + (addr - key), m.path)

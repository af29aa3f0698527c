"""Function symbols of one ELF file, for address -> name lookups.

Sources, merged (first name at an address wins):

* the file's own ``.symtab`` (unstripped builds) and ``.dynsym`` (exports);
* when it has no ``.symtab``: a separate debug file found by build-id,
  ``DEBUG_ROOT/.build-id/xx/rest.debug`` (``DEBUG_ROOT`` is ``/usr/lib/debug``
  unless given), and the ``.gnu_debugdata`` section (MiniDebugInfo: an
  xz-compressed ELF holding a ``.symtab`` of the local functions, as Fedora
  ships), decompressed with the stdlib ``lzma``.

Lookups take a virtual address as in the file (``st_value`` space); the
PT_LOAD headers turn a file offset (what a mapping gives) into one. A
symbol covers ``[st_value, st_value + st_size)``; a symbol of size 0 ends at
the next one. Anything else stays unresolved (None), never a wrong name.

Loaded files are cached by (path, device, inode, mtime), at most
:data:`MAX_FILES` of them.

>>> st = load_symtab("/bin/true")                   # doctest: +SKIP
>>> st.lookup(st.vaddr_of_offset(0x1234))           # doctest: +SKIP
('main', 20)
"""

from __future__ import annotations

import io
import lzma
import os
import struct
import threading
from array import array
from bisect import bisect_right
from collections import OrderedDict

from ..values import Value

__all__ = ["ElfSymtab", "load_symtab", "build_id_path", "MAX_FILES", "DEBUG_ROOT"]

MAX_FILES = 64
DEBUG_ROOT = "/usr/lib/debug"
_FUNC = {"STT_FUNC", "STT_GNU_IFUNC", "STT_LOOS"}
_SYM64 = struct.Struct("<IBBHQQ")        # Elf64_Sym, little-endian
_STT_NOTYPE, _STT_FUNC, _STT_GNU_IFUNC = 0, 2, 10
_SHF_EXECINSTR = 0x4


class ElfSymtab(Value):
    """Sorted function symbols of one file and its PT_LOAD segments."""

    __slots__ = _fields = ("path", "build_id", "loads", "starts", "sizes", "names", "sources",
                           "error", "key")

    def __init__(self, path: str, build_id: str | None = None,
                 loads: tuple[tuple[int, int, int, int], ...] = (),
                 starts: array | None = None, sizes: array | None = None,
                 names: list[str] | None = None, sources: tuple[str, ...] = (),
                 error: str | None = None, key: tuple | None = None) -> None:
        self.path = path
        self.build_id = build_id
        self.loads = loads  # p_vaddr, p_memsz, p_offset, p_filesz
        self.starts = (lambda: array("Q"))() if starts is None else starts
        self.sizes = (lambda: array("Q"))() if sizes is None else sizes
        self.names = [] if names is None else names
        self.sources = sources  # what the symbols came from
        self.error = error  # why the file gave nothing
        self.key = key  # (path, dev, ino, mtime, root)

    def vaddr_of_offset(self, off: int) -> int | None:
        """File offset -> virtual address (through the PT_LOAD segment holding it)."""
        for vaddr, _memsz, poff, filesz in self.loads:
            if poff <= off < poff + max(filesz, 1):
                return off - poff + vaddr
        return None

    def vaddr_range(self) -> tuple[int, int]:
        """Lowest and highest+1 virtual address of the loaded segments."""
        if not self.loads:
            return 0, 0
        return (min(v for v, *_ in self.loads), max(v + m for v, m, *_ in self.loads))

    def lookup(self, vaddr: int) -> tuple[str, int] | None:
        """(symbol, offset) of the function holding ``vaddr``, or None."""
        starts = self.starts
        i = bisect_right(starts, vaddr) - 1
        if i < 0:
            return None
        start = starts[i]
        j = i
        while j >= 0 and starts[j] == start:       # aliases: one that covers vaddr
            size = self.sizes[j]
            if vaddr < start + size:
                return self.names[j], vaddr - start
            j -= 1
        if all(self.sizes[k] == 0 for k in range(j + 1, i + 1)):
            return self.names[i], vaddr - start   # sizeless symbol: up to the next one
        return None


def build_id_path(build_id: str, debug_root: str = DEBUG_ROOT) -> str:
    """Where a separate debug file for ``build_id`` lives under ``debug_root``."""
    return os.path.join(debug_root, ".build-id", build_id[:2], build_id[2:] + ".debug")


def _elf(fileobj):  # noqa: ANN001, ANN202 - pyelftools types
    from elftools.elf.elffile import ELFFile
    return ELFFile(fileobj)


def _build_id(elf) -> str | None:  # noqa: ANN001
    for sec in elf.iter_sections():
        if sec.header["sh_type"] == "SHT_NOTE":
            for note in sec.iter_notes():
                if note["n_type"] == "NT_GNU_BUILD_ID":
                    return str(note["n_desc"])
    return None


def _funcs(elf, table: str, out: dict[int, tuple[str, int]]) -> bool:  # noqa: ANN001
    """Add the function symbols of ``table`` to ``out`` (address -> (name, size)).

    The entries are unpacked straight from the section bytes (pyelftools'
    per-symbol objects cost ~0.4 s per 10k symbols; this ~10 ms)."""
    sec = elf.get_section_by_name(table)
    if sec is None or sec.header["sh_type"] == "SHT_NOBITS" or not sec.header["sh_entsize"]:
        return False
    if elf.elfclass != 64 or not elf.little_endian:
        return _funcs_slow(elf, sec, out)
    execs = {i for i, s in enumerate(elf.iter_sections()) if s.header["sh_flags"] & _SHF_EXECINSTR}
    strtab = elf.get_section(sec.header["sh_link"]).data()
    data = sec.data()
    n = 0
    find = strtab.find
    for name_off, info, _other, shndx, value, size in _SYM64.iter_unpack(
            data[: len(data) - len(data) % _SYM64.size]):
        typ = info & 0xF
        if not value or not shndx or not name_off:
            continue
        if typ not in (_STT_FUNC, _STT_GNU_IFUNC) and not (typ == _STT_NOTYPE and shndx in execs):
            continue
        old = out.get(value)
        if old is None or (not old[1] and size):
            end = find(b"\0", name_off)
            name = strtab[name_off:end].decode(errors="replace")
            out[value] = (name.partition("@")[0], size)
        n += 1
    return n > 0


def _funcs_slow(elf, sec, out: dict[int, tuple[str, int]]) -> bool:  # noqa: ANN001
    execs = {i for i, s in enumerate(elf.iter_sections()) if s.header["sh_flags"] & _SHF_EXECINSTR}
    n = 0
    for s in sec.iter_symbols():
        e = s.entry
        typ, shndx, value = e["st_info"]["type"], e["st_shndx"], e["st_value"]
        if not value or shndx == "SHN_UNDEF" or not s.name:
            continue
        if typ not in _FUNC and not (typ == "STT_NOTYPE" and isinstance(shndx, int)
                                     and shndx in execs):
            continue
        old = out.get(value)
        if old is None or (not old[1] and e["st_size"]):
            out[value] = (s.name.partition("@")[0], e["st_size"])
        n += 1
    return n > 0


def _load(path: str, debug_root: str) -> ElfSymtab:
    from elftools.common.exceptions import ELFError
    st = ElfSymtab(path)
    syms: dict[int, tuple[str, int]] = {}
    sources: list[str] = []
    try:
        with open(path, "rb") as f:
            if f.read(4) != b"\x7fELF":
                st.error = "not an ELF file"
                return st
            f.seek(0)
            elf = _elf(f)
            st.build_id = _build_id(elf)
            st.loads = tuple((p.header.p_vaddr, p.header.p_memsz, p.header.p_offset,
                              p.header.p_filesz)
                             for p in elf.iter_segments() if p.header.p_type == "PT_LOAD")
            if _funcs(elf, ".symtab", syms):
                sources.append(".symtab")
            else:
                if st.build_id:
                    dbg = build_id_path(st.build_id, debug_root)
                    try:
                        with open(dbg, "rb") as df:
                            if _funcs(_elf(df), ".symtab", syms):
                                sources.append(dbg)
                    except (OSError, ELFError):
                        pass
                mini = elf.get_section_by_name(".gnu_debugdata")
                if mini is not None:
                    try:
                        inner = lzma.decompress(mini.data())
                        if _funcs(_elf(io.BytesIO(inner)), ".symtab", syms):
                            sources.append(".gnu_debugdata")
                    except (lzma.LZMAError, ELFError):
                        pass
            if _funcs(elf, ".dynsym", syms):
                sources.append(".dynsym")
    except (OSError, ELFError) as e:
        st.error = str(e)
        return st
    starts = sorted(syms)
    st.starts = array("Q", starts)
    st.sizes = array("Q", (syms[a][1] for a in starts))
    st.names = [syms[a][0] for a in starts]
    st.sources = tuple(sources)
    return st


_cache: OrderedDict[tuple, ElfSymtab] = OrderedDict()
_lock = threading.Lock()


def load_symtab(path: str, debug_root: str = DEBUG_ROOT) -> ElfSymtab:
    """The symbols of ``path`` (cached; at most :data:`MAX_FILES` files kept).

    A file that cannot be read or parsed gives an empty table with ``error`` set.
    """
    try:
        s = os.stat(path)
        key: tuple = (path, s.st_dev, s.st_ino, s.st_mtime_ns, debug_root)
    except OSError as e:
        return ElfSymtab(path, error=e.strerror)
    with _lock:
        st = _cache.get(key)
        if st is not None:
            _cache.move_to_end(key)
            return st
    st = _load(path, debug_root)
    st.key = key
    with _lock:
        _cache[key] = st
        while len(_cache) > MAX_FILES:
            _cache.popitem(last=False)
    return st

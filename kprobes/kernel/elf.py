"""ELF symbols -> uprobe file offsets (pyelftools, a dependency, imported when needed).

``uprobe_events`` takes ``PATH:OFFSET`` where OFFSET is a *file* offset.  A
symbol's ``st_value`` is a virtual address; the PT_LOAD segment containing it
converts it: ``offset = vaddr - p_vaddr + p_offset``.  This is the same for
executables (ET_EXEC), PIE and shared libraries (ET_DYN).

Symbols come from ``.symtab`` and then ``.dynsym`` (all a stripped binary has).
Versioned names follow ``nm -D``: ``malloc@@GLIBC_2.2.5`` is the default
version, ``memcpy@GLIBC_2.2.5`` a hidden one; a bare name means the default
version.  STT_FUNC and STT_GNU_IFUNC are accepted (an IFUNC probe fires in the
resolver, not in the implementation it selects: see ``UprobeTarget.ifunc``).

Path resolution (:func:`find_binary`): a name with ``/`` is taken as a path
(made absolute); a bare ``lib*`` or ``*.so*`` name is looked up in
``ldconfig -p`` (``libc`` and ``libc.so`` both find ``libc.so.6``), then in the
common library directories; any other bare name is searched in ``$PATH``.

>>> t = resolve_uprobe("libc", "malloc")          # doctest: +SKIP
>>> t.location                                    # doctest: +SKIP
'/usr/lib/x86_64-linux-gnu/libc.so.6:0x98930'
"""

from __future__ import annotations

import functools
import os
import platform
import re
import shutil
import subprocess
from fnmatch import translate

from kprobes.errors import KprobesError, NotSupported, SymbolError
from kprobes.kernel.kallsyms import near_names

from ..values import Frozen, _set, replace

__all__ = [
    "ElfSymbol",
    "UprobeTarget",
    "find_binary",
    "read_symbols",
    "resolve_uprobe",
    "vaddr_to_offset",
    "list_symbols",
    "LIB_DIRS",
]

#: searched (in order) when ``ldconfig -p`` does not know a library name
LIB_DIRS = ("/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib64", "/usr/lib64",
            "/lib", "/usr/lib", "/usr/local/lib", "/lib/aarch64-linux-gnu",
            "/usr/lib/aarch64-linux-gnu")
_FUNC_TYPES = {"STT_FUNC": "func", "STT_GNU_IFUNC": "ifunc", "STT_LOOS": "ifunc"}
_SHF_EXECINSTR = 0x4
_LDCONFIG_ARCH = {"x86_64": "x86-64", "aarch64": "AArch64"}


class ElfSymbol(Frozen):
    """A defined ELF symbol. ``kind``: func, ifunc, notype (asm label in code) or object.

    >>> ElfSymbol("malloc", 0x98930, 791, "func", "global", ".dynsym", "GLIBC_2.2.5", True).full_name
    'malloc@@GLIBC_2.2.5'
    """

    __slots__ = _fields = ("name", "value", "size", "kind", "bind", "table", "version",
                           "default_version")
    name: str
    value: int
    size: int
    kind: str
    bind: str
    table: str
    version: str | None
    default_version: bool

    def __init__(self, name: str, value: int, size: int, kind: str, bind: str, table: str,
                 version: str | None = None, default_version: bool = True) -> None:
        _set(self, "name", name)
        _set(self, "value", value)
        _set(self, "size", size)
        _set(self, "kind", kind)
        _set(self, "bind", bind)
        _set(self, "table", table)
        _set(self, "version", version)
        _set(self, "default_version", default_version)

    @property
    def full_name(self) -> str:
        if not self.version:
            return self.name
        return f"{self.name}{'@@' if self.default_version else '@'}{self.version}"

    @property
    def is_function(self) -> bool:
        return self.kind in ("func", "ifunc", "notype")


class UprobeTarget(Frozen):
    """Where a uprobe goes: ``location`` is what to write after ``p:GRP/EVENT ``.

    >>> UprobeTarget("/bin/x", "main", 4, 0x401130, 0x1130, 30, False).location
    '/bin/x:0x1130'
    """

    __slots__ = _fields = ("path", "symbol", "offset", "vaddr", "file_offset", "size", "ifunc")
    path: str
    symbol: str
    offset: int
    vaddr: int
    file_offset: int
    size: int
    ifunc: bool

    def __init__(self, path: str, symbol: str, offset: int, vaddr: int, file_offset: int,
                 size: int, ifunc: bool) -> None:
        _set(self, "path", path)
        _set(self, "symbol", symbol)
        _set(self, "offset", offset)
        _set(self, "vaddr", vaddr)
        _set(self, "file_offset", file_offset)
        _set(self, "size", size)
        _set(self, "ifunc", ifunc)

    @property
    def location(self) -> str:
        return f"{self.path}:0x{self.file_offset:x}"


def _elftools():
    try:
        from elftools.common.exceptions import ELFError
        from elftools.elf.elffile import ELFFile
    except ImportError:
        raise NotSupported("ELF symbol resolution needs pyelftools", feature="pyelftools",
                           hint="pip install pyelftools (a dependency of kprobes: reinstall it)") from None
    return ELFFile, ELFError


# -- path resolution -------------------------------------------------------------
def _is_library_name(name: str) -> bool:
    return name.startswith("lib") or ".so" in name


def _ldconfig_entries() -> list[tuple[str, str, str]]:
    exe = shutil.which("ldconfig") or next(
        (p for p in ("/sbin/ldconfig", "/usr/sbin/ldconfig") if os.path.exists(p)), None)
    if exe is None:
        return []
    try:
        out = subprocess.run([exe, "-p"], capture_output=True, text=True, timeout=10,
                             check=False).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    rows = []
    for m in re.finditer(r"^\s+(\S+) \(([^)]*)\)(?: OS ABI: [^=]*)? => (\S+)$", out, re.M):
        rows.append((m[1], m[2], m[3]))
    return rows


def _find_library(name: str) -> str | None:
    def fits(soname: str) -> bool:
        return soname == name or soname.startswith(name.removesuffix(".so") + ".so")

    arch = _LDCONFIG_ARCH.get(platform.machine())
    hits = [(so, flags, path) for so, flags, path in _ldconfig_entries() if fits(so)]
    # exact soname first, then the running architecture, then the shortest soname
    hits.sort(key=lambda h: (h[0] != name, arch is not None and arch not in h[1], len(h[0])))
    if hits:
        return hits[0][2]
    for d in LIB_DIRS:
        try:
            files = sorted(os.listdir(d), key=len)
        except OSError:
            continue
        for f in files:
            if fits(f) and os.path.isfile(os.path.join(d, f)):
                return os.path.join(d, f)
    return None


def find_binary(name: str) -> str:
    """Absolute path for ``name`` (a path, a program on ``$PATH`` or a library name).

    >>> find_binary("/bin/sh") == os.path.abspath("/bin/sh")
    True
    """
    if "/" in name:
        path = os.path.abspath(name)
    elif _is_library_name(name):
        path = _find_library(name) or shutil.which(name) or ""
        if not path:
            raise KprobesError(f"library {name!r} not found in ldconfig -p or {LIB_DIRS[0]}...",
                               hint="give the absolute path to the .so file")
    else:
        path = shutil.which(name) or ""
        if not path:
            raise KprobesError(f"program {name!r} not found in $PATH",
                               hint="give the absolute path to the binary")
    if not os.path.isfile(path):
        raise KprobesError(f"{path}: no such file", hint="give the absolute path of an ELF binary")
    return os.path.abspath(path)


# -- reading -------------------------------------------------------------------
class _ElfInfo(Frozen):
    __slots__ = _fields = ("symbols", "undefined", "loads", "needed", "has_symtab")
    symbols: tuple[ElfSymbol, ...]
    undefined: frozenset[str]
    loads: tuple[tuple[int, int, int], ...]  # (p_vaddr, p_filesz, p_offset)
    needed: tuple[str, ...]
    has_symtab: bool

    def __init__(self, symbols: tuple[ElfSymbol, ...], undefined: frozenset[str],
                 loads: tuple[tuple[int, int, int], ...], needed: tuple[str, ...],
                 has_symtab: bool) -> None:
        _set(self, "symbols", symbols)
        _set(self, "undefined", undefined)
        _set(self, "loads", loads)
        _set(self, "needed", needed)
        _set(self, "has_symtab", has_symtab)


def _open_elf(path: str):
    ELFFile, ELFError = _elftools()
    try:
        f = open(path, "rb")
    except FileNotFoundError:
        raise KprobesError(f"{path}: no such file") from None
    except OSError as e:
        raise KprobesError(f"cannot open {path}: {e.strerror}") from None
    if f.read(4) != b"\x7fELF":
        f.close()
        raise KprobesError(f"{path} is not an ELF file",
                           hint="uprobes go on compiled programs and shared libraries, "
                                "not scripts")
    f.seek(0)
    try:
        return f, ELFFile(f)
    except ELFError as e:
        f.close()
        raise KprobesError(f"{path}: malformed ELF file ({e})") from None


def _versions(elf) -> tuple[dict[int, str], list[int]]:
    """Version names by index (.gnu.version_d) and the per-.dynsym version indexes."""
    names: dict[int, str] = {}
    vd = elf.get_section_by_name(".gnu.version_d")
    if vd is not None:
        for verdef, aux in vd.iter_versions():
            first = next(iter(aux), None)
            if first is not None and not verdef.entry["vd_flags"] & 0x1:  # skip VER_FLG_BASE
                names[verdef.entry["vd_ndx"]] = first.name
    vs = elf.get_section_by_name(".gnu.version")
    ndx: list[int] = []
    if vs is not None:
        for i in range(vs.num_symbols()):
            v = vs.get_symbol(i).entry["ndx"]
            ndx.append(v if isinstance(v, int) else 0)
    return names, ndx


def _load(path: str) -> _ElfInfo:
    try:
        return _parse(path)
    except KprobesError:
        raise
    except Exception as e:  # noqa: BLE001 - pyelftools raises anything on corrupt files
        raise KprobesError(f"{path}: malformed ELF file ({type(e).__name__}: {e})",
                           hint="the file is corrupt or truncated") from None


def _parse(path: str) -> _ElfInfo:
    f, elf = _open_elf(path)
    with f:
        exec_sections = {i for i, s in enumerate(elf.iter_sections())
                         if s.header["sh_flags"] & _SHF_EXECINSTR}
        vnames, vndx = _versions(elf)
        syms: list[ElfSymbol] = []
        undefined: set[str] = set()
        has_symtab = False
        for table in (".symtab", ".dynsym"):
            sec = elf.get_section_by_name(table)
            if sec is None:
                continue
            has_symtab |= table == ".symtab"
            for i, s in enumerate(sec.iter_symbols()):
                name, shndx = s.name, s.entry["st_shndx"]
                if not name or s.entry["st_info"]["type"] in ("STT_FILE", "STT_SECTION"):
                    continue
                if shndx == "SHN_UNDEF":
                    undefined.add(name.partition("@")[0])
                    continue
                typ = s.entry["st_info"]["type"]
                kind = _FUNC_TYPES.get(typ)
                if kind is None:
                    in_code = isinstance(shndx, int) and shndx in exec_sections
                    kind = "notype" if typ == "STT_NOTYPE" and in_code else "object"
                version, default = None, True
                if "@" in name:  # .symtab spells versions in the name
                    name, at, version = name.partition("@")
                    default = version.startswith("@")
                    version = version.lstrip("@") or None
                elif table == ".dynsym" and i < len(vndx) and (vndx[i] & 0x7FFF) in vnames:
                    version, default = vnames[vndx[i] & 0x7FFF], not vndx[i] & 0x8000
                bind = s.entry["st_info"]["bind"].removeprefix("STB_").lower()
                syms.append(ElfSymbol(name, s.entry["st_value"], s.entry["st_size"], kind,
                                      bind, table, version, default))
        # .symtab spells the default version without "@@": take it from .dynsym
        dynver = {(s.name, s.value): s for s in syms if s.table == ".dynsym" and s.version}
        syms = [replace(s, version=d.version, default_version=d.default_version)
                if s.version is None and (d := dynver.get((s.name, s.value))) else s
                for s in syms]
        loads = tuple((p.header.p_vaddr, p.header.p_filesz, p.header.p_offset)
                      for p in elf.iter_segments() if p.header.p_type == "PT_LOAD")
        dyn = elf.get_section_by_name(".dynamic")
        needed = tuple(t.needed for t in dyn.iter_tags("DT_NEEDED")) if dyn is not None else ()
    return _ElfInfo(tuple(syms), frozenset(undefined), loads, needed, has_symtab)


@functools.lru_cache(maxsize=16)
def _load_cached(path: str, ino: int, mtime_ns: int, size: int) -> _ElfInfo:
    return _load(path)


def _info(path: str) -> _ElfInfo:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise KprobesError(f"{path}: no such file") from None
    return _load_cached(path, st.st_ino, st.st_mtime_ns, st.st_size)


def read_symbols(path: str) -> list[ElfSymbol]:
    """All defined symbols of ``path`` (.symtab first, then .dynsym), cached by inode+mtime."""
    return list(_info(find_binary(path)).symbols)


def vaddr_to_offset(path: str, vaddr: int) -> int:
    """Virtual address (``st_value``) -> file offset through the PT_LOAD segment holding it."""
    return _to_offset(_info(find_binary(path)), vaddr, path)


def _to_offset(info: _ElfInfo, vaddr: int, path: str) -> int:
    for p_vaddr, p_filesz, p_offset in info.loads:
        if p_vaddr <= vaddr < p_vaddr + p_filesz:
            return vaddr - p_vaddr + p_offset
    raise SymbolError(f"address 0x{vaddr:x} is in no PT_LOAD segment of {path}",
                      symbol=hex(vaddr), hint="the symbol is not backed by the file")


# -- resolution ----------------------------------------------------------------
def _candidates(info: _ElfInfo, symbol: str) -> list[ElfSymbol]:
    name, at, version = symbol.partition("@")
    want_default = version.startswith("@")
    version = version.lstrip("@")
    found = [s for s in info.symbols if s.name == name]
    if at:
        found = [s for s in found if s.version == version
                 and (s.default_version or not want_default)]
    elif len({s.value for s in found}) > 1:
        # a bare name binds to the default version, like the linker does
        defaults = [s for s in found if s.version is None or s.default_version]
        found = defaults or found
    return found


def resolve_uprobe(path: str, symbol: str, offset: int = 0) -> UprobeTarget:
    """Resolve ``symbol+offset`` in ``path`` to the file offset ``uprobe_events`` wants.

    Raises SymbolError (unknown with suggestions, ambiguous, data symbol,
    imported, offset past the end) and KprobesError (no such file, not ELF).
    """
    full = find_binary(path)
    info = _info(full)
    found = [s for s in _candidates(info, symbol)]
    if not found:
        raise _unknown(info, full, symbol)
    funcs = [s for s in found if s.is_function]
    if not funcs:
        raise SymbolError(f"{symbol} in {full} is a data object, not a function",
                          symbol=symbol, hint="uprobes go on functions (nm type T/t/i)")
    by_addr: dict[int, ElfSymbol] = {}
    for s in funcs:  # .symtab comes first and has the better size/binding
        by_addr.setdefault(s.value, s)
    if len(by_addr) > 1:
        alts = [f"0x{_to_offset(info, a, full):x} ({s.bind} {s.full_name})"
                for a, s in sorted(by_addr.items())]
        raise SymbolError(
            f"{symbol!r} is ambiguous in {full}: {len(alts)} functions have that name",
            symbol=symbol, suggestions=alts[:5],
            hint=f"probe one by file offset ({full}:0xOFFSET): {', '.join(alts[:5])}")
    sym = next(iter(by_addr.values()))
    if offset < 0 or (sym.size and offset >= sym.size):
        raise SymbolError(f"offset +{offset} is outside {sym.full_name} (size {sym.size})",
                          symbol=symbol, hint=f"use an offset from 0 to {max(sym.size - 1, 0)}")
    vaddr = sym.value + offset
    return UprobeTarget(full, sym.full_name, offset, vaddr, _to_offset(info, vaddr, full),
                        sym.size, sym.kind == "ifunc")


def _unknown(info: _ElfInfo, path: str, symbol: str) -> SymbolError:
    name = symbol.partition("@")[0]
    if name in info.undefined and not any(s.name == name for s in info.symbols):
        libs = ", ".join(info.needed) or "a shared library"
        lib = info.needed[-1] if info.needed else "LIB"
        return SymbolError(f"{name} is imported by {path}, not defined there", symbol=symbol,
                           hint=f"probe it in the library that defines it ({libs}), "
                                f"e.g. {lib}:{name}")
    names = sorted({s.full_name if "@" in symbol else s.name
                    for s in info.symbols if s.is_function})
    sugg = near_names(symbol, names)
    hint = f"did you mean: {', '.join(sugg)}?" if sugg else None
    if not info.has_symtab:
        extra = ("the binary is stripped (no .symtab): only exported symbols are known; "
                 "use an unstripped build or PATH:0xOFFSET")
        hint = f"{hint} ({extra})" if hint else extra
    return SymbolError(f"no function {symbol!r} in {path}", symbol=symbol,
                       suggestions=sugg, hint=hint)


def list_symbols(path: str, pattern: str | None = None) -> list[ElfSymbol]:
    """Function symbols of ``path`` matching a glob, one per name+address, sorted by name.

    Versioned names match both ``malloc`` and ``malloc@@GLIBC_2.2.5`` style globs.
    """
    rx = re.compile(translate(pattern or "*"))
    seen: dict[tuple[str, int], ElfSymbol] = {}
    for s in _info(find_binary(path)).symbols:
        if s.is_function and (rx.match(s.name) or rx.match(s.full_name)):
            seen.setdefault((s.full_name, s.value), s)
    return sorted(seen.values(), key=lambda s: (s.name, s.full_name, s.value))

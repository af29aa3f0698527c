"""One-name kernel symbol lookups in the raw ``/proc/kallsyms`` bytes.

A probe needs one name, not the 120-250k lines of the table: each lookup
searches the bytes for ``" NAME"`` with a C-speed ``bytes.find`` and parses
only the lines it hits (a few milliseconds on 5 MB).  Sizes come from the
next line, because the core kernel's symbols are printed first and sorted by
address (``scripts/kallsyms`` sorts them; the kernel's own binary search in
``get_symbol_pos()`` relies on it); a module's size from that module's lines.
What needs the whole table (an arbitrary address, suggestions for an unknown
name) parses it then, on that path only.

The kernel takes ~50 ms to print 5 MB of kallsyms on the dev host (seconds
under emulation), so the bytes are kept for the next session: a copy in
``$KPROBES_CACHE_DIR/kallsyms``, else ``/run/kprobes`` for root, else
``$XDG_RUNTIME_DIR/kprobes`` (per boot by nature), named by the boot id, the
loaded modules with their addresses and the first 4 KiB of the live file
(KASLR offset, hidden addresses).  BPF programs and trampolines come and go
without changing that key; they are never probeable, so a stale line of theirs
changes no answer.

>>> ks = KallsymsLookup.parse("ffffffff81000000 T _stext\\n"
...                           "ffffffff81000100 T do_work\\n"
...                           "ffffffff81000180 t helper\\n"
...                           "ffffffff81000200 T _etext\\n"
...                           "ffffffffc0001000 t helper\\t[ext4]\\n")
>>> [s.spec for s in ks.lookup("helper")], ks.size(ks.resolve("do_work"))
(['helper', 'ext4:helper'], 128)
"""

from __future__ import annotations

import os
import re
import zlib
from fnmatch import translate

from .kallsyms import (
    NOISE_PREFIXES,
    PSEUDO_MODULES,
    KernelSymbols,
    Sym,
    SymbolTable,
    read_kallsyms,
)

__all__ = ["KallsymsLookup", "cached_kallsyms", "cache_dir"]

KALLSYMS = "/proc/kallsyms"
_LINE_RX = re.compile(rb"([0-9a-fA-F]{1,16}) (\S) (\S+)(?:\t\[([^\]\s]+)\])?")
_NONZERO_RX = re.compile(rb"^0*[1-9a-fA-F]", re.M)
#: markers printed near the end of the core symbols: searched from the end
_LATE_MARKERS = frozenset({"_etext", "_sinittext", "_einittext"})


class KallsymsLookup(SymbolTable):
    """The kallsyms bytes, searched one name at a time (see the module docstring)."""

    def __init__(self, data: bytes, *, path: str | None = None, copy: bool = False) -> None:
        if data and not data.endswith(b"\n"):
            data += b"\n"
        self.data = data
        self.path = path
        self.copy = copy       # data came from the per-boot copy, not the live file
        self._full: KernelSymbols | None = None
        self._pos: dict[Sym, int] = {}       # where each symbol handed out starts
        self.addresses_hidden = self._hidden()

    @classmethod
    def load(cls, path: str = KALLSYMS, *, cache: bool = True) -> KallsymsLookup:
        """The live table (from the per-boot copy when ``cache`` and ``path`` is the kernel's)."""
        if cache and path == KALLSYMS:
            return cls(cached_kallsyms(path), path=path, copy=True)
        return cls(read_kallsyms(path), path=path)

    @classmethod
    def parse(cls, text: str) -> KallsymsLookup:
        return cls(text.encode("utf-8", "surrogateescape"))

    def full(self) -> KernelSymbols:
        """The whole table, parsed on first use (listings, any address, suggestions)."""
        if self._full is None:
            self._full = KernelSymbols.parse(self.data.decode("utf-8", "replace"), path=self.path)
        return self._full

    # -- lines ---------------------------------------------------------------
    def _line(self, start: int) -> Sym | None:
        m = _LINE_RX.match(self.data, start, self.data.find(b"\n", start))
        if not m:
            return None
        addr, typ, name, mod = m.groups()
        return Sym(int(addr, 16), typ.decode(), name.decode("utf-8", "replace"),
                   mod.decode() if mod else None)

    def _hidden(self) -> bool:
        i = self.data.find(b" _stext\n")
        if i >= 0:
            s = self._line(self.data.rfind(b"\n", 0, i) + 1)
            if s is not None and s.addr:
                return False
        return bool(self.data) and _NONZERO_RX.search(self.data) is None

    # -- lookups -------------------------------------------------------------
    def lookup(self, name: str, module: str | None = None) -> list[Sym]:
        """All symbols called ``name`` (in ``module``; ``"vmlinux"`` = the core kernel)."""
        data = self.data
        raw = name.encode()
        if module is not None and module != "vmlinux":
            key, ends = b" " + raw + b"\t[" + module.encode() + b"]\n", None
        else:
            key, ends = b" " + raw, (b"\n",) if module == "vmlinux" else (b"\n", b"\t")
        n = len(key)
        hits: list[tuple[int, int, Sym]] = []
        i = data.find(key)
        while i >= 0:
            if ends is None or data[i + n:i + n + 1] in ends:
                start = data.rfind(b"\n", 0, i) + 1
                sym = self._line(start)
                if sym is not None and sym.name == name:
                    hits.append((sym.addr, start, sym))
                    self._pos.setdefault(sym, start)
            i = data.find(key, i + n)
        hits.sort(key=lambda h: (h[0], h[1]))
        return [h[2] for h in hits]

    def functions(self, glob: str, module: str | None = None) -> list[Sym]:
        """Text symbols whose name matches ``glob`` (in a module matching the glob
        ``module``, ``vmlinux`` for the core kernel; None: anywhere), in name order,
        without padding/CFI stubs and BPF/trampoline pseudo-modules: what
        :meth:`KernelSymbols.iter_functions` gives, found by one regular expression
        over the bytes instead of a parse of every line (~10x faster).

        >>> ks = KallsymsLookup.parse("ffffffff81000100 T vfs_read\\n"
        ...                           "ffffffff81000180 t __pfx_vfs_x\\n"
        ...                           "ffffffff81000200 D vfs_data\\n"
        ...                           "ffffffffc0001000 t vfs_x\\t[ext4]\\n")
        >>> [s.spec for s in ks.functions("vfs_*")], [s.spec for s in ks.functions("*", "ext*")]
        (['vfs_read', 'ext4:vfs_x'], ['ext4:vfs_x'])
        """
        rx = re.compile(rb"\n([0-9a-fA-F]{1,16}) ([TtWw]) (" + _glob_rx(glob) +
                        rb")(?:\t\[([^\]\s]+)\])?(?=\n)")
        mod_rx = re.compile(translate(module)) if module else None
        out = []
        for addr, typ, raw, mod in rx.findall(b"\n" + self.data):
            name = raw.decode("utf-8", "replace")
            m = mod.decode("utf-8", "replace") if mod else None
            if name.startswith(NOISE_PREFIXES) or (m is not None and m.startswith(PSEUDO_MODULES)):
                continue
            if mod_rx is not None and not mod_rx.match(m or "vmlinux"):
                continue
            out.append(Sym(int(addr, 16), typ.decode(), name, m))
        out.sort(key=lambda s: (s.name, s.module or ""))
        return out

    def _marker(self, name: str) -> int | None:
        key = b" " + name.encode() + b"\n"
        i = self.data.rfind(key) if name in _LATE_MARKERS else self.data.find(key)
        if i < 0:
            return None
        s = self._line(self.data.rfind(b"\n", 0, i) + 1)
        return s.addr if s is not None else None

    def has_module(self, module: str) -> bool:
        return b"\t[" + module.encode() + b"]\n" in self.data

    def function_at(self, addr: int) -> tuple[Sym, int]:
        """The symbol containing ``addr`` (parses the whole table: addresses are rare).

        From the live file when the bytes are the per-boot copy: an address may
        be in a trampoline or BPF program made since.
        """
        self._need_addresses()
        if self.copy and self.path is not None:
            return KernelSymbols.load(self.path).function_at(addr)
        return self.full().function_at(addr)

    def size(self, sym: Sym) -> int | None:
        """Distance to the next symbol at a higher address in the same module, or None."""
        self._need_addresses()
        start = self._pos.get(sym)
        if start is None:
            return self.full().size(sym)
        if sym.module is not None:
            return self._module_size(sym)
        data = self.data
        j = data.find(b"\n", start) + 1
        while 0 < j < len(data):
            nxt = self._line(j)
            if nxt is None or nxt.module is not None:
                return None                   # past the core symbols
            if nxt.addr < sym.addr:           # not in address order: ask the whole table
                return self.full().size(sym)
            if nxt.addr > sym.addr:
                return nxt.addr - sym.addr
            j = data.find(b"\n", j) + 1
        return None

    def _module_size(self, sym: Sym) -> int | None:
        tag = b"\t[" + str(sym.module).encode() + b"]\n"
        first, last = self.data.find(tag), self.data.rfind(tag)
        lo = self.data.rfind(b"\n", 0, first) + 1
        higher = [int(m[1], 16) for m in _LINE_RX.finditer(self.data, lo, last + len(tag))
                  if m[4] == tag[2:-2] and int(m[1], 16) > sym.addr]
        return min(higher) - sym.addr if higher else None

    def suggest(self, name: str, n: int = 5) -> list[str]:
        """Near function names (parses the whole table: the unknown-name path only)."""
        return self.full().suggest(name, n)


# -- the per-boot copy ---------------------------------------------------------
def _glob_rx(glob: str) -> bytes:
    """A shell glob (``*``, ``?``, ``[...]``, ``[!...]``) as a regular expression for one
    kallsyms name (no white space). Not ``fnmatch.translate``: its ``.*`` would run
    across the tab into the module column and across lines of the whole table.

    >>> _glob_rx("vfs_[!o]*?.x")
    b'vfs_[^o]\\\\S*\\\\S\\\\.x'
    """
    out, i, n = [], 0, len(glob)
    while i < n:
        c = glob[i]
        i += 1
        if c == "*":
            out.append(r"\S*")
        elif c == "?":
            out.append(r"\S")
        elif c == "[":
            j = i + (glob[i:i + 1] in ("!", "]")) if i < n else i
            j = glob.find("]", j + (glob[j:j + 1] == "]"))
            if j < 0:
                out.append(r"\[")
                continue
            body = glob[i:j].replace("\\", r"\\")
            if body.startswith("!"):
                body = "^" + body[1:]
            elif body.startswith("^"):
                body = "\\" + body
            out.append(f"[{body}]")
            i = j + 1
        else:
            out.append(re.escape(c))
    return "".join(out).encode()


def cache_dir() -> str | None:
    """Where the kallsyms copy lives (see the module docstring); None for no copy."""
    env = os.environ.get("KPROBES_CACHE_DIR")
    if env:
        return os.path.join(env, "kallsyms")
    if os.geteuid() == 0:
        return "/run/kprobes"
    run = os.environ.get("XDG_RUNTIME_DIR")
    return os.path.join(run, "kprobes") if run else None


def _read(path: str, size: int = -1) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read(size)
    except OSError:
        return b""


def _key(path: str) -> str:
    boot = _read("/proc/sys/kernel/random/boot_id").strip().decode() or "noboot"
    mods = b"".join(b" ".join(ln.split()[:1] + ln.split()[4:6]) + b"\n"  # not the refcount
                    for ln in _read("/proc/modules").splitlines())
    return f"{boot}-{zlib.crc32(mods):08x}-{zlib.crc32(_read(path, 4096)):08x}"


def cached_kallsyms(path: str = KALLSYMS) -> bytes:
    """The bytes of ``path``, from this boot's copy when it is still right."""
    d = cache_dir()
    if d is None:
        return read_kallsyms(path)
    name = f"kallsyms-{_key(path)}"
    data = _read(os.path.join(d, name))
    if data:
        return data
    data = read_kallsyms(path)
    tmp = os.path.join(d, f".{name}.{os.getpid()}")
    try:
        os.makedirs(d, mode=0o700, exist_ok=True)
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, os.path.join(d, name))
        for old in os.listdir(d):
            if old.startswith("kallsyms-") and old != name:
                os.unlink(os.path.join(d, old))
    except OSError:
        try:
            os.unlink(tmp)
        except OSError:
            pass
    return data

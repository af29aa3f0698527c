"""BTF bytes -> types: the header, the lazy type decoder and name lookup.

:meth:`BTF.load` maps (or reads) the file, checks the header, builds or loads
the type index (:mod:`kprobes.btf.index`) and decodes nothing else; each type
is decoded the first time :meth:`BTF.type` asks for it.  Split BTF (kernel
modules, ``/sys/kernel/btf/MOD``) continues the base's type ids and string
offsets; pass the base with ``base=``.

>>> from kprobes.btf.build import Builder
>>> b = Builder()
>>> i = b.int("int", 4, signed=True)
>>> p = b.ptr(b.const(b.int("char", 1, signed=True, char=True)))
>>> f = b.func("f", b.func_proto(i, [("s", p)]))
>>> btf = BTF.from_bytes(b.build())
>>> sig = btf.func_proto("f")
>>> btf.type_name(sig.params[0].type)
'const char *'
"""

from __future__ import annotations

import os
import struct
import sys
from bisect import bisect_left

from kprobes.btf import index as _index
from kprobes.btf.types import (
    KIND_NAMES,
    KINDS,
    Enumerator,
    FuncSig,
    Member,
    Param,
    Type,
    VarSecInfo,
    linkage_name,
)
from kprobes.errors import BTFError

TYPE_CHECKING = False   # typing's, without importing typing at run time

if TYPE_CHECKING:
    import array

__all__ = ["BTF", "VMLINUX", "MAGIC", "MAX_CHAIN"]

#: where the running kernel exposes its BTF
VMLINUX = "/sys/kernel/btf/vmlinux"
#: BTF magic number
MAGIC = 0xEB9F
#: longest typedef/qualifier/pointer chain we follow before calling it a cycle
MAX_CHAIN = 64

_HDR_LEN = 24
_MODIFIERS = frozenset({8, 9, 10, 11, 18})  # typedef volatile const restrict type_tag
_KIND_FILTER = {"enum": (6, 19)}
_for_kernel_cache: dict[str | None, BTF] = {}


def _read_file(path: str):
    """The file's bytes: a read-only private mmap when the file allows it, else a copy."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise BTFError(f"no BTF at {path}", hint="the kernel needs CONFIG_DEBUG_INFO_BTF=y "
                       "(and the module loaded, for module BTF)") from None
    except OSError as e:
        raise BTFError(f"cannot open {path}: {e.strerror}") from None
    try:
        size = os.fstat(fd).st_size
        if size > 0:
            import mmap

            try:
                return mmap.mmap(fd, size, flags=mmap.MAP_PRIVATE, prot=mmap.PROT_READ)
            except (OSError, ValueError):
                pass  # sysfs before 6.16 cannot mmap BTF: read it
        chunks = []
        buf = bytearray(max(size, 1 << 20))
        view = memoryview(buf)
        got = 0
        while True:
            if got == len(buf):
                chunks.append(bytes(buf))
                got = 0
            n = os.readv(fd, [view[got:]])
            if n == 0:
                break
            got += n
        chunks.append(bytes(view[:got]))
        view.release()
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)
    except OSError as e:
        raise BTFError(f"cannot read {path}: {e.strerror}") from None
    finally:
        os.close(fd)


class BTF:
    """One BTF blob (vmlinux, a module's split BTF, or any ``.BTF`` bytes).

    >>> btf = BTF.for_kernel()                                    # doctest: +SKIP
    >>> btf.type_name(btf.func_proto("vfs_read").params[1].type)  # doctest: +SKIP
    'char *'
    """

    last_id: int
    _str_total: int
    _words: memoryview | array.array[int]

    def __init__(self, raw, *, base: BTF | None = None, path: str = "<bytes>",
                 cache: bool | str = False) -> None:
        self.path = path
        self.base = base
        self._raw = raw
        self._types: dict[int, Type] = {}
        self._parse_header(raw)
        self.first_id = base.last_id + 1 if base is not None else 1
        self._base_strlen = base._str_total if base is not None else 0
        self._str_total = self._base_strlen + self._str_len
        self.key: str | None = None
        idx = None
        cache_dir: str | None = None
        if cache:
            self.key = _index.cache_key(raw, base.key if base is not None else None)
            cache_dir = cache if isinstance(cache, str) else _index.cache_dir()
            idx = _index.load_index(cache_dir, self.key, len(self._words))
        if idx is None:
            idx = _index.scan(self._words, self.first_id)
            if cache_dir is not None and self.key is not None:
                _index.store_index(cache_dir, self.key, *idx)
        self._offsets, self._names = idx
        #: highest type id in this BTF (the base's last id if it adds none)
        self.last_id = self.first_id + len(self._offsets) - 1

    # ----------------------------------------------------------------- loading
    @classmethod
    def from_bytes(cls, data: bytes, base: BTF | None = None) -> BTF:
        """Parse BTF from memory (no cache).

        >>> BTF.from_bytes(b"\\x00" * 24)
        Traceback (most recent call last):
        ...
        kprobes.errors.BTFError: <bytes>: bad magic 0x0000, not BTF (expected 0xeb9f)
        """
        return cls(data, base=base)

    @classmethod
    def load(cls, path: str = VMLINUX, base: BTF | None = None, cache: bool | str = True) -> BTF:
        """Load a BTF file.  ``cache`` is True (default directory), False, or a directory.

        >>> btf = BTF.load("/sys/kernel/btf/vmlinux")  # doctest: +SKIP
        """
        return cls(_read_file(path), base=base, path=path, cache=cache)

    @classmethod
    def for_kernel(cls, module: str | None = None) -> BTF:
        """The running kernel's BTF, or a loaded module's split BTF (memoised per process).

        >>> BTF.for_kernel().find("task_struct", "struct")  # doctest: +SKIP
        [Type(..., struct 'task_struct', size=...)]
        """
        got = _for_kernel_cache.get(module)
        if got is None:
            if module is None or module == "vmlinux":
                got = cls.load(VMLINUX)
            else:
                if "/" in module or module.startswith("."):
                    raise BTFError(f"bad module name {module!r}")
                got = cls.load(os.path.join(os.path.dirname(VMLINUX), module),
                               base=cls.for_kernel())
            _for_kernel_cache[module] = got
        return got

    def _parse_header(self, raw) -> None:
        where = self.path
        total = len(raw)
        if total < 8:
            raise BTFError(f"{where}: {total} bytes is too short for a BTF header")
        if raw[0] == 0x9F and raw[1] == 0xEB:
            order = "<"
        elif raw[0] == 0xEB and raw[1] == 0x9F:
            order = ">"
        else:
            raise BTFError(f"{where}: bad magic 0x{raw[0] | raw[1] << 8:04x}, not BTF "
                           f"(expected 0x{MAGIC:04x})")
        self.byteorder = order
        version, flags, hdr_len = struct.unpack_from(order + "BBI", raw, 2)
        if version != 1:
            raise BTFError(f"{where}: unsupported BTF version {version} (only 1 is known)")
        if hdr_len < _HDR_LEN:
            raise BTFError(f"{where}: bad header length {hdr_len} (at least {_HDR_LEN})")
        if hdr_len > total:
            raise BTFError(f"{where}: header length {hdr_len} is past the end of the data "
                           f"({total} bytes)")
        self.flags = flags
        self.hdr_len = hdr_len
        type_off, type_len, str_off, str_len = struct.unpack_from(order + "4I", raw, 8)
        for what, off, ln in (("type", type_off, type_len), ("string", str_off, str_len)):
            if hdr_len + off + ln > total:
                raise BTFError(f"{where}: {what} section (bytes {hdr_len + off}..{hdr_len + off + ln}) "
                               f"runs past the end of the data ({total} bytes): truncated BTF")
        if type_off % 4 or type_len % 4:
            raise BTFError(f"{where}: type section offset {type_off}/length {type_len} "
                           "not a multiple of 4")
        self._type_start = hdr_len + type_off
        self._str_start = hdr_len + str_off
        self._str_end = self._str_start + str_len
        self._str_len = str_len
        if str_len == 0 and self.base is None:
            raise BTFError(f"{where}: empty string section")
        if str_len and raw[self._str_end - 1] != 0:
            raise BTFError(f"{where}: string section does not end with a NUL byte")
        if self.base is None and raw[self._str_start] != 0:
            raise BTFError(f"{where}: string section does not start with the empty string")
        section = memoryview(raw)[self._type_start:self._type_start + type_len]
        native = "<" if sys.byteorder == "little" else ">"
        if order == native:
            self._words = section.cast("I")
        else:
            import array

            words = array.array("I")
            words.frombytes(section)
            words.byteswap()
            self._words = words

    # ----------------------------------------------------------------- strings
    def str_at(self, off: int) -> str:
        """The string at offset ``off`` (split BTF: base strings come first).

        >>> from kprobes.btf.build import Builder
        >>> b = Builder(); _ = b.int("int", 4)
        >>> BTF.from_bytes(b.build()).str_at(1)
        'int'
        """
        if off < self._base_strlen:
            assert self.base is not None
            return self.base.str_at(off)
        local = off - self._base_strlen
        if local >= self._str_len:
            raise BTFError(f"{self.path}: string offset {off} is out of range "
                           f"(string section ends at {self._str_total})")
        start = self._str_start + local
        end = self._raw.find(b"\0", start, self._str_end)
        return bytes(self._raw[start:end]).decode("utf-8", "replace")

    def _name_offsets(self, name: str) -> list[int]:
        """Every offset (in this BTF's string space) holding exactly ``name``."""
        enc = name.encode()
        out = self.base._name_offsets(name) if self.base is not None else []
        if not enc:
            return out
        raw, start, end = self._raw, self._str_start, self._str_end
        if raw[start:start + len(enc) + 1] == enc + b"\0":
            out.append(self._base_strlen)
        needle = b"\0" + enc + b"\0"
        p = raw.find(needle, start, end)
        while p >= 0:
            out.append(self._base_strlen + p + 1 - start)
            p = raw.find(needle, p + 1, end)
        return out

    # ------------------------------------------------------------------- types
    def type(self, tid: int) -> Type:
        """The type with id ``tid`` (0 is ``void``), decoded on first use.

        >>> from kprobes.btf.build import Builder
        >>> b = Builder(); _ = b.int("int", 4)
        >>> BTF.from_bytes(b.build()).type(7)
        Traceback (most recent call last):
        ...
        kprobes.errors.BTFError: <bytes>: type id 7 is out of range (1..1)
        """
        t = self._types.get(tid)
        if t is not None:
            return t
        if tid < self.first_id:
            if tid == 0:
                t = Type(self, 0, "void", "void")
            elif self.base is not None and tid > 0:
                return self.base.type(tid)
            else:
                raise BTFError(f"{self.path}: type id {tid} is out of range (1..{self.last_id})")
        elif tid > self.last_id:
            raise BTFError(f"{self.path}: type id {tid} is out of range "
                           f"(1..{self.last_id})")
        else:
            t = self._decode(tid)
        self._types[tid] = t
        return t

    def _decode(self, tid: int) -> Type:
        w = self._words
        i = self._offsets[tid - self.first_id]
        try:
            name_off, info, st = w[i], w[i + 1], w[i + 2]
            k = (info >> 24) & 0x1F
            vlen = info & 0xFFFF
            kf = bool(info >> 31)
            fixed = _index.FIXED_WORDS[k]
            if fixed is None:
                raise BTFError(f"{self.path}: type id {tid} has unknown kind {k}")
            if i + 3 + fixed + _index.PER_VLEN_WORDS[k] * vlen > len(w):
                raise BTFError(f"{self.path}: type id {tid} runs past the type section")
        except IndexError:
            raise BTFError(f"{self.path}: type id {tid}: index points past the type section") from None
        kind = KIND_NAMES[k]
        name = self.str_at(name_off) if name_off else ""
        s = self.str_at
        if k in (1, 4, 5, 6, 15, 16, 19):
            t = Type(self, tid, kind, name, kf, size=st)
        else:
            t = Type(self, tid, kind, name, kf, type_id=st)
        j = i + 3
        if k == 1:
            v = w[j]
            t.encoding, t.bit_offset, t.bits = (v >> 24) & 0x0F, (v >> 16) & 0xFF, v & 0xFF
        elif k == 3:
            t.type_id, t.index_type_id, t.nelems = w[j], w[j + 1], w[j + 2]
        elif k in (4, 5):
            members = []
            for m in range(j, j + 3 * vlen, 3):
                off = w[m + 2]
                bf = off >> 24 if kf else 0
                members.append(Member(self, s(w[m]) if w[m] else "", w[m + 1],
                                      off & 0xFFFFFF if kf else off, bf))
            t.members = tuple(members)
        elif k == 6:
            vals = []
            for m in range(j, j + 2 * vlen, 2):
                v = w[m + 1]
                if kf and v >= 1 << 31:
                    v -= 1 << 32
                vals.append(Enumerator(s(w[m]), v))
            t.values = tuple(vals)
        elif k == 19:
            vals = []
            for m in range(j, j + 3 * vlen, 3):
                v = w[m + 1] | (w[m + 2] << 32)
                if kf and v >= 1 << 63:
                    v -= 1 << 64
                vals.append(Enumerator(s(w[m]), v))
            t.values = tuple(vals)
        elif k == 12:
            t.linkage = linkage_name(vlen)
        elif k == 13:
            params = [Member(self, s(w[m]) if w[m] else "", w[m + 1])
                      for m in range(j, j + 2 * vlen, 2)]
            t.variadic = bool(params) and params[-1].type_id == 0 and not params[-1].name
            if t.variadic:
                params.pop()
            t.params = tuple(params)
        elif k == 14:
            t.linkage = linkage_name(w[j])
        elif k == 15:
            t.vars = tuple(VarSecInfo(w[m], w[m + 1], w[m + 2])
                           for m in range(j, j + 3 * vlen, 3))
        elif k == 17:
            v = w[j]
            t.component_idx = v - (1 << 32) if v >= 1 << 31 else v
        return t

    def iter_types(self, kind: str | None = None):
        """Yield every type of this BTF (not the base's), optionally of one kind.

        This decodes all of them: use :meth:`find` to look one up.
        """
        want = _kind_numbers(kind)
        w = self._words
        for j, off in enumerate(self._offsets):
            if want is None or (w[off + 1] >> 24) & 0x1F in want:
                yield self.type(self.first_id + j)

    def find(self, name: str, kind: str | None = None) -> list[Type]:
        """All types called ``name`` (in the base first), optionally only of ``kind``
        (``'func'``, ``'struct'``, ``'union'``, ``'enum'`` (also enum64),
        ``'typedef'`` ...), in type id order.

        >>> from kprobes.btf.build import Builder
        >>> b = Builder(); i = b.int("int", 4); t = b.typedef("int", i)
        >>> [t.kind for t in BTF.from_bytes(b.build()).find("int")]
        ['int', 'typedef']
        """
        want = _kind_numbers(kind)
        out = self.base.find(name, kind) if self.base is not None else []
        keys, w, first = self._names, self._words, self.first_id
        found = []
        for off in self._name_offsets(name):
            lo = off << 32
            p = bisect_left(keys, lo)
            while p < len(keys) and keys[p] >> 32 == off:
                tid = keys[p] & 0xFFFFFFFF
                p += 1
                if want is None or (w[self._offsets[tid - first] + 1] >> 24) & 0x1F in want:
                    found.append(tid)
        found.sort()
        out.extend(self.type(tid) for tid in found)
        return out

    def func_proto(self, name: str) -> FuncSig:
        """The prototype of function ``name`` as a :class:`FuncSig`.

        >>> from kprobes.btf.build import Builder
        >>> BTF.from_bytes(Builder().build()).func_proto("nope")
        Traceback (most recent call last):
        ...
        kprobes.errors.BTFError: no function 'nope' in <bytes>
        """
        funcs = self.find(name, "func")
        if not funcs:
            raise BTFError(f"no function {name!r} in {self.path}",
                           hint="the function may be inlined, or not in BTF "
                                "(static functions are only kept when not inlined)")
        func = funcs[0]
        proto = self.type(func.type_id or 0)
        if proto.kind != "func_proto":
            raise BTFError(f"{self.path}: function {name!r} (type id {func.id}) points at a "
                           f"{proto.kind}, not a func_proto")
        params = [Param(p.name, self.type(p.type_id)) for p in proto.params or ()]
        return FuncSig(name, self.type(proto.type_id or 0), params, bool(proto.variadic), func)

    # ----------------------------------------------------------- type algebra
    def _as_type(self, t: Type | int) -> Type:
        return self.type(t) if isinstance(t, int) else t

    def resolve(self, t: Type | int) -> Type:
        """Strip typedefs, qualifiers and type tags.

        >>> from kprobes.btf.build import Builder
        >>> b = Builder(); i = b.int("int", 4); c = b.const(b.typedef("myint", i))
        >>> BTF.from_bytes(b.build()).resolve(c).name
        'int'
        """
        t = self._as_type(t)
        for _ in range(MAX_CHAIN):
            if KINDS[t.kind] not in _MODIFIERS:
                return t
            t = self.type(t.type_id or 0)
        raise BTFError(f"{self.path}: reference cycle or chain longer than {MAX_CHAIN} "
                       f"at type id {t.id}")

    def strip_cv(self, t: Type | int) -> Type:
        """Strip qualifiers and type tags, but keep typedefs."""
        t = self._as_type(t)
        for _ in range(MAX_CHAIN):
            if t.kind not in ("const", "volatile", "restrict", "type_tag"):
                return t
            t = self.type(t.type_id or 0)
        raise BTFError(f"{self.path}: reference cycle at type id {t.id}")

    def sizeof(self, t: Type | int, *, pointer_size: int = 8) -> int:
        """Size in bytes of a type (arrays multiply out).

        >>> from kprobes.btf.build import Builder
        >>> b = Builder(); i = b.int("int", 4); a = b.array(i, i, 10)
        >>> BTF.from_bytes(b.build()).sizeof(a)
        40
        """
        n = 1
        t = self._as_type(t)
        for _ in range(MAX_CHAIN):
            t = self.resolve(t)
            if t.kind == "ptr":
                return n * pointer_size
            if t.kind == "array":
                n *= t.nelems or 0
                t = self.type(t.type_id or 0)
                continue
            if t.size is None:
                raise BTFError(f"{self.type_name(t)} has no size")
            return n * t.size
        raise BTFError(f"{self.path}: array nesting too deep at type id {t.id}")

    def is_user_pointer(self, t: Type | int) -> bool:
        """True if ``t`` is a pointer whose pointee carries the ``user`` type tag
        (``char __user *`` in kernels built with ``btf_type_tag`` support).

        >>> from kprobes.btf.build import Builder
        >>> b = Builder(); c = b.int("char", 1, char=True)
        >>> up = b.ptr(b.type_tag("user", c)); kp = b.ptr(c)
        >>> btf = BTF.from_bytes(b.build())
        >>> btf.is_user_pointer(up), btf.is_user_pointer(kp)
        (True, False)
        """
        t = self.resolve(t)
        if t.kind != "ptr":
            return False
        t = self.type(t.type_id or 0)
        for _ in range(MAX_CHAIN):
            if t.kind == "type_tag" and t.name == "user":
                return True
            if t.kind not in ("const", "volatile", "restrict", "type_tag"):
                return False
            t = self.type(t.type_id or 0)
        raise BTFError(f"{self.path}: reference cycle at type id {t.id}")

    def type_name(self, t: Type | int) -> str:
        """C spelling of a type: ``'const char *'``, ``'struct file *'``,
        ``'int (*)(void)'``, ``'u8[16]'``.

        >>> from kprobes.btf.build import Builder
        >>> b = Builder(); i = b.int("int", 4, signed=True)
        >>> fp = b.ptr(b.func_proto(i, []))
        >>> BTF.from_bytes(b.build()).type_name(fp)
        'int (*)(void)'
        """
        from kprobes.btf.cdecl import declaration

        return declaration(self, self._as_type(t), "")

    def declaration(self, t: Type | int, name: str) -> str:
        """C declaration of ``name`` with type ``t``: ``'char *buf'``, ``'u8 x[16]'``."""
        from kprobes.btf.cdecl import declaration

        return declaration(self, self._as_type(t), name)

    def __repr__(self) -> str:
        split = f", base={self.base.path!r}" if self.base is not None else ""
        return f"BTF({self.path!r}, types={self.first_id}..{self.last_id}{split})"


def _kind_numbers(kind: str | None) -> tuple[int, ...] | None:
    if kind is None:
        return None
    if kind in _KIND_FILTER:
        return _KIND_FILTER[kind]
    if kind not in KINDS or kind == "void":
        raise BTFError(f"unknown BTF kind {kind!r}",
                       hint="one of: " + ", ".join(k for k in KINDS if k != "void"))
    return (KINDS[kind],)

"""A tiny BTF writer, for tests and examples: build blobs of every kind.

Type ids are handed out in call order (the first type is 1, or the base's
last id + 1 for split BTF), so a type can refer to one added later by
number (``b.next_id``).  :meth:`Builder.raw` appends arbitrary words for
malformed-input tests.

>>> b = Builder()
>>> i = b.int("int", 4, signed=True)
>>> s = b.struct("pair", 8, [("a", i, 0), ("b", i, 32)])
>>> len(b.build())
90
"""

from __future__ import annotations

import builtins
import struct

from kprobes.btf.types import INT_BOOL, INT_CHAR, INT_SIGNED, KINDS

__all__ = ["Builder"]


class Builder:
    """Collects types and strings; :meth:`build` returns the BTF bytes."""

    def __init__(self, base: Builder | None = None) -> None:
        self.base = base
        self._strs = bytearray(b"\0")
        self._str_index: dict[str, int] = {"": 0}
        self._base_strlen = len(base._strs) if base is not None else 0
        self._records: list[list[int]] = []
        self.first_id = base.next_id if base is not None else 1

    @property
    def next_id(self) -> int:
        """The id the next added type will get."""
        return self.first_id + len(self._records)

    def string(self, s: str) -> int:
        """Offset of ``s`` in the string section (added once; base strings reused)."""
        if self.base is not None and s in self.base._str_index:
            return self.base._str_index[s]
        off = self._str_index.get(s)
        if off is None:
            off = self._base_strlen + len(self._strs)
            self._strs += s.encode() + b"\0"
            self._str_index[s] = off
        return off

    def _add(self, kind: str, name: str, vlen: int, size_or_type: int, extra=(),
             kind_flag: bool = False) -> int:
        info = (KINDS[kind] << 24) | (vlen & 0xFFFF) | (int(kind_flag) << 31)
        self._records.append([self.string(name) if name else 0, info, size_or_type, *extra])
        return self.next_id - 1

    def raw(self, *words: int) -> int:
        """Append raw u32 words as one record (for malformed input)."""
        self._records.append(list(words))
        return self.next_id - 1

    # kinds, in BTF_KIND order
    def int(self, name: str, size: builtins.int, *, signed: bool = False, char: bool = False,
            bool_: bool = False, bits: builtins.int | None = None, offset: builtins.int = 0) -> builtins.int:
        enc = (INT_SIGNED if signed else 0) | (INT_CHAR if char else 0) | (INT_BOOL if bool_ else 0)
        nbits = size * 8 if bits is None else bits
        return self._add("int", name, 0, size, [(enc << 24) | (offset << 16) | nbits])

    def ptr(self, target: builtins.int) -> builtins.int:
        return self._add("ptr", "", 0, target)

    def array(self, elem: builtins.int, index: builtins.int, nelems: builtins.int) -> builtins.int:
        return self._add("array", "", 0, 0, [elem, index, nelems])

    def _composite(self, kind: str, name: str, size: builtins.int, members) -> builtins.int:
        extra: list[int] = []
        kf = any(len(m) > 3 and m[3] for m in members)
        for m in members:
            mname, mtype, bit_off = m[0], m[1], m[2]
            bf = m[3] if len(m) > 3 else 0
            extra += [self.string(mname) if mname else 0, mtype,
                      (bf << 24 | bit_off) if kf else bit_off]
        return self._add(kind, name, len(members), size, extra, kind_flag=kf)

    def struct(self, name: str, size: builtins.int, members) -> builtins.int:
        """``members``: (name, type_id, bit_offset[, bitfield_size]) tuples."""
        return self._composite("struct", name, size, members)

    def union(self, name: str, size: builtins.int, members) -> builtins.int:
        return self._composite("union", name, size, members)

    def enum(self, name: str, size: builtins.int, values, *, signed: bool = False) -> builtins.int:
        extra: list[int] = []
        for vname, v in values:
            extra += [self.string(vname), v & 0xFFFFFFFF]
        return self._add("enum", name, len(values), size, extra, kind_flag=signed)

    def fwd(self, name: str, *, union: bool = False) -> builtins.int:
        return self._add("fwd", name, 0, 0, kind_flag=union)

    def typedef(self, name: str, target: builtins.int) -> builtins.int:
        return self._add("typedef", name, 0, target)

    def volatile(self, target: builtins.int) -> builtins.int:
        return self._add("volatile", "", 0, target)

    def const(self, target: builtins.int) -> builtins.int:
        return self._add("const", "", 0, target)

    def restrict(self, target: builtins.int) -> builtins.int:
        return self._add("restrict", "", 0, target)

    def func(self, name: str, proto: builtins.int, linkage: builtins.int = 0) -> builtins.int:
        return self._add("func", name, linkage, proto)

    def func_proto(self, ret: builtins.int, params, *, variadic: bool = False) -> builtins.int:
        """``params``: (name, type_id) tuples."""
        extra: list[int] = []
        for pname, ptype in params:
            extra += [self.string(pname) if pname else 0, ptype]
        n = len(params)
        if variadic:
            extra += [0, 0]
            n += 1
        return self._add("func_proto", "", n, ret, extra)

    def var(self, name: str, target: builtins.int, linkage: builtins.int = 1) -> builtins.int:
        return self._add("var", name, 0, target, [linkage])

    def datasec(self, name: str, size: builtins.int, vars_) -> builtins.int:
        """``vars_``: (var_type_id, offset, size) tuples."""
        extra: list[int] = []
        for v in vars_:
            extra += list(v)
        return self._add("datasec", name, len(vars_), size, extra)

    def float(self, name: str, size: builtins.int) -> builtins.int:
        return self._add("float", name, 0, size)

    def decl_tag(self, name: str, target: builtins.int, component_idx: builtins.int = -1) -> builtins.int:
        return self._add("decl_tag", name, 0, target, [component_idx & 0xFFFFFFFF])

    def type_tag(self, name: str, target: builtins.int) -> builtins.int:
        return self._add("type_tag", name, 0, target)

    def enum64(self, name: str, size: builtins.int, values, *, signed: bool = False) -> builtins.int:
        extra: list[int] = []
        for vname, v in values:
            v &= (1 << 64) - 1
            extra += [self.string(vname), v & 0xFFFFFFFF, v >> 32]
        return self._add("enum64", name, len(values), size, extra, kind_flag=signed)

    def build(self, *, magic: builtins.int = 0xEB9F, version: builtins.int = 1, flags: builtins.int = 0,
              hdr_len: builtins.int = 24, big_endian: bool = False) -> bytes:
        """The BTF bytes: header, type section, string section."""
        o = ">" if big_endian else "<"
        types = b"".join(struct.pack(f"{o}{len(r)}I", *r) for r in self._records)
        strs = bytes(self._strs)
        hdr = struct.pack(f"{o}HBBIIIII", magic, version, flags, hdr_len,
                          0, len(types), len(types), len(strs))
        hdr = hdr + b"\0" * (hdr_len - len(hdr)) if hdr_len >= len(hdr) else hdr[:hdr_len]
        return hdr + types + strs

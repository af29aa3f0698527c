"""Decoded BTF values: :class:`Type` and the small records hanging off it.

A :class:`Type` is created by :meth:`kprobes.btf.BTF.type` the first time a
type id is asked for, and memoised.  References between types are kept as
type ids and turned into :class:`Type` objects on access (``t.ref``,
``member.type``), so decoding one struct never decodes the whole graph.

>>> from kprobes.btf.types import KIND_NAMES
>>> KIND_NAMES[4], KIND_NAMES[13]
('struct', 'func_proto')
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (import cost)
if TYPE_CHECKING:  # pragma: no cover
    from typing import Protocol

    class BTF(Protocol):
        """What a :class:`Type` and :mod:`.cdecl` need of a type table
        (:class:`kprobes.btf.reader.BTF` is one; named here, not imported,
        so that the reader, which builds types, is not imported back)."""

        path: str

        def type(self, tid: int) -> Type: ...

        def strip_cv(self, t: Type | int) -> Type: ...

__all__ = [
    "KIND_NAMES",
    "KINDS",
    "INT_SIGNED",
    "INT_CHAR",
    "INT_BOOL",
    "Type",
    "Member",
    "Param",
    "Enumerator",
    "VarSecInfo",
    "FuncSig",
]

#: BTF kind number -> our name for it (``include/uapi/linux/btf.h`` BTF_KIND_*).
KIND_NAMES: dict[int, str] = {
    0: "void",
    1: "int",
    2: "ptr",
    3: "array",
    4: "struct",
    5: "union",
    6: "enum",
    7: "fwd",
    8: "typedef",
    9: "volatile",
    10: "const",
    11: "restrict",
    12: "func",
    13: "func_proto",
    14: "var",
    15: "datasec",
    16: "float",
    17: "decl_tag",
    18: "type_tag",
    19: "enum64",
}
#: our kind name -> BTF kind number
KINDS: dict[str, int] = {v: k for k, v in KIND_NAMES.items()}

# BTF_INT_ENCODING bits
INT_SIGNED = 1
INT_CHAR = 2
INT_BOOL = 4

_LINKAGE = {0: "static", 1: "global", 2: "extern"}


class Type:
    """One BTF type.

    Common attributes: ``id``, ``kind`` (``'int'``, ``'ptr'``, ``'struct'`` ...,
    see :data:`KIND_NAMES`), ``name`` (``''`` when anonymous), ``kind_flag``,
    ``size`` (bytes, for int/struct/union/enum/enum64/float/datasec, else
    ``None``) and ``type_id`` (the referenced type for ptr, typedef,
    qualifiers, type/decl tags, func, var, array element and the return type
    of a func_proto, else ``None``).

    Kind-specific attributes (``None`` when they do not apply):
    ``encoding``/``bit_offset``/``bits`` (int), ``index_type_id``/``nelems``
    (array), ``members`` (struct/union), ``values`` (enum/enum64),
    ``params``/``variadic`` (func_proto), ``linkage`` (func/var),
    ``vars`` (datasec), ``component_idx`` (decl_tag).

    >>> from kprobes.btf import BTF
    >>> from kprobes.btf.build import Builder
    >>> b = Builder(); i = b.int("int", 4, signed=True)
    >>> BTF.from_bytes(b.build()).type(i)
    Type(1, int 'int', size=4)
    """

    __slots__ = (
        "_btf", "id", "kind", "name", "kind_flag", "size", "type_id",
        "encoding", "bit_offset", "bits", "index_type_id", "nelems",
        "members", "values", "params", "variadic", "linkage", "vars",
        "component_idx",
    )

    def __init__(self, btf: BTF | None, tid: int, kind: str, name: str = "",
                 kind_flag: bool = False, size: int | None = None,
                 type_id: int | None = None) -> None:
        self._btf = btf
        self.id = tid
        self.kind = kind
        self.name = name
        self.kind_flag = kind_flag
        self.size = size
        self.type_id = type_id
        self.encoding: int | None = None
        self.bit_offset: int | None = None
        self.bits: int | None = None
        self.index_type_id: int | None = None
        self.nelems: int | None = None
        self.members: tuple[Member, ...] | None = None
        self.values: tuple[Enumerator, ...] | None = None
        self.params: tuple[Member, ...] | None = None
        self.variadic: bool | None = None
        self.linkage: str | None = None
        self.vars: tuple[VarSecInfo, ...] | None = None
        self.component_idx: int | None = None

    @property
    def ref(self) -> Type | None:
        """The referenced :class:`Type` (``type_id`` decoded), or ``None``."""
        if self.type_id is None or self._btf is None:
            return None
        return self._btf.type(self.type_id)

    @property
    def is_signed(self) -> bool:
        """True for signed ints and enums whose kind_flag says signed."""
        if self.kind == "int":
            return bool((self.encoding or 0) & INT_SIGNED)
        if self.kind in ("enum", "enum64"):
            return self.kind_flag
        return False

    def member(self, name: str) -> Member:
        """The direct member ``name`` of a struct/union (KeyError if absent)."""
        for m in self.members or ():
            if m.name == name:
                return m
        raise KeyError(name)

    def __repr__(self) -> str:
        label = f"{self.kind} '{self.name}'" if self.name else f"{self.kind} (anon)"
        extra = f", size={self.size}" if self.size is not None else ""
        if self.type_id is not None:
            extra += f", type_id={self.type_id}"
        return f"Type({self.id}, {label}{extra})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Type):
            return NotImplemented
        return self.id == other.id and self._btf is other._btf

    def __hash__(self) -> int:
        return hash((self.id, id(self._btf)))


class Member:
    """A struct/union member or a func_proto parameter.

    ``bit_offset`` is from the start of the enclosing struct (0 for params),
    ``bitfield_size`` is 0 unless the member is a bitfield.  ``type`` decodes
    the member's type on access.
    """

    __slots__ = ("_btf", "name", "type_id", "bit_offset", "bitfield_size")

    def __init__(self, btf: BTF | None, name: str, type_id: int, bit_offset: int = 0,
                 bitfield_size: int = 0) -> None:
        self._btf = btf
        self.name = name
        self.type_id = type_id
        self.bit_offset = bit_offset
        self.bitfield_size = bitfield_size

    @property
    def type(self) -> Type:
        """The member's :class:`Type`."""
        assert self._btf is not None
        return self._btf.type(self.type_id)

    @property
    def offset(self) -> int:
        """Byte offset (bit offset // 8)."""
        return self.bit_offset // 8

    def __repr__(self) -> str:
        bf = f":{self.bitfield_size}" if self.bitfield_size else ""
        return f"Member({self.name or '(anon)'}{bf}, type_id={self.type_id}, bit_offset={self.bit_offset})"


class Param:
    """A function parameter with its decoded type (what :class:`FuncSig` holds)."""

    __slots__ = ("name", "type")

    def __init__(self, name: str, type: Type) -> None:  # noqa: A002 - API name
        self.name = name
        self.type = type

    def __repr__(self) -> str:
        return f"Param({self.name!r}, {self.type!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Param):
            return NotImplemented
        return (self.name, self.type) == (other.name, other.type)

    def __hash__(self) -> int:
        return hash((self.name, self.type))


class Enumerator:
    """One ``NAME = value`` of an enum or enum64."""

    __slots__ = ("name", "value")

    def __init__(self, name: str, value: int) -> None:
        self.name = name
        self.value = value

    def __repr__(self) -> str:
        return f"Enumerator({self.name!r}, {self.value})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Enumerator):
            return NotImplemented
        return (self.name, self.value) == (other.name, other.value)

    def __hash__(self) -> int:
        return hash((self.name, self.value))


class VarSecInfo:
    """One variable of a DATASEC: its VAR type id, offset and size."""

    __slots__ = ("type_id", "offset", "size")

    def __init__(self, type_id: int, offset: int, size: int) -> None:
        self.type_id = type_id
        self.offset = offset
        self.size = size

    def __repr__(self) -> str:
        return f"VarSecInfo(type_id={self.type_id}, offset={self.offset}, size={self.size})"


class FuncSig:
    """A function's prototype: ``name``, return type ``ret``, ``params`` (list of
    :class:`Param`), whether it is ``variadic``, and the ``func`` Type itself.

    >>> from kprobes.btf import BTF
    >>> from kprobes.btf.build import Builder
    >>> b = Builder(); i = b.int("int", 4, signed=True)
    >>> f = b.func("f", b.func_proto(i, [("x", i)]))
    >>> sig = BTF.from_bytes(b.build()).func_proto("f")
    >>> sig.name, [p.name for p in sig.params], sig.ret.name
    ('f', ['x'], 'int')
    """

    __slots__ = ("name", "ret", "params", "variadic", "func")

    def __init__(self, name: str, ret: Type, params: list[Param], variadic: bool = False,
                 func: Type | None = None) -> None:
        self.name = name
        self.ret = ret
        self.params = params
        self.variadic = variadic
        self.func = func

    def param(self, name: str) -> tuple[int, Param]:
        """(0-based index, Param) of the parameter ``name`` (KeyError if absent)."""
        for i, p in enumerate(self.params):
            if p.name == name:
                return i, p
        raise KeyError(name)

    def __repr__(self) -> str:
        return f"FuncSig({self.name!r}, ret={self.ret!r}, params={self.params!r})"


def linkage_name(value: int) -> str:
    """BTF linkage number -> ``'static'``/``'global'``/``'extern'``.

    >>> linkage_name(1)
    'global'
    """
    return _LINKAGE.get(value, f"linkage{value}")

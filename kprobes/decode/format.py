"""Event formats (``events/<G>/<E>/format``): what a record of an event holds.

A tracefs ``format`` file describes the payload of one event as it sits in
the ring buffer::

    name: sys_enter_getppid
    ID: 305
    format:
    \tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
    \tfield:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;
    \tfield:unsigned char common_preempt_count;\toffset:3;\tsize:1;\tsigned:0;
    \tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;

    \tfield:int __syscall_nr;\toffset:8;\tsize:4;\tsigned:1;

    print fmt: ""

:func:`parse_format` turns that text into an :class:`EventFormat`, and a
:class:`RecordDecoder` compiled from it turns payload bytes into values:

>>> fmt = parse_format(text, system="syscalls")          # doctest: +SKIP
>>> dec = RecordDecoder(fmt)                             # doctest: +SKIP
>>> dec.decode(page, start)                              # doctest: +SKIP
(1, 0, 4242, {'__syscall_nr': 110})

What the file says, and what we trust
-------------------------------------
* ``offset``, ``size`` and ``signed`` place the bytes. One exception: a
  scalar whose declared C type is a known integer type narrower than its
  ``size`` is read as that C type, i.e. its low bytes with the C type's
  signedness. Syscall tracepoints store every argument as an ``unsigned
  long`` but declare it by its C type (``field:int dfd; offset:16; size:8;
  signed:0;``): the kernel's zero-extended 32-bit ``-100`` then reads as
  ``-100`` (``AT_FDCWD``), not ``4294967196``; ``umode_t mode`` as its 16
  bits. Field kinds:

  ``int``         a scalar (any size; 1/2/4/8 come straight out of ``struct``)
  ``data_loc``    ``__data_loc T[] name`` (and ``__rel_loc``): a u32 whose low
                  16 bits are the offset of the data (from the record start,
                  or from the end of the u32 for ``__rel_loc``) and whose high
                  16 bits are its length. ``char[]`` gives ``str``; a length
                  of 0 is a probe's fetch fault and gives :data:`FAULT`.
                  Other element types give a tuple of ints, unknown ones
                  (``cpumask_t``) ``bytes``. Probe ``string[N]`` args appear
                  as ``__data_loc char[][N]`` (N locs) and give a tuple.
  ``array``       ``T name[N]`` -> tuple of ints. Probe args write ``u8 a[]``
                  with ``size`` the whole array, so the element size comes from
                  the type name; ``T name[]`` with ``size:0`` is a flexible
                  array running to the end of the record.
  ``char_array``  ``char name[N]`` -> ``str`` up to the first NUL.

* Probe fetch types the format cannot show (``x32`` prints as ``u32``,
  ``char`` as ``u8``, ``symbol`` as ``u64``) come from the probe definition:
  pass them as ``types`` to :class:`RecordDecoder`.

The decoder compiled from a format is in :mod:`.record`; the ``common_flags``
bits are in :mod:`.flags`.
"""

from __future__ import annotations

import re

from kprobes.errors import DecodeError
from kprobes.values import Frozen, _set

TYPE_CHECKING = False   # typing's, without importing typing at run time
if TYPE_CHECKING:
    pass

__all__ = [
    "Field",
    "EventFormat",
    "Fault",
    "FAULT",
    "parse_format",
    "parse_field_line",
    "declared_int",
]


# --------------------------------------------------------------------------
# Fault marker


class Fault:
    """The value of a probe argument whose fetch faulted.

    The kernel stores an empty ``__data_loc`` (length 0) when it could not
    read a string; the decoder returns :data:`FAULT` for it. It is falsy,
    compares equal only to itself and survives pickling as the same object.

    >>> FAULT
    <fault>
    >>> bool(FAULT)
    False
    """

    __slots__ = ()
    _instance: Fault | None = None

    def __new__(cls) -> Fault:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "<fault>"

    def __bool__(self) -> bool:
        return False

    def __reduce__(self) -> tuple[type[Fault], tuple[()]]:
        return (Fault, ())


FAULT = Fault()


# --------------------------------------------------------------------------
# Parsing


class Field(Frozen):
    """One field of an event payload.

    ``decl`` is the C type as in the file with the name taken out
    (``'char[16]'``, ``'__data_loc char[]'``, ``'u8[]'``, ``'const char *'``).
    ``elem_size``/``count`` describe arrays (``count`` is None for a
    flexible array or a single ``__data_loc``); for scalars ``elem_size`` is
    ``size`` and ``count`` None.
    """

    __slots__ = _fields = ("name", "decl", "offset", "size", "signed", "kind", "elem_size",
                           "count", "is_common")
    name: str
    decl: str
    offset: int
    size: int
    signed: bool
    kind: str  # 'int' | 'data_loc' | 'array' | 'char_array'
    elem_size: int
    count: int | None
    is_common: bool

    def __init__(self, name: str, decl: str, offset: int, size: int, signed: bool, kind: str,
                 elem_size: int, count: int | None, is_common: bool) -> None:
        _set(self, "name", name)
        _set(self, "decl", decl)
        _set(self, "offset", offset)
        _set(self, "size", size)
        _set(self, "signed", signed)
        _set(self, "kind", kind)
        _set(self, "elem_size", elem_size)
        _set(self, "count", count)
        _set(self, "is_common", is_common)

    @property
    def is_string(self) -> bool:
        """A ``__data_loc char[]`` (one string, or a tuple of them)."""
        return self.kind == "data_loc" and _loc_elem_type(self.decl) == "char"

    @property
    def is_rel_loc(self) -> bool:
        """``__rel_loc``: the data offset counts from the end of the u32."""
        return self.decl.startswith("__rel_loc")


class EventFormat(Frozen):
    """A parsed ``format`` file. ``id`` is the event's ``common_type``."""

    __slots__ = ("system", "name", "id", "fields", "print_fmt", "_by_name")
    _fields = ("system", "name", "id", "fields", "print_fmt")
    system: str
    name: str
    id: int
    fields: tuple[Field, ...]
    print_fmt: str
    _by_name: dict[str, Field]

    def __init__(self, system: str, name: str, id: int, fields: tuple[Field, ...],
                 print_fmt: str) -> None:
        _set(self, "system", system)
        _set(self, "name", name)
        _set(self, "id", id)
        _set(self, "fields", fields)
        _set(self, "print_fmt", print_fmt)
        _set(self, "_by_name", {f.name: f for f in fields})

    def field(self, name: str) -> Field:
        """The field called ``name`` (KeyError if there is none)."""
        try:
            return self._by_name[name]
        except KeyError:
            raise KeyError(f"event {self.system}/{self.name} has no field {name!r}") from None

    @property
    def common_fields(self) -> tuple[Field, ...]:
        """``common_type``, ``common_flags``, ``common_preempt_count``, ``common_pid``."""
        return tuple(f for f in self.fields if f.is_common)

    @property
    def arg_fields(self) -> tuple[Field, ...]:
        """Every field that is not common, in file order."""
        return tuple(f for f in self.fields if not f.is_common)


_FIELD_RE = re.compile(
    r"^\s*field:\s*(?P<decl>[^;]+?)\s*;"
    r"\s*offset:\s*(?P<offset>\d+)\s*;"
    r"\s*size:\s*(?P<size>\d+)\s*;"
    r"(?:\s*signed:\s*(?P<signed>[01])\s*;)?\s*$"
)
# "TYPE NAME", "TYPE NAME[N]", "TYPE NAME[]", "__data_loc char[] NAME", "__data_loc char[][2] NAME"
_DECL_RE = re.compile(r"^(?P<type>.*?)\s*\b(?P<name>[A-Za-z_]\w*)\s*(?P<dims>(?:\[[^\]]*\]\s*)*)$")
_DIM_RE = re.compile(r"\[([^\]]*)\]")

# Element sizes for types whose size the file does not give per element
# (probe arrays "u8 a[]", __data_loc arrays, flexible arrays). 64-bit longs:
# the decoder runs against the kernel it runs on, and x86-64/arm64 are LP64.
_TYPE_SIZES = {
    "char": 1, "signed char": 1, "unsigned char": 1, "bool": 1, "_Bool": 1,
    "short": 2, "signed short": 2, "unsigned short": 2, "short int": 2,
    "unsigned short int": 2,
    "int": 4, "signed int": 4, "unsigned int": 4, "unsigned": 4, "signed": 4,
    "long": 8, "signed long": 8, "unsigned long": 8, "long int": 8, "unsigned long int": 8,
    "long long": 8, "unsigned long long": 8, "long long int": 8,
    "unsigned long long int": 8,
    "size_t": 8, "ssize_t": 8, "pid_t": 4, "uid_t": 4, "gid_t": 4, "dev_t": 4,
    "loff_t": 8, "gfp_t": 4, "umode_t": 2,
}
_FIXED_INT_RE = re.compile(r"^(?:__)?(?:u|s|x|uint|int)(8|16|32|64)(?:_t)?$")


def _type_size(ctype: str) -> int | None:
    t = " ".join(w for w in ctype.split() if w not in ("const", "volatile", "struct"))
    if t.endswith("*"):
        return 8
    if t in _TYPE_SIZES:
        return _TYPE_SIZES[t]
    m = _FIXED_INT_RE.match(t)
    if m:
        return int(m.group(1)) // 8
    return None


_SIGNED_TYPES = {"short", "signed short", "short int", "signed short int", "int", "signed int",
                 "signed", "signed char", "pid_t", "long", "signed long", "long int",
                 "long long", "long long int", "loff_t", "ssize_t"}


def declared_int(ctype: str) -> tuple[int, bool] | None:
    """(size, signed) of a C integer type, None for others (and for plain
    ``char``, whose signedness depends on the architecture).

    >>> declared_int("int"), declared_int("umode_t"), declared_int("const u16")
    ((4, True), (2, False), (2, False))
    >>> declared_int("const char *") is None, declared_int("char") is None
    (True, True)
    """
    t = " ".join(w for w in ctype.split() if w not in ("const", "volatile"))
    if t == "char" or t.endswith("*"):
        return None
    m = _FIXED_INT_RE.match(t)
    if m:
        return int(m.group(1)) // 8, not t.lstrip("_").startswith(("u", "x"))
    size = _TYPE_SIZES.get(t)
    if size is None:
        return None
    return size, t in _SIGNED_TYPES


def _base_type(ctype: str) -> str:
    return " ".join(w for w in ctype.split() if w not in ("const", "volatile"))


def _loc_elem_type(decl: str) -> str:
    """'__data_loc char[][2]' -> 'char'; '__data_loc cpumask_t' -> 'cpumask_t'."""
    t = decl.split(None, 1)[1] if " " in decl else ""
    return _base_type(t.split("[", 1)[0])


def parse_field_line(line: str, *, is_common: bool | None = None) -> Field:
    """Parse one ``field:...;offset:...;size:...;signed:...;`` line.

    Also reads the ``events/header_page`` lines (``field: u64 timestamp;``).
    Raises :class:`DecodeError` when the line does not have that shape.
    """
    m = _FIELD_RE.match(line)
    if not m:
        raise DecodeError(f"malformed field line: {line.strip()!r}")
    decl_text = m.group("decl")
    offset = int(m.group("offset"))
    size = int(m.group("size"))
    signed = m.group("signed") == "1"

    loc = decl_text.startswith(("__data_loc ", "__rel_loc "))
    if loc:
        # the name is the last word; the type may contain "[]" and "[][N]"
        parts = decl_text.rsplit(None, 1)
        if len(parts) != 2 or not re.fullmatch(r"[A-Za-z_]\w*", parts[1]):
            raise DecodeError(f"malformed __data_loc declaration: {decl_text!r}")
        ctype, name = parts[0], parts[1]
        dims: list[str] = []
    else:
        d = _DECL_RE.match(decl_text)
        if not d or not d.group("type"):
            raise DecodeError(f"malformed field declaration: {decl_text!r}")
        name = d.group("name")
        dims = _DIM_RE.findall(d.group("dims"))
        ctype = d.group("type")

    common = name.startswith("common_") if is_common is None else is_common

    if loc:
        inner = ctype.split(None, 1)[1] if " " in ctype else ""
        elem = _loc_elem_type(ctype)
        n_locs = _DIM_RE.findall(inner)
        count: int | None = None
        if len(n_locs) >= 2:  # "char[][2]": an array of locs
            try:
                count = int(n_locs[1], 0)
            except ValueError:
                count = size // 4 if size else None
        if size != 4 * (count or 1):
            raise DecodeError(f"field {name}: __data_loc of size {size}")
        esize = _type_size(elem) or 1
        return Field(name, ctype, offset, size, signed, "data_loc", esize, count, common)

    if not dims:
        return Field(name, ctype, offset, size, signed, "int", size, None, common)

    decl = ctype + "".join(f"[{x}]" for x in dims)
    base = _base_type(ctype)
    total: int | None = 1
    for x in dims:
        try:
            n = int(x, 0)
        except ValueError:
            total = None
            break
        total = total * n if total is not None else None
    if total and total > 0 and size % total == 0:
        count = total
        esize = size // total
    else:
        esize = _type_size(base) or 1
        if size == 0:
            count = None  # flexible array: runs to the end of the record
        elif size % esize:
            raise DecodeError(f"field {name}: size {size} is not a multiple of {esize}")
        else:
            count = size // esize
    kind = "char_array" if base == "char" and esize == 1 else "array"
    return Field(name, decl, offset, size, signed, kind, esize, count, common)


def parse_format(text: str, system: str | None = None) -> EventFormat:
    """Parse the text of ``events/<system>/<event>/format``.

    The file does not name its system; pass it as ``system``. Raises
    :class:`DecodeError` when a required part (``name:``, ``ID:``,
    ``format:``, field lines) is missing or malformed, or two fields share a
    name.
    """
    name: str | None = None
    ev_id: int | None = None
    in_format = False
    fields: list[Field] = []
    print_fmt = ""
    for lineno, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not stripped:
            continue
        if stripped.startswith("print fmt:"):
            print_fmt = stripped[len("print fmt:"):].strip()
            break
        if not in_format:
            if stripped.startswith("name:"):
                name = stripped[5:].strip()
            elif stripped.startswith("ID:"):
                try:
                    ev_id = int(stripped[3:].strip())
                except ValueError:
                    raise DecodeError(f"line {lineno}: bad ID {stripped!r}") from None
            elif stripped == "format:":
                in_format = True
            else:
                raise DecodeError(f"line {lineno}: unexpected {stripped!r}")
            continue
        if not stripped.startswith("field:"):
            raise DecodeError(f"line {lineno}: expected a field, got {stripped!r}")
        try:
            fields.append(parse_field_line(line))
        except DecodeError as e:
            raise DecodeError(f"line {lineno}: {e}") from None
    if not name:
        raise DecodeError("format has no 'name:' line")
    if ev_id is None:
        raise DecodeError(f"format of {name} has no 'ID:' line")
    if not in_format:
        raise DecodeError(f"format of {name} has no 'format:' section")
    if not fields:
        raise DecodeError(f"format of {name} has no fields")
    seen: set[str] = set()
    for f in fields:
        if f.name in seen:
            raise DecodeError(f"format of {name}: field {f.name!r} appears twice")
        seen.add(f.name)
    return EventFormat(system or "", name, ev_id, tuple(fields), print_fmt)

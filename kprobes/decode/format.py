"""Event formats (``events/<G>/<E>/format``) and a fast record decoder.

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

Design of the decoder (speed)
-----------------------------
One :class:`struct.Struct` per format covers every field from ``common_flags``
on, in offset order, with pad bytes for gaps, in host byte order (the ring
buffer is written by this kernel, in its own byte order). Each field yields
exactly one value: scalars of 1/2/4/8 bytes are native ``struct`` codes, a
``__data_loc`` is its raw u32, and arrays, char arrays and odd-sized scalars
are ``Ns`` byte strings. So the args dict is always
``dict(zip(names, values[3:]))`` - one C-level call - and only the fields
that need it (strings, arrays, ``char`` types) are then patched by a short
list of per-field converters. A format of plain integers (most probe events)
has no converters at all; ``decode_many`` then is a single list
comprehension over ``map(unpack_from, ...)``. Measured on the project's host
(Python 3.11, Firecracker VM): ~1.6 million ``sys_enter_getppid`` records/s
through ``decode_many``; a uprobe record with four strings, two arrays and
twelve ints ~0.24 million/s (each string costs ~0.4 us: slice, NUL check,
UTF-8 decode).

Not compiled to Python source (no ``exec``): the per-format work is data -
one Struct, a names tuple, a converter list - so it can be inspected and
tested like any other value.

The ``common_flags`` bits are in :mod:`.flags`.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from itertools import repeat

from kprobes.errors import DecodeError

TYPE_CHECKING = False   # typing's, without importing typing at run time
if TYPE_CHECKING:
    from typing import Any

__all__ = [
    "Field",
    "EventFormat",
    "RecordDecoder",
    "Fault",
    "FAULT",
    "parse_format",
    "parse_field_line",
    "common_type",
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


@dataclass(frozen=True, slots=True)
class Field:
    """One field of an event payload.

    ``decl`` is the C type as in the file with the name taken out
    (``'char[16]'``, ``'__data_loc char[]'``, ``'u8[]'``, ``'const char *'``).
    ``elem_size``/``count`` describe arrays (``count`` is None for a
    flexible array or a single ``__data_loc``); for scalars ``elem_size`` is
    ``size`` and ``count`` None.
    """

    name: str
    decl: str
    offset: int
    size: int
    signed: bool
    kind: str  # 'int' | 'data_loc' | 'array' | 'char_array'
    elem_size: int
    count: int | None
    is_common: bool

    @property
    def is_string(self) -> bool:
        """A ``__data_loc char[]`` (one string, or a tuple of them)."""
        return self.kind == "data_loc" and _loc_elem_type(self.decl) == "char"

    @property
    def is_rel_loc(self) -> bool:
        """``__rel_loc``: the data offset counts from the end of the u32."""
        return self.decl.startswith("__rel_loc")


@dataclass(frozen=True, slots=True)
class EventFormat:
    """A parsed ``format`` file. ``id`` is the event's ``common_type``."""

    system: str
    name: str
    id: int
    fields: tuple[Field, ...]
    print_fmt: str
    _by_name: dict[str, Field] = field(default_factory=dict, init=False, repr=False,
                                       compare=False, hash=False)

    def __post_init__(self) -> None:
        self._by_name.update((f.name, f) for f in self.fields)

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


# --------------------------------------------------------------------------
# Decoding

_INT_CODES = {(1, False): "B", (1, True): "b", (2, False): "H", (2, True): "h",
              (4, False): "I", (4, True): "i", (8, False): "Q", (8, True): "q"}
_U16 = struct.Struct("=H")

_COMMON = ("common_flags", "common_preempt_count", "common_pid")

_PROBE_TYPE_RE = re.compile(
    r"^(?P<base>[usx](?:8|16|32|64)|char|string|ustring|symbol|symstr|%pd|%pD"
    r"|b\d+@\d+/\d+)(?:\[(?P<n>\d+)\])?$"
)


def common_type(buf: bytes | bytearray | memoryview, offset: int = 0) -> int:
    """The ``common_type`` (event id) of the record at ``offset``."""
    return _U16.unpack_from(buf, offset)[0]


def _str(raw: bytes) -> str:
    i = raw.find(0)
    if i >= 0:
        raw = raw[:i]
    return raw.decode("utf-8", "surrogateescape")


Converter = Callable[["Any", int, int, "Any"], "Any"]


class RecordDecoder:
    """Decode payloads of one event format, fast.

    ``types`` maps arg names to the fetch type written in the probe
    definition (``'x32'``, ``'s64'``, ``'string'``, ``'char'``, ``'u8[4]'``,
    ``'symbol'``...). It only adds what the format cannot say: x-types are
    listed in :attr:`hex_fields`, ``symbol`` in :attr:`symbol_fields`,
    ``char`` gives a one-character ``str`` and ``char[N]`` a ``str`` up to
    the first NUL. Signedness always comes from the format.

    :meth:`decode` returns ``(common_flags, common_preempt_count,
    common_pid, args)``; ``args`` maps each non-common field, in offset
    order, to its value.
    """

    __slots__ = ("fmt", "types", "names", "hex_fields", "symbol_fields", "_struct",
                 "_unpack", "_fast_common", "_all_names", "_common_names", "_converters",
                 "_min_len", "plain", "layout")

    def __init__(self, fmt: EventFormat, types: Mapping[str, str] | None = None) -> None:
        self.fmt = fmt
        self.types: dict[str, str] = dict(types or {})
        hexes: set[str] = set()
        symbols: set[str] = set()
        arg_names = {f.name for f in fmt.arg_fields}
        for n, t in self.types.items():
            if n not in arg_names:
                raise DecodeError(f"type given for {n!r}, which event {fmt.system}/{fmt.name} "
                                  "does not have")
            m = _PROBE_TYPE_RE.match(t.strip())
            if not m:
                raise DecodeError(f"unknown fetch type {t!r} for {n!r}")
            if m.group("base").startswith("x"):
                hexes.add(n)
            elif m.group("base") == "symbol":
                symbols.add(n)
        self.hex_fields = frozenset(hexes)
        self.symbol_fields = frozenset(symbols)

        for c in _COMMON:
            if c not in fmt._by_name:
                raise DecodeError(f"event {fmt.system}/{fmt.name} has no {c} field")

        ordered = sorted((f for f in fmt.fields if f.name != "common_type"),
                         key=lambda f: f.offset)
        codes = ["="]
        pos = 0
        names: list[str] = []
        converters: list[tuple[str, Converter]] = []
        layout: list[tuple[int, str]] | None = [] if _LE else None   # columns: LE only
        for f in ordered:
            if f.name in names:
                raise DecodeError(f"event {fmt.name}: two fields named {f.name}")
            if f.offset < pos:
                raise DecodeError(f"event {fmt.name}: field {f.name} overlaps the one before it")
            if f.offset > pos:
                codes.append(f"{f.offset - pos}x")
            code = self._code(f)
            codes.append(code)
            if layout is not None:   # where each value's bytes are, and their native code
                one = code[0]
                layout = (layout + [(f.offset, one)] if one in "BbHhIiQq" and code.strip(one)
                          in ("", f"{f.size - struct.calcsize(one)}x") else None)
            pos = f.offset + f.size
            names.append(f.name)
            conv = self._converter(f, self.types.get(f.name))
            if conv is not None:
                if f.is_common:     # decoded into the common columns, never converted
                    raise DecodeError(f"event {fmt.name}: common field {f.name} is not a "
                                      f"plain integer ({f.decl}, size {f.size})")
                converters.append((f.name, conv))
        self._struct = struct.Struct("".join(codes))
        self._unpack = self._struct.unpack_from
        self._min_len = self._struct.size
        self._all_names = tuple(names)
        self._fast_common = tuple(names[:3]) == _COMMON
        self._common_names = tuple(n for n in names if fmt._by_name[n].is_common)
        self.names: tuple[str, ...] = tuple(n for n in names if not fmt._by_name[n].is_common)
        if self._fast_common and any(fmt._by_name[n].is_common for n in names[3:]):
            self._fast_common = False  # extra common_* fields (old kernels): general path
        self._converters = tuple(converters)
        #: every field decodes to its raw ``struct`` value and the common fields
        #: come first: :meth:`rows` is one C-level unpack per record
        self.plain: bool = self._fast_common and not self._converters
        #: plain and all integers: per value ``(offset, array code)``, in
        #: ``(*common, *names)`` order, for column-wise slicing (decode.columns)
        self.layout: tuple[tuple[int, str], ...] | None = (
            tuple(layout) if self.plain and layout is not None else None)

    # -- compile helpers

    @staticmethod
    def _code(f: Field) -> str:
        if f.kind == "int" and (f.size, f.signed) in _INT_CODES:
            narrow = declared_int(f.decl)
            if narrow is not None and narrow[0] < f.size:
                code, pad = _INT_CODES[narrow], f"{f.size - narrow[0]}x"
                return code + pad if _LE else pad + code     # the low bytes
            return _INT_CODES[f.size, f.signed]
        if f.kind == "data_loc" and f.count is None:
            return "I"
        return f"{f.size}s"

    @staticmethod
    def _converter(f: Field, ptype: str | None) -> Converter | None:
        """A function (buf, base, end, raw) -> value, or None if raw is final."""
        if f.kind == "int":
            if ptype == "char":
                return lambda buf, base, end, v: chr(v)
            if (f.size, f.signed) in _INT_CODES:
                return None
            signed = f.signed
            return lambda buf, base, end, v: int.from_bytes(v, "little" if _LE else "big",
                                                            signed=signed)
        if f.kind == "char_array" or (ptype is not None and ptype.startswith("char[")):
            if f.count is None:  # flexible char[]: NUL-terminated, bounded by the record
                off = f.offset

                def flex_str(buf: object, base: int, end: int, v: object) -> str:
                    return _str(bytes(buf[base + off:end]))  # type: ignore[index]
                return flex_str
            return lambda buf, base, end, v: _str(v)
        if f.kind == "array":
            if f.elem_size in (1, 2, 4, 8):
                code = _INT_CODES[f.elem_size, f.signed]
                if f.count is not None:
                    unpack = struct.Struct(f"={f.count}{code}").unpack
                    return lambda buf, base, end, v: unpack(v)
                off, esize = f.offset, f.elem_size

                def flex_array(buf: object, base: int, end: int, v: object) -> tuple[int, ...]:
                    n = max(0, end - base - off) // esize
                    return struct.unpack_from(f"={n}{code}", buf, base + off)  # type: ignore[arg-type]
                return flex_array
            if f.count is None:
                return lambda buf, base, end, v: bytes(buf[base + f.offset:end])
            return lambda buf, base, end, v: v
        # data_loc
        return _loc_converter(f)

    # -- decoding

    def decode(self, buf: bytes | bytearray | memoryview, offset: int = 0,
               length: int | None = None) -> tuple[int, int, int, dict[str, object]]:
        """Decode the record whose payload starts at ``buf[offset]``.

        ``length`` (the payload length, when known) bounds flexible arrays
        and ``__data_loc`` data; without it they are bounded by ``len(buf)``.
        Raises :class:`DecodeError` if the payload is too short or a
        ``__data_loc`` points outside it.
        """
        try:
            v = self._unpack(buf, offset)
        except struct.error:
            raise DecodeError(f"{self.fmt.name}: record at {offset} shorter than "
                              f"{self._min_len} bytes") from None
        if self._fast_common:
            args = dict(zip(self.names, v[3:], strict=False))
            flags, pc, pid = v[0], v[1], v[2]
        else:
            args = dict(zip(self._all_names, v, strict=True))
            flags = args["common_flags"]
            pc = args["common_preempt_count"]
            pid = args["common_pid"]
            for c in self._common_names:
                del args[c]
        if self._converters:
            end = len(buf) if length is None else offset + length
            for name, conv in self._converters:
                args[name] = conv(buf, offset, end, args[name])
        return flags, pc, pid, args

    def rows(self, buf: bytes | bytearray | memoryview, offsets: Iterable[int],
             ) -> list[tuple[object, ...]]:
        """The records at ``offsets`` as value tuples, no dicts: each is
        ``(common_flags, common_preempt_count, common_pid, *values)`` with the
        values in :attr:`names` order (the column-wise fast path; the same
        values :meth:`decode` gives). For a :attr:`plain` format this is one
        ``struct`` unpack per record.
        """
        if self.plain:
            try:
                return list(map(self._unpack, repeat(buf), offsets))
            except struct.error:
                raise DecodeError(f"{self.fmt.name}: a record is shorter than "
                                  f"{self._min_len} bytes") from None
        return [(f, pc, pid, *args.values())
                for f, pc, pid, args in self.decode_many(buf, offsets)]

    def decode_many(self, buf: bytes | bytearray | memoryview, offsets: Iterable[int],
                    ) -> list[tuple[int, int, int, dict[str, object]]]:
        """:meth:`decode` for many records of this event in one buffer."""
        names = self.names
        if not self._fast_common:
            dec = self.decode
            return [dec(buf, o) for o in offsets]
        if self._converters:
            unpack, convs, end = self._unpack, self._converters, len(buf)
            out: list[tuple[int, int, int, dict[str, Any]]] = []
            append = out.append
            try:
                for o in offsets:
                    v = unpack(buf, o)
                    args = dict(zip(names, v[3:], strict=False))
                    for name, conv in convs:
                        args[name] = conv(buf, o, end, args[name])
                    append((v[0], v[1], v[2], args))
            except struct.error:
                raise DecodeError(f"{self.fmt.name}: a record is shorter than "
                                  f"{self._min_len} bytes") from None
            return out
        try:
            return [(v[0], v[1], v[2], dict(zip(names, v[3:], strict=False)))
                    for v in map(self._unpack, repeat(buf), offsets)]
        except struct.error:
            raise DecodeError(f"{self.fmt.name}: a record is shorter than "
                              f"{self._min_len} bytes") from None


_LE = struct.pack("=H", 1) == b"\x01\x00"


def _loc_converter(f: Field) -> Converter:
    """Converter for a __data_loc / __rel_loc field (one loc or a [][N] array)."""
    fname = f.name
    elem = _loc_elem_type(f.decl)
    esize = f.elem_size
    is_str = elem == "char"
    code = _INT_CODES.get((esize, f.signed)) if _type_size(elem) else None

    def past_end(start: int, ln: int, base: int, end: int) -> DecodeError:
        return DecodeError(f"{fname}: __data_loc [{start - base}, +{ln}) runs past "
                           f"the record end ({end - base})")

    def one(buf: object, base: int, end: int, loc: int, field_off: int) -> object:
        ln = loc >> 16
        start = base + (loc & 0xFFFF) + field_off
        if start + ln > end:
            raise past_end(start, ln, base, end)
        if is_str:
            if ln == 0:
                return FAULT
            return _str(bytes(buf[start:start + ln]))  # type: ignore[index]
        if code is None:
            return bytes(buf[start:start + ln])  # type: ignore[index]
        return struct.unpack_from(f"={ln // esize}{code}", buf, start)  # type: ignore[arg-type]

    # __rel_loc offsets count from the end of the u32 itself
    rel = f.offset + 4 if f.is_rel_loc else 0
    if f.count is None:
        if not is_str:
            return lambda buf, base, end, loc: one(buf, base, end, loc, rel)

        def string(buf: object, base: int, end: int, loc: int) -> object:  # the hot case
            ln = loc >> 16
            if not ln:
                return FAULT
            start = base + (loc & 0xFFFF) + rel
            stop = start + ln
            if stop > end:
                raise past_end(start, ln, base, end)
            if buf[stop - 1] == 0:  # type: ignore[index]
                stop -= 1  # the usual terminating NUL
            raw = buf[start:stop]  # type: ignore[index]
            if type(raw) is not bytes:
                raw = bytes(raw)
            if b"\0" in raw:  # an embedded NUL ends a C string
                raw = raw[:raw.find(0)]
            return raw.decode("utf-8", "surrogateescape")
        return string

    locs = struct.Struct(f"={f.count}I")
    offs = [f.offset + 4 * (i + 1) if f.is_rel_loc else 0 for i in range(f.count)]

    def many(buf: object, base: int, end: int, raw: object) -> tuple[object, ...]:
        return tuple(one(buf, base, end, loc, o)
                     for loc, o in zip(locs.unpack(raw), offs, strict=True))  # type: ignore[arg-type]
    return many

"""A fast decoder of one event format's records (:class:`RecordDecoder`).

:func:`~kprobes.decode.format.parse_format` describes an event's payload; a
:class:`RecordDecoder` compiled from that description turns payload bytes into
values:

>>> fmt = parse_format(text, system="syscalls")          # doctest: +SKIP
>>> dec = RecordDecoder(fmt)                             # doctest: +SKIP
>>> dec.decode(page, start)                              # doctest: +SKIP
(1, 0, 4242, {'__syscall_nr': 110})

What each field kind decodes to is in :mod:`.format`.

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
"""

from __future__ import annotations

import re
import struct
from collections.abc import Callable, Iterable, Mapping
from itertools import repeat

from kprobes.decode.format import (
    FAULT,
    EventFormat,
    Field,
    _loc_elem_type,
    _type_size,
    declared_int,
)
from kprobes.errors import DecodeError

TYPE_CHECKING = False   # typing's, without importing typing at run time
if TYPE_CHECKING:
    from typing import Any

__all__ = ["RecordDecoder", "common_type"]


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
                 "_min_len", "plain", "layout", "loc_strings")

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
        loc_strings: list[tuple[int, int]] = []     # (index in layout, __rel_loc base)
        others = 0                                  # converters other than those strings
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
            ptype = self.types.get(f.name)
            conv = self._converter(f, ptype)
            if conv is not None:
                if f.is_common:     # decoded into the common columns, never converted
                    raise DecodeError(f"event {fmt.name}: common field {f.name} is not a "
                                      f"plain integer ({f.decl}, size {f.size})")
                converters.append((f.name, conv))
                if (f.kind == "data_loc" and f.count is None and _loc_elem_type(f.decl) == "char"
                        and not (ptype or "").startswith("char[")):
                    loc_strings.append((len(names) - 1, f.offset + 4 if f.is_rel_loc else 0))
                else:
                    others += 1
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
        #: integers and ``__data_loc char[]`` strings only: per value ``(offset,
        #: array code)``, in ``(*common, *names)`` order, for column-wise slicing
        #: (decode.columns); a string's entry is its u32 ``__data_loc`` word
        self.layout: tuple[tuple[int, str], ...] | None = (
            tuple(layout) if self._fast_common and not others and layout is not None
            else None)
        #: the strings of :attr:`layout`: ``(index, base)``, the string at ``base +
        #: (loc & 0xffff)`` of ``(loc >> 16)`` bytes, NUL-terminated, as :meth:`decode`
        #: gives it (``FAULT`` if empty: the fetch failed)
        self.loc_strings: tuple[tuple[int, int], ...] = tuple(loc_strings) \
            if self.layout is not None else ()

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

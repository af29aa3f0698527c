"""Columns of fixed-layout records straight from a ring-buffer page.

The records of one event in a page usually follow each other at one stride
(same length, nothing in between). Each integer field is then a strided view
of the page: one C-level ``memoryview`` cast and slice per field gives the
whole column, with no per-record tuple and no transposition.

>>> import struct
>>> page = b"".join(struct.pack("=HBBiq", 7, 1, 2, 100 + i, -i) for i in range(3))
>>> uniform_stride([0, 16, 32])
16
>>> strided_columns(page, 0, 16, 3, ((2, "B"), (4, "i"), (8, "q")))
[[1, 1, 1], [100, 101, 102], [0, -1, -2]]
"""

from __future__ import annotations

from array import array
from collections.abc import Sequence
from itertools import repeat
from operator import itemgetter, lshift, or_

from .format import FAULT
from .ringbuf import Records, starts_of

TYPE_CHECKING = False   # typing's, without importing typing at run time
if TYPE_CHECKING:
    from typing import Any

__all__ = ["uniform_stride", "strided_columns", "segment_columns", "all_same", "loc_strings"]

_START = itemgetter(1)
_LEN = itemgetter(2)
_SIZES = {"B": 1, "b": 1, "H": 2, "h": 2, "I": 4, "i": 4, "Q": 8, "q": 8}


def all_same(col: Any) -> bool:
    """Whether every value of a non-empty column (an ``array``, ``bytes`` or a
    list) is the first one: for arrays and bytes one C-level comparison of
    their bytes, not a Python int per value.

    >>> all_same(array("i", [7, 7, 7])), all_same(array("i", [7, 7, 8])), all_same(["a", "a"])
    (True, False, True)
    """
    t = type(col)
    if t is array:
        b = col.tobytes()
        return b == b[:col.itemsize] * len(col)
    if t is bytes:
        return col == col[:1] * len(col)
    return col.count(col[0]) == len(col)


def uniform_stride(starts: list[int]) -> int | None:
    """The one distance between consecutive ``starts`` (>= 1 record), or None."""
    n = len(starts)
    if n == 1:
        return 8
    if n == 0:
        return None
    first = starts[0]
    stride, rem = divmod(starts[-1] - first, n - 1)
    if rem or stride <= 0 or starts != list(range(first, first + stride * n, stride)):
        return None
    return stride


def strided_columns(buf: bytes | bytearray | memoryview, first: int, stride: int, n: int,
                    layout: Sequence[tuple[int, str]], arrays: int = 0,
                    strings: Sequence[tuple[int, int]] = (), plen: int = 0,
                    ) -> list[Any] | None:
    """One list per ``(offset, code)`` of ``layout``: the value of each of the
    ``n`` records at ``first + i * stride`` (a 4-byte multiple, as ring-buffer
    records are); the first ``arrays`` columns as ``array(code)`` instead (one
    C-level copy, no int objects). ``strings`` (``RecordDecoder.loc_strings``):
    columns of ``__data_loc`` words turned into their strings, for payloads of
    at least ``plen`` bytes (:func:`loc_strings`). None if the records run past
    ``buf`` or a string is not where every record has it."""
    mv = memoryview(buf)
    out: list[Any] = []
    for j, (off, code) in enumerate(layout):
        size = _SIZES[code]
        start = first + off
        end = start + stride * (n - 1) + size
        if end > len(mv) or stride % 4:
            return None
        if stride % size == 0:
            view = mv[start:end].cast(code)[::stride // size]  # type: ignore[call-overload]
            out.append(array(code, bytes(view)) if j < arrays else view.tolist())
            continue
        # a 64-bit field and a stride of 4 (mod 8), the usual for records with
        # u64 values: its two 32-bit halves (little-endian), joined
        step = stride // 4
        lo = mv[start:end - 4].cast("I")[::step].tolist()
        hi = mv[start + 4:end].cast("i" if code == "q" else "I")[::step].tolist()
        col = list(map(or_, lo, map(lshift, hi, repeat(32))))
        out.append(array(code, col) if j < arrays else col)
    for j, base in strings:
        got = loc_strings(buf, first, stride, out[j], base, plen)
        if got is None:
            return None
        out[j] = got
    return out


def loc_strings(buf: bytes | bytearray | memoryview, first: int, stride: int,
                locs: list[int], base: int, plen: int) -> list[Any] | None:
    r"""The strings of the ``__data_loc`` words ``locs`` of records at ``first +
    i * stride`` whose payloads are ``plen`` bytes or more, as
    ``RecordDecoder.decode`` gives them: cut at the first NUL, UTF-8 with
    ``surrogateescape``, ``FAULT`` for an empty one (its fetch failed). Each
    distinct string is decoded once. None (decode record by record) unless every
    record has its string at one place (one task's ``$comm``, fixed-size text)
    within its payload.

    >>> page = b"".join(b"\x04\x00\x03\x00" + b"ab\x00\x00" for _ in range(3))
    >>> loc_strings(page, 0, 8, [0x30004] * 3, 0, 8)
    ['ab', 'ab', 'ab']
    """
    if not locs or not all_same(locs):
        return None
    loc = locs[0]
    n, ln, off = len(locs), loc >> 16, (loc & 0xFFFF) + base
    if not ln:
        return [FAULT] * n
    if off + ln > plen:
        return None
    if type(buf) is not bytes:
        buf = bytes(buf)
    start = first + off
    raws = list(map(buf.__getitem__, map(slice, range(start, start + stride * n, stride),
                                         range(start + ln, start + ln + stride * n, stride))))
    text = {raw: _cstr(raw) for raw in set(raws)}
    return list(map(text.__getitem__, raws))


def _cstr(raw: bytes) -> str:
    i = raw.find(0)
    return (raw[:i] if i >= 0 else raw).decode("utf-8", "surrogateescape")


def segment_columns(layout: Sequence[tuple[int, str]] | None,
                    segs: Sequence[tuple[int, bytes, Sequence[tuple[int, int, int]]]],
                    arrays: int = 0, strings: Sequence[tuple[int, int]] = (),
                    ) -> list[Any] | None:
    """The columns of ``layout`` (``RecordDecoder.layout``) for the records
    ``(ts, start, length)`` of every ``(cpu, page, records)`` in ``segs``,
    concatenated (the first ``arrays`` as ``array``, the rest as lists; the
    ``strings``, ``RecordDecoder.loc_strings``, as strings); None if a page's
    records are not at one stride or there is no layout (then decode record
    by record)."""
    if layout is None:
        return None
    strides = {recs.stride if type(recs) is Records else None for _c, _p, recs in segs}
    if len(strides) == 1 and None not in strides:
        # every page one run at one stride: their runs joined end to end are one
        # run too, and each column is one C-level slice of that
        stride = strides.pop()
        assert stride is not None
        runs = []
        for _cpu, page, recs in segs:
            first, size = starts_of(recs)[0], stride * len(recs)
            run = page[first:first + size]          # a full page's last record: 4 short
            runs.append(run if len(run) == size else run + bytes(size - len(run)))
        return strided_columns(b"".join(runs), 0, stride, sum(len(sg[2]) for sg in segs),
                               layout, arrays, strings, stride - 4)
    cols: list[Any] = [array(code) if j < arrays else []
                       for j, (_off, code) in enumerate(layout)]
    for _cpu, page, recs in segs:
        if type(recs) is Records and recs.stride is not None:   # known: nothing to check
            stride, first = recs.stride, recs.starts()[0]
            plen = stride - 4
        else:
            starts = list(map(_START, recs))
            stride, first = uniform_stride(starts), starts[0]
            plen = min(map(_LEN, recs)) if strings else 0
        got = None if stride is None else strided_columns(page, first, stride, len(recs),
                                                         layout, arrays, strings, plen)
        if got is None:
            return None
        for c, g in zip(cols, got, strict=True):
            c += g
    return cols

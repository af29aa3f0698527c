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

from collections.abc import Sequence
from itertools import repeat
from operator import itemgetter, lshift, or_

__all__ = ["uniform_stride", "strided_columns", "segment_columns"]

_START = itemgetter(1)
_SIZES = {"B": 1, "b": 1, "H": 2, "h": 2, "I": 4, "i": 4, "Q": 8, "q": 8}


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
                    layout: Sequence[tuple[int, str]]) -> list[list[int]] | None:
    """One list per ``(offset, code)`` of ``layout``: the value of each of the
    ``n`` records at ``first + i * stride`` (a 4-byte multiple, as ring-buffer
    records are). None if the records run past ``buf``."""
    mv = memoryview(buf)
    out = []
    for off, code in layout:
        size = _SIZES[code]
        start = first + off
        end = start + stride * (n - 1) + size
        if end > len(mv) or stride % 4:
            return None
        if stride % size == 0:
            out.append(mv[start:end].cast(code)[::stride // size].tolist())  # type: ignore[call-overload]
            continue
        # a 64-bit field and a stride of 4 (mod 8), the usual for records with
        # u64 values: its two 32-bit halves (little-endian), joined
        step = stride // 4
        lo = mv[start:end - 4].cast("I")[::step].tolist()
        hi = mv[start + 4:end].cast("i" if code == "q" else "I")[::step].tolist()
        out.append(list(map(or_, lo, map(lshift, hi, repeat(32)))))
    return out


def segment_columns(layout: Sequence[tuple[int, str]] | None,
                    segs: Sequence[tuple[int, bytes, Sequence[tuple[int, int, int]]]],
                    ) -> list[list[int]] | None:
    """The columns of ``layout`` (``RecordDecoder.layout``) for the records
    ``(ts, start, length)`` of every ``(cpu, page, records)`` in ``segs``,
    concatenated; None if a page's records are not at one stride or there is
    no layout (then decode record by record)."""
    if layout is None:
        return None
    cols: list[list[int]] = [[] for _ in layout]
    for _cpu, page, recs in segs:
        starts = list(map(_START, recs))
        stride = uniform_stride(starts)
        got = None if stride is None else strided_columns(page, starts[0], stride, len(starts),
                                                         layout)
        if got is None:
            return None
        for c, g in zip(cols, got, strict=True):
            c += g
    return cols

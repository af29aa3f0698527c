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

__all__ = ["uniform_stride", "strided_columns"]

_SIZES = {"B": 1, "b": 1, "H": 2, "h": 2, "I": 4, "i": 4, "Q": 8, "q": 8}


def uniform_stride(starts: Sequence[int]) -> int | None:
    """The one distance between consecutive ``starts`` (>= 1 record), or None."""
    n = len(starts)
    if n == 1:
        return 8
    if n == 0:
        return None
    first = starts[0]
    stride, rem = divmod(starts[-1] - first, n - 1)
    if rem or stride <= 0 or list(starts) != list(range(first, first + stride * n, stride)):
        return None
    return stride


def strided_columns(buf: bytes | bytearray | memoryview, first: int, stride: int, n: int,
                    layout: Sequence[tuple[int, str]]) -> list[list[int]] | None:
    """One list per ``(offset, code)`` of ``layout``: the value of each of the
    ``n`` records at ``first + i * stride``. None if a field does not tile the
    stride (then decode record by record)."""
    mv = memoryview(buf)
    out = []
    for off, code in layout:
        size = _SIZES[code]
        if stride % size:
            return None
        start = first + off
        end = start + stride * (n - 1) + size
        if end > len(mv):
            return None
        out.append(mv[start:end].cast(code)[::stride // size].tolist())
    return out

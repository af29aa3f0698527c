"""Bucket boundaries shared by both backends (pure integer math).

The kernel's ``.log2`` key is ``ilog2(roundup_pow_of_two(v))``: bucket
``2^k`` holds ``2^(k-1) < v <= 2^k`` (``kernel/trace/trace_events_hist.c``
``hist_field_log2``), and 0 and 1 share bucket ``2^0``. Reported ranges are
``lo <= v < hi``.

>>> [log2_index(v) for v in (0, 1, 2, 3, 4, 5, 8, 9)]
[0, 0, 1, 2, 2, 3, 3, 4]
>>> log2_range(0), log2_range(1), log2_range(3)
((0, 2), (2, 3), (5, 9))
>>> Linear(0, 100, 10).index(35), Linear(0, 100, 10).range(3)
(3, (30, 40))
>>> Linear(0, 100, 10).range(-1), Linear(0, 100, 10).range(10)
((-9223372036854775808, 0), (100, 18446744073709551616))
"""

from __future__ import annotations

from collections import Counter

from ..values import Frozen, _set
from .model import Bucket

__all__ = ["log2_index", "log2_range", "log2_buckets", "Linear", "MIN", "MAX"]

MIN = -(1 << 63)        # lower end of an underflow bucket
MAX = 1 << 64           # upper end of an overflow bucket (u64 values are < 2^64)


def log2_index(v: int) -> int:
    """The kernel's log2 bucket of ``v`` (as a u64): k such that ``2^(k-1) < v <= 2^k``."""
    if v < 0:
        v &= (1 << 64) - 1
    return 0 if v <= 1 else (v - 1).bit_length()


def log2_range(k: int) -> tuple[int, int]:
    """``(lo, hi)`` of log2 bucket k, ``lo <= v < hi``."""
    if k == 0:
        return 0, 2
    return (1 << (k - 1)) + 1, (1 << k) + 1


def log2_buckets(counts: Counter[int] | dict[int, int]) -> list[Bucket]:
    """Buckets from ``{k: count}``, ascending, empty ones left out."""
    return [Bucket(*log2_range(k), c) for k, c in sorted(counts.items()) if c]


class Linear(Frozen):
    """Linear buckets of width ``step`` from ``lo`` to ``hi``, with an underflow
    bucket (index -1) and an overflow bucket (index ``n``). ``lo`` and ``hi`` are
    multiples of ``step``, as the kernel's ``.buckets=STEP`` starts at 0."""

    __slots__ = _fields = ("lo", "hi", "step")
    lo: int
    hi: int
    step: int

    def __init__(self, lo: int, hi: int, step: int) -> None:
        _set(self, "lo", lo)
        _set(self, "hi", hi)
        _set(self, "step", step)
        self.__post_init__()

    def __post_init__(self) -> None:
        if self.step <= 0 or self.hi <= self.lo:
            raise ValueError(f"linear buckets need LO < HI and STEP > 0 (got {self.lo},"
                             f"{self.hi},{self.step})")
        if self.lo % self.step or self.hi % self.step:
            raise ValueError(f"LO and HI must be multiples of STEP (got {self.lo},{self.hi},"
                             f"{self.step}), as the kernel's buckets start at 0")

    @property
    def n(self) -> int:
        return (self.hi - self.lo) // self.step

    def index(self, v: int) -> int:
        if v < self.lo:
            return -1
        if v >= self.hi:
            return self.n
        return (v - self.lo) // self.step

    def range(self, i: int) -> tuple[int, int]:
        if i < 0:
            return MIN, self.lo
        if i >= self.n:
            return self.hi, MAX
        return self.lo + i * self.step, self.lo + (i + 1) * self.step

    def buckets(self, counts: dict[int, int]) -> list[Bucket]:
        """Buckets from ``{index: count}`` (indexes clamped to -1..n)."""
        merged: Counter[int] = Counter()
        for i, c in counts.items():
            merged[max(-1, min(self.n, i))] += c
        return [Bucket(*self.range(i), c) for i, c in sorted(merged.items()) if c]

"""User-side aggregation over columns (no per-event Python objects).

A :class:`ColumnAggregator` takes whole columns at a time (one read cycle's
:class:`~kprobes.runtime.batch.Batch`: key columns such as ``comm`` or an
argument, and a value column) and keeps, per key, the count and for a value
its sum, min, max and bucket counts. At most ``cap`` keys are kept; events of
further keys are counted in ``dropped`` (like the kernel's ``Dropped:``).

>>> a = ColumnAggregator(by=("comm",))
>>> a.add(3, [["sh", "gen", "gen"]])
>>> [(r.key, r.count) for r in a.rows()]
[({'comm': 'sh'}, 1), ({'comm': 'gen'}, 2)]
>>> h = ColumnAggregator(value="v", buckets="log2")
>>> h.add(4, [], [0, 1, 3, 4])
>>> r = h.rows()[0]; r.count, r.sum, r.min, r.max, [(b.lo, b.hi, b.count) for b in r.buckets]
(4, 8, 0, 4, [(0, 2, 2), (3, 5, 2)])
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from .buckets import Linear, log2_buckets, log2_index
from .model import Row

TYPE_CHECKING = False   # typing's, without importing typing at run time
if TYPE_CHECKING:
    from typing import Any

__all__ = ["ColumnAggregator", "Pairer", "DEFAULT_CAP", "round_us"]

DEFAULT_CAP = 10240


class _Stat:
    __slots__ = ("count", "sum", "min", "max", "hist")

    def __init__(self) -> None:
        self.count = 0
        self.sum = 0
        self.min: int | None = None
        self.max: int | None = None
        self.hist: Counter[int] = Counter()


class ColumnAggregator:
    """Counts (and value statistics) per key, fed with columns.

    ``by``: key names (the columns passed to :meth:`add`, in this order);
    ``value``: the name of the value (None: count only); ``buckets``:
    ``"log2"`` (the kernel's ``.log2`` boundaries), a :class:`Linear`, or None.
    """

    def __init__(self, by: Sequence[str] = (), value: str | None = None,
                 buckets: str | Linear | None = None, cap: int = DEFAULT_CAP) -> None:
        if cap < 1:
            raise ValueError("the key cap must be at least 1")
        self.by = tuple(by)
        self.value = value
        self.buckets = buckets
        self.cap = cap
        if buckets == "log2":
            self._index: Any = log2_index
        elif isinstance(buckets, Linear):
            self._index = buckets.index
        else:
            self._index = None
        self.clear()

    def clear(self) -> None:
        self.dropped = 0
        self._n = 0
        self._counts: Counter[Any] = Counter()
        self._stats: dict[Any, _Stat] = {}

    def _room(self, key: Any, known: dict[Any, Any]) -> bool:
        return key in known or len(known) < self.cap

    def add(self, n: int, keys: Sequence[Sequence[Any]], values: Sequence[Any] | None = None
            ) -> None:
        """Add ``n`` events: ``keys`` one column per name in ``by``, ``values`` the value column."""
        if self.value is None:
            if not self.by:
                self._n += n
                return
            c: Counter[Any] = Counter(keys[0] if len(keys) == 1 else zip(*keys, strict=False))
            known = self._counts
            if len(known) + len(c) <= self.cap:
                known.update(c)
                return
            for k, v in c.items():
                if self._room(k, known):
                    known[k] += v
                else:
                    self.dropped += v
            return
        assert values is not None
        if not self.by:
            self._add_values((), values)
            return
        groups: dict[Any, list[Any]] = {}
        for k, v in zip(keys[0] if len(keys) == 1 else zip(*keys, strict=False), values, strict=False):
            g = groups.get(k)
            if g is None:
                g = groups[k] = []
            g.append(v)
        for k, vs in groups.items():
            if self._room(k, self._stats):
                self._add_values(k, vs)
            else:
                self.dropped += len(vs)

    def _add_values(self, key: Any, values: Sequence[Any]) -> None:
        vs = [v for v in values if type(v) is int]
        self.dropped += len(values) - len(vs)          # faults: no value to count
        if not vs:
            return
        st = self._stats.get(key)
        if st is None:
            st = self._stats[key] = _Stat()
        st.count += len(vs)
        st.sum += sum(vs)
        lo, hi = min(vs), max(vs)
        st.min = lo if st.min is None else min(st.min, lo)
        st.max = hi if st.max is None else max(st.max, hi)
        if self._index is not None:
            st.hist.update(map(self._index, vs))

    def _key(self, k: Any) -> dict[str, Any]:
        if not self.by:
            return {}
        if len(self.by) == 1:
            return {self.by[0]: k}
        return dict(zip(self.by, k, strict=True))

    def rows(self) -> list[Row]:
        """The rows so far (unsorted)."""
        if self.value is None:
            if not self.by:
                return [Row({}, self._n)] if self._n else []
            return [Row(self._key(k), c) for k, c in self._counts.items()]
        out = []
        for k, st in self._stats.items():
            buckets = None
            if self.buckets == "log2":
                buckets = log2_buckets(st.hist)
            elif isinstance(self.buckets, Linear):
                buckets = self.buckets.buckets(st.hist)
            out.append(Row(self._key(k), st.count, st.sum, st.min, st.max, buckets))
        return out


def round_us(ns: int) -> int:
    """ns -> us as the kernel's ``common_timestamp.usecs`` (``ns2usecs``: rounded)."""
    return (ns + 500) // 1000


class Pairer:
    """Entry/return pairing per thread (innermost call first) for latencies.

    Feed entries and returns in timestamp order with :meth:`feed`; it returns,
    per matched return, ``(index of the return, latency)``. ``unmatched``
    counts returns with no entry seen (the entry came before tracing began).
    At most ``depth`` open calls are kept per thread.

    >>> p = Pairer()
    >>> p.feed([(10, 0, 7), (15, 0, 7), (30, 1, 7), (50, 1, 7)])
    [(2, 15), (3, 40)]

    A return takes the newest entry *before* it: events of different CPUs can arrive
    out of order across read cycles, so an entry newer than a return may already be
    on the stack (the next call's, read early from another CPU):

    >>> p.feed([(100, 0, 7), (130, 0, 7)]), p.feed([(120, 1, 7), (140, 1, 7)])
    ([], [(0, 20), (1, 10)])
    """

    def __init__(self, depth: int = 64, convert: Any = None) -> None:
        self.stacks: dict[int, list[int]] = {}
        self.depth = depth
        self.unmatched = 0
        self.convert = convert

    def feed(self, events: Sequence[tuple[int, int, int]]) -> list[tuple[int, int]]:
        """``events``: ``(ts, is_return, tid)`` sorted by ts. Returns (position, latency)."""
        stacks = self.stacks
        conv = self.convert
        out = []
        for i, (ts, ret, tid) in enumerate(events):
            t = conv(ts) if conv is not None else ts
            if not ret:
                st = stacks.get(tid)
                if st is None:
                    st = stacks[tid] = []
                elif len(st) >= self.depth:
                    del st[0]
                st.append(t)
                continue
            st = stacks.get(tid)
            k = len(st) - 1 if st else -1
            while k >= 0 and st[k] > t:   # type: ignore[index]   # an entry read early: its
                k -= 1                    # CPU was read late in an earlier cycle, it is newer
            if k < 0:
                self.unmatched += 1
                continue
            out.append((i, t - st.pop(k)))   # type: ignore[union-attr]
        return out

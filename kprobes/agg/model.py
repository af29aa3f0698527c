"""The results of an aggregation: rows of key -> count, sum, min, max, buckets.

Shared by every producer (kernel hist triggers, the user-side aggregator,
stack counts) and every consumer (text and JSON rendering, ``Stats``).

>>> r = Row({"comm": "gen"}, 5, buckets=[Bucket(3, 5, 2), Bucket(5, 9, 3)])
>>> r.to_dict()
{'key': {'comm': 'gen'}, 'count': 5, 'buckets': [{'lo': 3, 'hi': 5, 'count': 2}, {'lo': 5, 'hi': 9, 'count': 3}]}
>>> r.avg is None
True
"""

from __future__ import annotations

from ..values import Frozen, Value, _set

TYPE_CHECKING = False   # typing's, without importing typing at run time
if TYPE_CHECKING:
    from typing import Any

__all__ = ["Bucket", "Row", "Aggregation", "KINDS", "sort_rows", "merge_rows", "difference"]

#: what an aggregation computes
KINDS = ("count", "hist", "latency", "sum", "min", "max", "avg")


class Bucket(Frozen):
    """An integer range ``lo <= v < hi`` and how many values fell in it.

    A kernel ``.log2`` bucket ``2^k`` (k >= 1) holds ``2^(k-1) < v <= 2^k``:
    ``lo = 2^(k-1) + 1``, ``hi = 2^k + 1``.
    """

    __slots__ = _fields = ("lo", "hi", "count")
    lo: int
    hi: int
    count: int

    def __init__(self, lo: int, hi: int, count: int) -> None:
        _set(self, "lo", lo)
        _set(self, "hi", hi)
        _set(self, "count", count)

    def to_dict(self) -> dict[str, int]:
        return {"lo": self.lo, "hi": self.hi, "count": self.count}


class Row(Value):
    """One key's result. ``key`` is ``{}`` for an aggregation without keys."""

    __slots__ = _fields = ("key", "count", "sum", "min", "max", "buckets")

    def __init__(self, key: dict[str, Any], count: int, sum: int | None = None,
                 min: int | None = None, max: int | None = None,
                 buckets: list[Bucket] | None = None) -> None:
        self.key = key
        self.count = count
        self.sum = sum
        self.min = min
        self.max = max
        self.buckets = buckets

    @property
    def avg(self) -> float | None:
        return None if self.sum is None or not self.count else self.sum / self.count

    def key_tuple(self) -> tuple[Any, ...]:
        return tuple(self.key.values())

    def to_dict(self) -> dict[str, Any]:
        """The JSON form: fields that do not apply are left out."""
        d: dict[str, Any] = {"key": dict(self.key), "count": self.count}
        for name in ("sum", "min", "max"):
            v = getattr(self, name)
            if v is not None:
                d[name] = v
        if self.buckets is not None:
            d["buckets"] = [b.to_dict() for b in self.buckets]
        return d


def sort_rows(rows: list[Row], kind: str = "count") -> list[Row]:
    """Rows by ascending value (bpftrace prints the largest last), then key."""
    def value(r: Row) -> Any:
        if kind == "sum":
            return r.sum or 0
        if kind == "min":
            return r.min if r.min is not None else 0
        if kind == "max":
            return r.max if r.max is not None else 0
        if kind == "avg":
            return r.avg or 0
        return r.count
    return sorted(rows, key=lambda r: (value(r), repr(r.key_tuple())))


def merge_rows(rows: list[Row]) -> list[Row]:
    """Merge rows with equal keys (e.g. per-pid kernel rows keyed by comm)."""
    out: dict[tuple[Any, ...], Row] = {}
    for r in rows:
        k = r.key_tuple()
        m = out.get(k)
        if m is None:
            out[k] = Row(dict(r.key), r.count, r.sum, r.min, r.max,
                         list(r.buckets) if r.buckets is not None else None)
            continue
        m.count += r.count
        if r.sum is not None:
            m.sum = (m.sum or 0) + r.sum
        if r.min is not None:
            m.min = r.min if m.min is None else min(m.min, r.min)
        if r.max is not None:
            m.max = r.max if m.max is None else max(m.max, r.max)
        if r.buckets is not None:
            by = {(b.lo, b.hi): b.count for b in m.buckets or ()}
            for b in r.buckets:
                by[b.lo, b.hi] = by.get((b.lo, b.hi), 0) + b.count
            m.buckets = [Bucket(lo, hi, c) for (lo, hi), c in sorted(by.items())]
    return list(out.values())


def difference(now: list[Row], before: list[Row]) -> list[Row]:
    """Rows of ``now`` minus ``before`` (counts, sums, buckets; min and max cannot be
    subtracted and are left out)."""
    old = {r.key_tuple(): r for r in before}
    out = []
    for r in now:
        o = old.get(r.key_tuple())
        if o is None:
            out.append(r)
            continue
        if r.count == o.count:
            continue
        buckets = None
        if r.buckets is not None:
            ob = {(b.lo, b.hi): b.count for b in o.buckets or ()}
            buckets = [Bucket(b.lo, b.hi, b.count - ob.get((b.lo, b.hi), 0)) for b in r.buckets]
            buckets = [b for b in buckets if b.count]
        out.append(Row(r.key, r.count - o.count,
                       None if r.sum is None else r.sum - (o.sum or 0), None, None, buckets))
    return out


class Aggregation:
    """What ``Session.count()/hist()/latency()`` return: a live aggregation.

    ``read()`` gives the rows so far (during the run and after it),
    ``clear()`` starts over; ``dropped`` counts keys not kept for lack of
    room (the kernel's ``Dropped:`` or the user-side key cap).
    Backends subclass this and implement :meth:`_read` and :meth:`_clear`.
    """

    kind: str
    name: str
    by: tuple[str, ...]
    value: str | None
    unit: str | None
    backend: str
    backend_reason: str
    dropped: int

    def __init__(self, kind: str, name: str, by: tuple[str, ...] = (), value: str | None = None,
                 unit: str | None = None, backend: str = "user", backend_reason: str = "") -> None:
        if kind not in KINDS:
            raise ValueError(f"unknown aggregation kind {kind!r}")
        self.kind = kind
        self.name = name
        self.by = tuple(by)
        self.value = value
        self.unit = unit
        self.backend = backend
        self.backend_reason = backend_reason
        self.dropped = 0
        self.final: list[Row] | None = None     # rows read last, kept after the session ends

    def read(self) -> list[Row]:
        """The rows so far, sorted by value (after the session: the final rows)."""
        if self.final is not None and self.closed:
            return list(self.final)
        rows = sort_rows(self._read(), self.kind)
        self.final = rows
        return list(rows)

    closed = False

    def clear(self) -> None:
        """Start counting again from zero."""
        self._clear()
        self.final = None

    #: intervals as differences of running totals (where read-then-clear is not atomic,
    #: e.g. the kernel's), else read and clear
    delta_intervals = False
    _prev: list[Row] | None = None

    def interval(self) -> list[Row]:
        """The rows since the last call: over all intervals they add up to the total."""
        if not self.delta_intervals:
            rows = self.read()
            self.clear()
            return rows
        now = self.read()
        out = difference(now, self._prev or [])
        self._prev = now
        return out

    def _read(self) -> list[Row]:
        raise NotImplementedError

    def _clear(self) -> None:
        raise NotImplementedError

    def to_json(self, interval: int | None = None, rows: list[Row] | None = None) -> dict[str, Any]:
        """The issue-10 JSON line: ``{"aggregation", "interval", "backend", "rows"}``."""
        rows = self.read() if rows is None else rows
        d: dict[str, Any] = {"aggregation": self.kind, "name": self.name}
        if interval is not None:
            d["interval"] = interval
        d["backend"] = self.backend
        if self.unit:
            d["unit"] = self.unit
        d["rows"] = [r.to_dict() for r in rows]
        return d

    def __repr__(self) -> str:
        return (f"<Aggregation {self.kind} {self.name} by={self.by} value={self.value} "
                f"backend={self.backend}>")

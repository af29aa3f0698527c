"""Aggregations on a session: counts, histograms, sums and latencies.

Two backends give the same rows for the same events:

* **kernel**: a hist trigger (``hist:keys=...:vals=hitcount``) on the probe's
  event in the session's own instance; the event itself stays off, so nothing
  per event reaches the ring buffer. Latency: the entry probe's hist keeps a
  per-thread timestamp variable, the return probe's ``onmatch()`` feeds an
  owner-named synthetic event, and a ``.log2`` hist on that event counts.
  A plain count (no key, no filter) needs no hist trigger: system-wide it is
  the probe's own hit counter, for a task (``pid``) perf counters on it.
* **user**: the probe's events come through the ring buffer and are
  aggregated from batch columns (:class:`~kprobes.agg.user.ColumnAggregator`).

``backend="auto"`` takes the kernel where it has hist triggers and can
express the request, and says why in ``backend_reason``.

>>> with Session() as s:                                         # doctest: +SKIP
...     agg = s.count("t:syscalls:sys_enter_openat", by=("comm",))
...     s.run(duration=5)
...     for row in agg.read():
...         print(row.key["comm"], row.count)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from ..agg.buckets import Linear
from ..agg.model import Aggregation, Row
from ..decode.format import parse_format
from ..errors import KprobesError, NotSupported, SpecError
from ..kernel import dynevents, triggers
from ..probes.model import KProbe, KRetProbe, Probe, UProbe, URetProbe
from ..probes.spec import parse_spec
from ..values import replace
from .agg_common import (
    BACKENDS,
    BASIC_KEYS,
    DEFAULT_SIZE,
    UNITS,
    _Agg,
    _check_names,
    _columns,
    _fetch_name,
    _field_kind,
    _probe,
)
from .agg_kernel import KernelAgg, KernelLatency

TYPE_CHECKING = False   # typing's, without importing typing at run time
if TYPE_CHECKING:
    from typing import Any

    from .batch import Batch

    Session = Any   # the runtime Session (its module imports this one: no import back)

__all__ = ["BASIC_KEYS", "BACKENDS", "UNITS", "new_aggregation", "new_latency"]


class UserAgg(_Agg):
    """Count / hist / sum / min / max / avg from batch columns."""

    def __init__(self, s: Session, kind: str, probe: Probe, by: tuple[str, ...],
                 value: str | None, buckets: str | Linear | None, cap: int, reason: str) -> None:
        h = s.add(probe, None)
        super().__init__(s, kind, h.name, by, value, None, "user", reason)
        self.handle = h
        from ..agg.user import ColumnAggregator  # the user backend only (start-up)
        self.agg = ColumnAggregator(by, value, buckets, cap)
        h.batch = self._on_batch
        self.value_field = value

    def arm(self) -> None:
        if self.value is None:
            return
        h = self.handle
        fmt = parse_format(self.session.tracefs.event_format(h.group, h.event), h.group)
        kind, _bits = _field_kind(fmt, self.value, "value")
        if kind == "str":
            raise KprobesError(f"value {self.value!r} is a string: it cannot be summed or "
                               "bucketed", hint=f"count by it instead: --by {self.value}")

    def _on_batch(self, b: Batch) -> None:
        if self.value is None:
            self.agg.add(len(b), _columns(b, self.by) if self.by else [])
        else:
            self.agg.add(len(b), _columns(b, self.by), b.args[self.value])
        self.dropped = self.agg.dropped

    def _read(self) -> list[Row]:
        return self.agg.rows()

    def _clear(self) -> None:
        self.agg.clear()
        self.dropped = 0


class UserLatency(_Agg):
    """Entry -> return time per thread, paired on the batch path after each read cycle."""

    def __init__(self, s: Session, entry: Probe, ret: Probe, by: tuple[str, ...], unit: str,
                 cap: int, reason: str) -> None:
        he = s.add(entry, None)
        hr = s.add(ret, None, name=f"{he.name}_return")
        super().__init__(s, "latency", he.name, by, None, unit, "user", reason)
        self.entry, self.ret = he, hr
        from ..agg.user import ColumnAggregator, Pairer, round_us
        self.agg = ColumnAggregator(by, "latency", "log2", cap)
        conv: Callable[[int], int] | None = None
        if unit == "us":
            conv = round_us      # as the kernel's common_timestamp.usecs
        self.scale = UNITS[unit] if unit == "ms" else 1
        self.pairer = Pairer(convert=conv)
        self._pending: list[tuple[int, int, int]] = []
        self._keys: list[list[Any]] = []
        he.batch = self._on_entry
        hr.batch = self._on_return
        s._after_cycle.append(self._pair)          # noqa: SLF001 - the session's hook

    def _on_entry(self, b: Batch) -> None:
        self._pending += zip(b.ts, [0] * len(b), b.tid, strict=False)

    def _on_return(self, b: Batch) -> None:
        start = len(self._keys)
        self._pending += zip(b.ts, range(start + 1, start + 1 + len(b)), b.tid, strict=False)
        cols = _columns(b, self.by)
        self._keys += [list(k) for k in zip(*cols, strict=False)] if cols else [[]] * len(b)

    def _pair(self) -> None:
        if not self._pending:
            return
        ev = sorted(self._pending)
        self._pending = []
        matched = self.pairer.feed(ev)
        keys = self._keys
        self._keys = []
        cols: list[list[Any]] = [[] for _ in self.by]
        lats = []
        for i, lat in matched:
            k = keys[ev[i][1] - 1]
            for c, v in zip(cols, k, strict=True):
                c.append(v)
            lats.append(lat // self.scale if self.scale > 1 else lat)
        if lats:
            self.agg.add(len(lats), cols, lats)
        self.dropped = self.agg.dropped

    def _read(self) -> list[Row]:
        return self.agg.rows()

    def _clear(self) -> None:
        self.agg.clear()


# ---------------------------------------------------------------- choosing

def _entry_return(spec: Probe | str) -> tuple[Probe, Probe]:
    """The entry and return probes of a function (``FUNC``, ``p:FUNC``, ``u:PATH:SYM``)."""
    if isinstance(spec, str):
        text = spec.strip()
        if ":" not in text.split()[0]:
            text = f"p:{text}"
        p = parse_spec(text)
    else:
        p = spec
    if isinstance(p, KProbe) and not p.is_return and not p.offset and p.symbol is not None:
        return (replace(p, args=(), filter=None, name=None),
                KRetProbe(p.symbol, module=p.module))
    if isinstance(p, UProbe) and not p.is_return and not p.offset and p.symbol is not None:
        return (replace(p, args=(), filter=None, name=None),
                URetProbe(path=p.path, symbol=p.symbol))
    raise SpecError(f"latency needs a function entry: {spec if isinstance(spec, str) else p.location()} "
                    "is not one", hint="give FUNC, p:FUNC or u:PATH:SYMBOL (no offset, not a "
                                       "return probe or tracepoint)")


def choose_latency_backend(s: Session, backend: str, unit: str) -> tuple[str, str]:
    """Backend of a latency (entry to return, or between two events) and why: the
    kernel's needs synthetic events, a ns/us unit and a clock it can subtract."""
    why = "the kernel's timestamps come in ns or us" if unit == "ms" else None
    if why is None and s.clock and s.clock not in ("mono", "global", "local"):
        why = f"trace clock {s.clock}"
    be, reason = _choose(s, backend, why)
    if be == "kernel" and not triggers.has_synthetic(s.tracefs):
        if backend == "kernel":
            raise NotSupported("this kernel has no synthetic events", feature="synthetic events",
                               hint="use --backend user (or auto)")
        be, reason = "user", "this kernel has no synthetic events"
    return be, reason


def _hit_counter(s: Session, kind: str, p: Probe, by: tuple[str, ...]) -> str:
    """How a count of every hit (no key, no filter) can be had with no hist trigger:
    ``kprobe``/``uprobe`` system-wide, from the probe's own hit counter
    (``kprobe_profile``/``uprobe_profile``); ``perf`` for the session's task (``pid``),
    from perf counters on it; else ``""``."""
    if kind != "count" or by or p.filter:
        return ""
    if s.pid is not None:
        from ..kernel import perf
        return "perf" if perf.available() else ""
    ek = dynevents.KINDS.get(p.kind)
    if ek is None or not s.tracefs.has(f"{ek.profile}_profile"):
        return ""
    return ek.profile


def _choose(s: Session, backend: str, why_not_kernel: str | None,
            needs_hist: bool = True) -> tuple[str, str]:
    if backend not in BACKENDS:
        raise KprobesError(f"unknown backend {backend!r}", hint="auto, kernel or user")
    if backend == "user":
        return "user", "asked for"
    has = triggers.has_hist(s.tracefs) or not needs_hist
    if backend == "kernel":
        if not has:
            raise NotSupported("this kernel has no hist triggers (no events/*/*/hist in "
                               f"{s.tracefs.root})", feature="hist triggers",
                               hint="use --backend user (or auto): the same rows, counted in "
                                    "this process")
        if why_not_kernel:
            raise KprobesError(f"the kernel backend cannot do this: {why_not_kernel}",
                               hint="use --backend user (or auto)")
        return "kernel", "asked for"
    if not has:
        return "user", "this kernel has no hist triggers"
    if why_not_kernel:
        return "user", why_not_kernel
    return "kernel", "hist triggers in the session's instance"


def new_aggregation(s: Session, kind: str, probe: Probe | str, *, by: Iterable[str] = (),
                    value: str | None = None, log2: bool = False,
                    linear: tuple[int, int, int] | None = None, backend: str = "auto",
                    filter: str | None = None, size: int | None = None,
                    cap: int | None = None) -> Aggregation:
    """:meth:`Session.aggregate <kprobes.runtime.aggregating.AggregateMixin.aggregate>`."""
    if s._started:                               # noqa: SLF001
        raise KprobesError("aggregations must be added before the session starts")
    size = DEFAULT_SIZE if size is None else size
    if cap is None:
        from ..agg.user import DEFAULT_CAP
        cap = DEFAULT_CAP
    by = tuple(by)
    p = _probe(probe, filter)
    if kind != "count":
        if value is None:
            raise KprobesError(f"{kind} needs a value", hint="e.g. value='how->mode'")
        p, value = _fetch_name(p, value)
    for k in by:
        p, k2 = _fetch_name(p, k)
        if k2 != k:
            by = tuple(k2 if x == k else x for x in by)
    _check_names(s, p, by, "key")
    if value is not None:
        _check_names(s, p, [value], "value")
    buckets: str | Linear | None = None
    if kind == "hist":
        if linear is not None:
            try:
                buckets = Linear(*linear)
            except (TypeError, ValueError) as e:
                raise KprobesError(f"--linear {linear}: {e}", hint="LO,HI,STEP e.g. 0,1000,100"
                                   ) from None
        else:
            buckets = "log2"
    if size < 128 or size & (size - 1):
        raise KprobesError(f"size {size}: the kernel takes a power of 2, at least 128",
                           hint="e.g. 2048")
    why = None
    if kind in ("min", "max"):
        why = f"hist triggers keep sums, not a {kind}"
    elif len([k for k in by if k not in BASIC_KEYS]) > 1:
        why = "two argument keys may exceed the kernel's key size"
    hits_of = _hit_counter(s, kind, p, by)
    be, reason = _choose(s, backend, why, needs_hist=not hits_of)
    if be == "kernel":
        agg: _Agg = KernelAgg(s, kind, p, by, value, buckets, size, reason, hits_of=hits_of)
    else:
        agg = UserAgg(s, kind, p, by, value, buckets, cap, reason)
    s.aggregations.append(agg)
    return agg


def new_latency(s: Session, func: Probe | str, by: Iterable[str] = ("comm",), *,
                unit: str = "us", backend: str = "auto", size: int | None = None,
                cap: int | None = None) -> Aggregation:
    """:meth:`Session.funclatency <kprobes.runtime.aggregating.AggregateMixin.funclatency>`."""
    if s._started:                               # noqa: SLF001
        raise KprobesError("aggregations must be added before the session starts")
    if unit not in UNITS:
        raise KprobesError(f"unknown unit {unit!r}", hint="ns, us or ms")
    size = DEFAULT_SIZE if size is None else size
    if cap is None:
        from ..agg.user import DEFAULT_CAP
        cap = DEFAULT_CAP
    by = tuple(by)
    bad = [k for k in by if k not in BASIC_KEYS]
    if bad:
        raise KprobesError(f"unknown key {bad[0]!r} for a latency",
                           hint="keys: " + ", ".join(BASIC_KEYS))
    entry, ret = _entry_return(func)
    be, reason = choose_latency_backend(s, backend, unit)
    if be == "kernel":
        agg: _Agg = KernelLatency(s, entry, ret, by, unit, size, reason)
    else:
        agg = UserLatency(s, entry, ret, by, unit, cap, reason)
    s.aggregations.append(agg)
    return agg

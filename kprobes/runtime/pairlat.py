"""Latency between two different events paired by a key: ``Session.latency_between``.

A *start* event (or several: ``sched_wakeup`` and ``sched_wakeup_new``)
records a timestamp under a key made of its fields (``pid``); the *end*
event looks its own key fields (``next_pid``) up, and the difference is
bucketed (log2) per ``by`` key of the end event. Each start source keeps
the latest timestamp per key, and an end consumes it: an end with no
start before it counts nothing.

* **kernel**: per start, ``hist:keys=K:ts=common_timestamp`` on the start
  event; on the end event ``hist:keys=K':lat=common_timestamp-$ts:onmatch(START)
  .trace(SYNTH,$lat,F...)`` feeds an owner-named synthetic event carrying
  the ``by`` fields, and a ``.log2`` hist on it counts (as
  ``Documentation/trace/histogram.rst``'s wakeup-latency example).
* **user**: the events come through the ring buffer and are paired in
  timestamp order after each read cycle, with the same rounding.

>>> with Session() as s:                                         # doctest: +SKIP
...     agg = s.latency_between(["t:sched:sched_wakeup", "t:sched:sched_wakeup_new"],
...                             "t:sched:sched_switch", start_key=("pid",),
...                             end_key=("next_pid",))
...     s.run(duration=5)
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable, Sequence

from ..agg.model import Row
from ..agg.user import ColumnAggregator, round_us
from ..decode.format import EventFormat, parse_format
from ..errors import KprobesError
from ..kernel import triggers
from ..probes.model import Probe
from ..probes.spec import parse_spec
from .agg_common import BASIC_KEYS, UNITS, _Agg, _columns, _field_kind
from .agg_kernel import KernelAgg, add_latency_triggers
from .aggregate import choose_latency_backend

TYPE_CHECKING = False   # typing's, without importing typing at run time
if TYPE_CHECKING:
    from typing import Any

    Session = Any   # the runtime Session (its module imports this one: no import back)

    from .batch import Batch

__all__ = ["latency_between"]



def _probe(p: Probe | str) -> Probe:
    return parse_spec(p) if isinstance(p, str) else p


def _fmt(s: Session, p: Probe) -> EventFormat:
    g, e = getattr(p, "group", None), getattr(p, "event", None)
    if g is None or e is None:
        raise KprobesError(f"latency_between pairs tracepoints: {p.location()} is not one",
                           hint="give t:GROUP:EVENT specs")
    try:
        return parse_format(s.tracefs.event_format(g, e), g)
    except OSError:
        raise KprobesError(f"no tracepoint {g}:{e} on this kernel",
                           hint=f"see: kprobes list -t '{g}:*'") from None


def _check(fmt: EventFormat, names: Sequence[str], what: str) -> None:
    for n in names:
        if n in BASIC_KEYS:
            continue
        _field_kind(fmt, n, what)


def _kexpr(name: str, fields: set[str]) -> str:
    """A key as the kernel names it (``tid``/``pid`` -> the task: ``common_pid``, unless
    the event has a field of that name, as ``sched_wakeup``'s ``pid``)."""
    return "common_pid" if name in ("tid", "pid") and name not in fields else name


def _cols(b: Batch, names: Sequence[str], fields: set[str]) -> list[Sequence[Any]]:
    """Batch columns of ``names``: the event's own fields first, then comm/pid/tid/cpu."""
    return [b.args[n] if n in fields else _columns(b, [n])[0] for n in names]


def _names(fmt: EventFormat) -> set[str]:
    return {f.name for f in fmt.arg_fields}


#: the types a synthetic event definition knows by name (kernel/trace/trace_events_synth.c)
_SYNTH_TYPES = {"s64", "u64", "s32", "u32", "s16", "u16", "s8", "u8", "char", "unsigned char",
                "int", "unsigned int", "short", "unsigned short", "long", "unsigned long",
                "bool", "pid_t", "gfp_t"}


def _synth_type(fmt: EventFormat, name: str) -> str:
    """A synthetic event field of the same size and signedness as the end event's field."""
    f = fmt.field(name)
    if f.decl in _SYNTH_TYPES:                   # the kernel compares type names first
        return f"{f.decl} {name}"
    if f.kind == "char_array":
        return f"char {name}[{f.size}]"
    if f.size not in (1, 2, 4, 8):
        raise KprobesError(f"by {name!r}: a {f.decl} cannot be carried to a synthetic event",
                           hint="key by a scalar or char-array field")
    return f"{'s' if f.signed else 'u'}{f.size * 8} {name}"


class KernelPairLatency(KernelAgg):
    """Start hists with a timestamp variable, end hists with ``onmatch()`` -> synthetic -> log2."""

    def __init__(self, s: Session, starts: list[Probe], end: Probe, start_key: tuple[str, ...],
                 end_key: tuple[str, ...], by: tuple[str, ...], fields: list[str], unit: str,
                 size: int, reason: str) -> None:
        self.n = len(s.aggregations)
        self.synth = f"{s.name}_pl{self.n}"
        self.starts = []
        for p in starts:
            h = s.add(p, None)
            s._no_enable.add(id(h))                  # noqa: SLF001 - triggers only
            s._no_comm.add(id(h))                    # noqa: SLF001
            self.starts.append(h)
        self.end = s.add(end, None)
        s._no_enable.add(id(self.end))               # noqa: SLF001
        s._no_comm.add(id(self.end))                 # noqa: SLF001
        super().__init__(s, "latency", end, by, "lat", "log2", size, reason,
                         event=("synthetic", self.synth), name=self.starts[0].name, unit=unit)
        self.start_key, self.end_key, self.fields = start_key, end_key, fields

    def arm(self) -> None:
        s = self.session
        tfs = s.tracefs
        fmt = parse_format(tfs.event_format(self.end.group, self.end.event), self.end.group)
        decl = "; ".join(["u64 lat", *(_synth_type(fmt, f) for f in self.fields)])
        triggers.define_synthetic(tfs, f"{self.synth} {decl}")
        s._undo.append((f"delete synthetic event {self.synth}",     # noqa: SLF001
                        lambda: triggers.delete_synthetic(tfs, self.synth)))
        ts = "common_timestamp" + (".usecs" if self.unit == "us" else "")
        clock = f":clock={s.clock}" if s.clock else ""
        ekeys = ",".join(_kexpr(k, _names(fmt)) for k in self.end_key)
        params = "".join(f",{f}" for f in self.fields)
        lines = []
        for i, h in enumerate(self.starts):
            sfmt = parse_format(tfs.event_format(h.group, h.event), h.group)
            skeys = ",".join(_kexpr(k, _names(sfmt)) for k in self.start_key)
            var, lat = f"kps{self.n}_{i}", f"kpl{self.n}_{i}"
            cond = f" if {h.probe.filter}" if h.probe.filter else ""
            lines.append((h, f"hist:keys={skeys}:{var}={ts}{clock}{cond}"))
            econd = f" if {self.end.probe.filter}" if self.end.probe.filter else ""
            lines.append((self.end, f"hist:keys={ekeys}:{lat}={ts}-${var}:onmatch({h.group}."
                                    f"{h.event}).trace({self.synth},${lat}{params}){clock}"
                                    f"{econd}"))
        add_latency_triggers(s, lines)
        super().arm()


class UserPairLatency(_Agg):
    """The same pairing on the ring buffer's events, after each read cycle. An end
    whose start has not been seen is kept while it is less than ``HOLD_NS`` older
    than the newest event: the start may sit on another CPU's page that a later
    cycle reads (a start newer than the end is not its start)."""

    HOLD_NS = 1_000_000_000
    KEEP = 16                  # starts kept per key (the newest)

    def __init__(self, s: Session, starts: list[Probe], end: Probe, start_key: tuple[str, ...],
                 end_key: tuple[str, ...], by: tuple[str, ...], unit: str, cap: int,
                 reason: str) -> None:
        hs = [s.add(p, None) for p in starts]
        he = s.add(end, None)
        if not set(by) & {"comm"}:
            for h in (*hs, he):
                s._no_comm.add(id(h))                # noqa: SLF001 - no per-event comm fetch
        super().__init__(s, "latency", hs[0].name, by, None, unit, "user", reason)
        self.agg = ColumnAggregator(by, "latency", "log2", cap)
        self.conv = round_us if unit == "us" else None
        self.scale = UNITS[unit] if unit == "ms" else 1
        self.start_key, self.end_key = start_key, end_key
        self.sfields = [_names(_fmt(s, p)) for p in starts]
        self.efields = _names(_fmt(s, end))
        self.open: list[dict[Any, list[int]]] = [{} for _ in hs]
        self._pending: list[tuple[int, int, Any, Any]] = []     # ts, source (-1: end), key, by
        for i, h in enumerate(hs):
            h.batch = self._on_start(i)
        he.batch = self._on_end
        s._after_cycle.append(self._pair)            # noqa: SLF001 - the session's hook

    def _on_start(self, i: int) -> Any:
        def on(b: Batch) -> None:
            keys = zip(*_cols(b, self.start_key, self.sfields[i]), strict=False)
            self._pending += ((t, i, k, None) for t, k in zip(b.ts, keys, strict=False))
        return on

    def _on_end(self, b: Batch) -> None:
        keys = zip(*_cols(b, self.end_key, self.efields), strict=False)
        bys = zip(*_cols(b, self.by, self.efields), strict=False) if self.by else iter(lambda: (), None)
        self._pending += ((t, -1, k, v) for t, k, v in zip(b.ts, keys, bys, strict=False))

    def _pair(self) -> None:
        if not self._pending:
            return
        ev = sorted(self._pending, key=lambda e: (e[0], e[1] < 0))
        self._pending = []
        conv = self.conv
        cols: list[list[Any]] = [[] for _ in self.by]
        lats = []
        late: list[tuple[int, int, Any, Any]] = []
        newest = ev[-1][0]
        for e in ev:
            ts, src, key, by = e
            t = conv(ts) if conv is not None else ts
            if src >= 0:
                starts = self.open[src].setdefault(key, [])
                starts.append(t)
                if len(starts) > 1 and starts[-2] > t:      # read out of order
                    starts.sort()
                del starts[:-self.KEEP]
                continue
            found = False
            for o in self.open:
                starts = o.get(key) or []
                if not starts or starts[0] > t:   # only newer starts: not this end's
                    continue
                i = bisect_right(starts, t)
                t0 = starts[i - 1]                # the latest start before the end;
                del starts[:i]                    # older ones were overwritten by it
                if not starts:
                    del o[key]
                found = True
                for c, v in zip(cols, by, strict=True):
                    c.append(v)
                lats.append((t - t0) // self.scale)
            if not found and newest - ts < self.HOLD_NS:
                # its start may come from another CPU's page in a later read cycle
                late.append(e)
        self._pending = late
        if lats:
            self.agg.add(len(lats), cols, lats)
        self.dropped = self.agg.dropped

    def _read(self) -> list[Row]:
        return self.agg.rows()

    def _clear(self) -> None:
        self.agg.clear()


def latency_between(s: Session, starts: Probe | str | Iterable[Probe | str], end: Probe | str,
                    *, start_key: Sequence[str] = ("tid",), end_key: Sequence[str] = ("tid",),
                    by: Iterable[str] = (), unit: str = "us", backend: str = "auto",
                    size: int = 2048, cap: int = 10240) -> Any:
    """See :meth:`Session.latency_between`."""
    if s._started:                                   # noqa: SLF001
        raise KprobesError("aggregations must be added before the session starts")
    if unit not in UNITS:
        raise KprobesError(f"unknown unit {unit!r}", hint="ns, us or ms")
    start_list = [_probe(starts)] if isinstance(starts, (str, Probe)) else \
        [_probe(p) for p in starts]
    if not start_list:
        raise KprobesError("latency_between needs at least one start event",
                           hint="e.g. t:sched:sched_wakeup")
    endp = _probe(end)
    start_key, end_key, by = tuple(start_key), tuple(end_key), tuple(by)
    if len(start_key) != len(end_key) or not start_key:
        raise KprobesError(f"keys {start_key} and {end_key} do not pair: one field of the end "
                           "event per field of the start event", hint="e.g. pid -> next_pid")
    efmt = _fmt(s, endp)
    for p in start_list:
        _check(_fmt(s, p), start_key, "key")
    _check(efmt, end_key, "key")
    _check(efmt, by, "key")
    fields = [k for k in by if k not in BASIC_KEYS]
    be, reason = choose_latency_backend(s, backend, unit)
    if be == "kernel":
        agg: _Agg = KernelPairLatency(s, start_list, endp, start_key, end_key, by, fields, unit,
                                      size, reason)
    else:
        agg = UserPairLatency(s, start_list, endp, start_key, end_key, by, unit, cap, reason)
    s.aggregations.append(agg)
    return agg

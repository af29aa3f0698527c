"""Aggregations on a session: counts, histograms, sums and latencies.

Two backends give the same rows for the same events:

* **kernel**: a hist trigger (``hist:keys=...:vals=hitcount``) on the probe's
  event in the session's own instance; the event itself stays off, so nothing
  per event reaches the ring buffer. Latency: the entry probe's hist keeps a
  per-thread timestamp variable, the return probe's ``onmatch()`` feeds an
  owner-named synthetic event, and a ``.log2`` hist on that event counts.
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

from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace

from ..agg.buckets import Linear, log2_range
from ..agg.model import Aggregation, Bucket, Row, merge_rows
from ..decode.format import EventFormat, parse_format
from ..errors import KprobesError, NotSupported, SpecError
from ..kernel import dynevents, triggers
from ..probes.model import KProbe, KRetProbe, Probe, Tracepoint, UProbe, URetProbe
from ..probes.spec import parse_spec

TYPE_CHECKING = False   # typing's, without importing typing at run time
if TYPE_CHECKING:
    from typing import Any

    from ..agg.histfile import HistTable
    from .handle import ProbeHandle
    from .reader import Batch

    Session = Any   # the runtime Session (its module imports this one: no import back)

__all__ = ["BASIC_KEYS", "BACKENDS", "UNITS", "new_aggregation", "new_latency"]

BASIC_KEYS = ("comm", "pid", "tid", "cpu")
BACKENDS = ("auto", "kernel", "user")
UNITS = {"ns": 1, "us": 1000, "ms": 1_000_000}
DEFAULT_SIZE = 2048          # hist size= (keys the kernel keeps; a power of 2, >= 128)


def _probe(spec: Probe | str, filter: str | None) -> Probe:
    p = parse_spec(spec) if isinstance(spec, str) else spec
    if filter:
        p = replace(p, filter=filter)
    return p


def _fetch_name(p: Probe, expr: str) -> tuple[Probe, str]:
    """The arg name for ``expr`` in ``p``; a dynamic probe that does not fetch it yet
    gets it added (``how->mode`` -> arg ``how_mode``)."""
    from ..probes.spec import parse_arg
    names = {a.name for a in p.args}
    if expr in names or expr in BASIC_KEYS or not p.dynamic:
        return p, expr
    a = parse_arg(expr, len(p.args) + 1)
    if a.name in names:
        return p, a.name
    return p.with_args(a), a.name


def _tracepoint_fields(s: Session, p: Tracepoint) -> EventFormat | None:
    try:
        return parse_format(s.tracefs.event_format(p.group, p.event), p.group)
    except (OSError, KprobesError):
        return None


def _check_names(s: Session, p: Probe, names: Sequence[str], what: str) -> None:
    """Refuse names the probe does not fetch, before anything is created."""
    if isinstance(p, Tracepoint):
        fmt = _tracepoint_fields(s, p)
        known = {f.name for f in fmt.arg_fields} if fmt else None
    else:
        known = {a.name for a in p.args}
    for n in names:
        if n in BASIC_KEYS and what == "key":
            continue
        if known is not None and n not in known:
            keys = ", ".join([*(BASIC_KEYS if what == "key" else ()), *sorted(known)])
            raise KprobesError(f"unknown {what} {n!r}: {p.location()} has no field {n!r}",
                               hint=f"{what}s here: {keys or 'none'}")


def _field_kind(fmt: EventFormat, name: str, what: str) -> tuple[str, int]:
    """("str" | "int", signed bits) of a field, as a key or value."""
    try:
        f = fmt.field(name)
    except KeyError:
        raise KprobesError(f"unknown {what} {name!r}: event {fmt.system}:{fmt.name} has no "
                           f"such field", hint="fields: " + ", ".join(
                               x.name for x in fmt.arg_fields)) from None
    if f.is_string or f.kind == "char_array":
        return "str", 0
    if f.kind != "int":
        raise KprobesError(f"{what} {name!r} is a {f.decl}: not a number or a string",
                           hint="aggregate over scalar fields")
    return "int", (f.size * 8 if f.signed else 0)


class _Agg(Aggregation):
    """Common part: the session and its probe handles."""

    def __init__(self, s: Session, kind: str, name: str, by: tuple[str, ...],
                 value: str | None, unit: str | None, backend: str, reason: str) -> None:
        super().__init__(kind, name, by, value, unit, backend, reason)
        self.session = s

    def arm(self) -> None:
        """After the probes exist: set up what reads them (triggers, handlers)."""


# ---------------------------------------------------------------- user side

def _columns(b: Batch, names: Sequence[str]) -> list[Sequence[Any]]:
    cols: list[Sequence[Any]] = []
    for n in names:
        if n in BASIC_KEYS:
            cols.append(getattr(b, n))
        else:
            cols.append(b.args[n])
    return cols


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


# ---------------------------------------------------------------- kernel side

class _KeySpec:
    """How one key is asked of the kernel and read back."""

    def __init__(self, name: str, expr: str, printed: tuple[str, ...], kind: str,
                 bits: int = 0) -> None:
        self.name, self.expr, self.printed, self.kind, self.bits = name, expr, printed, kind, bits


def _kernel_keys(by: Sequence[str], fmt: EventFormat | None, has_comm: bool) -> list[_KeySpec]:
    strings = sum(1 for k in by if k not in (*BASIC_KEYS, "kstack") and fmt is not None
                  and _field_kind(fmt, k, "key")[0] == "str")
    out = []
    for k in by:
        if k == "comm":
            if has_comm and not strings:     # fetched with $comm at the probe: exact
                out.append(_KeySpec(k, "__comm", ("__comm",), "str"))
            else:
                out.append(_KeySpec(k, "common_pid.execname", ("common_pid",), "execname"))
        elif k in ("pid", "tid") and "comm" in by and not (has_comm and not strings):
            # comm is keyed as common_pid.execname: read the pid from it, one key not two
            out.append(_KeySpec(k, "", ("common_pid",), f"exec{k}"))
        elif k in ("pid", "tid"):
            out.append(_KeySpec(k, "common_pid", ("common_pid",), k))
        elif k == "kstack":
            out.append(_KeySpec(k, "stacktrace", ("stacktrace", "common_stacktrace"), "stacktrace"))
        elif k == "cpu":
            out.append(_KeySpec(k, "common_cpu", ("cpu", "common_cpu"), "int"))
        else:
            assert fmt is not None
            kind, bits = _field_kind(fmt, k, "key")
            out.append(_KeySpec(k, k, (k,), kind, bits))
    return out


class KernelAgg(_Agg):
    """A hist trigger on the probe's event in the session's instance."""

    delta_intervals = True

    def __init__(self, s: Session, kind: str, probe: Probe, by: tuple[str, ...],
                 value: str | None, buckets: str | Linear | None, size: int, reason: str,
                 event: tuple[str, str] | None = None, name: str | None = None,
                 unit: str | None = None, handle_name: str | None = None,
                 hits_of: str = "") -> None:
        self.handle: ProbeHandle | None = None
        if event is None:
            self.handle = s.add(probe, None, name=handle_name)
            s._no_enable.add(id(self.handle))     # noqa: SLF001 - triggers only
            if "comm" not in by:                  # a string fetch per hit costs: only if keyed
                s._no_comm.add(id(self.handle))   # noqa: SLF001
            name = self.handle.name
        super().__init__(s, kind, name or "", by, value, unit, "kernel", reason)
        self.probe = probe
        self.buckets = buckets
        self.size = size
        self.event = event
        self.line = ""
        self.keys: list[_KeySpec] = []
        self.filter = probe.filter if event is None else None
        self.hits_of = hits_of          # "kprobe"/"uprobe": counted by the probe's hit counter
        if hits_of:
            self.backend_reason = f"the probe's own hit counter ({hits_of}_profile)"
        self._hits_base = 0

    def _where(self) -> tuple[str, str]:
        if self.event is not None:
            return self.event
        assert self.handle is not None
        return self.handle.group, self.handle.event

    def _arm_hits(self, g: str, e: str) -> None:
        """The event soft-enabled by a trigger that never fires (``disable_event`` of
        itself with a count of 0): the probe is armed and counts its hits, and each
        hit returns before a record is built (a hist trigger builds one per hit)."""
        s = self.session
        inst = s._inst                   # noqa: SLF001
        assert inst is not None
        self.line = f"disable_event:{g}:{e}:0"
        triggers.add_trigger(inst, g, e, self.line, hint="the probe's hit counter needs "
                             "event triggers")
        s._undo.append((f"remove trigger {g}/{e}",                   # noqa: SLF001
                        lambda: self._disarm(self.line)))

    def _hits(self) -> int:
        assert self.handle is not None
        return self.session.tracefs.profile(self.hits_of).get(self.handle.event, (0, 0))[0]

    def arm(self) -> None:
        s = self.session
        g, e = self._where()
        if self.hits_of:
            self._arm_hits(g, e)
            return
        fmt = parse_format(s.tracefs.event_format(g, e), g)
        has_comm = any(f.name == "__comm" for f in fmt.fields)
        self.keys = _kernel_keys(self.by, fmt, has_comm)
        exprs = [k.expr for k in self.keys if k.expr]
        vals = ["hitcount"]
        if self.value is not None:
            kind, _ = _field_kind(fmt, self.value, "value")
            if kind == "str":
                raise KprobesError(f"value {self.value!r} is a string: it cannot be summed "
                                   "or bucketed", hint=f"count by it instead: --by {self.value}")
            if self.buckets == "log2":
                exprs.append(f"{self.value}.log2")
            elif isinstance(self.buckets, Linear):
                exprs.append(f"{self.value}.buckets={self.buckets.step}")
            vals.append(self.value)
        if not exprs:
            exprs = ["common_cpu"]       # a hist needs a key: one row per CPU, merged on read
        self.line = f"hist:keys={','.join(exprs)}:vals={','.join(vals)}:size={self.size}"
        inst = s._inst                   # noqa: SLF001
        assert inst is not None
        full = self.line + (f" if {self.filter}" if self.filter else "")
        triggers.add_trigger(inst, g, e, full,
                             hint="check the keys and value (kprobes info FUNC lists fields)")
        s._undo.append((f"remove trigger {g}/{e}", lambda: self._disarm(full)))  # noqa: SLF001

    def _disarm(self, full: str) -> None:
        try:
            self.final = self.read()
        finally:
            self.closed = True
            g, e = self._where()
            inst = self.session._inst               # noqa: SLF001
            assert inst is not None
            triggers.remove_trigger(inst, g, e, full)

    def _read(self) -> list[Row]:
        g, e = self._where()
        inst = self.session._inst                   # noqa: SLF001
        if inst is None:
            return []
        if self.hits_of:
            n = self._hits() - self._hits_base
            return [Row({}, n)] if n else []
        from ..agg.histfile import parse_hist  # the hist file's reader (start-up)
        tables = parse_hist(triggers.read_hist(inst, g, e), self.printed_names())
        return self.table_rows(tables[0]) if tables else []     # ours is the only one

    def printed_names(self) -> list[tuple[str, ...]]:
        """The names the kernel prints for our keys, in order (to split a row's keys)."""
        names = [k.printed for k in self.keys if k.expr]
        if self.value is not None and self.buckets is not None:
            names.append((self.value,))
        if not self.keys and self.buckets is None:
            names = [("cpu", "common_cpu")]
        return names

    def table_rows(self, t: HistTable) -> list[Row]:
        """Our rows from our trigger's table."""
        from ..agg.histfile import Log2Key, RangeKey, key_value
        self.dropped = t.dropped
        tasks = self.session._reader.tasks if self.session._reader else None  # noqa: SLF001
        rows = []
        for keys, vals in t.rows:
            key: dict[str, Any] = {}
            for spec in self.keys:
                raw = keys.get(next((p for p in spec.printed if p in keys), spec.printed[0]), "")
                if spec.kind == "execname":
                    key[spec.name] = key_value(raw, "execname")[0]
                elif spec.kind in ("pid", "tid", "execpid", "exectid"):
                    v = key_value(raw, "execname")[1] if spec.kind[:4] == "exec" else key_value(raw)
                    key[spec.name] = tasks.tgid(v) if spec.kind[-3:] == "pid" and tasks else v
                else:
                    key[spec.name] = key_value(raw, spec.kind, spec.bits)
            count = vals.get("hitcount", 0)
            total = vals.get(self.value) if self.value is not None else None
            buckets = None
            if self.value is not None and self.buckets is not None:
                raw = keys.get(self.value, "")
                if self.buckets == "log2":
                    kk = key_value(raw, "log2")
                    assert isinstance(kk, Log2Key)
                    buckets = [Bucket(*log2_range(kk.k), count)]
                else:
                    assert isinstance(self.buckets, Linear)
                    rk = key_value(raw, "range")
                    assert isinstance(rk, RangeKey)
                    buckets = self.buckets.buckets({self.buckets.index(rk.start): count})
            rows.append(Row(key, count, total, None, None, buckets))
        return merge_rows(rows)

    def _clear(self) -> None:
        g, e = self._where()
        inst = self.session._inst                    # noqa: SLF001
        if inst is None:
            return
        if self.hits_of:                             # the kernel's counter only grows
            self._hits_base = self._hits()
            self._prev = None
            return
        triggers.add_trigger(inst, g, e, self.line + ":clear" +
                             (f" if {self.filter}" if self.filter else ""))
        self._prev = None


class KernelLatency(KernelAgg):
    """Entry/return hists -> an owner-named synthetic event -> a ``.log2`` hist of ``lat``."""

    def __init__(self, s: Session, entry: Probe, ret: Probe, by: tuple[str, ...], unit: str,
                 size: int, reason: str) -> None:
        self.n = len(s.aggregations)
        self.synth = f"{s.name}_lat{self.n}"
        he = s.add(entry, None)
        hr = s.add(ret, None, name=f"{he.name}_return")
        s._no_enable.update((id(he), id(hr)))        # noqa: SLF001
        s._no_comm.update((id(he), id(hr)))          # noqa: SLF001 - comm: the synthetic event's
        super().__init__(s, "latency", entry, by, "lat", "log2", size, reason,
                         event=("synthetic", self.synth), name=he.name, unit=unit)
        self.entry, self.ret = he, hr

    def arm(self) -> None:
        s = self.session
        tfs = s.tracefs
        inst = s._inst                               # noqa: SLF001
        assert inst is not None
        triggers.define_synthetic(tfs, f"{self.synth} u64 lat")
        s._undo.append((f"delete synthetic event {self.synth}",     # noqa: SLF001
                        lambda: triggers.delete_synthetic(tfs, self.synth)))
        ts = "common_timestamp" + (".usecs" if self.unit == "us" else "")
        clock = f":clock={s.clock}" if s.clock else ""
        var, lat = f"kpt{self.n}", f"kpl{self.n}"
        he, hr = self.entry, self.ret
        first = f"hist:keys=common_pid:{var}={ts}{clock}"
        second = (f"hist:keys=common_pid:{lat}={ts}-${var}:onmatch({he.group}.{he.event})"
                  f".trace({self.synth},${lat}){clock}")
        for h, line in ((he, first), (hr, second)):
            triggers.add_trigger(inst, h.group, h.event, line,
                                 hint="latency needs hist triggers and synthetic events")

            def undo(g: str = h.group, e: str = h.event, line: str = line) -> None:
                triggers.remove_trigger(inst, g, e, line)
            s._undo.append((f"remove trigger {h.group}/{h.event}", undo))    # noqa: SLF001
        super().arm()


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
    """``kprobe``/``uprobe`` where a count is of every hit (no key, filter or task) of a
    probe whose hits the kernel counts itself (``kprobe_profile``/``uprobe_profile``):
    the kernel backend then reads that counter, with no hist trigger, else ``""``."""
    ek = dynevents.KINDS.get(p.kind)
    if kind != "count" or by or p.filter or s.pid is not None or ek is None or \
            not s.tracefs.has(f"{ek.profile}_profile"):
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

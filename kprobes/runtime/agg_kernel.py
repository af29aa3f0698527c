"""The kernel backend of aggregations: a hist trigger on the probe's event in the
session's instance (the event itself stays off), a synthetic event fed by
entry and return hists for latencies, and for a plain count the probe's own
hit counter (system-wide) or perf counters on the traced task."""

from __future__ import annotations

from collections.abc import Sequence

from ..agg.buckets import Linear, log2_range
from ..agg.model import Bucket, Row, merge_rows
from ..decode.format import EventFormat, parse_format
from ..errors import KprobesError, NotSupported
from ..kernel import triggers
from ..probes.model import Probe
from .agg_common import BASIC_KEYS, _Agg, _field_kind

TYPE_CHECKING = False   # typing's, without importing typing at run time
if TYPE_CHECKING:
    from typing import Any

    from ..agg.histfile import HistTable
    from ..kernel.perf import TaskCounter
    from .handle import ProbeHandle

    Session = Any   # the runtime Session (its module imports this one: no import back)

__all__ = ["KernelAgg", "KernelLatency"]


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
        # "kprobe"/"uprobe": counted by the probe's hit counter; "perf": by perf
        # counters on the traced tasks
        self.hits_of = hits_of
        if hits_of == "perf":
            self.backend_reason = "perf counters on the traced tasks (perf_event_open)"
        elif hits_of:
            self.backend_reason = f"the probe's own hit counter ({hits_of}_profile)"
        self._hits_base = 0
        self.counter: TaskCounter | None = None

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

    def _arm_perf(self, g: str, e: str) -> bool:
        """Perf counters on the traced tasks (no record, no trigger, and a kprobe hit in
        any other task returns at once); False where this kernel cannot, after which
        the hist trigger counts."""
        from ..kernel.perf import TaskCounter
        s = self.session
        assert s.pid is not None
        try:
            self.counter = TaskCounter(s.tracefs.event_id(g, e), s._tids([s.pid]),  # noqa: SLF001
                                       f"{g}:{e}")
        except NotSupported as err:
            if not triggers.has_hist(s.tracefs):
                raise
            self.hits_of = ""
            self.backend_reason = f"hist trigger ({err})"
            if s._perf_only():          # noqa: SLF001 - its task filter was left to perf
                s._set_pids([s.pid])    # noqa: SLF001
            return False
        s._undo.append((f"close perf counters of {g}/{e}", self._close_perf))  # noqa: SLF001
        return True

    def _close_perf(self) -> None:
        try:
            self.final = self.read()
        finally:
            self.closed = True
            if self.counter is not None:
                self.counter.close()

    def _hits(self) -> int:
        if self.counter is not None:
            return self.counter.read()
        assert self.handle is not None
        return self.session.tracefs.profile(self.hits_of).get(self.handle.event, (0, 0))[0]

    def arm(self) -> None:
        s = self.session
        g, e = self._where()
        if self.hits_of == "perf" and self._arm_perf(g, e):
            return
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
        add_latency_triggers(s, [(he, first), (hr, second)])
        super().arm()


def add_latency_triggers(s: Session, lines: list[tuple[ProbeHandle, str]]) -> None:
    """Add each ``(handle, trigger line)`` of a latency in the session's instance, each
    with its undo (removed in reverse, before the synthetic event they feed)."""
    inst = s._inst                                   # noqa: SLF001
    assert inst is not None
    for h, line in lines:
        triggers.add_trigger(inst, h.group, h.event, line,
                             hint="latency needs hist triggers and synthetic events")

        def undo(g: str = h.group, e: str = h.event, line: str = line) -> None:
            triggers.remove_trigger(inst, g, e, line)
        s._undo.append((f"remove trigger {h.group}/{h.event}", undo))    # noqa: SLF001

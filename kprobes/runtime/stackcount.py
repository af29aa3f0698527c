"""Counting distinct stacks at a probe (``Session.stacks``, ``kprobes stacks``).

A stack count is an :class:`~kprobes.agg.model.Aggregation` of kind
``count`` whose rows are keyed by ``kstack`` and/or ``ustack`` (tuples of
function names, innermost first; a frame that has no name is ``0xADDR
[module or file]``), after ``pid``/``comm`` when counted per process. Two
backends give the same rows:

* **kernel**: a hist trigger ``hist:keys=stacktrace`` on the probe's event in
  the session's instance; the event stays off, nothing per event reaches the
  ring buffer (kernel stacks only, at most 16 frames, where hist triggers exist);
* **user**: ``options/stacktrace`` / ``options/userstacktrace`` records come
  with each event; raw addresses are counted per batch, a stack seen for the
  first time is symbolized then (while its process still exists).

Rows merge stacks whose frames have the same names (the same function chain
reached from different call sites counts once).

>>> from kprobes.agg.model import Row
>>> rows = [Row({"ustack": ("leaf", "top", "main")}, 1),
...         Row({"ustack": ("leaf", "mid", "top", "main")}, 3)]
>>> print(folded(rows))
main;top;leaf 1
main;top;mid;leaf 3
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from ..agg.histfile import HistTable, frame_name
from ..agg.model import Aggregation, Row, merge_rows
from ..probes.model import KProbe, Probe
from .agg_common import DEFAULT_SIZE, _probe
from .agg_kernel import KernelAgg
from .aggregate import _choose
from .stacks import parse_kind, raw_stacks

TYPE_CHECKING = False   # typing's, without importing typing at run time
if TYPE_CHECKING:
    from typing import Any

__all__ = ["StackCounts", "KernelStackCounts", "UserStackCounts", "root_first", "folded",
           "stack_text", "add_stacks", "PER_PROCESS"]

#: the keys of ``stacks(..., per_process=True)`` before the stacks
PER_PROCESS = ("pid", "comm")
# frames of the tracing machinery above the probed code in a kernel stack
_INTERNAL = ("kprobe", "kretprobe", "rethook", "trampoline", "ftrace", "perf_trace",
             "trace_event", "exc_int3", "do_int3", "optimized_callback", "0x")


def root_first(row: Row) -> list[str]:
    """A row's frames from the outermost: user frames, then kernel frames (a flame
    graph's order), after the process when counted per process."""
    k = row.key
    who = []
    if "comm" in k or "pid" in k:
        who = ["-".join(str(k[x]) for x in ("comm", "pid") if x in k)]
    return [*who, *reversed(k.get("ustack", ())), *reversed(k.get("kstack", ()))]


def folded(rows: Iterable[Row]) -> str:
    """One line per stack: frames root-first joined by ``;``, a space, the count
    (what flamegraph.pl, inferno and speedscope read)."""
    return "\n".join(f"{';'.join(root_first(r))} {r.count}" for r in rows)


def stack_text(rows: Iterable[Row]) -> str:
    """bcc ``stackcount`` style: frames innermost first, a ``--`` line between kernel
    and user frames, ``comm [pid]`` when per process, then the count."""
    out = []
    for r in rows:
        k = r.key
        ks, us = k.get("kstack", ()), k.get("ustack", ())
        lines = [f"  {f}" for f in ks]
        if ks and us:
            lines.append("  --")
        lines += [f"  {f}" for f in us]
        if "comm" in k or "pid" in k:
            lines.append(f"    {k.get('comm', '?')} [{k.get('pid', '?')}]")
        lines.append(f"    {r.count}")
        out.append("\n".join(lines))
    return "\n\n".join(out)


class StackCounts(Aggregation):
    """Stacks counted at a probe (``stack``: ``kernel``, ``user`` or ``both``):
    ``read()`` rows keyed by ``kstack``/``ustack`` (after ``pid``, ``comm`` with
    ``per_process``), least frequent first; ``to_folded()``, ``to_svg(path)``,
    ``to_text()``, ``to_json()``.

    Made directly, it holds what :meth:`merge` adds (several probes' counts as one).
    """

    handle: Any = None

    def __init__(self, stack: str = "kernel", *, per_process: bool = False, name: str = "",
                 backend: str = "user", reason: str = "merged") -> None:
        self.kernel, self.user = parse_kind(stack)
        self.stack = stack
        self.per_process = per_process
        keys = (*(PER_PROCESS if per_process else ()), *(("kstack",) if self.kernel else ()),
                *(("ustack",) if self.user else ()))
        Aggregation.__init__(self, "count", name, keys, None, None, backend, reason)
        self.missing = 0     # events that came without the stack asked for (user backend)
        self._merged: list[Row] = []

    def merge(self, other: Aggregation) -> None:
        """Add another stack count's rows (equal keys add up)."""
        self._merged = merge_rows([*self._merged, *other.read()])
        self.missing += getattr(other, "missing", 0)
        self.dropped += other.dropped
        self.final = None

    def _read(self) -> list[Row]:
        return [Row(dict(r.key), r.count) for r in self._merged]

    def _clear(self) -> None:
        self._merged = []

    @property
    def total(self) -> int:
        """Events counted, over all stacks."""
        return sum(r.count for r in self.read())

    def to_text(self) -> str:
        return stack_text(self.read())

    def to_folded(self) -> str:
        return folded(self.read())

    def to_json(self, interval: int | None = None, rows: list[Row] | None = None
                ) -> dict[str, Any]:
        """The aggregation JSON line, plus ``stack`` (what was counted), ``total``
        and ``missing``."""
        rows = self.read() if rows is None else rows
        d = super().to_json(interval, rows)
        d["stack"] = self.stack
        d["total"] = sum(r.count for r in rows)
        d["missing"] = self.missing
        return d

    def to_svg(self, path: str | None = None, *, title: str | None = None) -> str:
        """An interactive flame graph (self-contained SVG); written to ``path`` if given."""
        from ..output.flamegraph import flamegraph_svg
        svg = flamegraph_svg([(root_first(r), r.count) for r in self.read()],
                             title=title or f"{self.stack} stacks")
        if path is not None:
            with open(path, "w", encoding="utf-8") as f:
                f.write(svg)
        return svg

    def __repr__(self) -> str:
        return f"<StackCounts {self.stack} {self.name} backend={self.backend}>"


class UserStackCounts(StackCounts):
    """Stacks from the ring buffer's stack records, counted per batch."""

    def __init__(self, s: Any, probe: Probe, stack: str, per_process: bool, name: str | None,
                 reason: str) -> None:
        h = s.add_batch(probe, self._add_batch, name=name, stack=stack)
        super().__init__(stack, per_process=per_process, name=h.name, backend="user",
                         reason=reason)
        self.handle = h
        self.per = PER_PROCESS if per_process else ()
        self._clear()

    def arm(self) -> None:
        """Nothing to set up: the stacks come with the probe's events."""

    def _add_batch(self, b: Any) -> None:
        n = len(b)
        self.events += n
        kernel, user = self.kernel, self.user
        stacks = raw_stacks(b, kernel, user)
        if self.per:     # raw_stacks is in row order
            cols = [b.pid if k == "pid" else b.comm for k in self.per]
            keys = [(*r, *w) for r, w in zip(stacks, zip(*cols, strict=True), strict=True)]
        else:
            keys = stacks
        keys = [r for r in keys if (r[0] is not None or not kernel)
                and (r[2] is not None or not user)]
        self.missing += n - len(keys)
        raw = self._raw
        new = [k for k in set(keys) if k not in raw]
        raw.update(keys)
        split, h = b._split, b._t.handle
        for k in new:
            kaddrs, tgid, uaddrs = k[:3]
            kst = tuple(_name(f) for f in split.kernel_frames(kaddrs)) if kaddrs else ()
            ust = tuple(_name(f) for f in split.user_frames(tgid, uaddrs, h)) if uaddrs else ()
            key: dict[str, Any] = dict(zip(self.per, k[3:], strict=True))
            if kernel:
                key["kstack"] = kst
            if user:
                key["ustack"] = ust
            self._names[k] = key

    def _read(self) -> list[Row]:
        named: Counter[tuple] = Counter()
        keys: dict[tuple, dict[str, Any]] = {}
        for k, n in self._raw.items():
            key = self._names[k]
            t = tuple(key.values())
            keys.setdefault(t, key)
            named[t] += n
        return [Row(dict(keys[t]), n) for t, n in named.items()]

    def _clear(self) -> None:
        self._raw: Counter[tuple] = Counter()
        self._names: dict[tuple, dict[str, Any]] = {}
        self.events = 0
        self.missing = 0


class KernelStackCounts(StackCounts, KernelAgg):
    """``hist:keys=stacktrace`` (after ``common_pid`` / its execname per process)."""

    _read = KernelAgg._read
    _clear = KernelAgg._clear

    def __init__(self, s: Any, probe: Probe, per_process: bool, name: str | None, size: int,
                 reason: str) -> None:
        KernelAgg.__init__(self, s, "count", probe, PER_PROCESS if per_process else (), None,
                           None, size, reason, handle_name=name)
        assert self.handle is not None
        StackCounts.__init__(self, "kernel", per_process=per_process, name=self.handle.name,
                             backend="kernel", reason=reason)
        # comm from common_pid.execname: a string key ($comm) takes 256 bytes of the
        # kernel's 384-byte key, the stack 128
        s._no_comm.add(id(self.handle))                   # noqa: SLF001
        self.symbol = probe.symbol if isinstance(probe, KProbe) else None

    def table_rows(self, t: HistTable) -> list[Row]:
        rows = KernelAgg.table_rows(self, t)
        for r in rows:
            r.key["kstack"] = _trim(tuple(frame_name(f) for f in r.key["kstack"]), self.symbol)
        return merge_rows(rows)


def _trim(names: tuple[str, ...], symbol: str | None) -> tuple[str, ...]:
    """Without the tracing machinery's frames above the probed function."""
    if symbol and symbol in names:
        return names[names.index(symbol):]
    i = 0
    while i < len(names) - 1 and any(x in names[i] for x in _INTERNAL):
        i += 1
    return names[i:]


def _name(f: Any) -> str:
    if f.symbol:
        return f.symbol
    return f"0x{f.addr:x}" + (f" [{f.module}]" if f.module else "")


def add_stacks(s: Any, probe: Probe | str, stack: str = "kernel", *, name: str | None = None,
               per_process: bool = False, backend: str = "auto", filter: str | None = None,
               size: int = DEFAULT_SIZE) -> StackCounts:
    """``Session.stacks``: pick the backend and add the count to the session."""
    from ..errors import KprobesError
    if s._started:                                  # noqa: SLF001
        raise KprobesError("stack counts must be added before the session starts")
    _kernel, user = parse_kind(stack)
    p = _probe(probe, filter)
    why = None if not user else "hist triggers count kernel stacks only"
    be, reason = _choose(s, backend, why)
    if be == "kernel":
        counts: StackCounts = KernelStackCounts(s, p, per_process, name, size, reason)
    else:
        counts = UserStackCounts(s, p, stack, per_process, name, reason)
    s.aggregations.append(counts)
    return counts

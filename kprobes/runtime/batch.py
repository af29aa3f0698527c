"""What handlers receive from the ring buffer: :class:`Batch` (one probe's
events of a read cycle as columns, built on first access, in bulk),
:class:`RowEvent` (one row of those columns: what per-event handlers get) and
:class:`LazyEvent` (one event, its payload decoded from the page on first
access: events with stacks). The reading itself is :mod:`.reader`."""

from __future__ import annotations

import struct
from array import array
from collections.abc import Iterator, Sequence
from itertools import repeat
from operator import attrgetter

from ..decode.columns import all_same, segment_columns
from ..decode.ringbuf import starts_of, ts_of
from ..errors import DecodeError
from .event import Event, TaskCache
from .handle import ProbeHandle, Stream

TYPE_CHECKING = False   # typing's, without importing typing at run time
if TYPE_CHECKING:
    from typing import Any

__all__ = ["Batch", "LazyEvent", "RowEvent", "handle_of", "COMM_ARG"]

COMM_ARG = "__comm"
#: one page of a read cycle: (cpu, page bytes, its records (ts_ns, payload start, length))
Page = tuple[int, bytes, Sequence[tuple[int, int, int]]]

_COMMON = struct.Struct("=BBi")           # common_flags, common_preempt_count, common_pid
_COMMON_LAYOUT = ((2, "B"), (3, "B"), (4, "i"))
_PLUS2 = (2).__add__                      # payload start -> common_flags
_BY_TS = attrgetter("ts_ns")

_PLUS1 = bytes((b + 1) & 0xFF for b in range(256))     # _fix_ctx's flags, for bytes.translate


def _fix_ctx(flags: int, pc: int) -> tuple[int, int]:
    if pc == 0xFF:
        # tracing_gen_ctx_dec() took one off a zero context word (uprobes;
        # int3 kprobes): the borrow ran into the flags.
        return (flags + 1) & 0xFF, 0
    return flags, pc


class LazyEvent(Event):
    """An :class:`Event` whose payload is decoded from its page on first use.

    ``probe``, ``ts_ns`` and ``cpu`` are plain attributes; ``tid``, ``trace_flags``,
    ``preempt_count`` (the 8 common bytes) and ``args`` (the whole record)
    are decoded when first read, ``pid`` and ``comm`` looked up then. The
    event keeps its 4 KB page alive while it is referenced.

    What is not decoded yet is None in a slot of its own (``_c``: the common
    fields, ``_a``: the args), tested on access: a missing slot raising
    ``AttributeError`` to be caught cost ~0.5 us per field, and storing through
    the base class's slot descriptors ~0.1 us per value.
    """

    __slots__ = ("_buf", "_off", "_len", "_t", "_c", "_a")
    _tasks: TaskCache  # always given (the base class allows None)

    def __init__(self, probe: str, ts_ns: int, cpu: int, buf: bytes, off: int, ln: int,
                 target: Stream, tasks: TaskCache) -> None:
        self.probe = probe
        self.ts_ns = ts_ns
        self.cpu = cpu
        self._buf = buf
        self._off = off
        self._len = ln
        self._t = target
        self._tasks = tasks
        self.data = None
        self._c: tuple[int, int, int] | None = None
        self._a: dict[str, Any] | None = None
        self._comm = self._pid = None

    def _decode_common(self) -> tuple[int, int, int]:
        flags, pc, tid = _COMMON.unpack_from(self._buf, self._off + 2)
        if pc == 0xFF:
            flags, pc = _fix_ctx(flags, pc)
        c = self._c = (flags, pc, tid)
        return c

    def _decode_args(self) -> dict[str, Any]:
        _h, dec, has_comm, hidden = self._t
        flags, pc, tid, args = dec.decode(self._buf, self._off, self._len)
        for k in hidden:
            del args[k]
        for k, names in _h.enums.items():      # enums from BTF, shown by name
            v: Any = args.get(k)
            args[k] = names.get(v, v)
        if has_comm:
            self._comm = args.pop(COMM_ARG)  # type: ignore[assignment]
        self._a = args
        return args

    @property
    def tid(self) -> int:  # type: ignore[override]
        return (self._c or self._decode_common())[2]

    @property
    def trace_flags(self) -> int:  # type: ignore[override]
        return (self._c or self._decode_common())[0]

    @property
    def preempt_count(self) -> int:  # type: ignore[override]
        return (self._c or self._decode_common())[1]

    @property
    def args(self) -> dict[str, Any]:  # type: ignore[override]
        a = self._a
        return self._decode_args() if a is None else a

    @property
    def pid(self) -> int:
        p = self._pid
        if p is None:
            p = self._pid = self._tasks.tgid(self.tid)
        return p

    @property
    def comm(self) -> str:
        c = self._comm
        if c is None:
            if self._t.has_comm:   # fetched in the kernel ($comm): it is in the record
                self._decode_args()
                c = self._comm
                assert c is not None
            else:
                c = self._comm = self._tasks.comm(self.tid)
        return c


class RowEvent(Event):
    """An :class:`Event` made from a row of its batch's columns
    (:meth:`Batch.row_events`): every field a plain attribute, decoded with the
    rest of the batch; ``pid`` and, for tracepoints, ``comm`` are looked up on
    first use. A handler that reads its events' fields gets them about twice as
    cheaply as from a :class:`LazyEvent`, whose first access to each field runs
    Python code for that one record (``bench/throughput.py``, ``fields``)."""

    __slots__ = ("_t",)

    def __init__(self, probe: str, ts_ns: int, cpu: int, tid: int, flags: int, pc: int,
                 args: dict[str, Any], comm: str | None, tasks: TaskCache,
                 target: Stream) -> None:
        self.probe = probe
        self.ts_ns = ts_ns
        self.cpu = cpu
        self.tid = tid
        self.trace_flags = flags
        self.preempt_count = pc
        self.args = args
        self._comm = comm
        self._pid = None
        self._tasks = tasks
        self.data = None
        self._t = target


def handle_of(ev: Any) -> ProbeHandle:
    """The handle whose probe produced ``ev`` (a :class:`LazyEvent` or :class:`RowEvent`)."""
    return ev._t.handle


class Batch:
    """The events of one probe from one read cycle, as columns.

    A batch handler (``Session.add_batch``) gets one per cycle with events::

        def on_batch(b: Batch) -> None:
            total += len(b)                          # nothing decoded
            for ts, tid, nr in zip(b.ts, b.tid, b.args["__syscall_nr"]): ...

    Columns are built on first access and cached; rows are in timestamp
    order (merged across CPUs only when a column is read):

    ``ts``    ``array('Q')``  ns, trace clock
    ``cpu``   ``array('H')``
    ``tid``   ``array('i')``  thread id (``common_pid``)
    ``trace_flags``, ``preempt_count``  ``array('B')``
    ``pid``   ``array('i')``  thread group id (looked up per distinct tid)
    ``comm``  ``list[str]``
    ``args``  ``dict[str, list]``  one list per fetched argument / field

    :meth:`row_events` gives the same rows as :class:`RowEvent` objects (what
    per-event handlers get), :meth:`events` as :class:`LazyEvent` objects.
    """

    __slots__ = ("probe", "_segs", "_n", "_t", "_tasks", "_order", "_cols", "_stk", "_split")

    def __init__(self, probe: str, target: Stream, tasks: TaskCache) -> None:
        self.probe = probe
        self._segs: list[Page] = []
        self._n = 0
        self._t = target
        self._tasks = tasks
        self._order: list[int] | None = None
        self._cols: dict[str, Any] = {}
        self._stk: dict | None = None        # stacks of the rows (see .stacks)
        self._split: Any = None

    def _add(self, cpu: int, page: bytes, recs: Sequence[tuple[int, int, int]]) -> None:
        self._segs.append((cpu, page, recs))
        self._n += len(recs)

    def __len__(self) -> int:
        return self._n

    def __repr__(self) -> str:
        return f"Batch({self.probe!r}, {self._n} events)"

    def _ordered(self, values: list[Any]) -> list[Any]:
        if self._order is None:
            cpus = {s[0] for s in self._segs}
            if len(cpus) <= 1:
                self._order = []
            else:
                ts = self._ts_list()
                self._order = sorted(range(len(ts)), key=ts.__getitem__)
        if not self._order:
            return values
        return list(map(values.__getitem__, self._order))

    @property
    def ts(self) -> array:
        c = self._cols.get("ts")
        if c is None:
            c = self._cols["ts"] = array("Q", self._ordered(self._ts_list()))
        return c

    def _ts_list(self) -> list[int]:
        ts: list[int] = []
        for s in self._segs:
            ts += ts_of(s[2])
        return ts

    @property
    def cpu(self) -> array:
        c = self._cols.get("cpu")
        if c is None:
            vals: list[int] = []
            for cpu, _p, recs in self._segs:
                vals += [cpu] * len(recs)
            c = self._cols["cpu"] = array("H", self._ordered(vals))
        return c

    def _common(self) -> None:
        cols = segment_columns(_COMMON_LAYOUT, self._segs, arrays=3)
        if cols is not None:
            self._set_common(*(self._ordered(c) for c in cols))
            return
        rows: list[tuple[int, int, int]] = []
        unpack = _COMMON.unpack_from
        for _cpu, page, recs in self._segs:      # C-level loops: no bytecode per record
            rows += map(unpack, repeat(page, len(recs)), map(_PLUS2, starts_of(recs)))
        rows = self._ordered(rows)
        flags, pcs, tids = (list(x) for x in zip(*rows, strict=True)) if rows else ([], [], [])
        self._set_common(flags, pcs, tids)

    def _set_common(self, flags: Sequence[int], pcs: Sequence[int],
                    tids: Sequence[int]) -> None:
        a_flags = flags if type(flags) is array else array("B", flags)
        a_pcs = pcs if type(pcs) is array else array("B", pcs)
        raw = a_pcs.tobytes()
        if raw.find(0xFF) >= 0:
            if raw.count(0xFF) == len(raw):     # every row (uprobes): one C pass each
                a_flags = array("B", a_flags.tobytes().translate(_PLUS1))
                a_pcs = array("B", bytes(len(raw)))
            else:
                for i, pc in enumerate(a_pcs):
                    if pc == 0xFF:
                        a_flags[i], a_pcs[i] = _fix_ctx(a_flags[i], pc)
        self._cols["tid"] = tids if type(tids) is array else array("i", tids)
        self._cols["trace_flags"] = a_flags
        self._cols["preempt_count"] = a_pcs

    @property
    def tid(self) -> array:
        if "tid" not in self._cols:
            self._common()
        return self._cols["tid"]

    @property
    def trace_flags(self) -> array:
        if "trace_flags" not in self._cols:
            self._common()
        return self._cols["trace_flags"]

    @property
    def preempt_count(self) -> array:
        if "preempt_count" not in self._cols:
            self._common()
        return self._cols["preempt_count"]

    @property
    def pid(self) -> array:
        c = self._cols.get("pid")
        if c is None:
            tgid, tids = self._tasks.tgid, self.tid
            if tids and all_same(tids):     # one thread: the usual case
                c = array("i", [tgid(tids[0])]) * len(tids)
            else:
                m = {t: tgid(t) for t in set(tids)}
                c = array("i", map(m.__getitem__, tids))
            self._cols["pid"] = c
        return c

    @property
    def comm(self) -> list[str]:
        c = self._cols.get("comm")
        if c is None:
            if self._t.has_comm:
                self._decode()
                c = self._cols["comm"]
            else:
                comm, tids = self._tasks.comm, self.tid
                if tids and all_same(tids):
                    c = [comm(tids[0])] * len(tids)
                else:
                    m = {t: comm(t) for t in set(tids)}
                    c = list(map(m.__getitem__, tids))
                self._cols["comm"] = c
        return c

    def _decode(self) -> None:
        _h, dec, has_comm, hidden = self._t
        names = dec.names
        cols = segment_columns(dec.layout, self._segs, arrays=3, strings=dec.loc_strings)
        if cols is None:          # record by record, then transposed
            rows: list[Any] = []
            for _cpu, page, recs in self._segs:
                rows += dec.rows(page, starts_of(recs))
            rows = self._ordered(rows)
            cols = ([list(x) for x in zip(*rows, strict=True)] if rows
                    else [[] for _ in range(3 + len(names))])
        else:
            cols = [self._ordered(c) for c in cols]
            rows = cols[0]
        if rows and "tid" not in self._cols:
            self._set_common(*cols[:3])     # the same pass gave the common fields
        cols = cols[3:]
        args = dict(zip(names, cols, strict=True))
        for k in hidden:
            del args[k]
        for k, m in _h.enums.items():
            if k in args:
                args[k] = [m.get(v, v) for v in args[k]]
        if has_comm:
            self._cols["comm"] = args.pop(COMM_ARG)
        self._cols["args"] = args

    @property
    def args(self) -> dict[str, list[Any]]:
        if "args" not in self._cols:
            self._decode()
        return self._cols["args"]

    def events(self) -> list[Event]:
        """The rows as :class:`LazyEvent` objects, each decoded from its record on
        first access (what per-event handlers get when stacks are recorded)."""
        t, tasks, name = self._t, self._tasks, self.probe
        make = LazyEvent if self._stk is None else self._split.event_factory(self._stk)
        out: list[Event] = [make(name, ts, cpu, page, start, ln, t, tasks)
               for cpu, page, recs in self._segs for ts, start, ln in recs]
        if len({s[0] for s in self._segs}) > 1:
            out.sort(key=_BY_TS)
        return out

    def row_events(self) -> list[Event]:
        """The rows as :class:`RowEvent` objects, built from the columns (what
        per-event handlers get); :meth:`events` (decoded record by record, on
        access) if the batch has stacks or a record the columns cannot take."""
        if self._stk is not None:
            return self.events()
        n = self._n
        try:
            args = self.args
            cols = (self.ts, self.cpu, self.tid, self.trace_flags, self.preempt_count)
        except DecodeError:
            return self.events()
        names = list(args)
        dicts = (map(dict, map(zip, repeat(names), zip(*args.values(), strict=True))) if names
                 else map(dict, repeat((), n)))
        comm: Any = self.comm if self._t.has_comm else repeat(None, n)
        return list(map(RowEvent, repeat(self.probe, n), *cols, dicts, comm,
                        repeat(self._tasks, n), repeat(self._t, n)))

    def __iter__(self) -> Iterator[Event]:
        return iter(self.events())

    def to_arrow(self) -> Any:
        """The rows as a ``pyarrow.Table``: ``probe``, ``ts_ns``, ``time``, ``cpu``,
        ``pid``, ``tid``, ``comm``, then one typed column per argument (see
        :mod:`kprobes.output.arrow`). Needs ``pip install 'kprobes[arrow]'``."""
        from ..output.arrow import batch_to_arrow
        return batch_to_arrow(self)

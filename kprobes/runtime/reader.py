"""Read a session's per-CPU ``trace_pipe_raw`` files and turn records into events.

Each ``read()`` of ``trace_pipe_raw`` returns at most one ring-buffer
sub-buffer page (``kernel/trace/trace.c`` ``tracing_buffers_read``), so a read
cycle takes up to :attr:`Reader.max_pages` pages per CPU (bounded memory: a
consumer that falls behind never holds more than that per CPU) and splits
every page into records once (:meth:`PageDecoder.records`).

What a cycle yields (:meth:`Reader.read_cycle`) is a :class:`Cycle`: the
records of each page, not decoded. From it,

* per-event handlers get :class:`LazyEvent` objects: ``probe``, ``ts_ns`` and
  ``cpu`` are set, the payload (``tid``, ``trace_flags``, ``args``...) is decoded
  from the page on first access. A handler that only counts, or looks at a
  few events, pays for nothing else. Events are in timestamp order within the
  cycle; merging is skipped when one CPU produced all of them.
* batch handlers get one :class:`Batch` per probe per cycle: columns
  (``ts``, ``cpu``, ``tid``, ``args``...) built on first access, in bulk.

Speed, measured on the project's host (2 vCPUs, while two QEMU TCG guests were
running; see ``bench/RESULTS.md``): pages -> records ~3.9 M records/s, ->
lazy events ~2 M/s, -> batch columns ``ts``+``tid`` ~1.9 M/s.
"""

from __future__ import annotations

import os
import select
import struct
import time
from array import array
from collections.abc import Callable, Iterator, Sequence
from itertools import repeat
from operator import attrgetter, itemgetter

from ..decode.columns import segment_columns
from ..decode.format import RecordDecoder, parse_format
from ..decode.ringbuf import PageDecoder, PageHeader
from ..errors import DecodeError, KernelRefused, KprobesError
from ..kernel import faults
from ..kernel.tracefs import Instance, Tracefs
from .event import Event, TaskCache
from .handle import ProbeHandle, Stream

TYPE_CHECKING = False   # typing's, without importing typing at run time
if TYPE_CHECKING:
    from typing import Any

__all__ = ["Reader", "Cycle", "Batch", "LazyEvent", "handle_of"]

COMM_ARG = "__comm"
#: one page of a read cycle: (cpu, page bytes, its records (ts_ns, payload start, length))
Page = tuple[int, bytes, Sequence[tuple[int, int, int]]]

MAX_PAGES = 64            # pages per CPU per read cycle (64 x 4 KB: ~16k small events)

_COMMON = struct.Struct("=BBi")           # common_flags, common_preempt_count, common_pid
_TS = itemgetter(0)
_PLUS2 = (2).__add__                      # payload start -> common_flags
_START = itemgetter(1)
_BY_TS = attrgetter("ts_ns")

# The base class's slots, used to store what a LazyEvent decoded.
_TID, _FLAGS, _PC, _ARGS, _COMM, _PID = (
    Event.__dict__[n] for n in ("tid", "trace_flags", "preempt_count", "args", "_comm", "_pid"))


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
    """

    __slots__ = ("_buf", "_off", "_len", "_t")
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

    def _decode_common(self) -> None:
        flags, pc, tid = _COMMON.unpack_from(self._buf, self._off + 2)
        flags, pc = _fix_ctx(flags, pc)
        _TID.__set__(self, tid)
        _FLAGS.__set__(self, flags)
        _PC.__set__(self, pc)

    def _decode_args(self) -> dict[str, Any]:
        _h, dec, has_comm, hidden = self._t
        flags, pc, tid, args = dec.decode(self._buf, self._off, self._len)
        for k in hidden:
            del args[k]
        for k, names in _h.enums.items():      # enums from BTF, shown by name
            v: Any = args.get(k)
            args[k] = names.get(v, v)
        if has_comm:
            _COMM.__set__(self, args.pop(COMM_ARG))
        _ARGS.__set__(self, args)
        return args

    @property
    def tid(self) -> int:  # type: ignore[override]
        try:
            return _TID.__get__(self)
        except AttributeError:
            self._decode_common()
            return _TID.__get__(self)

    @property
    def trace_flags(self) -> int:  # type: ignore[override]
        try:
            return _FLAGS.__get__(self)
        except AttributeError:
            self._decode_common()
            return _FLAGS.__get__(self)

    @property
    def preempt_count(self) -> int:  # type: ignore[override]
        try:
            return _PC.__get__(self)
        except AttributeError:
            self._decode_common()
            return _PC.__get__(self)

    @property
    def args(self) -> dict[str, Any]:  # type: ignore[override]
        try:
            return _ARGS.__get__(self)
        except AttributeError:
            return self._decode_args()

    @property
    def pid(self) -> int:
        try:
            p = _PID.__get__(self)
        except AttributeError:
            p = None
        if p is None:
            p = self._tasks.tgid(self.tid)
            _PID.__set__(self, p)
        return p

    @property
    def comm(self) -> str:
        try:
            c = _COMM.__get__(self)
        except AttributeError:
            c = None
        if c is None:
            if self._t.has_comm:   # fetched in the kernel ($comm): it is in the record
                self._decode_args()
                c = _COMM.__get__(self)
            else:
                c = self._tasks.comm(self.tid)
                _COMM.__set__(self, c)
        return c


def handle_of(ev: LazyEvent) -> ProbeHandle:
    """The handle whose probe produced ``ev``."""
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

    :meth:`events` gives the same rows as :class:`LazyEvent` objects.
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
                ts = [r[0] for s in self._segs for r in s[2]]
                self._order = sorted(range(len(ts)), key=ts.__getitem__)
        if not self._order:
            return values
        return list(map(values.__getitem__, self._order))

    @property
    def ts(self) -> array:
        c = self._cols.get("ts")
        if c is None:
            c = self._cols["ts"] = array("Q", self._ordered(
                [t for s in self._segs for t in map(_TS, s[2])]))
        return c

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
        rows: list[tuple[int, int, int]] = []
        unpack = _COMMON.unpack_from
        for _cpu, page, recs in self._segs:      # C-level loops: no bytecode per record
            rows += map(unpack, repeat(page, len(recs)), map(_PLUS2, map(_START, recs)))
        rows = self._ordered(rows)
        flags, pcs, tids = (list(x) for x in zip(*rows, strict=True)) if rows else ([], [], [])
        self._set_common(flags, pcs, tids)

    def _set_common(self, flags: list[int], pcs: list[int], tids: list[int]) -> None:
        if 0xFF in pcs:
            for i, pc in enumerate(pcs):
                if pc == 0xFF:
                    flags[i], pcs[i] = _fix_ctx(flags[i], pc)
        self._cols["tid"] = array("i", tids)
        self._cols["trace_flags"] = array("B", flags)
        self._cols["preempt_count"] = array("B", pcs)

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
            if tids and tids.count(tids[0]) == len(tids):     # one thread: the usual case
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
                if tids and tids.count(tids[0]) == len(tids):
                    c = [comm(tids[0])] * len(tids)
                else:
                    m = {t: comm(t) for t in set(tids)}
                    c = list(map(m.__getitem__, tids))
                self._cols["comm"] = c
        return c

    def _decode(self) -> None:
        _h, dec, has_comm, hidden = self._t
        names = dec.names
        cols = segment_columns(dec.layout, self._segs)
        if cols is None:          # record by record, then transposed
            rows: list[Any] = []
            for _cpu, page, recs in self._segs:
                rows += dec.rows(page, map(_START, recs))
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
                args[k] = [m.get(v, v) for v in args[k]]  # type: ignore[misc]
        if has_comm:
            self._cols["comm"] = args.pop(COMM_ARG)
        self._cols["args"] = args

    @property
    def args(self) -> dict[str, list[Any]]:
        if "args" not in self._cols:
            self._decode()
        return self._cols["args"]

    def events(self) -> list[LazyEvent]:
        """The rows as events (decoded lazily, like per-event handlers get them)."""
        t, tasks, name = self._t, self._tasks, self.probe
        make = LazyEvent if self._stk is None else self._split.event_factory(self._stk)
        out = [make(name, ts, cpu, page, start, ln, t, tasks)
               for cpu, page, recs in self._segs for ts, start, ln in recs]
        if len({s[0] for s in self._segs}) > 1:
            out.sort(key=_BY_TS)
        return out

    def __iter__(self) -> Iterator[LazyEvent]:
        return iter(self.events())

    def to_arrow(self) -> Any:
        """The rows as a ``pyarrow.Table``: ``probe``, ``ts_ns``, ``time``, ``cpu``,
        ``pid``, ``tid``, ``comm``, then one typed column per argument (see
        :mod:`kprobes.output.arrow`). Needs ``pip install 'kprobes[arrow]'``."""
        from ..output.arrow import batch_to_arrow
        return batch_to_arrow(self)


class Cycle:
    """What one read cycle got: per page ``(cpu, page, records)``, and per
    handle the records that are its events (:meth:`events`, :meth:`batches`)."""

    __slots__ = ("reader", "pages", "n", "stk")

    def __init__(self, reader: Reader, pages: list[Page],
                 stk: dict | None = None) -> None:
        self.reader = reader
        self.pages = pages
        self.stk = stk          # (id(page), start) -> the event's stack records
        self.n = sum(len(p[2]) for p in pages)

    def __len__(self) -> int:
        return self.n

    def _split(self) -> Iterator[tuple[Stream, int, bytes, Sequence[tuple[int, int, int]]]]:
        """(target, cpu, page, records of that target) for every page."""
        r = self.reader
        single = r.single
        if single is not None:
            for cpu, page, recs in self.pages:
                yield single, cpu, page, recs
            return
        by_type = r.by_type
        for cpu, page, recs in self.pages:
            u16 = memoryview(page).cast("H")
            types = [u16[s >> 1] for _ts, s, _ln in recs]
            u16.release()
            first = types[0]
            groups: dict[int, Sequence[tuple[int, int, int]]]
            if types.count(first) == len(types):
                groups = {first: recs}
            else:
                lists: dict[int, list[tuple[int, int, int]]] = {}
                for t, rec in zip(types, recs, strict=True):
                    lists.setdefault(t, []).append(rec)
                groups = dict(lists)
            for t, grecs in groups.items():
                for target in by_type.get(t, ()):
                    yield target, cpu, page, grecs

    def events(self, only: set[int] | None = None) -> list[LazyEvent]:
        """Every record as a :class:`LazyEvent`, in timestamp order.

        ``only``: ids (``id(handle)``) of the handles to make events for.
        """
        tasks = self.reader.tasks
        make = LazyEvent if self.stk is None else self.reader.stacks.event_factory(self.stk)
        out: list[LazyEvent] = []
        cpus = set()
        for target, cpu, page, recs in self._split():
            if only is not None and id(target.handle) not in only:
                continue
            name = target.handle.name
            out += [make(name, ts, cpu, page, start, ln, target, tasks)
                    for ts, start, ln in recs]
            cpus.add(cpu)
        if len(cpus) > 1 or self.reader.single is None:
            out.sort(key=_BY_TS)
        return out

    def batches(self, only: set[int] | None = None) -> list[tuple[ProbeHandle, Batch]]:
        """One :class:`Batch` per handle that has events in this cycle."""
        tasks = self.reader.tasks
        out: dict[int, tuple[ProbeHandle, Batch]] = {}
        for target, cpu, page, recs in self._split():
            h = target.handle
            if only is not None and id(h) not in only:
                continue
            hb = out.get(id(h))
            if hb is None:
                hb = out[id(h)] = (h, Batch(h.name, target, tasks))
                if self.stk is not None:
                    hb[1]._stk, hb[1]._split = self.stk, self.reader.stacks
            hb[1]._add(cpu, page, recs)
        return list(out.values())


class Reader:
    """The session's ring-buffer reader: one non-blocking fd per CPU.

    ``max_pages`` bounds the pages taken from each CPU per cycle; the kernel
    buffer (``buffer_size_kb``) absorbs bursts, this process holds at most
    ``ncpus * max_pages`` pages at a time.
    """

    def __init__(self, inst: Instance, tfs: Tracefs, handles: list[ProbeHandle], *,
                 tasks_needed: bool = True, max_pages: int = MAX_PAGES) -> None:
        self.inst = inst
        self.tfs = tfs
        self.ncpus = tfs.ncpus()
        self.max_pages = max_pages
        self.fds: list[int] = []
        self._fd_cpu: list[tuple[int, int]] = []
        self.closed = False
        self.tasks = TaskCache(tfs.root)
        # no handle to read (every event is read by triggers or its hit counter):
        # nothing of the ring buffer is opened or read
        self.pages = PageDecoder.from_header_page(tfs.read("events/header_page")) \
            if handles else PageDecoder()
        self.page_size = self.pages.page_size
        sub = os.path.join(inst.path, "buffer_subbuf_size_kb")
        if handles and os.path.exists(sub):
            try:
                with open(sub) as f:
                    self.page_size = int(f.read().strip()) * 1024
                self.pages = PageDecoder(self.pages.commit_size, self.page_size)
            except (OSError, ValueError):
                pass
        self.by_type: dict[int, list[Stream]] = {}
        for h in handles:
            fmt = parse_format(tfs.event_format(h.group, h.event), h.group)
            types = {a.name: a.type for a in h.probe.args if a.type}
            dec = RecordDecoder(fmt, types)
            for name, off, size in (("common_flags", 2, 1), ("common_preempt_count", 3, 1),
                                    ("common_pid", 4, 4)):
                fld = fmt.field(name)
                if (fld.offset, fld.size) != (off, size):
                    raise DecodeError(f"event {fmt.name}: {name} at offset {fld.offset} size "
                                      f"{fld.size}, expected {off}/{size}")
            has_comm = any(f.name == COMM_ARG for f in fmt.fields)
            # __probe_ip, __probe_func, __probe_ret_ip: kernel bookkeeping, not user args
            hidden = tuple(f.name for f in fmt.arg_fields
                           if h.probe.dynamic and f.name.startswith("__") and f.name != COMM_ARG)
            self.by_type.setdefault(fmt.id, []).append(Stream(h, dec, has_comm, hidden))
        only = list(self.by_type.values())
        # one event type with one handle: every record of the instance is its event
        self.single: Stream | None = only[0][0] if len(only) == 1 and len(only[0]) == 1 \
            else None
        self.lost_pages = 0
        self.lost_from_pages = 0
        self.pages_read = 0
        self._buffer_bytes: int | None = None
        self._poll = select.poll()
        self._wake: set[int] = set()
        self.stacks: Any = None     # a runtime.stacks.StackSplitter when stacks are recorded

    def targets(self) -> list[Stream]:
        """Every ``(handle, decoder, has_comm, hidden)`` this reader decodes for."""
        return [t for ts in self.by_type.values() for t in ts]

    def open(self) -> None:
        if not self.by_type:
            return
        for cpu in range(self.ncpus):
            path = self.inst.pipe_path(cpu)
            if not os.path.exists(path):
                continue
            try:
                if faults.plan is not None:
                    faults.plan.hit("open", path)
                fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
            except OSError as e:
                raise KernelRefused(f"cannot open {path}: {e.strerror}", errno=e.errno or 0,
                                    file=path, command="") from e
            self.fds.append(fd)
            self._fd_cpu.append((fd, cpu))
            self._poll.register(fd, select.POLLIN)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        for fd in self.fds:
            try:
                os.close(fd)
            except OSError:
                pass
        self.fds = []
        self._fd_cpu = []

    def wake_on(self, fd: int) -> None:
        """End :meth:`wait` once when ``fd`` becomes readable (e.g. a pidfd).

        One-shot: a pidfd stays readable after the exit, and a wait that kept
        returning at once would spin."""
        self._wake.add(fd)
        self._poll.register(fd, select.POLLIN)

    def wait(self, timeout: float) -> bool:
        """Sleep until a CPU buffer has data (per the instance's buffer_percent),
        a :meth:`wake_on` fd is readable, or timeout."""
        if self.closed:
            return False
        if not self.fds and not self._wake:     # nothing to read and nothing to wait for
            time.sleep(max(0.0, timeout))
            return False
        try:
            ready = self._poll.poll(max(0, int(timeout * 1000)))
        except InterruptedError:
            return False
        for fd, _ in ready:
            if fd in self._wake:
                self._wake.discard(fd)
                self._poll.unregister(fd)
        return bool(ready)

    def read_pages(self, max_pages: int | None = None) -> list[tuple[int, bytes]]:
        """The pages available now, up to ``max_pages`` per CPU: [(cpu, page)]."""
        out: list[tuple[int, bytes]] = []
        size = self.page_size
        limit = self.max_pages if max_pages is None else max_pages
        read = os.read
        for fd, cpu in self._fd_cpu:
            for _ in range(limit):
                try:
                    data = read(fd, size)
                except (BlockingIOError, InterruptedError):
                    break
                if not data:
                    break
                out.append((cpu, data))
        self.pages_read += len(out)
        return out

    def read_cycle(self, max_pages: int | None = None) -> Cycle:
        """Read up to ``max_pages`` pages per CPU and split them into records."""
        pages: list[tuple[int, bytes, Sequence[tuple[int, int, int]]]] = []
        # one stream, no stacks: pages are only counted here; the records are split
        # when a consumer first reads them (a count aggregation or -q never does)
        split: Callable[[bytes], tuple[PageHeader, Sequence[tuple[int, int, int]]]] = (
            self.pages.lazy if self.single is not None and self.stacks is None
            else self.pages.records)
        for cpu, page in self.read_pages(max_pages):
            hdr, recs = split(page)
            if hdr.missed:
                self.lost_pages += 1
                if hdr.lost:
                    self.lost_from_pages += hdr.lost
            if recs:
                pages.append((cpu, page, recs))
        if pages:
            self.tasks.new_batch()
        if self.stacks is not None:
            return Cycle(self, *self.stacks.split(pages))
        return Cycle(self, pages)

    def read_available(self) -> list[tuple[ProbeHandle, Event]]:
        """Read one cycle; its events, in timestamp order, with their handles."""
        return [(handle_of(ev), ev) for ev in self.read_cycle().events()]

    def lost(self) -> tuple[int, int]:
        """(events dropped or overwritten per the instance's per-CPU stats, lossy pages)."""
        if not self.by_type:
            return 0, 0
        total = 0
        for cpu in range(self.ncpus):
            try:
                total += self.inst.cpu_stats(cpu).lost
            except Exception:  # noqa: BLE001 - instance may be gone
                continue
        return max(total, self.lost_from_pages), self.lost_pages

    def fill(self) -> dict[int, float]:
        """How full each CPU's ring buffer is (unread bytes / ``buffer_size_kb``), 0..1."""
        if not self.by_type:        # nothing recorded: no stats to read
            return {}
        size = self._buffer_bytes
        if size is None:
            try:
                size = self._buffer_bytes = int(self.inst.read("buffer_size_kb").split()[0]) * 1024
            except (KprobesError, OSError, ValueError, IndexError):
                size = self._buffer_bytes = 0
        out: dict[int, float] = {}
        for cpu in range(self.ncpus):
            try:
                b = self.inst.cpu_stats(cpu).bytes
            except Exception:  # noqa: BLE001 - instance may be gone
                continue
            out[cpu] = min(b / size, 1.0) if size else 0.0
        return out

    def backlog(self) -> dict[int, int]:
        """Events waiting in each CPU's ring buffer (``entries`` of its stats)."""
        if not self.by_type:
            return {}
        out: dict[int, int] = {}
        for cpu in range(self.ncpus):
            try:
                out[cpu] = self.inst.cpu_stats(cpu).entries
            except Exception:  # noqa: BLE001 - instance may be gone
                continue
        return out

"""Read a session's per-CPU ``trace_pipe_raw`` files and turn records into events.

Each ``read()`` of ``trace_pipe_raw`` returns at most one ring-buffer
sub-buffer page (``kernel/trace/trace.c`` ``tracing_buffers_read``), so a read
cycle takes up to :attr:`Reader.max_pages` pages per CPU (bounded memory: a
consumer that falls behind never holds more than that per CPU) and splits
every page into records once (:meth:`PageDecoder.records`).

What a cycle yields (:meth:`Reader.read_cycle`) is a :class:`Cycle`: the
records of each page, not decoded. From it,

* per-event handlers get :class:`RowEvent` objects, made from each probe's
  batch columns: every field a plain attribute (``pid``, and a tracepoint's
  ``comm``, looked up on first use), in timestamp order within the cycle.
  With stacks, or a record the columns cannot take, they get
  :class:`~.batch.LazyEvent` objects instead, whose payload is decoded from
  the page on first access.
* batch handlers get one :class:`Batch` per probe per cycle: columns
  (``ts``, ``cpu``, ``tid``, ``args``...) built on first access, in bulk.

Speed, measured on the project's host (2 vCPUs, while two QEMU TCG guests were
running; see ``bench/RESULTS.md``): pages -> records ~3.9 M records/s, ->
lazy events ~2 M/s, -> batch columns ``ts``+``tid`` ~1.9 M/s.
"""

from __future__ import annotations

import os
import select
import time
from collections.abc import Callable, Iterator, Sequence
from operator import attrgetter

from ..decode.format import parse_format
from ..decode.record import RecordDecoder
from ..decode.ringbuf import PageDecoder, PageHeader, last_ts
from ..errors import DecodeError, KernelRefused, KprobesError
from ..kernel import faults
from ..kernel.tracefs import Instance, Tracefs
from .batch import COMM_ARG, Batch, handle_of
from .event import Event, TaskCache
from .handle import ProbeHandle, Stream

TYPE_CHECKING = False   # typing's, without importing typing at run time
if TYPE_CHECKING:
    from typing import Any

__all__ = ["Reader", "Cycle"]

#: one page of a read cycle: (cpu, page bytes, its records (ts_ns, payload start, length))
Page = tuple[int, bytes, Sequence[tuple[int, int, int]]]

#: how long an event may sit between its timestamp and its commit (irqs in between)
COMMIT_MARGIN_NS = 10_000_000

MAX_PAGES = 64            # pages per CPU per read cycle (64 x 4 KB: ~16k small events)

_BY_TS = attrgetter("ts_ns")



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

    def events(self, only: set[int] | None = None) -> list[Event]:
        """Every record as an event, in timestamp order: :class:`RowEvent` objects
        built from each probe's batch columns (:meth:`Batch.row_events`), or
        :class:`LazyEvent` objects with stacks.

        ``only``: ids (``id(handle)``) of the handles to make events for.
        """
        if self.stk is not None:
            return self._lazy_events(only)
        out: list[Event] = []
        batches = self.batches(only)
        for _h, b in batches:
            out += b.row_events()
        if len(batches) > 1:
            out.sort(key=_BY_TS)
        return out

    def _lazy_events(self, only: set[int] | None = None) -> list[Event]:
        tasks = self.reader.tasks
        make = self.reader.stacks.event_factory(self.stk)
        out: list[Event] = []
        for target, cpu, page, recs in self._split():
            if only is not None and id(target.handle) not in only:
                continue
            name = target.handle.name
            out += [make(name, ts, cpu, page, start, ln, target, tasks)
                    for ts, start, ln in recs]
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
        self._read_start = 0
        self._limited: set[int] = set()
        self._limited_last: list[Sequence[tuple[int, int, int]]] = []
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
        self._read_start = time.monotonic_ns()
        self._limited.clear()
        for fd, cpu in self._fd_cpu:
            for _ in range(limit):
                try:
                    data = read(fd, size)
                except (BlockingIOError, InterruptedError):
                    break
                if not data:
                    break
                out.append((cpu, data))
            else:
                self._limited.add(cpu)      # it may hold more: older than other CPUs' last
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
        last: dict[int, Sequence[tuple[int, int, int]]] = {}
        if self._limited:           # a CPU that had more than a cycle takes: its last page
            for cpu, _page, recs in pages:
                if cpu in self._limited:
                    last[cpu] = recs
        self._limited_last = list(last.values())
        if self.stacks is not None:
            return Cycle(self, *self.stacks.split(pages))
        return Cycle(self, pages)

    @property
    def complete_ns(self) -> int:
        """Every event stamped at or before this time (``CLOCK_MONOTONIC`` ns: with the
        ``mono`` trace clock) has been read by the last cycle.

        Events of different CPUs arrive out of order across cycles: a CPU read later
        in a cycle brings events newer than those an earlier-read CPU gets next cycle.
        Everything up to the cycle's start had been written before it began (less a
        margin for an event stamped when reserved and committed a little later), except
        on a CPU that had more pages than a cycle takes: there, up to its last read event.
        """
        return min([self._read_start - COMMIT_MARGIN_NS,
                    *(last_ts(recs) for recs in self._limited_last)])

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

"""Read a session's per-CPU ``trace_pipe_raw`` files and turn records into events.

Each read returns at most one ring-buffer sub-buffer page. All available pages of
all CPUs are read, decoded in bulk, and the resulting events are delivered in
timestamp order (records from different CPUs are merged).
"""

from __future__ import annotations

import errno
import os
import select
from typing import TYPE_CHECKING

from ..decode.format import RecordDecoder, parse_format
from ..decode.ringbuf import PageDecoder
from ..kernel.tracefs import Instance, Tracefs
from .event import Event, TaskCache

if TYPE_CHECKING:
    from .session import ProbeHandle

__all__ = ["Reader"]

COMM_ARG = "__comm"


class Reader:
    def __init__(self, inst: Instance, tfs: Tracefs, handles: list[ProbeHandle], *,
                 tasks_needed: bool = True) -> None:
        self.inst = inst
        self.tfs = tfs
        self.ncpus = tfs.ncpus()
        self.fds: list[int] = []
        self.closed = False
        self.tasks = TaskCache(tfs.root)
        self.pages = PageDecoder.from_header_page(tfs.read("events/header_page"))
        self.page_size = self.pages.page_size
        sub = os.path.join(inst.path, "buffer_subbuf_size_kb")
        if os.path.exists(sub):
            try:
                self.page_size = int(open(sub).read().strip()) * 1024
                self.pages = PageDecoder(self.pages.commit_size, self.page_size)
            except (OSError, ValueError):
                pass
        # type id -> list of (handle, decoder, has_comm, hidden field names)
        self.by_type: dict[int, list[tuple[ProbeHandle, RecordDecoder, bool, tuple[str, ...]]]] = {}
        for h in handles:
            fmt = parse_format(tfs.event_format(h.group, h.event), h.group)
            types = {a.name: a.type for a in h.probe.args if a.type}
            dec = RecordDecoder(fmt, types)
            has_comm = any(f.name == COMM_ARG for f in fmt.fields)
            # __probe_ip, __probe_func, __probe_ret_ip: kernel bookkeeping, not user args
            hidden = tuple(f.name for f in fmt.arg_fields
                           if h.probe.dynamic and f.name.startswith("__") and f.name != COMM_ARG)
            self.by_type.setdefault(fmt.id, []).append((h, dec, has_comm, hidden))
        self.lost_pages = 0
        self.lost_from_pages = 0
        self._poll = select.poll()

    def open(self) -> None:
        for cpu in range(self.ncpus):
            path = self.inst.pipe_path(cpu)
            if not os.path.exists(path):
                continue
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
            self.fds.append(fd)
            self._cpu_of = getattr(self, "_cpu_of", {})
            self._cpu_of[fd] = cpu
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

    def wait(self, timeout: float) -> bool:
        """Sleep until a CPU buffer has data (per the instance's buffer_percent) or timeout."""
        if not self.fds:
            return False
        try:
            return bool(self._poll.poll(max(0, int(timeout * 1000))))
        except InterruptedError:
            return False

    def read_pages(self) -> list[tuple[int, bytes]]:
        """Every page available now, from every CPU: [(cpu, page)]."""
        out: list[tuple[int, bytes]] = []
        size = self.page_size
        for fd in self.fds:
            cpu = self._cpu_of[fd]
            while True:
                try:
                    data = os.read(fd, size)
                except BlockingIOError:
                    break
                except OSError as e:
                    if e.errno in (errno.EAGAIN, errno.EINTR):
                        break
                    raise
                if not data:
                    break
                out.append((cpu, data))
        return out

    def read_available(self) -> list[tuple[ProbeHandle, Event]]:
        """Read and decode everything available; events sorted by timestamp."""
        pages = self.read_pages()
        if not pages:
            return []
        self.tasks.new_batch()
        by_type = self.by_type
        tasks = self.tasks
        out: list[tuple[int, int, ProbeHandle, Event]] = []
        seq = 0
        for cpu, page in pages:
            hdr, recs = self.pages.records(page)
            if hdr.missed:
                self.lost_pages += 1
                if hdr.lost:
                    self.lost_from_pages += hdr.lost
            for ts, start, _ln in recs:
                tid_type = page[start] | (page[start + 1] << 8)
                targets = by_type.get(tid_type)
                if not targets:
                    continue
                for h, dec, has_comm, hidden in targets:
                    flags, pc, tid, args = dec.decode(page, start, _ln)
                    if pc == 0xFF:
                        # tracing_gen_ctx_dec() took one off a zero context word
                        # (uprobes; int3 kprobes): the borrow ran into the flags.
                        pc, flags = 0, (flags + 1) & 0xFF
                    for k in hidden:
                        del args[k]
                    comm = args.pop(COMM_ARG) if has_comm else tasks.comm(tid)
                    ev = Event(h.name, ts, cpu, tid, flags, pc, args, comm=comm,
                               pid=tasks.tgid(tid), tasks=tasks)
                    out.append((ts, seq, h, ev))
                    seq += 1
        out.sort(key=lambda t: (t[0], t[1]))
        return [(h, ev) for _, _, h, ev in out]

    def lost(self) -> tuple[int, int]:
        """(events dropped or overwritten per the instance's per-CPU stats, lossy pages)."""
        total = 0
        for cpu in range(self.ncpus):
            try:
                total += self.inst.cpu_stats(cpu).lost
            except Exception:  # noqa: BLE001 - instance may be gone
                continue
        return max(total, self.lost_from_pages), self.lost_pages

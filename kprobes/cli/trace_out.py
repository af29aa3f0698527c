"""The output side of ``kprobes trace``: where events go, how fast, and what
the user sees on stderr while it runs.

- :class:`Sink` writes events to stdout or ``-o FILE``, flushed once per read
  cycle (a reader of the file sees events within the latency setting; a
  SIGKILL loses at most one batch). A failed write (EPIPE from ``| head``,
  ENOSPC from ``-o /dev/full``) stops the session and becomes one error.
- :func:`json_batch` and :func:`text_batch` encode a batch into JSON or text
  lines from its columns (C-level ``map(str, ...)`` and slice assignment, no
  per-row Python code for integer and string arguments), :data:`CHUNK` rows
  at a time (bounded memory); the text equals that of :func:`json_line` and
  :func:`text_line` event by event.
- The per-cycle watch (warnings, status line) is :class:`kprobes.cli.running.Watch`.
"""

from __future__ import annotations

import errno
import json
import os
import sys
from collections.abc import Callable
from functools import lru_cache
from itertools import repeat
from operator import truediv

from ..decode.columns import all_same
from ..decode.flags import CONTEXTS
from ..errors import KprobesError
from ..output.render import escape_text, format_value, json_line, json_safe, text_line

TYPE_CHECKING = False   # typing's, without importing typing at run time
if TYPE_CHECKING:
    from typing import IO, Any

__all__ = ["Sink", "json_batch", "text_batch", "text_event", "json_event", "hex_args",
           "CONTEXT", "CHUNK"]

CONTEXT = CONTEXTS
_CTX_NAMES = ("task", "softirq", "irq", "nmi")
#: trace_flags byte -> index into _CTX_NAMES (for bytes.translate: one C pass per batch)
_CTX_OF = bytes(_CTX_NAMES.index(c) for c in CONTEXT)

#: rows encoded and written at a time by :func:`json_batch`: the text of one
#: chunk (~200 bytes a row, ~50 KB) is the encoder's only memory that grows with
#: the batch (a read cycle takes up to 64 pages per CPU: ~26,000 rows on 2 CPUs).
#: Under glibc's 128 KB mmap threshold: 1,024 rows (~200 KB) cost a page fault per
#: 4 KB of every chunk (58k faults per 1M events against 6k), ~10% more CPU.
CHUNK = 256

_enc_str = json.encoder.encode_basestring  # C, keeps non-ASCII
_TS_TEXT = "{:13.6f}".format                 # seconds, as text_line prints them


class Sink:
    """Where the events go. Writes are buffered and flushed once per read
    cycle; the first write error is kept, stops the session (``on_error``)
    and later writes are dropped."""

    def __init__(self, path: str | None) -> None:
        self.name = path or "stdout"
        self.error: OSError | None = None
        self.on_error: Callable[[], None] | None = None
        self.events = 0
        if path:
            try:
                self.f: IO[str] = open(path, "w", encoding="utf-8",  # noqa: SIM115
                                       errors="backslashreplace", buffering=1 << 16)
            except OSError as e:
                raise KprobesError(f"cannot open {path}: {e.strerror}",
                                   hint="-o takes a file this user can create") from None
        else:
            self.f = sys.stdout
            if hasattr(self.f, "reconfigure"):
                self.f.reconfigure(errors="backslashreplace")

    def write(self, text: str) -> None:
        if self.error is None:
            try:
                self.f.write(text)
            except OSError as e:
                self._fail(e)

    def flush(self) -> None:
        if self.error is None:
            try:
                self.f.flush()
            except OSError as e:
                self._fail(e)

    def _fail(self, e: OSError) -> None:
        self.error = e
        if self.f is sys.stdout:   # nothing more can go there: not even at exit
            try:
                fd = os.open(os.devnull, os.O_WRONLY)
                os.dup2(fd, sys.stdout.fileno())
                os.close(fd)
            except (OSError, ValueError):
                pass
        if self.on_error is not None:
            self.on_error()

    def problem(self) -> KprobesError:
        e = self.error
        assert e is not None
        if e.errno == errno.EPIPE:
            return KprobesError(f"{self.name} was closed by its reader (broken pipe): stopped",
                                hint="nothing is left in the kernel; events after the close "
                                     "were not written")
        return KprobesError(f"cannot write events to {self.name}: "
                            f"{e.strerror or e} ({errno.errorcode.get(e.errno or 0, e.errno)})",
                            hint="free space or choose another -o FILE; the trace stopped "
                                 "and nothing is left in the kernel")

    def close(self) -> None:
        if self.f is not sys.stdout:
            try:
                self.f.close()
            except OSError as e:
                if self.error is None:
                    self.error = e


def json_batch(sink: Sink) -> Callable[[Any], None]:
    """A batch handler writing one JSON line per event (the text of
    :func:`json_line`), built per batch from columns. Integer and string
    arguments take the column path; other values (faults, arrays, booleans)
    go event by event. Rows are encoded and written :data:`CHUNK` at a time,
    so the text in memory stays ~50 KB whatever the batch size."""
    heads: dict[str, str] = {}
    jstr = lru_cache(4096)(lambda v: json_safe(_enc_str(v)))

    @lru_cache(65536)
    def mid(cpu: int, pid: int, tid: int, comm: str, ctx: int, pc: int) -> str:
        return (f', "cpu": {cpu}, "pid": {pid}, "tid": {tid}, "comm": {jstr(comm)}, '
                f'"preempt_count": {pc}, "context": "{_CTX_NAMES[ctx]}", "args": {{')

    def on_batch(b: Any) -> None:
        n = len(b)
        if not n:
            return
        args = b.args
        encs = _encoders(sink, b, lambda _name: str, jstr, json_line)
        if encs is None:
            return
        head = heads.get(b.probe)
        if head is None:
            head = heads[b.probe] = '{"probe": ' + json.dumps(b.probe) + ', "ts_ns": '
        names = [(", " if j else "") + json.dumps(name) + ": " for j, name in enumerate(args)]
        cols = list(args.values())
        ts, cpu, tid, pc, comm, pid = b.ts, b.cpu, b.tid, b.preempt_count, b.comm, b.pid
        flags = b.trace_flags.tobytes().translate(_CTX_OF)   # only the context is written
        # what is one value for the whole batch is checked once, in C (all_same)
        task_same = all_same(tid) and all_same(flags) and all_same(pc) and all_same(comm)
        cpu_same = task_same and all_same(cpu)
        col_same = [all_same(c) for c in cols]
        for lo in range(0, n, CHUNK):      # bounded memory: one chunk's text at a time
            hi = min(n, lo + CHUNK)
            parts = [c[0] if same else c[lo:hi] for c, same in zip(cols, col_same, strict=True)]
            sink.write(_rows(hi - lo, head, ts[lo:hi], cpu[lo:hi], pid[lo:hi], tid[lo:hi],
                             comm[lo:hi], flags[lo:hi], pc[lo:hi], names, parts,
                             col_same, encs, task_same, cpu_same))

    def _rows(n: int, head: str, ts: Any, cpu: Any, pid: Any, tid: Any, comm: list[str],
              flags: bytes, pc: Any, names: list[str], cols: list[Any], col_same: list[bool],
              encs: list[Callable[[Any], str]], task_same: bool, cpu_same: bool) -> str:
        """The JSON lines of ``n`` rows, from columns (a column that is one value for
        the whole batch comes as that value)."""
        # pieces of a row: constant text, or one string per row; constants merge
        segs, add = _pieces(head)
        segs.append(list(map(str, ts)))
        add(_per_task(mid, cpu, (pid, tid, comm, flags, pc), task_same, cpu_same))
        for name, col, same, enc in zip(names, cols, col_same, encs, strict=True):
            add(name)
            add(enc(col) if same else list(map(enc, col)))
        add("}}\n")
        return _interleave(n, segs)
    return on_batch


def _encoders(sink: Sink, b: Any, for_int: Callable[[str], Callable[[Any], str]],
              for_str: Callable[[Any], str], line: Callable[..., str],
              ) -> list[Callable[[Any], str]] | None:
    """One encoder per argument column of batch ``b``: ``for_int(name)`` for a
    column of ints, ``for_str`` for one of strings. Any other column (faults,
    arrays, booleans): the batch is written event by event with ``line`` and
    None is returned."""
    encs: list[Callable[[Any], str]] = []
    for name, col in b.args.items():
        kinds = set(map(type, col))
        if kinds <= {int}:
            encs.append(for_int(name))
        elif kinds <= {str}:
            encs.append(for_str)
        else:
            events = b.row_events()
            for lo in range(0, len(events), CHUNK):
                sink.write("".join(line(ev) + "\n" for ev in events[lo:lo + CHUNK]))
            return None
    return encs


def _per_task(mid: Callable[..., str], cpu: Any, task: tuple[Any, ...], task_same: bool,
              cpu_same: bool) -> str | list[str]:
    """The row piece ``mid(cpu, *task)`` of a chunk: one text if CPU and task are the
    same for all rows, one per CPU if only the task is (the usual case), else per row."""
    if cpu_same:
        return mid(cpu[0], *(c[0] for c in task))
    if task_same:
        first = [c[0] for c in task]
        by_cpu = {c: mid(c, *first) for c in set(cpu)}
        return list(map(by_cpu.__getitem__, cpu))
    return list(map(mid, cpu, *task))


def _interleave(n: int, segs: list[str | list[str]]) -> str:
    """``n`` lines from row pieces: each piece one text for every row, or a list of
    one text per row; the rows' pieces in order, joined once (C-level slice
    assignment, no per-row bytecode)."""
    width = len(segs)
    out: list[str | None] = [None] * (width * n)
    for j, seg in enumerate(segs):
        out[j::width] = [seg] * n if type(seg) is str else seg
    return "".join(out)           # type: ignore[arg-type]


def _pieces(head: str | list[str]) -> tuple[list[str | list[str]],
                                            Callable[[str | list[str]], None]]:
    """A list of row pieces starting with ``head``, and its ``add``: constant texts
    next to each other merge into one piece."""
    segs: list[str | list[str]] = [head]

    def add(x: str | list[str]) -> None:
        if type(x) is str and type(segs[-1]) is str:
            segs[-1] += x
        else:
            segs.append(x)
    return segs, add


def text_batch(sink: Sink, hexes: dict[str, set[str]]) -> Callable[[Any], None]:
    """A batch handler writing one text line per event (the text of
    :func:`text_line`), built per batch from columns like :func:`json_batch`:
    integer and string arguments take the column path, other values (faults,
    arrays, booleans) go event by event; :data:`CHUNK` rows at a time."""
    qstr = lru_cache(4096)(format_value)

    @lru_cache(65536)
    def mid(cpu: int, pid: int, tid: int, comm: str) -> str:
        return f" [{cpu:03d}] {escape_text(comm)}-{pid}/{tid}"

    def on_batch(b: Any) -> None:
        n = len(b)
        if not n:
            return
        xs = hexes[b.probe]
        args = b.args
        encs = _encoders(sink, b, lambda name: hex if name in xs else str, qstr,
                         lambda ev: text_line(ev, xs))
        if encs is None:
            return
        names = [f" {name}=" for name in args]
        cols = list(args.values())
        col_same = [all_same(c) for c in cols]
        ts, cpu, tid, comm, pid = b.ts, b.cpu, b.tid, b.comm, b.pid
        task_same = all_same(tid) and all_same(comm)
        cpu_same = task_same and all_same(cpu)
        probe = f" {b.probe}:"
        for lo in range(0, n, CHUNK):      # bounded memory: one chunk's text at a time
            hi = min(n, lo + CHUNK)
            segs, add = _pieces(list(map(_TS_TEXT, map(truediv, ts[lo:hi], repeat(1e9)))))
            add(_per_task(mid, cpu[lo:hi], (pid[lo:hi], tid[lo:hi], comm[lo:hi]), task_same,
                          cpu_same))
            add(probe)
            for name, col, same, enc in zip(names, cols, col_same, encs, strict=True):
                add(name)
                add(enc(col[0]) if same else list(map(enc, col[lo:hi])))
            add("\n")
            sink.write(_interleave(hi - lo, segs))
    return on_batch


def text_event(sink: Sink, hexes: dict[str, set[str]],
               stacks: bool = False) -> Callable[[Any], None]:
    """One text line per event; with ``stacks`` its frames indented under it."""
    if stacks:
        from ..output.stacks import stack_text

        def emit_stacks(ev: Any) -> None:
            sink.write(text_line(ev, hexes[ev.probe]) + "\n" + stack_text(ev))
        return emit_stacks

    def emit(ev: Any) -> None:
        sink.write(text_line(ev, hexes[ev.probe]) + "\n")
    return emit


def json_event(sink: Sink, stacks: bool = False) -> Callable[[Any], None]:
    """One JSON line per event; with ``stacks`` its ``kstack``/``ustack`` arrays."""
    if stacks:
        from ..output.stacks import with_stacks

        def emit_stacks(ev: Any) -> None:
            sink.write(with_stacks(json_line(ev), ev) + "\n")
        return emit_stacks

    def emit(ev: Any) -> None:
        sink.write(json_line(ev) + "\n")
    return emit


def hex_args(s: Any, h: Any) -> set[str]:
    """Args of probe ``h`` that text output prints in hex (README "Numbers"):
    probe args whose fetch type is ``xN`` (given, compiled from BTF for a
    pointer, or the kernel's default ``x64`` of an untyped raw fetch), and
    tracepoint fields declared as pointers. Everything else is decimal."""
    if h.probe.dynamic:
        return {a.name for a in h.probe.args if (a.type or "x64").startswith("x")}
    from ..decode.format import parse_format
    fmt = parse_format(s.tracefs.event_format(h.group, h.event), h.group)
    return {f.name for f in fmt.arg_fields if f.kind == "int" and f.decl.rstrip().endswith("*")}

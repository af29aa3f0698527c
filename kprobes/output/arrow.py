"""Events as Apache Arrow tables and Parquet files (``pyarrow``, imported lazily).

>>> with Session() as s:                                          # doctest: +SKIP
...     s.add_batch("t:syscalls:sys_enter_openat", lambda b: tables.append(b.to_arrow()))
...     s.run(duration=5)
>>> pa.concat_tables(tables).to_pandas()                          # doctest: +SKIP

Columns, in this order (one table may hold several probes, see :class:`EventTable`):

=========  ======================  ==================================================
``probe``  ``string``              the probe's name (as in ``kprobes trace`` output)
``ts_ns``  ``uint64``              the trace clock, ns (the session's ``mono`` clock:
                                   ``CLOCK_MONOTONIC``), as in JSON lines
``time``   ``timestamp[ns, UTC]``  wall clock: ``ts_ns`` plus the offset between
                                   ``CLOCK_REALTIME`` and ``CLOCK_MONOTONIC`` taken once
``cpu``    ``uint16``
``pid``    ``int32``               thread group id
``tid``    ``int32``               thread id (``common_pid``)
``comm``   ``string``
args...    per field (below)       one column per fetched argument / tracepoint field
=========  ======================  ==================================================

Argument types come from the event's ``format`` file (size and sign) and the
probe's fetch type: 1/2/4/8-byte integers are ``int8..int64`` /
``uint8..uint64`` (``x`` types are unsigned integers: hex is only how text
output shows them), strings (``string``, ``ustring``, ``char[N]``, ``char``)
are ``string`` with a fetch fault as null, arrays (``u8[4]``, tracepoint
``T name[N]``) are ``list<int>``, ``string[N]`` a ``list<string>``, BTF enum
arguments the enumerator's name (``string``). A tuple-valued column (stacks)
becomes a ``list``.

An argument column is named after the argument, except when that name is
one of the columns above (``sched_wakeup`` has ``comm`` and ``pid`` fields) or
another probe of the same table has an argument of that name with a
different type: then it is ``<probe>_<name>``.

When the session records stacks (``trace --stack``), ``kstack`` and
``ustack`` follow: ``list<uint64>`` of return addresses, innermost first,
null for an event without that stack.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence

from ..decode.format import FAULT, Field, _loc_elem_type, _type_size
from ..decode.record import RecordDecoder
from .optional import require

TYPE_CHECKING = False   # typing's, without importing typing at run time
if TYPE_CHECKING:
    from typing import Any

    import pyarrow as pa


__all__ = ["EventTable", "ParquetSink", "batch_to_arrow", "arg_types", "FIXED_COLUMNS",
           "STACK_COLUMNS", "pyarrow"]

#: the columns every event has, before its arguments
FIXED_COLUMNS = ("probe", "ts_ns", "time", "cpu", "pid", "tid", "comm")
#: stack columns, present when the session records stacks
STACK_COLUMNS = ("kstack", "ustack")
_COMM_ARG = "__comm"     # runtime.batch.COMM_ARG (kept apart: output/ does not import runtime/)

_WALL_OFFSET: int | None = None


def pyarrow(parquet: bool = False) -> Any:
    """The ``pyarrow`` module, or :class:`~.optional.MissingExtra` naming ``kprobes[arrow]``.

    ``parquet``: also import ``pyarrow.parquet`` now and have pyarrow load
    what it loads on first use (pandas, when installed): 0.5-1.5 s that the
    first batch of a trace would otherwise pay, with events waiting."""
    pa = require("pyarrow", "arrow", "Arrow/Parquet output")
    require("pyarrow.compute", "arrow", "Arrow output")
    if parquet:
        require("pyarrow.parquet", "arrow", "Parquet output")
        pa.array([0])     # pyarrow imports pandas (when installed) on first use: now
    return pa


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version("kprobes")
    except PackageNotFoundError:
        return "unknown"


def wall_offset_ns() -> int:
    """``CLOCK_REALTIME - CLOCK_MONOTONIC`` in ns, taken once per process."""
    global _WALL_OFFSET
    if _WALL_OFFSET is None:
        _WALL_OFFSET = time.time_ns() - time.monotonic_ns()
    return _WALL_OFFSET


def _int_type(pa: Any, size: int, signed: bool) -> Any:
    if size in (1, 2, 4, 8):
        return getattr(pa, f"{'int' if signed else 'uint'}{size * 8}")()
    return pa.int64() if signed else pa.uint64()


def _field_type(pa: Any, f: Field, ptype: str | None, enum: bool) -> Any:
    """The Arrow type of one decoded field (see the module docstring)."""
    if enum:
        return pa.string()
    if f.kind == "int":
        if ptype == "char":
            return pa.string()
        if f.size > 8:
            return pa.string()          # decoded as a Python int wider than 64 bits
        return _int_type(pa, f.size, f.signed)
    if f.kind == "char_array" or (ptype is not None and ptype.startswith("char[")):
        return pa.string()
    if f.kind == "array":
        if f.elem_size in (1, 2, 4, 8):
            return pa.list_(_int_type(pa, f.elem_size, f.signed))
        return pa.binary()
    # __data_loc
    if f.is_string:
        return pa.string() if f.count is None else pa.list_(pa.string())
    if f.elem_size in (1, 2, 4, 8) and _type_size(_loc_elem_type(f.decl)):
        return pa.list_(_int_type(pa, f.elem_size, f.signed))
    return pa.binary()              # e.g. cpumask_t: the decoder gives bytes


def arg_types(target: Sequence[Any]) -> dict[str, Any]:
    """``{arg name: Arrow type}`` of a reader target ``(handle, decoder, has_comm, hidden)``,
    in the order ``Batch.args`` has them."""
    pa = pyarrow()
    h, dec, _has_comm, hidden = target[:4]
    assert isinstance(dec, RecordDecoder)
    enums = getattr(h, "enums", {}) or {}
    out: dict[str, Any] = {}
    for name in dec.names:
        if name in hidden or name == _COMM_ARG:
            continue
        out[name] = _field_type(pa, dec.fmt.field(name), dec.types.get(name), name in enums)
    return out


def _is_stringish(t: Any, pa: Any) -> bool:
    return t == pa.string() or (pa.types.is_list(t) and t.value_type == pa.string())


def _column(pa: Any, values: list[Any], typ: Any) -> Any:
    """An Arrow array of ``typ`` from decoded values (faults -> null)."""
    if typ == pa.string():
        if any(type(v) is not str for v in values):
            values = [None if v is FAULT or v is None else v if type(v) is str else str(v)
                      for v in values]
    elif pa.types.is_list(typ) and typ.value_type == pa.string():
        values = [None if v is FAULT else [None if x is FAULT else x for x in v]
                  for v in values]
    try:
        return pa.array(values, type=typ)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
        # a value the format did not announce (a new column kind): let Arrow infer it
        return pa.array([None if v is FAULT else v for v in values])


def _from_array(pa: Any, typ: Any, a: Any) -> Any:
    """Zero-copy Arrow array over a Python ``array.array`` of fixed-width ints."""
    return pa.Array.from_buffers(typ, len(a), [None, pa.py_buffer(a)])


class EventTable:
    """The Arrow schema of the events of one or more probes, and batches in it.

    ``targets``: reader targets ``(handle, decoder, has_comm, hidden)``, one per
    probe. The schema is :data:`FIXED_COLUMNS` followed by the union of the
    probes' argument columns (see the module docstring for names); a row has
    nulls in the columns of the other probes' arguments, so one file holds a
    whole trace and ``SELECT count(*) FROM t WHERE probe = 'x'`` just works.
    """

    def __init__(self, targets: Iterable[Sequence[Any]], *, stacks: bool = False) -> None:
        pa = self.pa = pyarrow()
        self.pc = require("pyarrow.compute", "arrow", "Arrow output")
        self.fixed = [pa.field("probe", pa.string()), pa.field("ts_ns", pa.uint64()),
                      pa.field("time", pa.timestamp("ns", tz="UTC")),
                      pa.field("cpu", pa.uint16()), pa.field("pid", pa.int32()),
                      pa.field("tid", pa.int32()), pa.field("comm", pa.string())]
        cols: dict[str, Any] = {}
        #: probe name -> {arg name: column name}
        self.columns: dict[str, dict[str, str]] = {}
        for t in targets:
            probe = t[0].name
            m = self.columns.setdefault(probe, {})
            for arg, typ in arg_types(t).items():
                col = arg
                if col in FIXED_COLUMNS or (col in cols and cols[col] != typ):
                    col = f"{probe}_{arg}"
                    n = 2
                    while col in FIXED_COLUMNS or (col in cols and cols[col] != typ):
                        col = f"{probe}_{arg}_{n}"
                        n += 1
                cols[col] = typ
                m[arg] = col
        self.arg_columns = cols
        #: stacks recorded with the events (``trace --stack``): return addresses,
        #: innermost first, null where the event has none
        self.stacks = stacks
        extra = [pa.field(c, pa.list_(pa.uint64())) for c in STACK_COLUMNS] if stacks else []
        self.schema = pa.schema(self.fixed + [pa.field(c, t) for c, t in cols.items()] + extra)
        self._offset = wall_offset_ns()

    def table(self, b: Any) -> pa.Table:
        """The rows of batch ``b`` as a table with this schema."""
        pa = self.pa
        n = len(b)
        ts = _from_array(pa, pa.uint64(), b.ts)
        wall = self.pc.add(ts.cast(pa.int64()), pa.scalar(self._offset, pa.int64()))
        arrays = [pa.repeat(pa.scalar(b.probe, pa.string()), n), ts, wall.cast(pa.timestamp("ns", tz="UTC")),
                  _from_array(pa, pa.uint16(), b.cpu), _from_array(pa, pa.int32(), b.pid),
                  _from_array(pa, pa.int32(), b.tid), pa.array(b.comm, pa.string())]
        mine = self.columns.get(b.probe, {})
        by_col = {mine[a]: v for a, v in b.args.items() if a in mine}
        for col, typ in self.arg_columns.items():
            vals = by_col.get(col)
            arrays.append(pa.nulls(n, typ) if vals is None else _column(pa, vals, typ))
        if self.stacks:
            arrays += _stack_columns(pa, b)
        return pa.Table.from_arrays(arrays, schema=self.schema)


def _stack_columns(pa: Any, b: Any) -> list[Any]:
    """``kstack``, ``ustack``: each event's stack addresses (the events of a batch
    that recorded stacks carry ``kstack_addrs``/``ustack_addrs``), else nulls."""
    n = len(b)
    if getattr(b, "_stk", None) is None:
        return [pa.nulls(n, pa.list_(pa.uint64())) for _ in STACK_COLUMNS]
    evs = b.events()
    return [pa.array([getattr(ev, f"{c}_addrs", None) for ev in evs], pa.list_(pa.uint64()))
            for c in STACK_COLUMNS]


def batch_to_arrow(b: Any) -> pa.Table:
    """``Batch.to_arrow()``: the batch as a table (columns per the module docstring)."""
    stacks = getattr(b, "_stk", None) is not None
    return EventTable([b._t], stacks=stacks).table(b)  # noqa: SLF001 - its own decoder


class ParquetSink:
    """Write batches to a Parquet file as they come, in bounded memory.

    Rows are buffered as Arrow tables and written as soon as ``row_group_rows``
    are pending (and on :meth:`flush`/:meth:`close`), in row groups of at most
    that many rows: the process holds at most one row group plus one read cycle.
    A trickle is written at least every ``flush_seconds`` (when a batch comes),
    so a killed tracer loses little. The file's key-value metadata says where it
    comes from: ``kprobes.host``, ``kprobes.version``, ``kprobes.probes``,
    ``kprobes.ts_clock`` and ``kprobes.wall_offset_ns`` (``time - ts_ns``). :meth:`close`
    writes what is pending and the footer; a file whose writer was closed is
    readable, whatever stopped the run (Ctrl-C, SIGTERM, an error). Rows of a
    row group are in ``ts_ns`` order.

    >>> sink = ParquetSink("out.parquet", session.reader.targets())   # doctest: +SKIP
    >>> for h in session.handles: h.batch = sink.add                   # doctest: +SKIP
    """

    def __init__(self, path: str, targets: Iterable[Sequence[Any]], *,
                 row_group_rows: int = 65536, flush_seconds: float = 5.0,
                 compression: str = "zstd", stacks: bool = False) -> None:
        self.table = EventTable(targets, stacks=stacks)
        pq = require("pyarrow.parquet", "arrow", "Parquet output")
        self.path = path
        self.row_group_rows = row_group_rows
        self.flush_seconds = flush_seconds
        self._t_flush = time.monotonic()
        import socket

        md = {"kprobes.version": _version(), "kprobes.host": socket.gethostname(),
              "kprobes.probes": ",".join(self.table.columns),
              "kprobes.ts_clock": "mono", "kprobes.wall_offset_ns": str(self.table._offset)}
        self.writer = pq.ParquetWriter(path, self.table.schema.with_metadata(md),
                                       compression=compression)
        self._pending: list[Any] = []
        self._n = 0
        self.rows = 0            # rows written to the file so far
        self.row_groups = 0

    def add(self, b: Any) -> None:
        """A batch handler: buffer the batch's rows, write a row group when enough."""
        if not len(b):
            return
        self._pending.append(self.table.table(b))
        self._n += len(b)
        if self._n >= self.row_group_rows or \
                time.monotonic() - self._t_flush >= self.flush_seconds:
            self.flush()

    def flush(self) -> None:
        """Write the pending rows as one row group."""
        if not self._pending:
            return
        pa = self.table.pa
        t = pa.concat_tables(self._pending)
        if len(self._pending) > 1:
            ts = t.column("ts_ns")
            pc = self.table.pc
            if len(t) > 1 and pc.any(pc.less(ts.slice(1), ts.slice(0, len(t) - 1))).as_py():
                t = t.sort_by("ts_ns")
        self._pending = []
        self._n = 0
        self._t_flush = time.monotonic()
        self.writer.write_table(t, row_group_size=self.row_group_rows)
        self.rows += len(t)
        self.row_groups += -(-len(t) // self.row_group_rows)

    def close(self) -> None:
        """Write what is pending and the file footer (idempotent)."""
        if self.writer is None:
            return
        try:
            self.flush()
        finally:
            w, self.writer = self.writer, None
            w.close()

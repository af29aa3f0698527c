"""Batch columns from real recorded pages (tests/data/pages), no kernel needed:
the columns equal what decoding each record on its own gives, rows in
timestamp order across CPUs, hidden fields dropped, BTF enums by name."""

from __future__ import annotations

import json
from pathlib import Path

from kprobes import FAULT, Batch, ProbeHandle
from kprobes.decode import PageDecoder, RecordDecoder, parse_format
from kprobes.decode.record import common_type
from kprobes.probes.model import Tracepoint
from kprobes.runtime.event import TaskCache
from kprobes.runtime.handle import Stream

PAGES = Path(__file__).resolve().parent.parent / "data" / "pages"


def _page(name: str) -> tuple[dict, bytes, list[tuple[int, int, int]]]:
    d = PAGES / name
    meta = json.loads((d / "meta.json").read_text())
    page = (d / "page.bin").read_bytes()
    _hdr, recs = PageDecoder.from_header_page((d / "header_page").read_text()).records(page)
    return meta, page, recs


def _stream(fmt_path: Path, system: str, types: dict[str, str] | None = None,
            hidden: tuple[str, ...] = (), enums: dict | None = None) -> Stream:
    fmt = parse_format(fmt_path.read_text(), system)
    h = ProbeHandle(fmt.name, Tracepoint(system, fmt.name), None)
    h.enums = enums or {}
    return Stream(h, RecordDecoder(fmt, types), False, hidden)


def _uprobe_batch() -> tuple[dict, Stream, Batch]:
    """The recorded uprobe page's events as a batch: typed args, a hidden field, an enum."""
    meta, page, recs = _page("uprobe")
    types = {"n": "s32", "n8": "s8", "nx": "x64", "s": "string", "us": "ustring",
             "ch": "char", "chars": "char[3]", "x": "x64", "xs": "s64", "arr": "u8[4]",
             "sarr": "s8[4]", "imm": "string"}
    st = _stream(PAGES / "uprobe" / "target.format", meta["system"], types,
                 hidden=("__probe_ip",), enums={"n": {-5: "MINUS_FIVE"}})
    b = Batch("target", st, TaskCache(None))
    b._add(0, page, [r for r in recs if common_type(page, r[1]) == st.decoder.fmt.id])
    return meta, st, b


def test_getppid_columns_equal_record_by_record_decoding() -> None:
    meta, page, recs = _page("getppid")
    st = _stream(PAGES / "getppid" / "sys_enter_getppid.format", meta["system"])
    fmt_id = st.decoder.fmt.id
    mine = [r for r in recs if common_type(page, r[1]) == fmt_id]
    b = Batch("getppid", st, TaskCache(None))
    b._add(0, page, mine)
    assert len(b) == len(mine) >= meta["calls"]
    one = [st.decoder.decode(page, s, n) for _ts, s, n in mine]
    assert list(b.ts) == [ts for ts, _s, _n in mine]
    assert list(b.cpu) == [0] * len(mine)
    assert list(b.tid) == [d[2] for d in one]
    assert list(b.trace_flags) == [d[0] for d in one]
    assert list(b.preempt_count) == [d[1] for d in one]
    assert b.args == {"__syscall_nr": [d[3]["__syscall_nr"] for d in one]}
    assert b.tid.count(meta["pid"]) == meta["calls"]
    assert set(b.args["__syscall_nr"]) == {110}            # x86-64 getppid
    evs = b.events()
    assert [(e.ts_ns, e.tid, e.args) for e in evs] == [
        (ts, d[2], d[3]) for (ts, _s, _n), d in zip(mine, one, strict=True)]
    assert len(b.pid) == len(b.comm) == len(b)


def test_rows_of_two_cpus_merge_by_timestamp() -> None:
    """Two CPUs' segments (the second one's stamps 1 ns later): every column
    comes in timestamp order, the same order for all of them."""
    meta, page, recs = _page("getppid")
    st = _stream(PAGES / "getppid" / "sys_enter_getppid.format", meta["system"])
    mine = [r for r in recs if common_type(page, r[1]) == st.decoder.fmt.id][:10]
    later = [(ts + 1, s, n) for ts, s, n in mine]
    b = Batch("getppid", st, TaskCache(None))
    b._add(0, page, mine)
    b._add(1, page, later)
    assert len(b) == 20
    ts = list(b.ts)
    assert ts == sorted(ts)
    assert list(b.cpu) == [0, 1] * 10
    want = [st.decoder.decode(page, s)[2] for _ts, s, _n in mine]
    assert list(b.tid) == [t for t in want for _ in (0, 1)]
    assert [(e.ts_ns, e.cpu) for e in b.events()] == list(zip(ts, b.cpu, strict=True))


def test_uprobe_page_hidden_fields_enums_strings_and_faults() -> None:
    meta, st, b = _uprobe_batch()
    calls = meta["calls"]
    assert len(b) == len(calls)
    a = b.args
    assert "__probe_ip" not in a
    assert a["n"] == ["MINUS_FIVE"] + [c["n"] for c in calls[1:]]
    assert a["s"] == [FAULT if c["s"] is None else c["s"] for c in calls]
    assert a["x"] == [c["x"] % 2 ** 64 for c in calls]
    assert a["arr"] == [tuple(meta["arr"])] * len(calls)
    assert a["comm"] == [meta["comm"]] * len(calls)
    assert set(b.tid) == {meta["pid"]}
    # the per-event view of the same rows agrees, enums and hidden fields included
    for ev, n in zip(b.events(), a["n"], strict=True):
        assert ev.args["n"] == n and "__probe_ip" not in ev.args


def test_an_empty_batch_has_empty_columns() -> None:
    meta, _page_bytes, _recs = _page("getppid")
    b = Batch("getppid", _stream(PAGES / "getppid" / "sys_enter_getppid.format",
                                 meta["system"]), TaskCache(None))
    assert len(b) == 0
    assert (list(b.ts), list(b.tid), b.args, b.events()) == ([], [], {"__syscall_nr": []}, [])


def test_columns_of_uniform_pages_read_without_record_tuples() -> None:
    """Pages of one run of one event (the usual page at a high rate), read lazily
    as the reader reads them: the columns come from the page at its stride, with no
    per-record tuple, and equal those of the same pages split record by record;
    two CPUs' pages merge by timestamp the same way."""
    import struct
    meta, page, recs = _page("getppid")
    st = _stream(PAGES / "getppid" / "sys_enter_getppid.format", meta["system"])
    mine = [r for r in recs if common_type(page, r[1]) == st.decoder.fmt.id]
    body = b"".join(page[s - 4:s + n] for _ts, s, n in mine)
    dec = PageDecoder.from_header_page((PAGES / "getppid" / "header_page").read_text())
    p0 = struct.pack("=QQ", 1000, len(body)) + body
    p1 = struct.pack("=QQ", 1001, len(body)) + body       # the other CPU, 1 ns later
    lazy = Batch("getppid", st, TaskCache(None))
    split = Batch("getppid", st, TaskCache(None))
    for cpu, pg in ((0, p0), (1, p1)):
        _h, recs_lazy = dec.lazy(pg)
        assert recs_lazy.stride is not None
        lazy._add(cpu, pg, recs_lazy)
        split._add(cpu, pg, dec.records(pg)[1])
    cols = ("ts", "cpu", "tid", "trace_flags", "preempt_count", "pid", "comm", "args")
    got = {c: getattr(lazy, c) for c in cols}
    assert all(s[2]._list is None for s in lazy._segs)     # no tuples were made
    assert got == {c: getattr(split, c) for c in cols}
    assert list(got["ts"]) == sorted(got["ts"]) and len(got["ts"]) == 2 * len(mine)
    assert list(got["cpu"][:2]) == [0, 1]
    assert got["tid"].count(meta["pid"]) == 2 * meta["calls"]


def test_context_borrow_is_undone_in_columns_as_per_event() -> None:
    """A preempt_count byte of 0xFF (the context word's borrow into the flags:
    uprobes, int3 kprobes) is undone the same way in the columns, whether every
    row has it (one C pass) or some do, as in the per-event view."""
    import struct
    meta, page, recs = _page("getppid")
    st = _stream(PAGES / "getppid" / "sys_enter_getppid.format", meta["system"])
    mine = [r for r in recs if common_type(page, r[1]) == st.decoder.fmt.id]
    dec = PageDecoder.from_header_page((PAGES / "getppid" / "header_page").read_text())
    for every in (True, False):
        body = bytearray(b"".join(page[s - 4:s + n] for _ts, s, n in mine))
        step = len(body) // len(mine)
        for i in range(len(mine)):
            if every or i % 2:
                body[i * step + 4 + 2:i * step + 4 + 4] = bytes((0x08, 0xFF))  # flags, pc
        pg = struct.pack("=QQ", 1000, len(body)) + bytes(body)
        b = Batch("getppid", st, TaskCache(None))
        b._add(0, pg, dec.lazy(pg)[1])
        want = [(ev.trace_flags, ev.preempt_count) for ev in b.events()]
        assert list(zip(b.trace_flags, b.preempt_count, strict=True)) == want
        assert (0x09, 0) in want and all(pc != 0xFF for _f, pc in want)


def test_row_events_equal_the_lazily_decoded_events() -> None:
    """What per-event handlers get (RowEvent, from the columns) has every field of
    the event decoded record by record: tracepoint and uprobe pages (strings,
    faults, enums, hidden fields, the comm fetched in the kernel), two CPUs merged
    in time order, each event its own args dict, its handle reachable."""
    from kprobes.runtime.batch import RowEvent, handle_of
    meta, page, recs = _page("getppid")
    st = _stream(PAGES / "getppid" / "sys_enter_getppid.format", meta["system"])
    mine = [r for r in recs if common_type(page, r[1]) == st.decoder.fmt.id][:10]
    two = Batch("getppid", st, TaskCache(None))
    two._add(0, page, mine)
    two._add(1, page, [(ts + 1, s, n) for ts, s, n in mine])
    _meta_u, st_u, up = _uprobe_batch()
    fields = ("probe", "ts_ns", "cpu", "tid", "trace_flags", "preempt_count", "args", "pid",
              "comm", "context")
    for b, st_b in ((two, st), (up, st_u)):
        want = [tuple(getattr(ev, f) for f in fields) for ev in b.events()]
        got = b.row_events()
        assert all(type(ev) is RowEvent for ev in got)
        assert [tuple(getattr(ev, f) for f in fields) for ev in got] == want
        assert len({id(ev.args) for ev in got}) == len(got)      # a dict of its own each
        assert all(handle_of(ev) is st_b.handle for ev in got)
    assert [ev.cpu for ev in two.row_events()][:4] == [0, 1, 0, 1]
    assert up.row_events()[0].args["n"] == "MINUS_FIVE" and "__probe_ip" not in up.row_events()[0].args

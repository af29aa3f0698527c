"""Data out without a kernel: Arrow types from recorded format files, union
schemas, tables from columns; aggregation rows as Prometheus metrics and
DataFrames; a missing optional package is one error naming its extra."""

from __future__ import annotations

import math
import sys
from array import array
from pathlib import Path
from types import SimpleNamespace

import pyarrow as pa
import pytest
from prometheus_client.parser import text_string_to_metric_families

from kprobes.decode.format import FAULT, parse_format
from kprobes.decode.record import RecordDecoder
from kprobes.errors import KprobesError
from kprobes.output.arrow import EventTable, arg_types
from kprobes.output.frames import aggregation_to_pandas, rows_to_records, stats_to_pandas
from kprobes.output.optional import MissingExtra, require
from kprobes.output.prometheus import Exporter, le_buckets, parse_listen
from kprobes.runtime.session import ProbeStats, Stats

FORMATS = Path(__file__).resolve().parent.parent / "data" / "formats"

# the probe definitions the recorded uprobe formats came from (tests/data/formats/README.md)
TYPES = {
    "uprobe_ints": {"s8v": "s8", "s16v": "s16", "s32v": "s32", "s64v": "s64", "u8v": "u8",
                    "u16v": "u16", "u32v": "u32", "u64v": "u64", "x8v": "x8", "x16v": "x16",
                    "x32v": "x32", "x64v": "x64"},
    "uprobe_strs": {"s": "string", "us": "ustring", "ch": "char", "comm": "string",
                    "imm": "string"},
    "uprobe_arrays": {"a8": "u8[4]", "s32a": "s32[3]", "x64a": "x64[2]", "chars": "char[8]"},
    "uprobe_strarr": {"sa": "string[2]"},
}


def target(fname: str, probe: str | None = None, enums: dict | None = None,
           dynamic: bool | None = None) -> tuple:
    fmt = parse_format((FORMATS / f"{fname}.format").read_text(), fname.split("_", 1)[0])
    dec = RecordDecoder(fmt, TYPES.get(fname))
    dyn = fname.startswith("uprobe") if dynamic is None else dynamic
    hidden = tuple(f.name for f in fmt.arg_fields if dyn and f.name.startswith("__"))
    h = SimpleNamespace(name=probe or fname, enums=enums or {})
    return (h, dec, False, hidden)


def test_arrow_types_from_formats() -> None:
    t = arg_types(target("uprobe_ints"))
    assert t == {"s8v": pa.int8(), "s16v": pa.int16(), "s32v": pa.int32(), "s64v": pa.int64(),
                 "u8v": pa.uint8(), "u16v": pa.uint16(), "u32v": pa.uint32(),
                 "u64v": pa.uint64(), "x8v": pa.uint8(), "x16v": pa.uint16(),
                 "x32v": pa.uint32(), "x64v": pa.uint64(), "dflt": pa.uint64()}
    assert "__probe_ip" not in t
    assert arg_types(target("uprobe_strs")) == {"s": pa.string(), "us": pa.string(),
                                                "ch": pa.string(), "comm": pa.string(),
                                                "imm": pa.string()}
    assert arg_types(target("uprobe_arrays")) == {
        "a8": pa.list_(pa.uint8()), "s32a": pa.list_(pa.int32()),
        "x64a": pa.list_(pa.uint64()), "chars": pa.string()}
    assert arg_types(target("uprobe_strarr")) == {"sa": pa.list_(pa.string())}
    sw = arg_types(target("sched_sched_switch"))
    assert sw["prev_comm"] == pa.string() and sw["prev_pid"] == pa.int32()
    assert sw["prev_state"] == pa.int64()
    assert arg_types(target("ipi_ipi_send_cpumask"))["cpumask"] == pa.binary()
    assert arg_types(target("ftrace_kernel_stack"))["caller"] == pa.list_(pa.uint64())
    assert arg_types(target("uprobe_ints", enums={"s32v": {1: "ONE"}}))["s32v"] == pa.string()


def test_union_schema_renames_clashes() -> None:
    """Args named like a fixed column, or shared with another type, get the probe's name."""
    a = target("uprobe_strs", "pa")            # has 'comm' (fixed column) and 's' (string)
    b = target("uprobe_ints", "pb")
    c = target("sched_sched_switch", "sw")
    t = EventTable([a, b, c])
    assert t.columns["pa"]["comm"] == "pa_comm"
    assert t.columns["pa"]["s"] == "s"
    names = t.schema.names
    assert names[:7] == ["probe", "ts_ns", "time", "cpu", "pid", "tid", "comm"]
    assert len(names) == len(set(names))
    # the same name with another type in a second probe
    d = target("uprobe_ints", "pd")
    fmt_clash = EventTable([target("uprobe_strarr", "x"), d])
    assert fmt_clash.columns["pd"]["s8v"] == "s8v"
    strs2 = target("uprobe_strs", "q")
    arrs = target("uprobe_strarr", "r")
    e = EventTable([strs2, arrs])
    assert e.columns["q"]["s"] == "s" and e.columns["r"]["sa"] == "sa"


class _Batch(SimpleNamespace):
    """The columns of a runtime Batch, given."""

    def __len__(self) -> int:
        return len(self.ts)


def _batch(probe: str, t: tuple, n: int, args: dict) -> _Batch:
    return _Batch(probe=probe, ts=array("Q", range(1000, 1000 + n)),
                  cpu=array("H", [i % 2 for i in range(n)]),
                  pid=array("i", [42] * n), tid=array("i", [43] * n),
                  comm=["gen"] * n, args=args, _t=t)


def test_table_values_faults_and_nulls() -> None:
    ts, ti = target("uprobe_strs", "ps"), target("uprobe_ints", "pi")
    t = EventTable([ts, ti])
    n = 3
    b = _batch("ps", ts, n, {"s": ["a", FAULT, "c"], "us": ["x", "y", "z"],
                             "ch": ["q", "r", "s"], "comm": ["c1", "c2", "c3"],
                             "imm": ["hello"] * n})
    tab = t.table(b)
    assert tab.schema == t.schema
    d = tab.to_pydict()
    assert d["probe"] == ["ps"] * n
    assert d["ts_ns"] == [1000, 1001, 1002]
    assert d["cpu"] == [0, 1, 0] and d["pid"] == [42] * n and d["tid"] == [43] * n
    assert d["s"] == ["a", None, "c"]                     # a fetch fault is null
    assert d["ps_comm"] == ["c1", "c2", "c3"]
    assert d["s64v"] == [None] * n                        # the other probe's columns
    wall = tab.column("time").cast(pa.int64()).to_pylist()
    assert [w - x for w, x in zip(wall, d["ts_ns"], strict=True)] == [t._offset] * n
    ints = {k: [v] for k, v in zip(arg_types(ti), [-1, -2, -3, -4, 255, 65535, 2**32 - 1,
                                                   2**64 - 1, 1, 2, 3, 4, 5], strict=True)}
    tab2 = t.table(_batch("pi", ti, 1, ints))
    row = tab2.to_pylist()[0]
    assert (row["s8v"], row["u64v"], row["x16v"], row["s"]) == (-1, 2**64 - 1, 2, None)


def test_table_of_lists() -> None:
    ta = target("uprobe_arrays", "arr")
    tsa = target("uprobe_strarr", "sa")
    t = EventTable([ta, tsa])
    tab = t.table(_batch("arr", ta, 2, {"a8": [(1, 2, 3, 4), (5, 6, 7, 8)],
                                        "s32a": [(-1, 0, 1), (2, 3, 4)],
                                        "x64a": [(1, 2**64 - 1), (0, 0)],
                                        "chars": ["abc", ""]}))
    assert tab.column("s32a").to_pylist() == [[-1, 0, 1], [2, 3, 4]]
    assert tab.column("x64a").to_pylist()[0] == [1, 2**64 - 1]
    tab = t.table(_batch("sa", tsa, 2, {"sa": [("a", FAULT), ("b", "c")]}))
    assert tab.column("sa").to_pylist() == [["a", None], ["b", "c"]]


# -- aggregations -------------------------------------------------------------

B = SimpleNamespace


def Row(key: dict, count: int, sum: int | None = None, buckets: list | None = None,
        min: int | None = None, max: int | None = None) -> SimpleNamespace:
    return SimpleNamespace(key=key, count=count, sum=sum, min=min, max=max, buckets=buckets)


class FakeAgg:
    """The aggregation interface (COMMON.md): kind, name, by, value, unit, dropped, read()."""

    def __init__(self, kind: str, name: str, by: tuple, rows: list, value: str | None = None,
                 unit: str | None = None, dropped: int = 0) -> None:
        self.kind, self.name, self.by, self.value, self.unit = kind, name, by, value, unit
        self.backend, self.dropped, self.rows = "user", dropped, rows

    def read(self) -> list:
        return self.rows


def _scrape(exp: Exporter) -> dict:
    from prometheus_client import generate_latest
    text = generate_latest(exp.registry).decode()
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_le_buckets_are_cumulative_and_exact() -> None:
    bs = [B(lo=5, hi=9, count=3), B(lo=0, hi=2, count=2), B(lo=3, hi=5, count=1)]
    assert le_buckets(bs, 6) == [("1", 2.0), ("4", 3.0), ("8", 6.0), ("+Inf", 6.0)]


def test_exporter_metrics_from_aggregations() -> None:
    cnt = FakeAgg("count", "opens", ("comm",), [Row({"comm": "gen"}, 7),
                                                Row({"comm": "sh"}, 2)], dropped=3)
    lat = FakeAgg("latency", "read", ("comm",), [
        Row({"comm": "gen"}, 6, sum=40, buckets=[B(lo=3, hi=5, count=2), B(lo=5, hi=9, count=4)])],
        value="latency", unit="ns")
    stk = FakeAgg("count", "stacks", ("kstack",), [Row({"kstack": ("a", "b")}, 4)])
    mx = FakeAgg("max", "biggest", (), [Row({}, 3, max=99)])
    m = _scrape(Exporter(None, [cnt, lat, stk, mx]))
    assert m["kprobes_opens_total", (("comm", "gen"),)] == 7
    assert m["kprobes_opens_total", (("comm", "sh"),)] == 2
    assert m["kprobes_read_ns_bucket", (("comm", "gen"), ("le", "4"))] == 2
    assert m["kprobes_read_ns_bucket", (("comm", "gen"), ("le", "8"))] == 6
    assert m["kprobes_read_ns_bucket", (("comm", "gen"), ("le", "+Inf"))] == 6
    assert m["kprobes_read_ns_sum", (("comm", "gen"),)] == 40
    assert m["kprobes_read_ns_count", (("comm", "gen"),)] == 6
    assert m["kprobes_stacks_total", (("kstack", "a;b"),)] == 4
    assert m["kprobes_biggest", ()] == 99
    assert m["kprobes_dropped_keys_total", (("aggregation", "opens"),)] == 3
    assert m["kprobes_snapshot_errors_total", ()] == 0


def test_histogram_without_sum_is_nan() -> None:
    h = FakeAgg("hist", "sizes", (), [Row({}, 1, buckets=[B(lo=1, hi=2, count=1)])])
    m = _scrape(Exporter(None, [h]))
    assert math.isnan(m["kprobes_sizes_sum", ()])
    assert m["kprobes_sizes_bucket", (("le", "1"),)] == 1


def test_parse_listen() -> None:
    assert parse_listen("9102") == ("127.0.0.1", 9102)
    assert parse_listen("0.0.0.0:80") == ("0.0.0.0", 80)
    assert parse_listen("[::1]:0") == ("::1", 0)
    for bad in ("x", "1:70000", ""):
        with pytest.raises(KprobesError, match="not a port"):
            parse_listen(bad)


def test_frames() -> None:
    lat = FakeAgg("latency", "read", ("comm",), [
        Row({"comm": "gen"}, 6, sum=40, buckets=[B(lo=3, hi=5, count=2), B(lo=5, hi=9, count=4)])])
    df = aggregation_to_pandas(lat)
    assert list(df.columns) == ["comm", "lo", "hi", "count"]
    assert df.to_dict("records") == [{"comm": "gen", "lo": 3, "hi": 5, "count": 2},
                                     {"comm": "gen", "lo": 5, "hi": 9, "count": 4}]
    cnt = FakeAgg("sum", "bytes", ("comm",), [Row({"comm": "a"}, 2, sum=10)])
    assert aggregation_to_pandas(cnt).to_dict("records") == [{"comm": "a", "count": 2,
                                                             "sum": 10}]
    assert rows_to_records([Row({"kstack": ("f", "g")}, 1)]) == [{"kstack": "f;g", "count": 1}]
    st = Stats(probes={"p": ProbeStats(events=5, hits=6), "q": ProbeStats(events=1)}, lost=2,
               events=6)
    df = st.to_pandas()
    assert df.loc["p", "events"] == 5 and df.loc["p", "hits"] == 6
    assert df.attrs["lost"] == 2
    assert list(stats_to_pandas(Stats()).columns) == ["events", "hits", "misses", "errors"]


def test_missing_extra_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pandas", None)      # import pandas -> ImportError
    with pytest.raises(MissingExtra) as e:
        Stats().to_pandas()
    assert e.value.hint == "pip install 'kprobes[pandas]'"
    assert "pandas" in str(e.value)
    monkeypatch.setitem(sys.modules, "prometheus_client", None)
    with pytest.raises(MissingExtra, match="prometheus_client"):
        require("prometheus_client", "prometheus")


def test_parquet_sink_groups_order_and_close(tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    from kprobes.output.arrow import ParquetSink
    t = target("syscalls_sys_enter_getppid", "g", dynamic=False)

    def mk(ts: list[int]) -> _Batch:
        b = _batch("g", t, len(ts), {"__syscall_nr": [110] * len(ts)})
        b.ts = array("Q", ts)
        return b
    out = str(tmp_path / "s.parquet")
    sink = ParquetSink(out, [t], row_group_rows=4)
    sink.add(mk([5, 6, 7]))
    sink.add(mk([1, 2, 9]))          # 6 pending >= 4: written, in ts order, as groups of <= 4
    sink.add(mk([]))
    sink.add(mk([20]))
    assert sink.rows == 6
    sink.close()
    sink.close()                      # idempotent
    f = pq.ParquetFile(out)
    assert [f.metadata.row_group(i).num_rows for i in range(f.num_row_groups)] == [4, 2, 1]
    tab = f.read()
    assert tab.column("ts_ns").to_pylist() == [1, 2, 5, 6, 7, 9, 20]
    assert set(tab.column("__syscall_nr").to_pylist()) == {110}


def test_exporter_http_idle_and_serviced() -> None:
    """Over HTTP on 127.0.0.1: without a run loop the scrape reads the metrics
    itself; with one, the loop's thread takes the snapshot (service())."""
    import threading
    import urllib.request
    rows = [Row({"comm": "gen"}, 3)]
    agg = FakeAgg("count", "calls", ("comm",), rows)
    exp = Exporter(None, [agg])
    host, port = exp.serve("127.0.0.1", 0)
    url = f"http://{host}:{port}/metrics"
    try:
        def scrape() -> str:
            return urllib.request.urlopen(url, timeout=20).read().decode()
        assert 'kprobes_calls_total{comm="gen"} 3.0' in scrape()
        readers: list[int] = []
        agg.read = lambda: readers.append(threading.get_ident()) or rows  # type: ignore[method-assign]
        stop = threading.Event()

        def loop() -> None:                      # a session's run loop, elsewhere
            while not stop.is_set():
                exp.service()
                stop.wait(0.01)
        th = threading.Thread(target=loop)
        th.start()
        try:
            for _ in range(50):                  # attached once service() has run
                readers.clear()
                assert 'comm="gen"} 3.0' in scrape()
                if readers == [th.ident]:
                    break
        finally:
            stop.set()
            th.join()
        assert set(readers) == {th.ident}
    finally:
        exp.close()

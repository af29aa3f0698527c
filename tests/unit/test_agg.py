"""The pure aggregation core: bucket math, hist files recorded in the 6.1 guest, the
column aggregator, entry/return pairing and rendering."""

from __future__ import annotations

import json
import os
from collections import Counter

import pytest

from kprobes.agg.buckets import MAX, MIN, Linear, log2_index, log2_range
from kprobes.agg.histfile import Log2Key, RangeKey, key_value, parse_hist, split_keys
from kprobes.agg.model import Aggregation, Bucket, Row, merge_rows, sort_rows
from kprobes.agg.render import text_rows
from kprobes.agg.user import ColumnAggregator, Pairer, round_us

HIST = os.path.join(os.path.dirname(os.path.dirname(__file__)), "data", "hist")


def _kernel_log2(v: int) -> int:
    """hist_field_log2: ilog2(roundup_pow_of_two(v)), with roundup(0) == 1 on x86-64."""
    r = 1
    while r < v:
        r <<= 1
    return r.bit_length() - 1


def test_log2_index_is_the_kernels_formula() -> None:
    for v in [*range(0, 5000), 2**31, 2**31 + 1, 2**40 - 1, 2**63]:
        assert log2_index(v) == _kernel_log2(v), v


def test_log2_ranges_hold_exactly_their_bucket() -> None:
    for k in range(0, 20):
        lo, hi = log2_range(k)
        assert {log2_index(v) for v in range(lo, hi)} == {k}
        assert log2_index(lo - 1) != k or lo == 0
        assert log2_index(hi) == k + 1


def test_linear_buckets_and_open_ends() -> None:
    lin = Linear(100, 500, 100)
    assert lin.n == 4
    counts = Counter(lin.index(v) for v in range(0, 1000))
    bs = lin.buckets(counts)
    assert [(b.lo, b.hi, b.count) for b in bs] == [
        (MIN, 100, 100), (100, 200, 100), (200, 300, 100), (300, 400, 100), (400, 500, 100),
        (500, MAX, 500)]
    with pytest.raises(ValueError):
        Linear(5, 100, 10)
    with pytest.raises(ValueError):
        Linear(100, 100, 10)


def _tables(name: str):
    with open(os.path.join(HIST, name)) as f:
        return parse_hist(f.read())


def test_recorded_log2_hist_matches_its_values() -> None:
    """mode 0..999 plus three 0s, keyed .log2 in the 6.1 guest: every bucket's count
    is the number of those values in its reported range, and the sums agree."""
    t = next(t for t in _tables("6.1-open.hist") if "mode.log2" in t.trigger)
    values = [*range(1000), 0, 0, 0]
    assert t.hits == len(values) and t.dropped == 0 and t.entries == 11
    seen = 0
    for keys, vals in t.rows:
        k = key_value(keys["mode"], "log2")
        assert isinstance(k, Log2Key)
        lo, hi = log2_range(k.k)
        inside = [v for v in values if lo <= v < hi]
        assert vals["hitcount"] == len(inside)
        assert vals["mode"] == sum(inside)
        seen += vals["hitcount"]
    assert seen == len(values)


def test_recorded_linear_hist() -> None:
    t = next(t for t in _tables("6.1-open.hist") if "mode.buckets=100" in t.trigger)
    got = {key_value(k["mode"], "range"): v["hitcount"] for k, v in t.rows}
    assert got[RangeKey(0, 99)] == 103           # 0..99 and the three 0s
    assert all(got[RangeKey(s, s + 99)] == 100 for s in range(100, 1000, 100))


def test_recorded_keys_execname_signed_cpu_and_strings() -> None:
    tables = _tables("6.1-open.hist")
    comm = next(t for t in tables if "keys=__comm" in t.trigger)
    assert [(key_value(k["__comm"], "str"), v["hitcount"]) for k, v in comm.rows] == \
        [("python", 1024)]
    ex = next(t for t in tables if "execname" in t.trigger)
    assert key_value(ex.rows[0][0]["common_pid"], "execname") == ("python", 142)
    dfd = next(t for t in tables if "keys=dfd" in t.trigger)
    assert key_value(dfd.rows[0][0]["dfd"], "int", 32) == -100          # AT_FDCWD
    cpu = next(t for t in tables if "common_cpu" in t.trigger)
    assert {key_value(k["cpu"]) for k, _ in cpu.rows} == {0, 1}
    ret = _tables("6.1-openr.hist")[0]
    assert key_value(ret.rows[0][0]["ret"], "int", 64) == -2            # -ENOENT


def test_recorded_dropped_and_string_padding() -> None:
    t = _tables("6.1-open-strings.hist")[0]
    assert (t.hits, t.entries, t.dropped) == (246, 128, 79)
    # Hits counts the events that found room; Dropped the ones that did not
    assert sum(v["hitcount"] for _, v in t.rows) == t.hits
    paths = [k["path"] for k, _ in t.rows]
    assert "/sys/kernel/tracing/error_log" in paths                     # padding stripped
    two = _tables("6.1-open-strings.hist")[1]
    assert two.rows[0][0] == {"__comm": "python", "common_pid": "       141"}


def test_recorded_latency_chain() -> None:
    lat, by_comm, _cpu = _tables("6.1-synth-lat.hist")
    assert lat.hits == sum(v["hitcount"] for _, v in lat.rows) == 317
    for k, v in lat.rows:                    # each bucket's sum lies inside its range
        lo, hi = log2_range(key_value(k["lat"], "log2").k)
        assert lo * v["hitcount"] <= v["lat"] < hi * v["hitcount"]
    keys = by_comm.rows[0][0]
    assert set(keys) == {"common_pid", "lat"} and keys["lat"] == "~ 2^16"


def test_split_keys_with_names_ignores_lookalikes_in_strings() -> None:
    text = "path: /tmp/a, b: c                , common_pid:        7"
    assert split_keys(text, [("path",), ("common_pid",)]) == {
        "path": "/tmp/a, b: c", "common_pid": "       7"}


def test_column_aggregator_counts_and_cap() -> None:
    a = ColumnAggregator(by=("comm", "tid"), cap=2)
    a.add(4, [["a", "b", "a", "c"], [1, 2, 1, 3]])
    a.add(2, [["c", "a"], [3, 1]])
    rows = {tuple(r.key.values()): r.count for r in a.rows()}
    assert rows == {("a", 1): 3, ("b", 2): 1}
    assert a.dropped == 2                     # both events of the third key
    a.clear()
    assert a.rows() == [] and a.dropped == 0


def test_column_aggregator_values_by_key() -> None:
    a = ColumnAggregator(by=("k",), value="v", buckets=Linear(0, 10, 5))
    a.add(5, [["x", "x", "y", "x", "y"]], [1, 7, 20, -3, 4])
    rows = {r.key["k"]: r for r in a.rows()}
    x, y = rows["x"], rows["y"]
    assert (x.count, x.sum, x.min, x.max) == (3, 5, -3, 7)
    assert [(b.lo, b.hi, b.count) for b in x.buckets] == [(MIN, 0, 1), (0, 5, 1), (5, 10, 1)]
    assert [(b.lo, b.hi, b.count) for b in y.buckets] == [(0, 5, 1), (10, MAX, 1)]


def test_pairer_nested_calls_threads_and_unmatched() -> None:
    p = Pairer()
    ev = [(5, 1, 9), (10, 0, 1), (11, 0, 2), (12, 0, 1), (20, 1, 1), (25, 1, 2), (40, 1, 1)]
    assert p.feed(ev) == [(4, 8), (5, 14), (6, 30)]
    assert p.unmatched == 1
    assert round_us(1499) == 1 and round_us(1500) == 2


def test_rows_json_sort_merge_and_text() -> None:
    rows = [Row({"comm": "b"}, 5), Row({"comm": "a"}, 2), Row({"comm": "b"}, 1)]
    merged = sort_rows(merge_rows(rows))
    assert [(r.key["comm"], r.count) for r in merged] == [("a", 2), ("b", 6)]
    assert text_rows(merged) == "@[a]: 2\n@[b]: 6"

    class Fixed(Aggregation):
        def _read(self):
            return [Row({}, 3, 6, 1, 3, [Bucket(0, 2, 1), Bucket(2, 3, 1), Bucket(3, 5, 1)])]
    js = Fixed("hist", "x", (), "v").to_json(2)
    assert json.loads(json.dumps(js)) == {
        "aggregation": "hist", "name": "x", "interval": 2, "backend": "user",
        "rows": [{"key": {}, "count": 3, "sum": 6, "min": 1, "max": 3,
                  "buckets": [{"lo": 0, "hi": 2, "count": 1}, {"lo": 2, "hi": 3, "count": 1},
                              {"lo": 3, "hi": 5, "count": 1}]}]}
    text = text_rows(Fixed("hist", "x").read(), "hist", width=4)
    assert text.splitlines()[1:] == ["[0, 2)                1 |@@@@|",
                                     "[2, 3)                1 |@@@@|",
                                     "[3, 5)                1 |@@@@|"]


def _kernel_agg(tmp_path, section: str, **kw):
    """A kernel-backend aggregation reading one recorded trigger's table from a fake
    instance (the conversion only: keys, signedness, buckets, merging)."""
    from kprobes.kernel.tracefs import Tracefs
    from kprobes.probes.model import KProbe
    from kprobes.runtime.agg_kernel import KernelAgg

    text = open(os.path.join(HIST, "6.1-open.hist")).read()
    tables = ["# event histogram" + t for t in text.split("# event histogram")[1:]]
    body = next(t for t in tables if section in t)
    d = tmp_path / "instances" / "x" / "events" / "g" / "e"
    d.mkdir(parents=True)
    (d / "hist").write_text(body)

    class FakeSession:
        tracefs = Tracefs(str(tmp_path))
        _inst = tracefs.instance("x")
        _reader = None
    agg = KernelAgg(FakeSession(), kw.pop("kind", "count"), KProbe("f"), kw.pop("by", ()),
                    kw.pop("value", None), kw.pop("buckets", None), 2048, "test",
                    event=("g", "e"), name="t")
    agg.keys = kw.pop("keys", [])
    assert not kw
    return agg


def test_kernel_rows_from_recorded_tables(tmp_path) -> None:
    from kprobes.runtime.agg_kernel import _KeySpec
    a = _kernel_agg(tmp_path / "a", "mode.log2", kind="hist", value="mode", buckets="log2")
    (r,) = a.read()
    assert r.key == {} and r.count == 1003 and r.sum == sum(range(1000))
    assert [(b.lo, b.hi, b.count) for b in r.buckets][:3] == [(0, 2, 5), (2, 3, 1), (3, 5, 2)]
    b = _kernel_agg(tmp_path / "b", "mode.buckets=100", kind="hist", value="mode",
                    buckets=Linear(0, 500, 100))
    (r,) = b.read()
    assert [(x.lo, x.hi, x.count) for x in r.buckets] == [
        (0, 100, 103), (100, 200, 100), (200, 300, 100), (300, 400, 100), (400, 500, 100),
        (500, MAX, 500)]
    c = _kernel_agg(tmp_path / "c", "keys=common_pid.execname", by=("comm",),
                    keys=[_KeySpec("comm", "common_pid.execname", ("common_pid",), "execname")])
    assert [(r.key, r.count) for r in c.read()] == [({"comm": "python"}, 1023)]
    d = _kernel_agg(tmp_path / "d", "keys=dfd", by=("dfd",),
                    keys=[_KeySpec("dfd", "dfd", ("dfd",), "int", 32)])
    assert [(r.key, r.count) for r in d.read()] == [({"dfd": -100}, 1017)]
    e = _kernel_agg(tmp_path / "e", "common_cpu,common_pid", by=("cpu", "tid"),
                    keys=[_KeySpec("cpu", "common_cpu", ("cpu", "common_cpu"), "int"),
                          _KeySpec("tid", "common_pid", ("common_pid",), "tid")])
    assert sorted((r.key["cpu"], r.key["tid"], r.count) for r in e.read()) == [
        (0, 142, 413), (1, 142, 605)]


@pytest.mark.parametrize("text, kind", [
    ("# trigger info: hist:keys=x [active]\n{ x: 1 } hitcount: 1\nTotals:\n    Hits:\n", "int"),
    ("# trigger info: hist:keys=x [active]\n{ x: 1 } hitcount: 1\n", "execname"),
    ("# trigger info: hist:keys=x [active]\n{ x: /a/b } hitcount: 1\n", "int"),
    ("# trigger info: hist:keys=x [active]\n{ x: ~ 2^ } hitcount: 1\n", "log2"),
    ("# trigger info: hist:keys=x [active]\n{ x: 1 } hitcount: 1\n", "range"),
    ("# trigger info: hist:keys=x [active]\n{ x: " + "9" * 5000 + " } hitcount: 1\n", "int"),
])
def test_malformed_hist_text_is_a_decode_error(text: str, kind: str) -> None:
    """Found by the hist fuzz target: these raised ValueError (outside KprobesError)."""
    from kprobes.errors import DecodeError
    with pytest.raises(DecodeError):
        for t in parse_hist(text):
            for keys, _vals in t.rows:
                key_value(keys["x"], kind)

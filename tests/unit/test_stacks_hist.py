"""Kernel-backend stack counts read from real ``hist`` files with ``stacktrace`` keys
(recorded in the 6.1 and 6.12 guests, tests/data/hist/README.md), and the
stack rows' text, folded and JSON forms."""

from __future__ import annotations

import json
import os
import re
from types import SimpleNamespace

import pytest

from kprobes.agg.histfile import frame_name, key_value, parse_hist
from kprobes.agg.model import Row
from kprobes.runtime.agg_kernel import _kernel_keys
from kprobes.runtime.stackcount import KernelStackCounts, StackCounts, folded, stack_text

HIST = os.path.join(os.path.dirname(__file__), "..", "data", "hist")
KERNELS = ("6.1", "6.12")
OPEN_PATH = ("do_sys_openat2", "__x64_sys_openat", "do_syscall_64",
             "entry_SYSCALL_64_after_hwframe")


def _text(name: str) -> str:
    with open(os.path.join(HIST, name)) as f:
        return f.read()


def _counts(by: tuple[str, ...]) -> KernelStackCounts:
    """A kernel stack count as armed on ``p:do_sys_openat2`` (no session: rows only)."""
    c = object.__new__(KernelStackCounts)
    c.keys = _kernel_keys((*by, "kstack"), None, False)
    c.value = c.buckets = None
    c.session = SimpleNamespace(_reader=None)
    c.symbol = "do_sys_openat2"
    c.dropped = 0
    return c


def _rows(kernel: str, which: int, by: tuple[str, ...] = ()) -> list[Row]:
    c = _counts(by)
    tables = parse_hist(_text(f"{kernel}-stacks.hist"), c.printed_names())
    return c.table_rows(tables[which])


@pytest.mark.parametrize("kernel", KERNELS)
def test_stacktrace_rows_parse_frames_and_counts(kernel: str) -> None:
    tables = parse_hist(_text(f"{kernel}-stacks.hist"))
    assert len(tables) == 3
    for t in tables:
        assert sum(v["hitcount"] for _k, v in t.rows) == t.hits and len(t.rows) == t.entries
        for keys, _v in t.rows:
            raw = keys.get("stacktrace", keys.get("common_stacktrace"))
            frames = key_value(raw, "stacktrace")
            assert len(frames) == 6 and frames[0].startswith("kprobe_ftrace_handler+0x")
            assert re.fullmatch(r"0x[0-9a-f]{16}", frames[1])
            assert tuple(map(frame_name, frames[2:])) == OPEN_PATH


@pytest.mark.parametrize("kernel", KERNELS)
def test_kernel_backend_rows_equal_bpftraces_kstack_by_name(kernel: str) -> None:
    """One stack, the probe's own frames trimmed: the same names as bpftrace's kstack
    for the same workload in the same boot."""
    rows = _rows(kernel, 0)
    assert [r.key for r in rows] == [{"kstack": OPEN_PATH}]
    assert rows[0].count == parse_hist(_text(f"{kernel}-stacks.hist"))[0].hits
    bt = _text(f"{kernel}-stacks.bpftrace")
    m = re.search(r"@\[\n(.*?)\n\]: (\d+)", bt, re.S)
    assert m is not None
    theirs = tuple(ln.strip().split("+")[0] for ln in m[1].splitlines())
    assert theirs == rows[0].key["kstack"]


@pytest.mark.parametrize("kernel", KERNELS)
def test_per_process_rows_take_pid_and_comm_from_one_execname_key(kernel: str) -> None:
    rows = _rows(kernel, 1, ("pid", "comm"))
    assert all(list(r.key) == ["pid", "comm", "kstack"] for r in rows)
    assert all(r.key["kstack"] == OPEN_PATH for r in rows)
    work = [r for r in rows if r.key["comm"] == "workload"]
    # 7 opens of the path, plus the loader's opens of the workload's libraries
    assert len(work) == 1 and work[0].count == 9 and work[0].key["pid"] > 1
    by_pid = _rows(kernel, 2, ("pid",))
    assert {r.key["pid"] for r in by_pid} <= {r.key["pid"] for r in rows}
    assert _kernel_keys(("pid", "comm", "kstack"), None, False)[0].expr == ""


def test_stack_text_folded_and_json_forms() -> None:
    rows = [Row({"pid": 7, "comm": "cat", "kstack": ("b", "a"), "ustack": ("leaf", "main")}, 3)]
    assert stack_text(rows) == "  b\n  a\n  --\n  leaf\n  main\n    cat [7]\n    3"
    assert folded(rows) == "cat-7;main;leaf;a;b 3"
    d = rows[0].to_dict()
    assert json.loads(json.dumps(d)) == {"key": {"pid": 7, "comm": "cat", "kstack": ["b", "a"],
                                                 "ustack": ["leaf", "main"]}, "count": 3}


def test_stack_counts_export_as_aggregations() -> None:
    """The same Aggregation as count/hist: JSON, Prometheus and pandas take stack rows
    (stacks as labels joined with ';'); merge() adds counts up, clear() starts over."""
    rows = _rows("6.12", 1, ("pid", "comm"))
    c = StackCounts("kernel", per_process=True, name="p_open", backend="kernel")
    c.merge(SimpleNamespace(read=lambda: rows, missing=0, dropped=0))
    assert c.by == ("pid", "comm", "kstack") and c.total == sum(r.count for r in rows)
    js = json.loads(json.dumps(c.to_json()))
    assert js["aggregation"] == "count" and js["backend"] == "kernel" and js["stack"] == "kernel"
    assert [r["count"] for r in js["rows"]] == sorted(r.count for r in rows)
    from kprobes.output.prometheus import build_families
    (fam,) = build_families(c)
    samples = {(s.labels["comm"], s.labels["kstack"]): s.value for s in fam.samples
               if s.name.endswith("_total")}
    assert samples[("workload", ";".join(OPEN_PATH))] == 9
    pd = pytest.importorskip("pandas")
    from kprobes.output.frames import aggregation_to_pandas
    df = aggregation_to_pandas(c)
    assert isinstance(df, pd.DataFrame) and list(df.columns) == ["pid", "comm", "kstack", "count"]
    assert df["count"].sum() == c.total
    c.merge(SimpleNamespace(read=lambda: rows, missing=1, dropped=2))     # equal keys add up
    assert [r.count for r in c.read()] == sorted(2 * r.count for r in rows)
    assert (c.missing, c.dropped) == (1, 2)
    c.clear()
    assert c.read() == [] and c.to_folded() == ""


def test_stack_row_cut_short_is_skipped_not_swallowing_the_rest() -> None:
    """A stack row whose closing line never comes (a truncated read) is dropped; the
    totals and the next trigger's table after it are still read."""
    text = _text("6.1-stacks.hist")
    cut = text.replace("} hitcount:         22\n", "", 1)
    tables = parse_hist(cut)
    assert len(tables) == 3 and tables[0].rows == [] and tables[0].hits == 22
    assert [len(t.rows) for t in tables[1:]] == [len(t.rows) for t in parse_hist(text)[1:]]

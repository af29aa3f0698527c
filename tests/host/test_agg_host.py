"""Aggregations on this machine's kernel (no hist triggers: the user backend),
against workloads that know their own answers."""

from __future__ import annotations

import json
import os
import subprocess

import pytest
from conftest import run_cli
from targets.build import build

from kprobes import Session
from kprobes.errors import KprobesError, NotSupported


@pytest.fixture(scope="module")
def aggtarget(tmp_path_factory: pytest.TempPathFactory) -> str:
    return build("aggtarget", str(tmp_path_factory.mktemp("targets")))


def _spawn(argv: list[str]) -> subprocess.Popen:
    return subprocess.Popen([argv[0], "-w", *argv[1:]], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)


def _go(p: subprocess.Popen) -> None:
    p.stdin.write("g")
    p.stdin.close()


def test_count_tracepoint_by_comm_exact(tracefs, workload):
    n = 20000
    p = _spawn([workload, "getppid", str(n)])
    with Session(pid=p.pid) as s:
        agg = s.count("t:syscalls:sys_enter_getppid", by=("comm",))
        total = s.count("t:syscalls:sys_enter_getppid")
        s.start()
        _go(p)
        stats = s.run(until=lambda: p.poll() is not None)
    assert agg.backend == "user" and "no hist triggers" in agg.backend_reason
    assert stats.lost == 0
    assert [(r.key, r.count) for r in agg.read()] == [({"comm": "workload"}, n)]
    assert [(r.key, r.count) for r in total.read()] == [({}, n)]
    assert stats.aggregations[agg.name][0].count == n


def test_key_cap_counts_what_it_drops(tracefs, workload):
    n = 300
    p = _spawn([workload, "calls", str(n)])
    with Session(pid=p.pid) as s:
        agg = s.count(f"u:{workload}:target_func a=%di:s64", by=("a",), cap=100)
        s.start()
        _go(p)
        s.run(until=lambda: p.poll() is not None)
    rows = agg.read()
    assert len(rows) == 100 and all(r.count == 1 for r in rows)
    assert agg.dropped == n - 100


def test_hist_and_value_stats_of_a_known_distribution(tracefs, aggtarget):
    p = _spawn([aggtarget, "values", "1000"])
    spec = f"u:{aggtarget}:value_func"
    with Session(pid=p.pid) as s:
        log2 = s.hist(spec, value="%di")
        lin = s.hist(spec, value="%di", linear=(200, 800, 200))
        stats = {k: getattr(s, k)(spec, value="%di") for k in ("sum", "min", "max", "avg")}
        s.start()
        _go(p)
        s.run(until=lambda: p.poll() is not None)
    for agg in (log2, lin):
        (r,) = agg.read()
        assert (r.count, r.sum, r.min, r.max) == (1000, 499500, 0, 999)
        assert sum(b.count for b in r.buckets) == 1000
        for b in r.buckets:
            assert b.count == len([v for v in range(1000) if b.lo <= v < b.hi]), b
    assert [(b.lo, b.hi) for b in log2.read()[0].buckets][:4] == [(0, 2), (2, 3), (3, 5), (5, 9)]
    assert len(lin.read()[0].buckets) == 5        # (..., 200), 3 x 200, [800, ...)
    assert {k: a.read()[0].avg if k == "avg" else getattr(a.read()[0], k)
            for k, a in stats.items()} == {"sum": 499500, "min": 0, "max": 999, "avg": 499.5}


def test_latency_of_sleeps_user_backend(tracefs, aggtarget):
    """20 x 1 ms and 5 x 10 ms: every call paired, none faster than its sleep."""
    p = _spawn([aggtarget, "sleeps", "20", "5"])
    with Session(pid=p.pid) as s:
        lat = s.funclatency(f"u:{aggtarget}:sleep_func")
        ns = s.funclatency(f"u:{aggtarget}:sleep_func", by=(), unit="ns")
        s.start()
        _go(p)
        s.run(until=lambda: p.poll() is not None)
    (r,) = lat.read()
    assert r.key == {"comm": "aggtarget"} and r.count == 25 and lat.unit == "us"
    assert all(b.hi > 1000 for b in r.buckets), r.buckets
    assert sum(b.count for b in r.buckets if b.lo >= 8193) >= 5
    (n,) = ns.read()
    assert n.key == {} and n.count == 25 and n.min >= 1_000_000 and n.sum >= 70_000_000


def test_cli_count_text_and_intervals_sum_to_total(tracefs, aggtarget):
    r = run_cli("count", f"u:{aggtarget}:sleep_func", "--by", "comm", "-c",
                f"{aggtarget} sleeps 20 5")
    assert r.returncode == 0, r.stderr
    assert "@[aggtarget]: 25" in r.stdout.splitlines()
    assert "user backend (this kernel has no hist triggers)" in r.stderr
    r = run_cli("count", f"u:{aggtarget}:sleep_func", "-i", "0.03", "--json", "-c",
                f"{aggtarget} sleeps 20 5")
    assert r.returncode == 0, r.stderr
    lines = [json.loads(ln) for ln in r.stdout.splitlines() if ln.startswith("{")]
    intervals = [ln for ln in lines if "aggregation" in ln]
    assert len(intervals) >= 2
    assert [ln["interval"] for ln in intervals] == list(range(1, len(intervals) + 1))
    assert sum(row["count"] for ln in intervals for row in ln["rows"]) == 25
    summary = lines[-1]["summary"]
    # a plain count of -c CMD: perf counters on the command, no ring buffer to wake the
    # run, and still every interval printed (the run ticks at -i)
    assert summary["backend"] == "kernel" and "perf counters" in summary["backend_reason"]
    assert summary["dropped"] == 0 and summary["lost"] == 0


def test_cli_hist_and_latency_json(tracefs, aggtarget):
    r = run_cli("hist", f"u:{aggtarget}:value_func", "--value", "%di", "--linear", "0,1000,250",
                "--json", "-c", f"{aggtarget} values 1000")
    assert r.returncode == 0, r.stderr
    line = json.loads(next(ln for ln in r.stdout.splitlines() if '"aggregation"' in ln))
    assert line["aggregation"] == "hist" and "interval" not in line
    assert line["rows"] == [{"key": {}, "count": 1000, "sum": 499500, "min": 0, "max": 999,
                             "buckets": [{"lo": lo, "hi": lo + 250, "count": 250}
                                         for lo in range(0, 1000, 250)]}]
    r = run_cli("latency", f"u:{aggtarget}:sleep_func", "--unit", "ms", "--json",
                "-c", f"{aggtarget} sleeps 3 2")
    assert r.returncode == 0, r.stderr
    line = json.loads(next(ln for ln in r.stdout.splitlines() if '"aggregation"' in ln))
    assert line["aggregation"] == "latency" and line["unit"] == "ms"
    (row,) = line["rows"]
    assert row["key"] == {"comm": "aggtarget"} and row["count"] == 5 and row["min"] >= 1


@pytest.mark.parametrize("args, message", [
    (["count", "t:syscalls:sys_enter_getppid", "--backend", "kernel"], "no hist triggers"),
    (["count", "t:syscalls:sys_enter_getppid", "--by", "nosuch"], "unknown key 'nosuch'"),
    (["hist", "t:syscalls:sys_enter_getppid", "--value", "nosuch"], "unknown value 'nosuch'"),
    (["hist", "u:{w}:target_func s=+0(%dx):ustring", "--value", "s"], "is a string"),
    (["latency", "t:syscalls:sys_enter_getppid"], "latency needs a function entry"),
    (["hist", "u:{w}:target_func", "--value", "%di", "--linear", "5,100,10"], "multiples"),
])
def test_cli_bad_input_is_one_error_line(tracefs, workload, args, message):
    r = run_cli(*[a.replace("{w}", workload) for a in args], "-d", "0.2")
    assert r.returncode == 1, r.stdout
    err = r.stderr.splitlines()
    assert err[0].startswith("error:") and message in err[0], r.stderr
    assert err[-1].startswith("hint:") and "Traceback" not in r.stderr


def test_library_errors_before_anything_exists(tracefs):
    with Session() as s:
        with pytest.raises(NotSupported):
            s.count("t:syscalls:sys_enter_getppid", backend="kernel")
        with pytest.raises(KprobesError, match="power of 2"):
            s.count("t:syscalls:sys_enter_getppid", size=100)
        assert s.handles == [] and not os.path.exists(f"{tracefs.root}/instances/{s.name}")


def test_plain_count_of_a_uprobe_is_its_hit_counter(tracefs, workload):
    """A count of every hit (no key, filter or task) is the kernel's own hit counter of
    the probe (uprobe_profile), with no hist trigger: the kernel backend on this host,
    which has none. Read while running, cleared, and the total exact; nothing left."""
    n = 3000
    p = _spawn([workload, "calls", str(n)])
    with Session() as s:
        agg = s.count(f"u:{workload}:target_func")
        s.start()
        assert agg.backend == "kernel" and "uprobe_profile" in agg.backend_reason
        assert s.reader is not None and s.reader.fds == []    # no ring buffer opened
        assert agg.read() == []
        with pytest.raises(KprobesError, match="hit counter"):   # it would count every task
            s.set_pids([p.pid])
        _go(p)
        assert p.wait() == 0
        s.run(duration=0)
        assert [(r.key, r.count) for r in agg.read()] == [({}, n)]
        agg.clear()
        assert agg.read() == []
        q = _spawn([workload, "calls", "7"])
        _go(q)
        assert q.wait() == 0
        s.run(duration=0)
        assert [r.count for r in agg.interval()] == [7]
    assert [r.count for r in agg.read()] == [7]
    assert s.name not in "".join(os.listdir(os.path.join(tracefs.root, "instances")))
    with open(os.path.join(tracefs.root, "uprobe_events")) as f:
        assert s.name not in f.read()


def test_plain_count_of_a_task_is_counted_by_perf(tracefs, workload):
    """A plain count (no key, no filter) of one task: perf counters on it, inherited by
    what it starts (two children counted, a process outside not), for a tracepoint and a
    uprobe alike; no ring buffer, no trigger; the counters closed with the session."""
    other = _spawn([workload, "getppid", "4000"])
    sh = subprocess.Popen(["sh", "-c", f"read go; {workload} getppid 1000 & "
                           f"{workload} calls 300; {workload} getppid 500; wait"],
                          stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        with Session(pid=sh.pid) as s:
            tp = s.count("t:syscalls:sys_enter_getppid")
            up = s.count(f"u:{workload}:target_func")
            s.start()
            for agg in (tp, up):
                assert agg.backend == "kernel" and "perf counters" in agg.backend_reason
            assert s.reader is not None and s.reader.fds == []    # no ring buffer opened
            with open(os.path.join(s._inst.path, "events/syscalls/sys_enter_getppid/trigger")) as f:
                assert [ln for ln in f if not ln.startswith("#")] == []
            with open(os.path.join(s._inst.path, "set_event_pid")) as f:
                assert f.read().split() == []     # perf filters by task: no pid filter probes
            _go(other)
            sh.stdin.write("g\n")
            sh.stdin.close()
            s.run(until=lambda: sh.poll() is not None)
            assert sh.returncode == 0
            assert [(r.key, r.count) for r in tp.read()] == [({}, 1500)]
            assert [(r.key, r.count) for r in up.read()] == [({}, 300)]
            fds = tp.counter.fds + up.counter.fds
            assert fds and all(os.path.exists(f"/proc/self/fd/{fd}") for fd in fds)
    finally:
        other.wait()
    assert tp.counter.fds == [] and up.counter.fds == []
    assert not any(os.path.exists(f"/proc/self/fd/{fd}") and
                   "perf_event" in os.readlink(f"/proc/self/fd/{fd}") for fd in fds)
    assert [r.count for r in tp.read()] == [1500]      # the final count, kept
    with open(os.path.join(tracefs.root, "uprobe_events")) as f:
        assert s.name not in f.read()

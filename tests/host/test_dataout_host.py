"""Data out on this machine: Parquet files read back with pyarrow and DuckDB,
a SIGTERM mid-run, Prometheus metrics scraped on 127.0.0.1, all against a
workload that counts itself."""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys
import urllib.request

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import run_cli
from prometheus_client.parser import text_string_to_metric_families

from kprobes import Session
from kprobes.output.prometheus import Exporter


def _wrote(stderr: str) -> int:
    m = re.search(r"wrote (\d+) events in (\d+) row groups", stderr)
    assert m, stderr
    return int(m.group(1))


def test_parquet_uprobes_read_back(tracefs, workload, tmp_path):
    """Entry and return uprobes with known values, and a tracepoint that never
    fires, in one file: every event and value, exactly, with pyarrow and DuckDB."""
    n = 200
    out = str(tmp_path / "calls.parquet")
    r = run_cli("trace", "--format", "parquet", "-o", out,
                f"u:{workload}:target_func a=%di:s64 b=%si:s32 s=+0(%dx):string",
                f"ur:{workload}:target_func ret=%ax:s64", "t:syscalls:sys_enter_getppid",
                "-c", f"{workload} calls {n}")
    assert r.returncode == 0, r.stderr
    assert _wrote(r.stderr) == 2 * n
    t = pq.read_table(out)
    assert t.schema.names == ["probe", "ts_ns", "time", "cpu", "pid", "tid", "comm",
                              "a", "b", "s", "ret", "__syscall_nr"]
    assert str(t.schema.field("a").type) == "int64" and str(t.schema.field("b").type) == "int32"
    rows = t.to_pylist()
    entries = [x for x in rows if x["probe"] == "p_workload_target_func"]
    rets = [x for x in rows if x["probe"] == "r_workload_target_func"]
    assert [(x["a"], x["b"], x["s"]) for x in entries] == [(i, -i, f"arg-{i}") for i in range(n)]
    assert [x["ret"] for x in rets] == [2 * i for i in range(n)]
    assert all(x["ret"] is None and x["__syscall_nr"] is None for x in entries)
    assert all(x["a"] is None and x["s"] is None for x in rets)
    assert {x["comm"] for x in rows} == {"workload"}
    assert len({x["pid"] for x in rows}) == 1
    ts = [x["ts_ns"] for x in rows]
    assert ts == sorted(ts)
    md = pq.read_schema(out).metadata
    assert md[b"kprobes.probes"] == (b"p_workload_target_func,r_workload_target_func,"
                                     b"sys_enter_getppid")
    assert md[b"kprobes.host"] == socket.gethostname().encode()
    off = int(md[b"kprobes.wall_offset_ns"])
    wall = t.column("time").cast("int64").to_pylist()
    assert [w - x["ts_ns"] for w, x in zip(wall, rows, strict=True)] == [off] * len(rows)

    con = duckdb.connect()
    got = con.execute(f"SELECT probe, count(*), sum(a), sum(b), sum(ret), "
                      f"count(DISTINCT s), min(s), max(s) FROM '{out}' GROUP BY probe "
                      "ORDER BY probe").fetchall()
    total = n * (n - 1) // 2
    assert got == [("p_workload_target_func", n, total, -total, None, n, "arg-0", "arg-99"),
                   ("r_workload_target_func", n, None, None, 2 * total, 0, None, None)]
    # a return matches its entry: same thread, later, ret = 2a
    pairs = con.execute(f"""
        WITH e AS (SELECT a, ts_ns, tid, row_number() OVER (ORDER BY ts_ns) k
                   FROM '{out}' WHERE probe LIKE 'p_%'),
             r AS (SELECT ret, ts_ns, tid, row_number() OVER (ORDER BY ts_ns) k
                   FROM '{out}' WHERE probe LIKE 'r_%')
        SELECT count(*) FROM e JOIN r USING (k)
        WHERE r.ret = 2 * e.a AND r.ts_ns > e.ts_ns AND r.tid = e.tid""").fetchone()
    assert pairs == (n,)


def test_parquet_tracepoint_many_row_groups(tracefs, workload, tmp_path):
    """A tracepoint burst over several row groups: every event delivered is in
    the file, and delivered + lost is exactly the workload's calls."""
    n = 40_000
    out = str(tmp_path / "getppid.parquet")
    target = subprocess.Popen([workload, "-w", "getppid", str(n)], stdin=subprocess.PIPE,
                              stdout=subprocess.DEVNULL)
    tracer = _tracer("--format", "parquet", "-o", out, "--row-group", "5000", "--serve",
                     "127.0.0.1:0", "--filter", f"common_pid == {target.pid}",
                     "t:syscalls:sys_enter_getppid")
    try:
        _serving(tracer)                 # armed
        target.stdin.write(b"g")
        target.stdin.close()
        assert target.wait() == 0
    finally:
        target.kill()
        _o, err = _stop(tracer)
    assert tracer.returncode == 0, err
    delivered = int(re.search(r"events delivered: (\d+)", err).group(1))
    lost = int(re.search(r"lost in ring buffer: (\d+)", err).group(1))
    assert delivered + lost == n, err
    assert _wrote(err) == delivered
    f = pq.ParquetFile(out)
    assert f.metadata.num_rows == delivered
    assert f.metadata.num_row_groups >= delivered // 5000 >= 2
    assert max(f.metadata.row_group(i).num_rows for i in range(f.num_row_groups)) <= 5000
    got = duckdb.connect().execute(f"SELECT count(*), count(DISTINCT pid), min(__syscall_nr), "
                                   f"max(__syscall_nr), min(comm), max(comm) FROM '{out}'"
                                   ).fetchone()
    assert got == (delivered, 1, 110, 110, "workload", "workload")


def _serving(proc: subprocess.Popen) -> str:
    """The metrics URL the tracer announces on stderr (it is armed by then)."""
    for line in proc.stderr:
        m = re.search(r"serving metrics on (http://\S+)", line)
        if m:
            return m.group(1)
    raise AssertionError(f"tracer exited: {proc.wait()}")


def _scrape(url: str) -> dict:
    assert url.startswith("http://127.0.0.1:")       # loopback only
    text = urllib.request.urlopen(url, timeout=30).read().decode()
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def _tracer(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "kprobes", "trace", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _stop(proc: subprocess.Popen, sig: int = signal.SIGINT) -> tuple[str, str]:
    if proc.poll() is None:
        proc.send_signal(sig)
    return proc.communicate(timeout=60)


def test_parquet_sigterm_mid_run(tracefs, workload, tmp_path):
    """SIGTERM while the workload still runs: the file is readable and holds
    exactly the events the tracer says it delivered, all of the workload."""
    out = str(tmp_path / "term.parquet")
    target = subprocess.Popen([workload, "-w", "getppid", "20000000"], stdin=subprocess.PIPE,
                              stdout=subprocess.DEVNULL)
    tracer = _tracer("--format", "parquet", "-o", out, "--serve", "127.0.0.1:0",
                     "--filter", f"common_pid == {target.pid}", "t:syscalls:sys_enter_getppid")
    try:
        url = _serving(tracer)
        target.stdin.write(b"g")
        target.stdin.close()
        # mid-run: the tracer has delivered events and the workload is not done
        while _scrape(url)[("kprobes_events_total", (("probe", "sys_enter_getppid"),))] == 0:
            assert target.poll() is None
        assert target.poll() is None, "workload ended before the signal: make it longer"
        _o, err = _stop(tracer, signal.SIGTERM)
    finally:
        target.kill()
        target.wait()
        _stop(tracer)
    assert tracer.returncode == 0, err
    delivered = int(re.search(r"events delivered: (\d+)", err).group(1))
    assert _wrote(err) == delivered > 0
    t = pq.read_table(out)
    assert t.num_rows == delivered
    assert set(t.column("pid").to_pylist()) == {target.pid}


def test_serve_trace_counts(tracefs, workload):
    """kprobes trace --serve: per-probe event counters and uprobe hits equal what
    the workload did, on the first scrape after it exits."""
    n = 321
    target = subprocess.Popen([workload, "-w", "calls", str(n)], stdin=subprocess.PIPE,
                              stdout=subprocess.DEVNULL)
    tracer = _tracer("-q", "--serve", "127.0.0.1:0", "--filter", f"common_pid == {target.pid}",
                     f"u:{workload}:target_func a=%di:s64", "t:syscalls:sys_enter_getppid")
    try:
        url = _serving(tracer)
        target.stdin.write(b"g")
        target.stdin.close()
        assert target.wait() == 0
        m = _scrape(url)
    finally:
        target.kill()
        _o, err = _stop(tracer)
    assert tracer.returncode == 0, err
    probe = "p_workload_target_func"
    assert m["kprobes_events_total", (("probe", probe),)] == n
    assert m["kprobes_probe_hits_total", (("probe", probe),)] == n
    assert m["kprobes_events_total", (("probe", "sys_enter_getppid"),)] == 0
    assert m["kprobes_lost_events_total", ()] == 0
    assert m["kprobes_handler_errors_total", (("probe", probe),)] == 0
    assert ("kprobes_backlog_events", (("cpu", "0"),)) in m
    assert m["process_cpu_seconds_total", ()] > 0


def test_serve_bad_address_is_one_error(tracefs):
    r = run_cli("trace", "--serve", "nope", "t:syscalls:sys_enter_getppid")
    assert r.returncode == 1
    assert r.stderr.startswith("error: --serve nope: not a port") and "Traceback" not in r.stderr
    r = run_cli("trace", "--format", "parquet", "t:syscalls:sys_enter_getppid")
    assert r.returncode == 1 and "needs an output file" in r.stderr


@pytest.mark.parametrize("module,args,extra", [
    ("pyarrow", ["--format", "parquet", "-o", "/nonexistent/x.parquet"], "arrow"),
    ("prometheus_client", ["--serve", "0"], "prometheus"),
])
def test_missing_extra_is_one_error(tracefs, module, args, extra):
    """Without the optional package: one error naming the extra, before anything
    is created (no 'Tracing' line, nothing left behind)."""
    code = (f"import sys; sys.modules[{module!r}] = None; from kprobes.cli.main import main; "
            f"sys.exit(main(['trace', *{args!r}, '-d', '5', 't:syscalls:sys_enter_getppid']))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 1
    assert r.stderr.splitlines() == [
        r.stderr.splitlines()[0], f"hint: pip install 'kprobes[{extra}]'"]
    assert r.stderr.startswith("error: ") and f"needs {module}" in r.stderr


def test_exporter_in_session_thread(tracefs, workload):
    """Library use: an Exporter over a Session, scraped over HTTP from its server
    thread while run() delivers (the snapshot is taken in the session's thread)."""
    n = 77
    with Session() as s:
        h = s.add(f"u:{workload}:target_func")
        exp = Exporter(s)
        s.start()
        host, port = exp.serve("127.0.0.1", 0)
        try:
            subprocess.run([workload, "calls", str(n)], check=True, capture_output=True)
            got: dict = {}

            def until() -> bool:
                # scrape from a helper thread; run() services it between cycles
                import threading
                if not got:
                    def fetch() -> None:
                        got.update(_scrape(f"http://{host}:{port}/metrics"))
                    th = threading.Thread(target=fetch)
                    th.start()
                    got["thread"] = th
                return "thread" in got and not got["thread"].is_alive()
            s.run(until=exp.until(until))
        finally:
            exp.close()
    assert got[("kprobes_events_total", (("probe", h.name),))] == n


@pytest.fixture(autouse=True)
def _no_http_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    for v in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(v, raising=False)


def test_exporter_real_aggregations(tracefs, workload):
    """count and hist aggregations of a Session as metrics: exact counts,
    cumulative buckets (le = hi - 1) and the sum of known values 0..n-1."""
    pytest.importorskip("kprobes.agg")
    from prometheus_client import generate_latest
    n = 100
    with Session() as s:
        cnt = s.count(f"u:{workload}:target_func", by=("comm",))
        hist = s.hist(f"u:{workload}:target_func a=%di:s64", value="a")
        exp = Exporter(s, [cnt, hist])
        s.start()
        subprocess.run([workload, "calls", str(n)], check=True, capture_output=True)
        s.drain()
        text = generate_latest(exp.registry).decode()     # this thread: a direct snapshot
    m = {}
    for fam in text_string_to_metric_families(text):
        for smp in fam.samples:
            m[(smp.name, tuple(sorted(smp.labels.items())))] = smp.value
    assert m[f"kprobes_{cnt.name}_total", (("comm", "workload"),)] == n
    buckets = {dict(k[1])["le"]: v for k, v in m.items() if k[0] == f"kprobes_{hist.name}_bucket"}
    # a = 0..99: v <= le for every bucket bound, cumulative
    for le, v in buckets.items():
        want = n if le == "+Inf" else min(n, int(float(le)) + 1)
        assert v == want, (le, v)
    assert "127" in buckets or "128" in buckets
    assert m[f"kprobes_{hist.name}_sum", ()] == n * (n - 1) // 2
    assert m[f"kprobes_{hist.name}_count", ()] == n
    assert m["kprobes_dropped_keys_total", (("aggregation", cnt.name),)] == 0


@pytest.mark.parametrize("cmd", ["count", "hist", "latency"])
def test_serve_aggregation_cli(tracefs, workload, cmd):
    """kprobes count|hist|latency --serve: the first scrape after the workload
    exits has every call, as a counter or a histogram keyed by comm."""
    pytest.importorskip("kprobes.agg")
    n = 60
    target = subprocess.Popen([workload, "-w", "calls", str(n)], stdin=subprocess.PIPE,
                              stdout=subprocess.DEVNULL)
    spec = f"u:{workload}:target_func"
    args = {"count": ["count", spec, "--by", "comm"],
            "hist": ["hist", f"{spec} a=%di:s64", "--value", "a", "--by", "comm"],
            "latency": ["latency", spec, "--unit", "ns", "--by", "comm"]}[cmd]
    if cmd != "latency":
        args += ["--filter", f"common_pid == {target.pid}"]
    tracer = subprocess.Popen([sys.executable, "-m", "kprobes", *args, "--serve", "127.0.0.1:0"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        url = _serving(tracer)
        target.stdin.write(b"g")
        target.stdin.close()
        assert target.wait() == 0
        m = _scrape(url)
    finally:
        target.kill()
        _o, err = _stop(tracer)
    assert tracer.returncode == 0, err
    key = (("comm", "workload"),)
    if cmd == "count":
        [(name, v)] = [(k[0], v) for k, v in m.items() if k[0].endswith("_total") and k[1] == key]
        assert v == n, name
    else:
        counts = [v for k, v in m.items() if k[0].endswith("_count") and k[1] == key]
        assert counts == [n]
        inf = [v for k, v in m.items()
               if k[0].endswith("_bucket") and dict(k[1]).get("le") == "+Inf"]
        assert inf == [n]
    if cmd == "hist":
        [s] = [v for k, v in m.items() if k[0].endswith("_sum") and k[1] == key]
        assert s == n * (n - 1) // 2


def test_parquet_user_stacks(tracefs, workload, tmp_path):
    """--stack user: a ustack column of return addresses (the same call site for
    every call of the loop), kstack null."""
    n = 20
    out = str(tmp_path / "stacks.parquet")
    r = run_cli("trace", "--stack", "user", "--format", "parquet", "-o", out,
                f"u:{workload}:target_func a=%di:s64", "-c", f"{workload} calls {n}")
    assert r.returncode == 0, r.stderr
    t = pq.read_table(out)
    assert t.schema.names[-2:] == ["kstack", "ustack"]
    assert t.schema.field("ustack").type.value_type == pa.uint64()
    rows = t.to_pylist()
    assert [x["a"] for x in rows] == list(range(n))
    assert all(x["kstack"] is None for x in rows)
    stacks = {tuple(x["ustack"]) for x in rows}
    assert len(stacks) == 1 and len(next(iter(stacks))) >= 2

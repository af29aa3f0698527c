"""Aggregations with the kernel backend (hist triggers, synthetic events) in the VM.

Workloads count themselves; the same events go through the kernel and the
user backend in one session (identical rows), and bpftrace ``count()`` runs
next to us on the same workload.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import uuid

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from targets.build import build  # noqa: E402
from targets.procs import run_bounded  # noqa: E402

from kprobes import Session  # noqa: E402
from kprobes.agg.buckets import log2_index, log2_range  # noqa: E402
from kprobes.kernel import dynevents, triggers  # noqa: E402
from kprobes.kernel.tracefs import Tracefs  # noqa: E402
from kprobes.runtime import owner  # noqa: E402

OPEN = "p:do_sys_openat2 path=+0($arg2):ustring"


@pytest.fixture(scope="module")
def tfs() -> Tracefs:
    t = Tracefs.open()
    if not triggers.has_hist(t):
        pytest.skip("this kernel has no hist triggers")
    return t


@pytest.fixture(scope="module")
def targets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    # one target for every test: gcc under emulation takes a while
    t = build("aggtarget", str(tmp_path_factory.mktemp("targets")))
    return {"workload": t, "aggtarget": t}


def _spawn(argv: list[str]) -> subprocess.Popen:
    """A target waiting for one byte on stdin (so probes are armed on its pid first)."""
    return subprocess.Popen([argv[0], "-w", *argv[1:]], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)


def _go(p: subprocess.Popen) -> None:
    p.stdin.write("g")
    p.stdin.close()


def _ours(tfs: Tracefs, prefix: str = owner.PREFIX) -> list[str]:
    """Our synthetic events, instances and events, by name."""
    out = [n for n in triggers.list_synthetic(tfs) if n.startswith(prefix)]
    out += [i for i in tfs.instances() if i.startswith(prefix)]
    out += [e.group for e in dynevents.list_defined(tfs) if e.group.startswith(prefix)]
    return out


def _rows(agg) -> list[tuple]:
    return sorted((tuple(r.key.items()), r.count, r.sum,
                   tuple((b.lo, b.hi, b.count) for b in r.buckets or ())) for r in agg.read())


def test_count_by_comm_and_string_arg_both_backends_and_bpftrace(tfs, targets):
    """Failed opens of a unique path, keyed by comm and path: exact in the kernel,
    the same rows from the user backend, the same total as bpftrace count()."""
    n = 150
    path = f"/nonexistent/kpagg-{uuid.uuid4().hex[:10]}"
    p = _spawn([targets["workload"], "open", str(n), path])
    bt = None
    if shutil.which("bpftrace"):
        # BEGIN runs once every probe is attached; bpftrace ends itself when the target
        # exits (a SIGINT that lands while it still attaches can leave it hanging)
        bt = subprocess.Popen(["bpftrace", "-e", 'BEGIN { printf("ready\\n"); } '
                               f"kprobe:do_sys_openat2 /pid == {p.pid}/ {{ @ = count(); }} "
                               f"tracepoint:sched:sched_process_exit /pid == {p.pid}/ "
                               "{ exit(); }"], stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
        assert bt.stdout is not None
        seen = []
        for line in bt.stdout:
            seen.append(line)
            if line.strip() == "ready":
                break
        else:
            pytest.fail(f"bpftrace never got ready: {''.join(seen)}")
    try:
        with Session(pid=p.pid) as s:
            kern = s.count(OPEN, by=("comm", "path"), backend="kernel")
            user = s.count(OPEN, by=("comm", "path"), backend="user")
            by_comm = s.count(OPEN, by=("comm",))
            s.start()
            assert (kern.backend, user.backend, by_comm.backend) == ("kernel", "user", "kernel")
            _go(p)
            s.run(until=lambda: p.poll() is not None)
            mine = [r for r in kern.read() if r.key["path"] == path]
            assert [(r.key, r.count) for r in mine] == [({"comm": "aggtarget", "path": path}, n)]
            assert _rows(kern) == _rows(user)
            total = sum(r.count for r in kern.read())
            assert [(r.key, r.count) for r in by_comm.read()] == [({"comm": "aggtarget"}, total)]
            assert kern.dropped == 0 and s.stats().lost == 0
        final = s.stats().aggregations
        assert sorted(final) == sorted([kern.name, user.name, by_comm.name])
        assert final[kern.name] == kern.read()
    finally:
        p.wait()
        if bt is not None:
            try:
                out = bt.communicate(timeout=600)[0]
            finally:
                if bt.poll() is None:
                    bt.kill()
                    bt.wait()
    if bt is not None:
        assert f"@: {total}" in out, out


def test_hist_known_distribution_kernel_equals_user(tfs, targets):
    """value_func(v) for v = 0..999: each bucket holds exactly the values of its range,
    log2 and linear, in both backends."""
    t = targets["aggtarget"]
    p = _spawn([t, "values", "1000"])
    with Session(pid=p.pid) as s:
        spec = f"u:{t}:value_func"
        aggs = {(be, kind): s.hist(spec, value="%di", backend=be,
                                   linear=(0, 500, 100) if kind == "linear" else None)
                for be in ("kernel", "user") for kind in ("log2", "linear")}
        s.start()
        _go(p)
        s.run(until=lambda: p.poll() is not None)
        rows = {k: a.read() for k, a in aggs.items()}
    for (be, kind), rs in rows.items():
        assert len(rs) == 1 and rs[0].count == 1000 and rs[0].sum == 499500, (be, kind)
        for b in rs[0].buckets:
            assert b.count == len([v for v in range(1000) if b.lo <= v < b.hi]), (be, kind, b)
    assert [(b.lo, b.hi) for b in rows["kernel", "log2"][0].buckets] == \
        [log2_range(k) for k in sorted({log2_index(v) for v in range(1000)})]
    for kind in ("log2", "linear"):
        assert rows["kernel", kind][0].buckets == rows["user", kind][0].buckets


def test_latency_kernel_function_and_uprobe(tfs, targets):
    """20 sleeps of 1 ms and 5 of 10 ms: every call counted, none faster than its sleep."""
    t = targets["aggtarget"]
    p = _spawn([t, "sleeps", "20", "5"])
    with Session(pid=p.pid) as s:
        kfunc = s.funclatency("hrtimer_nanosleep", backend="kernel")
        ufunc = s.funclatency(f"u:{t}:sleep_func", backend="kernel")
        uuser = s.funclatency(f"u:{t}:sleep_func", backend="user")
        s.start()
        _go(p)
        s.run(until=lambda: p.poll() is not None)
        rows = {a: a.read() for a in (kfunc, ufunc, uuser)}
    for a, rs in rows.items():
        assert [r.key for r in rs] == [{"comm": "aggtarget"}], a
        r = rs[0]
        assert r.count == 25, a
        assert all(b.hi > 1000 for b in r.buckets), (a, r.buckets)      # >= 1 ms each
        assert sum(b.count for b in r.buckets if b.lo >= 8193) >= 5, (a, r.buckets)
        assert r.sum >= 20 * 1000 + 5 * 10000
    assert kfunc.backend == ufunc.backend == "kernel" and uuser.backend == "user"


def test_cli_count_intervals_sum_to_total_json(tfs, targets):
    n = 200
    path = f"/nonexistent/kpagg-{uuid.uuid4().hex[:10]}"
    r = run_bounded([sys.executable, "-m", "kprobes", "count", OPEN, "--by", "path",
                     "--backend", "kernel", "-i", "0.3", "--json",
                     "-c", f"{targets['workload']} open {n} {path}"], timeout=300)
    assert r.returncode == 0, r.stderr
    lines = [json.loads(ln) for ln in r.stdout.splitlines() if ln.startswith("{")]
    intervals = [ln for ln in lines if "aggregation" in ln]
    assert intervals and all(ln["backend"] == "kernel" for ln in intervals)
    assert [ln["interval"] for ln in intervals] == list(range(1, len(intervals) + 1))
    assert sum(row["count"] for ln in intervals for row in ln["rows"]
               if row["key"]["path"] == path) == n
    summary = lines[-1]["summary"]
    assert summary["backend"] == "kernel" and summary["dropped"] == 0 and summary["lost"] == 0


def test_bad_input_errors_leave_nothing(tfs):
    """A string as value (refused once the event's format is known, after creating),
    an unknown key, a tracepoint for latency: errors, and nothing left behind."""
    from kprobes.errors import KprobesError
    with pytest.raises(KprobesError, match="is a string"):
        with Session() as s:
            s.hist(OPEN, value="path", backend="kernel")
            s.start()
    with pytest.raises(KprobesError, match="nosuch"):
        with Session() as s:
            s.count(OPEN, by=("nosuch",))
            s.start()
    with pytest.raises(KprobesError, match="latency needs a function entry"):
        with Session() as s:
            s.funclatency("t:sched:sched_switch")
    assert not _ours(tfs)


def _tracer(ready: int) -> None:
    """A forked child: a kernel-backend latency session, armed, then running."""
    try:
        with Session() as s:
            s.funclatency("vfs_read", backend="kernel")
            s.start()
            os.write(ready, b"armed")
            s.run()
    finally:
        os._exit(0)


def test_latency_sigterm_and_sigkill_leave_nothing_after_next_session(tfs):
    """Two sessions at once: the SIGTERMed one removes all it made; what the
    SIGKILLed one left (synthetic event, triggers, instance, events) goes with the
    next session."""
    pids = {}
    for sig in (signal.SIGTERM, signal.SIGKILL):
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(r)
            _tracer(w)
        os.close(w)
        assert os.read(r, 5) == b"armed"
        os.close(r)
        assert any(n.startswith(f"{owner.PREFIX}{pid}_") for n in triggers.list_synthetic(tfs))
        pids[sig] = pid
    for sig, pid in pids.items():
        os.kill(pid, sig)
        os.waitpid(pid, 0)
    term, kill = (f"{owner.PREFIX}{pid}_" for pid in pids.values())
    assert not _ours(tfs, term)
    assert len(_ours(tfs, kill)) >= 3          # synthetic event, instance, event group
    with Session() as s:
        s.add("t:sched:sched_process_exec")
        s.start()
    assert not _ours(tfs, kill)


def test_kernel_backend_runs_past_the_tamper_check(tfs):
    """Events read by hist triggers only are never enabled; the once-a-second
    check for events changed behind our back must not take that for tampering
    (it once ended every kernel-backend run after one second)."""
    with Session() as s:
        cnt = s.count("p:vfs_read", by=("comm",), backend="kernel")
        lat = s.funclatency("vfs_read", by=("comm",), backend="kernel")
        s.start()
        stats = s.run(duration=1.6)
        assert cnt.backend == "kernel" and lat.backend == "kernel"
        assert stats.lost == 0
    assert not _ours(tfs, owner.PREFIX + str(os.getpid()) + "_")


def test_plain_count_is_the_kprobe_hit_counter(tfs, workload):
    """A count of every hit of a kprobe (no key, filter or task) reads the probe's own
    hit counter (kprobe_profile), with no record built per hit; a pid-keyed hist count
    of the same function in the same session sees the same calls, the workload's
    exactly."""
    n = 2000
    p = _spawn([workload, "getppid", str(n)])
    with Session() as s:
        hits = s.count("p:__x64_sys_getppid")
        by_pid = s.count("p:__x64_sys_getppid", by=("pid",))
        s.start()
        assert hits.backend == "kernel" and "kprobe_profile" in hits.backend_reason
        assert "hist" in by_pid.backend_reason
        _go(p)
        assert p.wait() == 0
        s.run(duration=0)
        rows = by_pid.read()
        assert [r.count for r in rows if r.key["pid"] == p.pid] == [n], rows
        assert [r.count for r in hits.read()] == [sum(r.count for r in rows)]
    assert not _ours(tfs, s.name)


def test_plain_count_of_a_task_is_perf_counted(tfs, workload):
    """A count of every hit of a kprobe in one task (no key, no filter): perf counters on
    the task, so a hit in any other task returns before any record; a comm-keyed hist
    count of the same function for the same task (set_event_pid) sees the same calls,
    the workload's exactly, and a process outside is in neither."""
    n = 2000
    p = _spawn([workload, "getppid", str(n)])
    other = _spawn([workload, "getppid", "700"])
    with Session(pid=p.pid) as s:
        plain = s.count("p:__x64_sys_getppid")
        keyed = s.count("p:__x64_sys_getppid", by=("comm",))
        s.start()
        assert plain.backend == "kernel" and "perf counters" in plain.backend_reason
        assert "hist" in keyed.backend_reason
        _go(other)
        _go(p)
        assert p.wait() == 0 and other.wait() == 0
        s.run(duration=0)
        comm = os.path.basename(workload)[:15]
        assert [(r.key, r.count) for r in keyed.read()] == [({"comm": comm}, n)]
        assert [(r.key, r.count) for r in plain.read()] == [({}, n)]
    assert plain.counter is not None and plain.counter.fds == []
    assert not _ours(tfs, s.name)

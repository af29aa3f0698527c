"""Throughput properties on this machine's kernel: exact accounting, and the
batch API against the per-event API. No timing assertions (timings: bench/)."""

from __future__ import annotations

import os
import subprocess

from kprobes import Session


def _spawn_blocked(workload: str, *args: str) -> subprocess.Popen:
    """The workload, waiting for a byte on stdin so probes can be armed on its pid."""
    return subprocess.Popen([workload, "-w", *args], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)


def test_tiny_buffer_loses_events_but_accounts_for_every_one(tracefs, workload):
    n = 200_000
    delivered = 0

    def slow(ev):
        nonlocal delivered
        delivered += 1
        sum(range(300))                 # a handler much slower than the workload

    p = _spawn_blocked(workload, "getppid", str(n))
    try:
        with Session(pid=p.pid, buffer_kb=8) as s:
            s.add("t:syscalls:sys_enter_getppid", slow)
            s.start()
            os.write(p.stdin.fileno(), b"g")
            stats = s.run(until=lambda: p.poll() is not None)
        assert p.stdout.read().strip() == f"done {n}"
    finally:
        p.kill()
        p.wait()
    assert stats.lost > 0
    assert stats.events == delivered
    assert delivered + stats.lost == n


def test_normal_buffer_fast_handler_loses_nothing(tracefs, workload):
    n = 30_000
    seen = []
    p = _spawn_blocked(workload, "getppid", str(n))
    try:
        with Session(pid=p.pid) as s:
            s.add("t:syscalls:sys_enter_getppid", seen.append)
            s.start()
            os.write(p.stdin.fileno(), b"g")
            stats = s.run(until=lambda: p.poll() is not None)
        assert p.stdout.read().strip() == f"done {n}"
    finally:
        p.kill()
        p.wait()
    assert stats.lost == 0
    assert stats.events == len(seen) == n
    assert {ev.tid for ev in seen} == {p.pid}
    assert all(ev.args == {"__syscall_nr": seen[0].args["__syscall_nr"]} for ev in seen)
    ts = [ev.ts_ns for ev in seen]
    assert ts == sorted(ts)


def _rows_from_events(evs):
    return [(ev.ts_ns, ev.cpu, ev.tid, ev.pid, ev.comm, ev.trace_flags, ev.preempt_count,
             dict(ev.args)) for ev in evs]


def _rows_from_batches(batches):
    rows = []
    for b in batches:
        names = list(b.args)
        for i in range(len(b)):
            rows.append((b.ts[i], b.cpu[i], b.tid[i], b.pid[i], b.comm[i], b.trace_flags[i],
                         b.preempt_count[i], {k: b.args[k][i] for k in names}))
    return rows


def test_batch_api_matches_per_event_api_tracepoint(tracefs, workload):
    n = 20_000
    events, batches = [], []
    p = _spawn_blocked(workload, "getppid", str(n))
    try:
        with Session(pid=p.pid) as s:
            s.add("t:syscalls:sys_enter_getppid", events.append, name="each")
            s.add_batch("t:syscalls:sys_enter_getppid", batches.append, name="bulk")
            s.start()
            os.write(p.stdin.fileno(), b"g")
            stats = s.run(until=lambda: p.poll() is not None)
    finally:
        p.kill()
        p.wait()
    assert stats.lost == 0
    assert stats.probes["each"].events == stats.probes["bulk"].events == n
    assert sum(len(b) for b in batches) == n
    assert all(b.probe == "bulk" for b in batches)
    assert _rows_from_batches(batches) == _rows_from_events(events)
    # batch.events() gives the same rows as events
    assert _rows_from_events(e for b in batches for e in b.events()) == _rows_from_events(events)


def test_batch_api_matches_per_event_api_uprobe_args(tracefs, workload):
    n = 3000
    events, batches = [], []
    spec = f"u:{workload}:target_func a=%di:s64 b=%si:s32 s=+0(%dx):string"
    with Session() as s:
        s.add(spec, events.append, name="each")
        s.add_batch(spec, batches.append, name="bulk")
        s.start()
        out = subprocess.run([workload, "calls", str(n)], capture_output=True, text=True)
        stats = s.run(duration=0)
    assert out.stdout.strip() == f"done {n}"
    assert stats.lost == 0
    rows_b = _rows_from_batches(batches)
    rows_e = _rows_from_events(events)
    assert len(rows_b) == len(rows_e) == n
    # same calls, same values (two probes are two hits: timestamps and flags may differ)
    assert [r[2:5] + r[6:] for r in rows_b] == [r[2:5] + r[6:] for r in rows_e]
    assert [r[7] for r in rows_b] == [{"a": i, "b": -i, "s": f"arg-{i}"} for i in range(n)]
    assert {r[4] for r in rows_b} == {"workload"}

"""Sessions on this machine's kernel: real tracepoints and uprobes, counted exactly."""

from __future__ import annotations

import os
import subprocess

import pytest
from conftest import concerns_us

from kprobes import Session
from kprobes.errors import KernelRefused, SpecError, SymbolError
from kprobes.kernel import dynevents
from kprobes.probes.model import FetchArg, UProbe


def _spawn_blocked(argv: list[str]) -> tuple[subprocess.Popen, int]:
    """Start a workload that waits for a byte on stdin (so probes can be armed on its pid)."""
    p = subprocess.Popen([argv[0], "-w", *argv[1:]], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, text=True)
    return p, p.stdin.fileno()


def test_tracepoint_counts_exactly(tracefs, workload):
    n = 5000
    seen = []
    p, w = _spawn_blocked([workload, "getppid", str(n)])
    with Session(pid=p.pid) as s:
        @s.tracepoint("syscalls:sys_enter_getppid")
        def on(ev):
            seen.append(ev)
        s.start()
        os.write(w, b"g")
        stats = s.run(until=lambda: p.poll() is not None)
    assert p.stdout.read().strip() == f"done {n}"
    assert stats.lost == 0
    assert len(seen) == n
    assert stats.probes["sys_enter_getppid"].events == n
    assert {ev.pid for ev in seen} == {p.pid}
    assert {ev.comm for ev in seen} == {"workload"}
    ts = [ev.ts_ns for ev in seen]
    assert ts == sorted(ts)


def test_wake_on_fd_wakes_the_reader_once(tracefs, workload):
    """A wake_on fd ends one wait; it stays readable (like a pidfd after the
    exit) but does not end the next: the run loop would spin otherwise."""
    p, _w = _spawn_blocked([workload, "getppid", "1"])   # never started: no events
    r, w = os.pipe()
    try:
        with Session(pid=p.pid) as s:
            s.add("t:syscalls:sys_enter_getppid")
            s.wake_on(r)
            s.start()
            reader = s._reader               # noqa: SLF001 - the wait itself is the subject
            os.write(w, b"x")
            assert reader.wait(30) is True   # woken by the fd (no events exist)
            assert reader.wait(0) is False   # still readable, but no longer watched
            assert s.poll() == 0
    finally:
        p.kill()
        p.wait()
        os.close(r)
        os.close(w)


def test_uprobe_args_and_return(tracefs, workload):
    n = 200
    entries, returns = [], []
    with Session() as s:
        s.add(UProbe(path=workload, symbol="target_func",
                     args=(FetchArg("a", "%di", "s64"), FetchArg("b", "%si", "s32"),
                           FetchArg("s", "+0(%dx)", "string"))),
              lambda ev: entries.append((ev.a, ev.b, ev.s)))
        s.add(f"ur:{workload}:target_func ret=%ax:s64", lambda ev: returns.append(ev.ret))
        s.start()
        out = subprocess.run([workload, "calls", str(n)], capture_output=True, text=True)
        stats = s.run(duration=0)
        st = s.stats()
    assert out.stdout.strip() == f"done {n}"
    assert entries == [(i, -i, f"arg-{i}") for i in range(n)]
    assert returns == [2 * i for i in range(n)]
    assert stats.lost == 0
    probe = next(k for k in st.probes if k.startswith("p_"))
    assert st.probes[probe].hits == n


def test_calls_pair_entries_and_returns_as_columns(tracefs, workload):
    """add_calls: every call of target_func(i, -i, "arg-i") (returning 2i), paired per
    thread on the batch path over many read cycles: entry args and the return value
    side by side, each call once, in order, nothing unmatched, no ring-buffer loss."""
    n = 20000
    got: list[tuple[int, str, int]] = []
    seen = {"calls": 0, "unmatched": 0, "late": 0}
    cycles = []
    p, w = _spawn_blocked([workload, "calls", str(n)])

    def on_calls(c):
        cycles.append(len(c))
        assert len(c.ts) == len(c.entry_ts) == len(c) == len(c.args["ret"])
        seen["late"] += sum(t < e for t, e in zip(c.ts, c.entry_ts, strict=True))
        seen["calls"] += len(c)
        seen["unmatched"] += c.unmatched
        assert set(c.pid) == {p.pid} and set(c.comm) == {"workload"}
        got.extend(zip(c.args["a"], c.args["s"], c.args["ret"], strict=True))

    with Session(pid=p.pid, buffer_kb=8192) as s:    # room for all: ~2.5 MB of events
        h = s.add_calls(f"ur:{workload}:target_func ret=%ax:s64", on_calls,
                        entry_args=("a=%di:s64", "s=+0(%dx):string"))
        s.start()
        os.write(w, b"g")
        stats = s.run(until=lambda: p.poll() is not None)
    assert stats.lost == 0
    assert seen == {"calls": n, "unmatched": 0, "late": 0}
    assert len(cycles) >= 2        # 64 pages per CPU a cycle: calls straddle cycles
    assert got == [(i, f"arg-{i}", 2 * i) for i in range(n)]
    assert stats.probes[h.name].events == n


def test_handler_binding_by_name(tracefs, workload):
    got = []
    # a handler parameter the probe does not fetch is refused before anything is created
    with pytest.raises(SpecError, match="s_"):
        with Session() as s:
            s.add(f"u:{workload}:target_func a=%di:s64", lambda ev, s_: got.append(s_))
    with Session() as s:
        s.add(f"u:{workload}:target_func a=%di:s64 s=+0(%dx):string",
              lambda ev, s, a: got.append((a, s)))
        s.start()
        subprocess.run([workload, "calls", "3"], check=True, capture_output=True)
        s.run(duration=0)
    assert got == [(0, "arg-0"), (1, "arg-1"), (2, "arg-2")]


def test_fetch_fault_is_marked(tracefs, workload):
    got = []
    with Session() as s:
        # %si holds an int (b = -i), not a pointer: dereferencing it faults
        s.add(f"u:{workload}:target_func bad=+0(%si):string", lambda ev: got.append(ev.bad))
        s.start()
        subprocess.run([workload, "calls", "3"], check=True, capture_output=True)
        s.run(duration=0)
    assert len(got) == 3
    assert all(type(v).__name__ == "Fault" and not v for v in got)


def test_two_sessions_do_not_disturb_each_other(tracefs, workload):
    n = 1000
    a, b = [], []
    p, w = _spawn_blocked([workload, "getppid", str(n)])
    with Session(pid=p.pid) as s1, Session(pid=p.pid) as s2:
        s1.add("t:syscalls:sys_enter_getppid", a.append)
        s2.add("t:syscalls:sys_enter_getppid", b.append)
        s1.start()
        s2.start()
        assert s1.name != s2.name
        os.write(w, b"g")
        p.wait()
        s1.run(duration=0)
        s2.run(duration=0)
    assert len(a) == n and len(b) == n


def test_unknown_tracepoint_leaves_nothing(tracefs):
    with pytest.raises(SymbolError, match="no tracepoint"):
        with Session() as s:
            s.add("t:syscalls:sys_enter_nonexistent_kp", print)
            s.start()


def test_kernel_refusal_carries_error_log(tracefs, workload):
    with pytest.raises(KernelRefused) as ei:
        with Session() as s:
            s.add(f"u:{workload}:target_func x=%nosuchreg:u32", print)
            s.start()
    e = ei.value
    assert e.errno != 0
    assert e.reason  # the kernel's own words from error_log
    assert e.column is not None and e.command[e.column:].startswith("%nosuchreg")
    assert not [d for d in dynevents.list_defined(tracefs)
                if d.group.startswith("kprobes_") and concerns_us(d.group)]


def test_bad_filter_is_refused_with_reason(tracefs):
    with pytest.raises(KernelRefused) as ei:
        with Session() as s:
            s.add("t:syscalls:sys_enter_getppid", print)
            s.handles[0].probe = type(s.handles[0].probe)(
                group="syscalls", event="sys_enter_getppid", filter="nosuchfield == 1")
            s.start()
    assert "nosuchfield" in str(ei.value) or ei.value.reason


def test_handler_errors_counted_not_fatal(tracefs, workload):
    def boom(ev):
        raise RuntimeError("boom")
    with Session() as s:
        s.add(f"u:{workload}:target_func", boom)
        s.start()
        subprocess.run([workload, "calls", "4"], check=True, capture_output=True)
        st = s.run(duration=0)
    p = next(iter(st.probes.values()))
    assert p.errors == 4 and p.events == 4
    assert "RuntimeError: boom" in p.first_error


def test_syscall_args_decode_by_their_c_type(tracefs, workload):
    """sys_enter_openat declares ``int dfd`` (and ``int flags``, ``umode_t
    mode``) as 8-byte unsigned fields: AT_FDCWD arrives as -100, not
    4294967196, per event and in batch columns alike."""
    n = 20
    p, w = _spawn_blocked([workload, "open", str(n), "/nonexistent/kprobes-dfd"])
    seen: list[tuple[int, int, int]] = []
    cols: list[tuple[int, int, int]] = []

    def on_batch(b):
        a = b.args
        cols.extend(zip(a["dfd"], a["flags"], a["mode"], strict=True))
    with Session(pid=p.pid) as s:
        s.add_tracepoint("t:syscalls:sys_enter_openat",
                         lambda ev: seen.append((ev.dfd, ev.flags, ev.mode)))
        s.add_batch("t:syscalls:sys_enter_openat", on_batch)
        s.start()
        os.write(w, b"g")
        s.run(until=lambda: p.poll() is not None)
    assert p.stdout.read().strip() == f"done {n}"
    want = (-100, os.O_RDONLY | os.O_CLOEXEC, 0)     # open(path, O_RDONLY | O_CLOEXEC, 0)
    assert seen.count(want) == n, seen[:5]
    assert cols == seen

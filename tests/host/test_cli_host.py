"""The command line on this machine: real probes, real programs, errors without tracebacks."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest
from conftest import concerns_us, run_cli

from kprobes.kernel import dynevents
from kprobes.runtime import owner


def _nothing_of_ours(tfs, pid: int | None = None) -> bool:
    """No kprobes group or instance (of process PID, when given) is left."""
    prefix = owner.PREFIX if pid is None else f"{owner.PREFIX}{pid}_"
    evs = [e for e in dynevents.list_defined(tfs)
           if e.group.startswith(prefix) and concerns_us(e.group)]
    insts = [i for i in tfs.instances() if i.startswith(prefix) and concerns_us(i)]
    return not evs and not insts


def test_trace_json_with_command(tracefs, workload):
    n = 50
    r = run_cli("trace", "--json", f"u:{workload}:target_func a=%di:s64 s=+0(%dx):string",
                f"ur:{workload}:target_func ret=%ax:s64 $comm", "-c", f"{workload} calls {n}")
    assert r.returncode == 0, r.stderr
    lines = [json.loads(ln) for ln in r.stdout.splitlines() if ln.startswith("{")]
    events = [d for d in lines if "summary" not in d]
    summary = lines[-1]["summary"]
    entries = [e for e in events if e["probe"].startswith("p_")]
    rets = [e for e in events if e["probe"].startswith("r_")]
    assert [e["args"] for e in entries] == [{"a": i, "s": f"arg-{i}"} for i in range(n)]
    assert [e["args"]["ret"] for e in rets] == [2 * i for i in range(n)]
    assert {e["args"]["task_comm"] for e in rets} == {"workload"}   # bare $comm, fetched
    for e in events:
        assert {"probe", "ts_ns", "cpu", "pid", "tid", "comm", "args"} <= set(e)
        assert e["comm"] == "workload"
    for name, p in summary["probes"].items():
        assert p["events"] == n and p["hits_all"] == n and p["misses"] == 0, name
    assert summary["lost"] == 0
    assert summary["command_exit"] == 0
    assert _nothing_of_ours(tracefs)


def test_trace_text_and_pid_filter(tracefs, workload):
    """-p traces only that process: a second workload running meanwhile is not
    seen; the trace ends by itself when that process exits (as bpftrace -p)."""
    target = subprocess.Popen([workload, "-w", "getppid", "300"], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE)
    tracer = subprocess.Popen([sys.executable, "-m", "kprobes", "trace", "--json",
                               "t:syscalls:sys_enter_getppid", "-p", str(target.pid)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        # armed once our instance exists with the event enabled
        _wait_armed(tracefs, tracer)
        subprocess.run([workload, "getppid", "100"], check=True, capture_output=True)
        target.stdin.write(b"g")
        target.stdin.close()
        target.wait()
        out, err = tracer.communicate(timeout=60)    # no signal: the exit ends it
    finally:
        if tracer.poll() is None:
            tracer.send_signal(signal.SIGINT)
            out, err = tracer.communicate(timeout=60)
    assert tracer.returncode == 0, err
    events = [json.loads(ln) for ln in out.splitlines()]
    assert events[-1]["summary"]["events"] == 300, (out[-3000:], err)
    assert events[-1]["summary"]["process_exited"] == target.pid
    assert {e["pid"] for e in events[:-1]} == {target.pid}
    assert _nothing_of_ours(tracefs)


def _wait_armed(tfs, proc: subprocess.Popen) -> None:
    """Wait until the tracer's instance has its events enabled and recording
    (bounded: a tracer that never arms fails the test instead of hanging it)."""
    import select
    import time
    deadline = time.monotonic() + 120
    while True:
        assert proc.poll() is None, proc.stderr.read()
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail("the tracer did not arm within 120 s")
        for inst in tfs.instances():
            if inst.startswith(f"{owner.PREFIX}{proc.pid}_") and list(
                    tfs.instance(inst).enabled_events()):
                if tfs.read(f"instances/{inst}/tracing_on").strip() == "1":
                    return
        select.select([], [], [], 0.01)


def test_sigterm_cleans_up(tracefs, workload):
    tracer = subprocess.Popen([sys.executable, "-m", "kprobes", "trace",
                               f"u:{workload}:target_func"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_armed(tracefs, tracer)
    tracer.send_signal(signal.SIGTERM)
    out, err = tracer.communicate(timeout=60)
    assert "Traceback" not in err
    assert _nothing_of_ours(tracefs, tracer.pid)


def test_sigkill_then_clean_removes_orphans_only(tracefs, workload):
    from kprobes import Session
    # A live session of someone else must not be touched by the cleanup.
    with Session() as live:
        live.add(f"u:{workload}:target_func")
        live.start()
        tracer = subprocess.Popen([sys.executable, "-m", "kprobes", "trace",
                                   f"u:{workload}:target_func", "t:syscalls:sys_enter_getppid"],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        _wait_armed(tracefs, tracer)
        tracer.kill()
        tracer.wait()
        dead = f"{owner.PREFIX}{tracer.pid}_"
        assert [i for i in tracefs.instances() if i.startswith(dead)], \
            "SIGKILL should leave the dead session's instance behind"
        r = run_cli("clean")
        assert r.returncode == 0, r.stdout + r.stderr
        assert f"removing instance {dead}" in r.stdout
        assert f"left alone (owner alive): {live.name}" in r.stdout
        assert live.name in tracefs.instances()
        assert [e for e in dynevents.list_defined(tracefs) if e.group == live.name]
        assert not [i for i in tracefs.instances() if i.startswith(dead)]
        assert not [e for e in dynevents.list_defined(tracefs) if e.group.startswith(dead)]
    assert _nothing_of_ours(tracefs)


def test_session_start_removes_orphans(tracefs, workload):
    tracer = subprocess.Popen([sys.executable, "-m", "kprobes", "trace",
                               f"u:{workload}:target_func"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_armed(tracefs, tracer)
    tracer.kill()
    tracer.wait()
    from kprobes import Session
    with Session() as s:
        s.add("t:syscalls:sys_enter_getppid")
        s.start()
        assert s.orphans_removed[0] >= 1 and s.orphans_removed[1] >= 1
    assert _nothing_of_ours(tracefs)


@pytest.mark.parametrize("spec, needle", [
    ("u:/bin/true:main\np:evil/x schedule", "control character"),
    ("u:/bin/true:main a=%di\n-:kprobes_1_1_0/", "control character"),
    ("u:/bin/true:main a=%di\t", "control character"),
    ("u:/bin/true:main x=%di;echo", "invalid fetch argument"),
    ("u:/bin/true:main common_pid=%di", "reserved"),
    ("u:/bin/true:main " + "a" * 70 + "=%di", "63"),
    ("t:syscalls:sys_enter_getppid x=%di", "no fetch arguments"),
    ("r5000:vfs_read", "maxactive"),
    ("p:vfs_read+", "bad kernel probe point"),
    ("nope", "no KIND"),
    ("u:/nonexistent/binary:main", "/nonexistent/binary"),
    ("t:nosuchgroup:nosuchevent", "no tracepoint"),
])
def test_bad_specs_one_clear_error(tracefs, spec, needle):
    r = run_cli("trace", spec, "-d", "0")
    assert r.returncode != 0
    assert "Traceback" not in r.stderr
    assert r.stderr.startswith("error: "), r.stderr
    assert needle in r.stderr
    assert "hint:" in r.stderr or "^" in r.stderr or needle in r.stderr.splitlines()[0]
    assert _nothing_of_ours(tracefs)


def test_filter_refused_with_kernel_reason(tracefs):
    r = run_cli("trace", "t:syscalls:sys_enter_getppid", "--filter", "nosuchfield == 3", "-d", "0")
    assert r.returncode == 1
    assert r.stderr.startswith("error: kernel refused")
    assert "Traceback" not in r.stderr
    assert _nothing_of_ours(tracefs)


def test_filter_applies_in_kernel(tracefs, workload):
    r = run_cli("trace", "--json", f"u:{workload}:target_func a=%di:s64",
                "--filter", "a >= 7", "-c", f"{workload} calls 10")
    assert r.returncode == 0, r.stderr
    events = [json.loads(ln) for ln in r.stdout.splitlines() if ln.startswith("{")]
    assert [e["args"]["a"] for e in events[:-1]] == [7, 8, 9]
    probe = events[-1]["summary"]["probes"]
    assert next(iter(probe.values()))["hits_all"] == 10   # hit 10 times, 3 passed the filter


def test_quiet_counts_without_printing(tracefs, workload):
    r = run_cli("trace", "-q", "--json", "t:syscalls:sys_enter_getppid",
                "-c", f"{workload} getppid 1234")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "done 1234"   # the command's own output
    lines = lines[1:]
    assert len(lines) == 1
    assert json.loads(lines[0])["summary"]["events"] == 1234


@pytest.mark.parametrize("latency", ["0", "5", "50"])
def test_latency_setting_delivers_every_event(tracefs, workload, latency):
    """--latency only batches a trickle: every event arrives, at any setting."""
    r = run_cli("trace", "-q", "--json", "--latency", latency, "t:syscalls:sys_enter_getppid",
                "-c", f"{workload} getppid 777")
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout.splitlines()[-1])["summary"]
    assert (summary["events"], summary["lost"], summary["command_exit"]) == (777, 0, 0)
    assert _nothing_of_ours(tracefs)


def test_negative_latency_is_one_error_line(tracefs):
    r = run_cli("trace", "t:syscalls:sys_enter_getppid", "--latency", "-1", "-d", "0")
    assert r.returncode != 0
    assert r.stderr.startswith("error: --latency -1: must be 0 or more"), r.stderr
    assert "Traceback" not in r.stderr
    assert _nothing_of_ours(tracefs)


def test_info_says_what_is_missing(tracefs):
    r = run_cli("info")
    assert r.returncode == 0
    has_k = tracefs.has("kprobe_events")
    assert ("kprobes:           yes" in r.stdout) == has_k
    if not has_k:
        assert "no kprobes: CONFIG_KPROBE_EVENTS is off; uprobes and tracepoints work" in r.stdout


def test_list_tracepoints_and_binary(tracefs, workload):
    r = run_cli("list", "t:syscalls:sys_enter_getppid")
    assert r.stdout.split() == ["t:syscalls:sys_enter_getppid"]
    r = run_cli("list", "-b", workload, "target_*")
    assert r.stdout.split() == [f"u:{workload}:target_func"]


def test_not_root_is_a_clear_error(tracefs, workload):
    if not hasattr(os, "setuid"):
        pytest.skip("no setuid")
    r = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                        sys.executable, "-m", "kprobes", "trace", "t:syscalls:sys_enter_getppid",
                        "-d", "0"], capture_output=True, text=True,
                       env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})
    assert r.returncode == 1
    assert r.stderr.startswith("error: ")
    assert "root" in r.stderr
    assert "Traceback" not in r.stderr

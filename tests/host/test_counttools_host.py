"""funccount, funclatency and stackcount on this host's tracepoints and
uprobes, each against a workload that counts itself (``-c WORKLOAD``)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import run_cli
from targets.build import build

N = 23


@pytest.fixture(scope="module")
def aggtarget(tmp_path_factory: pytest.TempPathFactory) -> str:
    return build("aggtarget", str(tmp_path_factory.mktemp("targets")))


def _ok(*args: str) -> subprocess.CompletedProcess:
    r = run_cli(*args)
    assert r.returncode == 0, r.stderr
    return r


def _json(out: str) -> list[dict]:
    return [json.loads(ln) for ln in out.splitlines() if ln.startswith("{")]


def test_funccount_tracepoint_pattern_exact(tracefs, workload):
    r = _ok("funccount", "--json", "-c", f"{workload} getppid {N}", "t:syscalls:sys_enter_getpp*")
    lines = _json(r.stdout)
    agg, summary = lines[0], lines[1]["summary"]
    assert agg["aggregation"] == "count" and agg["name"] == "t:syscalls:sys_enter_getpp*"
    assert agg["rows"] == [{"key": {"func": "syscalls:sys_enter_getppid"}, "count": N}]
    assert summary["command_exit"] == 0
    text = _ok("funccount", "-c", f"{workload} getppid {N}", "t:syscalls:sys_enter_getppid")
    out = [ln.split() for ln in text.stdout.splitlines() if ln.strip()]
    assert ["FUNC", "COUNT"] in out and ["syscalls:sys_enter_getppid", str(N)] in out
    assert 'Tracing 1 functions for "t:syscalls:sys_enter_getppid"' in text.stderr


def test_funccount_uprobes_glob_and_regex(tracefs, workload):
    r = _ok("funccount", "--json", "-c", f"{workload} calls {N}", f"u:{workload}:*_func")
    assert _json(r.stdout)[0]["rows"] == [{"key": {"func": "target_func"}, "count": N}]
    r = _ok("funccount", "--json", "-r", "-c", f"{workload} calls {N}",
            f"u:{workload}:^(target_func|static_helper)$")
    rows = _json(r.stdout)[0]["rows"]
    assert sorted((x["key"]["func"], x["count"]) for x in rows) == \
        [("static_helper", N), ("target_func", N)]


def test_funccount_intervals_add_up(tracefs, workload):
    r = _ok("funccount", "--json", "-i", "0.2", "-c", f"{workload} calls {N}",
            f"u:{workload}:target_func")
    lines = _json(r.stdout)
    ivals = [ln for ln in lines if "aggregation" in ln]
    assert ivals and [ln["interval"] for ln in ivals] == list(range(1, len(ivals) + 1))
    assert sum(x["count"] for ln in ivals for x in ln["rows"]) == N


def test_funclatency_uprobe_sleeps_in_their_buckets(tracefs, aggtarget):
    r = _ok("funclatency", "--json", "-u", "-c", f"{aggtarget} sleeps 3 2",
            f"u:{aggtarget}:sleep_func")
    agg = _json(r.stdout)[0]
    assert agg["aggregation"] == "latency" and agg["unit"] == "us"
    (row,) = agg["rows"]
    assert row["key"] == {"func": f"u:{aggtarget}:sleep_func"} and row["count"] == 5
    buckets = row["buckets"]
    assert sum(b["count"] for b in buckets) == 5
    assert all(b["hi"] > 1000 for b in buckets)          # nothing under the 1 ms sleep
    # the two 10 ms sleeps at 8193 us or more (a busy machine may delay a 1 ms one too)
    assert sum(b["count"] for b in buckets if b["lo"] > 8192) >= 2
    assert row["sum"] >= 3 * 1000 + 2 * 10000


def test_funclatency_per_function_text(tracefs, aggtarget):
    r = _ok("funclatency", "-F", "-m", "-c", f"{aggtarget} sleeps 2 1", f"u:{aggtarget}:*_func")
    out = r.stdout
    assert "Function = sleep_func" in out and "Function = value_func" not in out
    assert "     msecs               : count     distribution" in out
    assert "count: 3" in out and 'Tracing 2 functions for' in r.stderr


def test_stackcount_user_stacks_and_folded(tracefs, workload):
    r = _ok("stackcount", "--json", "-U", "-c", f"{workload} calls {N}",
            f"u:{workload}:target_func")
    st = json.loads(r.stdout.splitlines()[-1])
    assert st["total"] == N and st["stack"] == "user" and st["name"] == f"u:{workload}:target_func"
    (row,) = st["rows"]
    assert row["count"] == N and row["key"]["ustack"][:2] == ["target_func", "main"]
    r = _ok("stackcount", "-U", "-f", "-P", "-c", f"{workload} calls {N}",
            f"u:{workload}:target_func")
    (line,) = r.stdout.splitlines()[-1:]
    frames, count = line.rsplit(" ", 1)
    assert int(count) == N and frames.split(";")[0].startswith("workload-")
    assert frames.endswith("main;target_func")


@pytest.mark.parametrize("args, needle", [
    (("funccount", "t:nosuch_group:*"), "matches no tracepoint"),
    (("funccount", "vfs_reed_nonexistent"), "matches no kernel function"),
    (("funccount", "u:c:*"), "at most 1000 probes"),
    (("funccount", "-r", "u:c:(("), "bad regular expression"),
    (("funclatency", "t:sched:sched_switch"), "latency needs a function entry"),
    (("stackcount", "-d", "0", "t:sched:sched_switch"), "must be more than 0"),
])
def test_bad_input_one_error_line(tracefs, args, needle):
    r = run_cli(*args)
    assert r.returncode == 1 and r.stdout == "", r
    lines = r.stderr.splitlines()
    assert "Traceback" not in r.stderr and lines[0].startswith("error: ") and needle in lines[0]
    assert len(lines) == 2 and lines[1].startswith("hint: "), lines


@pytest.mark.parametrize("tool", ["funccount", "funclatency", "stackcount"])
def test_module_help_has_examples(tool):
    r = subprocess.run([sys.executable, "-m", f"kprobes.tools.{tool}", "--help"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "examples:" in r.stdout and "--json" in r.stdout
    assert f"kprobes {tool} " in r.stdout and "-p PID" in r.stdout

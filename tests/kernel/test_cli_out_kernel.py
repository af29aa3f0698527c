"""The command line with real kprobes: the tracepoint-args hint leads to the
string, ``hits_all`` counts every process (and is null for tracepoints), and a
kprobe's return value prints in decimal like a tracepoint's fields."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))


KPROBES = [sys.executable, "-m", "kprobes"]


def _path() -> str:
    return f"/nonexistent/kprobes-cli-{uuid.uuid4().hex[:12]}"


def _trace(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*KPROBES, "trace", *args], capture_output=True, text=True,
                          timeout=600)


def test_tracepoint_string_hint_names_a_kprobe_that_reads_it(tracefs_root, workload) -> None:
    r = _trace("t:syscalls:sys_enter_openat +0(filename):ustring")
    assert r.returncode == 1 and "Traceback" not in r.stderr
    hint = [ln for ln in r.stderr.splitlines() if ln.startswith("hint:")]
    assert len(hint) == 1 and "kprobes trace 'p:do_sys_openat2 filename'" in hint[0], r.stderr
    path = _path()
    r = _trace("p:do_sys_openat2 filename", "--json", "-c", f"{workload} open 3 {path}")
    assert r.returncode == 0, r.stderr
    rows = [json.loads(ln) for ln in r.stdout.splitlines() if ln.startswith("{")]
    assert [e["args"]["filename"] for e in rows[:-1]].count(path) == 3


def test_hits_all_counts_every_process_and_is_null_for_tracepoints(tracefs_root,
                                                                    workload) -> None:
    path = _path()
    r = _trace("p:do_sys_openat2 filename", "t:syscalls:sys_enter_openat", "--json",
               "-c", f"{workload} open 4 {path}")
    assert r.returncode == 0, r.stderr
    rows = [json.loads(ln) for ln in r.stdout.splitlines() if ln.startswith("{")]
    summary = rows[-1]["summary"]["probes"]
    kp = next(v for k, v in summary.items() if "do_sys_openat2" in k)
    tp = next(v for k, v in summary.items() if "sys_enter_openat" in k)
    ours = [e for e in rows[:-1] if "do_sys_openat2" in e["probe"]]
    assert sum(e["args"]["filename"] == path for e in ours) == 4
    assert kp["events"] == len(ours)
    assert isinstance(kp["hits_all"], int) and kp["hits_all"] >= kp["events"]
    assert tp["hits_all"] is None and tp["events"] >= 4


def test_return_value_prints_decimal(tracefs_root, workload) -> None:
    r = _trace("r:do_sys_openat2 $retval", "-c", f"{workload} open 2 {_path()}")
    assert r.returncode == 0, r.stderr
    rets = re.findall(r"retval=(\S+)", r.stdout)
    assert rets.count("-2") >= 2, r.stdout          # ENOENT, as the kernel returns it
    assert not [v for v in rets if v.startswith(("0x", "-0x"))], rets

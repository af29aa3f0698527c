"""funccount, funclatency and stackcount on kprobes, against a target that
counts itself (``aggtarget -w``: waits on stdin so the tools arm on its pid
first) and against bpftrace on the same target in the same run."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

N = 40
BPFTRACE = shutil.which("bpftrace")


@pytest.fixture(scope="module")
def aggtarget(tmp_path_factory: pytest.TempPathFactory) -> str:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from targets.build import build
    return build("aggtarget", str(tmp_path_factory.mktemp("targets")))


def _wait_for(stream, word: str, what: str) -> None:
    seen = []
    for line in stream:
        seen.append(line)
        if word in line:
            return
    raise AssertionError(f"{what} ended before {word!r}: {''.join(seen)}")


class _Run:
    """The target (waiting), our tool on its pid, and optionally bpftrace on it."""

    def __init__(self, target: list[str], tool: list[str], bt: str | None) -> None:
        self.target = subprocess.Popen([target[0], "-w", *target[1:]], stdin=subprocess.PIPE,
                                       stdout=subprocess.DEVNULL)
        pid = self.target.pid
        self.tool = subprocess.Popen([sys.executable, "-m", "kprobes", *tool, "-p", str(pid)],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.bt = None
        _wait_for(self.tool.stderr, "Tracing", "the tool")
        if bt is not None and BPFTRACE:
            # bpftrace ends itself when the target exits (no signal to race with)
            prog = ('BEGIN { printf("ready\\n"); } ' + bt + " tracepoint:sched:"
                    "sched_process_exit /pid == PID/ { exit(); }").replace("PID", str(pid))
            self.bt = subprocess.Popen([BPFTRACE, "-e", prog], stdout=subprocess.PIPE,
                                       stderr=subprocess.STDOUT, text=True)
            _wait_for(self.bt.stdout, "ready", "bpftrace")

    def go(self) -> tuple[str, str | None]:
        """Release the target; our tool's stdout (it ends with the target), bpftrace's."""
        try:
            assert self.target.stdin is not None
            self.target.stdin.write(b"g")
            self.target.stdin.close()
            assert self.target.wait(timeout=600) == 0
            out, err = self.tool.communicate(timeout=600)
            assert self.tool.returncode == 0, err
            bt = None
            if self.bt is not None:
                bt = self.bt.communicate(timeout=600)[0]
            return out, bt
        finally:
            for p in (self.target, self.tool, self.bt):
                if p is not None and p.poll() is None:
                    p.kill()
                    p.wait()


def _bt_map(out: str) -> dict[str, int]:
    return {m[1]: int(m[2]) for m in re.finditer(r"^@\[(\S+)\]: (\d+)$", out, re.M)}


def test_funccount_vfs_pattern_exact_and_as_bpftrace(aggtarget):
    """N opens of an existing file on procfs (/proc/version: the guest's root and /tmp
    are overlays, opened through overlayfs, whose backing_file_open calls vfs_open a
    second time on 6.6+): vfs_open exactly N times, kernel backend, and every
    vfs_* row equal to bpftrace's kprobe:vfs_* count() on the same target."""
    run = _Run([aggtarget, "open", str(N), "/proc/version"], ["funccount", "--json", "vfs_*"],
               "kprobe:vfs_* /pid == PID/ { @[func] = count(); }")
    out, bt = run.go()
    lines = [json.loads(ln) for ln in out.splitlines()]
    agg, summary = lines[0], lines[-1]["summary"]
    ours = {r["key"]["func"]: r["count"] for r in agg["rows"]}
    assert ours["vfs_open"] == N, ours
    assert agg["backend"] == "kernel" and summary["backend"] == "kernel"
    if bt is not None:
        assert ours == _bt_map(bt), (ours, bt)


def test_funccount_text_and_intervals(aggtarget):
    run = _Run([aggtarget, "open", str(N), "/proc/version"],
               ["funccount", "-T", "-i", "0.5", "vfs_open"], None)
    out, _ = run.go()
    rows = [ln.split() for ln in out.splitlines() if ln.startswith("vfs_open ")]
    assert sum(int(r[1]) for r in rows) == N, out
    assert out.count("FUNC                                    COUNT") >= len(rows)


def _bt_hist(out: str) -> dict[int, int]:
    """bpftrace hist() lines ``[8K, 16K)   2 |@@|``: {lower bound: count}."""
    mult = {"": 1, "K": 1024, "M": 1 << 20}
    got = {}
    for m in re.finditer(r"^\[(\d+)([KM]?), [^)\]]*[)\]]\s+(\d+) \|", out, re.M):
        got[int(m[1]) * mult[m[2]]] = int(m[3])
    return got


def test_funclatency_sleeps_kernel_backend_and_bpftrace(aggtarget):
    """3 sleeps of 1 ms and 2 of 10 ms through do_nanosleep: 5 calls, the 10 ms
    ones at 8193 us or more, in the kernel; bpftrace's hist() has the same total."""
    run = _Run([aggtarget, "sleeps", "3", "2"], ["funclatency", "-u", "--json", "do_nanosleep"],
               "kprobe:do_nanosleep /pid == PID/ { @s[tid] = nsecs; } "
               "kretprobe:do_nanosleep /@s[tid]/ { @us = hist((nsecs - @s[tid]) / 1000); "
               "delete(@s[tid]); }")
    out, bt = run.go()
    lines = [json.loads(ln) for ln in out.splitlines()]
    agg = lines[0]
    assert agg["backend"] == "kernel" and agg["unit"] == "us"
    (row,) = agg["rows"]
    assert row["count"] == 5 and sum(b["count"] for b in row["buckets"]) == 5
    assert all(b["hi"] > 1000 for b in row["buckets"])
    assert sum(b["count"] for b in row["buckets"] if b["lo"] > 8192) >= 2
    if bt is not None:
        hist = _bt_hist(bt)
        assert sum(hist.values()) == 5, bt
        assert sum(c for lo, c in hist.items() if lo >= 8192) >= 2, bt


def test_stackcount_kernel_stacks_exact(aggtarget):
    run = _Run([aggtarget, "open", str(N), "/proc/version"],
               ["stackcount", "-K", "--json", "vfs_open"], None)
    out, _ = run.go()
    st = json.loads(out.splitlines()[-1])
    assert st["total"] == N and st["stack"] == "kernel" and st["backend"] == "kernel", st
    assert all("do_sys_openat2" in r["key"]["kstack"] for r in st["rows"]), st


def test_funccount_too_many_one_error_nothing_left():
    r = subprocess.run([sys.executable, "-m", "kprobes", "funccount", "*"], capture_output=True,
                       text=True, timeout=600)
    assert r.returncode == 1 and r.stdout == ""
    lines = r.stderr.splitlines()
    assert len(lines) == 2 and "at most 1000 probes" in lines[0] and lines[1].startswith("hint:")

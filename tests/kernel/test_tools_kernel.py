"""opensnoop and execsnoop with kprobes, against workloads that count
themselves and against bpftrace's ``opensnoop.bt`` / ``execsnoop.bt`` on
the same workload in the same run."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

N = 5
BPFTRACE = shutil.which("bpftrace")


def _cli(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    r = subprocess.run([sys.executable, "-m", "kprobes", *args], capture_output=True,
                       text=True, timeout=timeout)
    assert r.returncode == 0, r.stderr
    return r


def _rows(out: str) -> list[dict]:
    return [json.loads(ln) for ln in out.splitlines() if ln.startswith("{")]


def _workload(tmp: Path, name: str, body: str) -> list[str]:
    """A Python workload whose comm is ``name`` (set first thing), as an argv
    without spaces inside arguments (bpftrace -c splits on spaces)."""
    p = tmp / f"{name}.py"
    p.write_text(f"import ctypes\nctypes.CDLL(None).prctl(15, b'{name}', 0, 0, 0)\n"
                 + textwrap.dedent(body))
    return [sys.executable, str(p)]


@pytest.fixture
def tmp(tmp_path: Path) -> Path:
    return tmp_path


def _open_workload(tmp: Path, missing: str) -> list[str]:
    return _workload(tmp, "kptopen", f"""
        import os
        for i in range({N}):
            try:
                os.open("{missing}", os.O_WRONLY | os.O_APPEND)
            except FileNotFoundError:
                pass
        for i in range({N} + 1):
            os.close(os.open("/etc/hostname", os.O_RDONLY))
    """)


def test_opensnoop_counts_failed_and_ok_opens(tmp):
    missing = f"/nonexistent-kpt-{os.getpid()}/file"
    cmd = " ".join(_open_workload(tmp, missing))
    rows = _rows(_cli("opensnoop", "--json", "-e", "-c", cmd).stdout)
    failed = [r for r in rows if r["path"] == missing]
    ok = [r for r in rows if r["path"] == "/etc/hostname"]
    assert len(failed) == N and {(r["fd"], r["err"], r["comm"]) for r in failed} == \
        {(-1, 2, "kptopen")}, rows
    assert all(r["flags"] & (os.O_WRONLY | os.O_APPEND) == os.O_WRONLY | os.O_APPEND
               for r in failed)
    assert len(ok) == N + 1 and all(r["fd"] >= 3 and r["err"] == 0 for r in ok)
    only = _rows(_cli("opensnoop", "--json", "-x", "-n", "kptopen", "-c", cmd).stdout)
    assert [r["path"] for r in only] == [missing] * N


def _alongside(ours: list[str], bpftrace: list[str], header: str) -> tuple[str, str]:
    """Run our tool (until SIGINT) and bpftrace (its -c workload) at once: ours
    is armed first (its header printed), bpftrace's -c ends it."""
    tool = subprocess.Popen([sys.executable, "-m", "kprobes", *ours], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        assert tool.stdout is not None
        first = tool.stdout.readline()
        assert first.split()[:2] == header.split()[:2], (first, tool.stderr and tool.stderr.read())
        bt = subprocess.run(bpftrace, capture_output=True, text=True, timeout=900)
        assert bt.returncode == 0, bt.stderr
        tool.send_signal(signal.SIGINT)
        out, err = tool.communicate(timeout=300)
        assert tool.returncode == 0, err
        return out, bt.stdout
    finally:
        if tool.poll() is None:
            tool.kill()
            tool.wait()


@pytest.mark.skipif(BPFTRACE is None, reason="bpftrace is not installed")
def test_opensnoop_same_rows_as_bpftrace(tmp):
    missing = f"/nonexistent-kpt-bt-{os.getpid()}/file"
    argv = _open_workload(tmp, missing)
    ours, bt = _alongside(["opensnoop", "-n", "kptopen"],
                          [BPFTRACE, "/usr/sbin/opensnoop.bt", "-c", " ".join(argv)],
                          "PID COMM FD ERR PATH")

    def rows(text: str) -> list[tuple[str, ...]]:
        out = []
        for ln in text.splitlines():
            f = ln.split()
            if len(f) == 5 and f[1] == "kptopen" and f[4] in (missing, "/etc/hostname"):
                out.append(tuple(f))
        return sorted(out)
    assert len(rows(ours)) == 2 * N + 1
    assert rows(ours) == rows(bt), (ours, bt)


def _exec_workload(tmp: Path) -> list[str]:
    return _workload(tmp, "kptexec", f"""
        import os
        for i in range({N}):
            pid = os.fork()
            if pid == 0:
                os.execv("/bin/true", ["true", "kpt-arg", str(i), "x" * 40])
            os.waitpid(pid, 0)
        for i in range({N} - 2):
            try:
                os.execv("/nonexistent-kpt/prog", ["prog", "kpt-fail", str(i)])
            except FileNotFoundError:
                pass
    """)


def test_execsnoop_argv_from_the_kernel(tmp):
    cmd = " ".join(_exec_workload(tmp))
    rows = _rows(_cli("execsnoop", "--json", "-x", "-c", cmd).stdout)
    ok = sorted(r["args"] for r in rows if r["pcomm"] == "true")
    assert ok == [f"true kpt-arg {i} {'x' * 40}" for i in range(N)], rows
    failed = sorted(r["args"] for r in rows if r["ret"] == -2 and r["pcomm"] == "kptexec")
    assert failed == [f"prog kpt-fail {i}" for i in range(N - 2)], rows
    short = _rows(_cli("execsnoop", "--json", "--max-args", "2", "-q", "-c", cmd).stdout)
    assert sorted(r["args"] for r in short if r["pcomm"] == "true") == \
        ['"true" "kpt-arg" ...'] * N


@pytest.mark.skipif(BPFTRACE is None, reason="bpftrace is not installed")
def test_execsnoop_same_rows_as_bpftrace(tmp):
    argv = _exec_workload(tmp)
    ours, bt = _alongside(["execsnoop", "-x"],
                          [BPFTRACE, "/usr/sbin/execsnoop.bt", "-c", " ".join(argv)],
                          "PCOMM PID PPID RET ARGS")
    mine = []
    for ln in ours.splitlines():
        f = ln.split(None, 4)
        if len(f) == 5 and f[1].isdigit() and "kpt-" in f[4]:
            mine.append((int(f[1]), f[4].strip()))
    mine.sort()
    theirs = []
    for ln in bt.splitlines():
        f = ln.split(None, 2)
        if len(f) == 3 and f[1].isdigit() and "kpt-" in f[2]:
            theirs.append((int(f[1]), f[2].strip()))
    assert len(mine) == 2 * N - 2
    assert mine == sorted(theirs), (ours, bt)

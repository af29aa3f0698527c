"""The snoop tools on this host's tracepoints, each against a workload that
counts itself (``kprobes TOOL --json -c WORKLOAD``): exact rows."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import run_cli

N = 7


def _rows(out: str) -> list[dict]:
    return [json.loads(ln) for ln in out.splitlines() if ln.startswith("{")]


def _script(tmp_path: Path, body: str) -> str:
    p = tmp_path / "work.py"
    p.write_text(textwrap.dedent(body))
    return f"{sys.executable} {p}"


def _tool(*args: str) -> subprocess.CompletedProcess:
    r = run_cli(*args)
    assert r.returncode == 0, r.stderr
    return r


def test_killsnoop_exact_rows(tracefs, tmp_path):
    cmd = _script(tmp_path, f"""
        import os, signal
        for i in range({N}):
            try:
                os.kill(999999 + 0, signal.SIGUSR2)      # ESRCH
            except ProcessLookupError:
                pass
        for i in range({N} + 2):
            os.kill(os.getpid(), 0)
    """)
    rows = _rows(_tool("killsnoop", "--json", "-c", cmd).stdout)
    failed = [r for r in rows if r["result"] == -3]
    ok = [r for r in rows if r["result"] == 0]
    assert len(failed) == N and len(ok) == N + 2, rows
    assert {(r["sig"], r["tpid"], r["comm"]) for r in failed} == {(12, 999999, "python3")} or \
        {(r["sig"], r["tpid"]) for r in failed} == {(12, 999999)}
    pids = {r["pid"] for r in rows}
    assert len(pids) == 1 and {r["tpid"] for r in ok} == pids
    assert set(rows[0]) == {"time", "pid", "comm", "sig", "tpid", "result"}
    # -x: failed only (in the kernel); -s: this signal only
    only_failed = _rows(_tool("killsnoop", "--json", "-x", "-c", cmd).stdout)
    assert len(only_failed) == N and all(r["result"] == -3 for r in only_failed)
    only_zero = _rows(_tool("killsnoop", "--json", "-s", "0", "-c", cmd).stdout)
    assert len(only_zero) == N + 2 and all(r["sig"] == 0 for r in only_zero)
    text = _tool("killsnoop", "-s", "USR2", "-c", cmd).stdout.splitlines()
    assert text[0].split() == ["TIME", "PID", "COMM", "SIG", "TPID", "RESULT"]
    assert len(text) == N + 1 and all(ln.split()[3:] == ["12", "999999", "-3"] for ln in text[1:])


def test_exitsnoop_codes_and_signals(tracefs, tmp_path):
    cmd = _script(tmp_path, f"""
        import os, signal
        kids = {{}}
        for i in range({N}):
            pid = os.fork()
            if pid == 0:
                os._exit(i + 1)
            kids[pid] = i + 1
        for i in range({N}):
            pid = os.fork()
            if pid == 0:
                os.kill(os.getpid(), signal.SIGTERM)
                os._exit(99)
            kids[pid] = -15
        pid = os.fork()
        if pid == 0:
            signal.signal(signal.SIGUSR1, signal.SIG_DFL)
            signal.pause()
        os.kill(pid, signal.SIGUSR1)
        kids[pid] = -10
        for _ in kids:
            os.wait()
        with open({str(tmp_path / "kids")!r}, "w") as f:   # not the tool's stdout: no interleaving
            f.write(" ".join(f"{{k}}:{{v}}" for k, v in kids.items()))
    """)
    r = _tool("exitsnoop", "--json", "-c", cmd)
    rows = _rows(r.stdout)
    said = (tmp_path / "kids").read_text()
    kids = dict(map(int, kv.split(":")) for kv in said.split())
    by_pid = {row["pid"]: row for row in rows}
    workload = [row for row in rows if row["pid"] not in kids]
    assert len(workload) == 1 and workload[0]["exit_code"] == 0
    for pid, want in kids.items():
        row = by_pid[pid]
        if want > 0:
            assert (row["exit_code"], row["signal"]) == (want, None), row
        else:
            assert (row["exit_code"], row["signal"]) == (None, -want), row
        assert row["ppid"] == workload[0]["pid"] and row["tid"] == pid
        assert row["pcomm"].startswith("python") and row["age_s"] >= 0
    assert len(rows) == 2 * N + 2
    # -x leaves out exit(0); the text form is bcc's
    text = _tool("exitsnoop", "-x", "-c", cmd).stdout.splitlines()
    assert text[0].split() == ["PCOMM", "PID", "PPID", "TID", "AGE(s)", "EXIT_CODE"]
    codes = [" ".join(ln.split()[5:]) for ln in text[1:] if ln.startswith("python")]
    assert sorted(codes) == sorted([f"code {i + 1}" for i in range(N)]
                                   + ["signal 15 (TERM)"] * N + ["signal 10 (USR1)"])


def test_execsnoop_success_and_failure(tracefs, tmp_path):
    missing = f"/nonexistent-kpt-{os.getpid()}/prog"
    cmd = _script(tmp_path, f"""
        import os
        for i in range({N}):
            pid = os.fork()
            if pid == 0:
                os.execv("/bin/true", ["true", "kpt-arg", str(i)])
            os.waitpid(pid, 0)
        for i in range({N} - 2):
            try:
                os.execv("{missing}", ["prog", "x"])
            except FileNotFoundError:
                pass
    """)
    rows = _rows(_tool("execsnoop", "--json", "-x", "-c", cmd).stdout)
    ok = [r for r in rows if r["pcomm"] == "true"]
    assert len(ok) == N and all(r["ret"] == 0 for r in ok), rows
    assert {r["ppid"] for r in ok} == {rows[0]["pid"]}      # the workload forked them
    for r in ok:    # argv in the kernel (kprobes) or /proc/PID/cmdline, else the program
        assert r["args"].startswith("true kpt-arg ") or r["args"] in ("/bin/true", "/usr/bin/true")
    failed = [r for r in rows if r["ret"] == -2 and r["pid"] == rows[0]["pid"]
              and r["pcomm"].startswith("python")]
    assert len(failed) == N - 2, rows
    without_x = _rows(_tool("execsnoop", "--json", "-c", cmd).stdout)
    assert [r for r in without_x if r["ret"] != 0] == []
    assert len([r for r in without_x if r["pcomm"] == "true"]) == N
    named = _rows(_tool("execsnoop", "--json", "-n", "^tru", "-c", cmd).stdout)
    assert len(named) == N and {r["pcomm"] for r in named} == {"true"}


def test_opensnoop_without_kprobes_one_error(tracefs):
    if tracefs.has("kprobe_events"):
        pytest.skip("this kernel has kprobes: opensnoop runs (tests/kernel)")
    r = run_cli("opensnoop", "-d", "1")
    assert r.returncode == 1 and r.stdout == ""
    lines = r.stderr.splitlines()
    assert len(lines) == 2 and lines[0].startswith("error: opensnoop: ") and "kprobes" in lines[0]
    assert lines[1].startswith("hint: ") and "sys_enter_openat" in lines[1]


@pytest.mark.parametrize("args, needle", [
    (("killsnoop", "-s", "FOO"), "unknown signal"),
    (("opensnoop", "-f", "O_BOGUS"), "unknown open flag"),
    (("execsnoop", "-n", "("), "not a regular expression"),
    (("execsnoop", "--max-args", "0"), "--max-args 0"),
    (("exitsnoop", "-d", "-1"), "must be 0 or more"),
    (("killsnoop", "-p", "999999"), "no such process"),
])
def test_bad_input_one_error_line(tracefs, args, needle):
    r = run_cli(*args)
    assert r.returncode == 1 and r.stdout == "", r
    lines = r.stderr.splitlines()
    assert lines[0].startswith("error: ") and needle in lines[0] and "Traceback" not in r.stderr
    assert len(lines) == 2 and lines[1].startswith("hint: ")


@pytest.mark.parametrize("tool", ["opensnoop", "execsnoop", "exitsnoop", "killsnoop"])
def test_module_help_has_examples(tool):
    r = subprocess.run([sys.executable, "-m", f"kprobes.tools.{tool}", "--help"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "examples:" in r.stdout and "--json" in r.stdout
    assert f"kprobes {tool} -" in r.stdout

"""Output under hostile conditions: a closed pipe, a full disk, a SIGKILL mid-run,
and a traced program whose name and strings are escape sequences and invalid UTF-8.

Expected outcomes (README "Output"):
- ``| head -1`` (EPIPE) and ``-o /dev/full`` (ENOSPC): the trace stops, one
  ``error:`` line, exit status 1, nothing left in the kernel;
- ``-o FILE`` is written per read cycle: a reader sees the events while the
  tracer still runs, and a SIGKILL loses none that were read;
- text output shows control characters and invalid bytes escaped (``\\x1b``,
  ``\\xff``), one event per line; JSON stays valid UTF-8 and round-trips the
  bytes (``json.loads(...)["comm"].encode("utf-8", "surrogateescape")``).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from targets.build import build

pytestmark = pytest.mark.host

# byte for byte as in tests/targets/hostile.c
COMM = b'\x1b[31mE"\xff\x07z'
PATH = b'/nonexistent/\x1b[2J"q\\\xff\xfe\n\tend'
KPROBES = [sys.executable, "-m", "kprobes"]


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> str:
    return build("hostile", str(tmp_path_factory.mktemp("hostile")))


def _errors(stderr: str) -> list[str]:
    assert "Traceback" not in stderr, stderr
    return [ln for ln in stderr.splitlines() if ln.startswith("error:")]


def test_closed_pipe_stops_with_one_error(tracefs, workload: str) -> None:
    """``kprobes trace ... | head -1``: the first line arrives, then the reader goes."""
    p = subprocess.Popen([*KPROBES, "trace", "t:syscalls:sys_enter_getppid",
                          "-c", f"{workload} getppid 50000000"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert p.stdout is not None and p.stderr is not None
    first = p.stdout.readline()
    p.stdout.close()                                 # what head does after one line
    err = p.stderr.read().decode()
    rc = p.wait(timeout=120)
    assert b"sys_enter_getppid" in first
    errors = _errors(err)
    assert rc == 1, err
    assert len(errors) == 1 and "broken pipe" in errors[0], err
    assert "handler error" not in err                 # not counted as handler errors


def test_full_disk_stops_with_one_error(tracefs, workload: str) -> None:
    r = subprocess.run([*KPROBES, "trace", "t:syscalls:sys_enter_getppid", "--json",
                        "-o", "/dev/full", "-c", f"{workload} getppid 50000000"],
                       capture_output=True, text=True, timeout=120)
    errors = _errors(r.stderr)
    assert r.returncode == 1, r.stderr
    assert len(errors) == 1 and "No space left on device" in errors[0], r.stderr
    assert "handler error" not in r.stderr


def test_unwritable_output_file_is_one_error(tracefs, tmp_path) -> None:
    r = subprocess.run([*KPROBES, "trace", "t:syscalls:sys_enter_getppid",
                        "-o", str(tmp_path / "no" / "such" / "dir"), "-d", "1"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and len(_errors(r.stderr)) == 1, r.stderr


def _lines(path: str) -> list[bytes]:
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return []
    return data.splitlines(keepends=True)


def test_output_file_written_per_batch_survives_sigkill(tracefs, hostile: str,
                                                        tmp_path) -> None:
    """The traced program makes N events and then holds on; the file has all N
    (valid JSON lines) while the tracer still runs; SIGKILL then loses none."""
    n = 2000
    out = str(tmp_path / "events.json")
    p = subprocess.Popen([*KPROBES, "trace", "t:syscalls:sys_enter_getppid", "--json",
                          "-o", out, "-c", f"{hostile} hold {n}"],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert p.stdout is not None
        assert p.stdout.readline() == b"held\n"       # the program made its n events
        deadline = time.monotonic() + 60
        lines = _lines(out)
        while len(lines) < n and time.monotonic() < deadline and p.poll() is None:
            time.sleep(0.02)                           # a reader of the file, polling it
            lines = _lines(out)
        assert p.poll() is None, "the tracer ended early"
        assert len(lines) == n
        assert all(ln.endswith(b"\n") for ln in lines)     # whole lines only
        assert {json.loads(ln)["probe"] for ln in lines} == {"sys_enter_getppid"}
        p.send_signal(signal.SIGKILL)
        p.wait(timeout=30)
        assert len(_lines(out)) == n                  # nothing was held back in memory
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        assert p.stdin is not None
        p.stdin.close()                               # the held program ends
        for f in (p.stdout, p.stderr):
            if f is not None:
                f.close()
        # the killed tracer's instance and events: removed as orphans of a dead owner
        subprocess.run([*KPROBES, "clean"], capture_output=True, timeout=60, check=True)


def _uprobe(hostile: str) -> str:
    return f"u:{hostile}:hostile_open path=+0(%di):ustring"


@pytest.mark.parametrize("specs", ["one", "two"])
def test_hostile_names_json_round_trips(tracefs, hostile: str, tmp_path, specs: str) -> None:
    """One probe (batch encoder) and two (per-event encoder): valid UTF-8 JSON,
    the exact bytes back through surrogateescape."""
    n = 20
    out = str(tmp_path / "events.json")
    argv = [*KPROBES, "trace", _uprobe(hostile)]
    if specs == "two":
        argv.append("t:syscalls:sys_enter_getppid")
    r = subprocess.run([*argv, "--json", "-o", out, "-c", f"{hostile} names {n}"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    raw = open(out, "rb").read()
    text = raw.decode("utf-8")                        # strict: valid UTF-8
    rows = [json.loads(ln) for ln in text.splitlines()]
    events = [e for e in rows if "summary" not in e]
    opens = [e for e in events if e["probe"].startswith("p_hostile")]
    assert len(opens) == n
    assert {e["args"]["path"].encode("utf-8", "surrogateescape") for e in opens} == {PATH}
    assert {e["comm"].encode("utf-8", "surrogateescape") for e in events} == {COMM}
    if specs == "two":
        assert len(events) == 2 * n
    assert "\\udcff" in text and "\\u001b" in text     # escapes, not raw bytes
    assert b"\x1b" not in raw and b"\xff" not in raw


def test_hostile_names_text_escaped(tracefs, hostile: str, tmp_path) -> None:
    n = 20
    out = str(tmp_path / "events.txt")
    r = subprocess.run([*KPROBES, "trace", _uprobe(hostile), "-o", out,
                        "-c", f"{hostile} names {n}"], capture_output=True, timeout=120)
    assert r.returncode == 0, r.stderr
    raw = open(out, "rb").read()
    lines = raw.decode("utf-8").splitlines()
    assert len(lines) == n                            # one event per line: no newline got in
    for c in (b"\x1b", b"\x07", b"\xff", b"\t"):
        assert c not in raw
    comm = r'\x1b[31mE"\xff\x07z'
    path = r'"/nonexistent/\x1b[2J\"q\\\xff\xfe\x0a\x09end"'
    for ln in lines:
        assert f" {comm}-" in ln and ln.endswith(f"path={path}"), ln
    os.unlink(out)

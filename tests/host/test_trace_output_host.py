"""``kprobes trace`` output on this machine: the per-batch JSON and text
encoders against the per-event ones, the number convention, the live status line on a terminal,
and the tracepoint-args hint that leads to the string."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import subprocess
import sys

import pytest
from targets.build import build

from kprobes import Session
from kprobes.cli.trace_out import Sink, hex_args, json_batch, text_batch
from kprobes.output.render import json_line, text_line

pytestmark = pytest.mark.host
KPROBES = [sys.executable, "-m", "kprobes"]


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> str:
    return build("hostile", str(tmp_path_factory.mktemp("hostile")))


class _Collect:
    def __init__(self) -> None:
        self.parts: list[str] = []

    def write(self, s: str) -> None:
        self.parts.append(s)


@pytest.mark.parametrize("spec", ["t:syscalls:sys_enter_getppid",
                                  "u:{w}:target_func a=%di:s64 b=%si:x32 s=+0(%dx):string"])
def test_batch_encoders_match_json_line_and_text_line(tracefs, workload: str, spec: str) -> None:
    """The column encoders write exactly what json_line and text_line write for
    each event of a real session (text: hex where the probe's types say so)."""
    n = 300
    sinks = {}
    for kind in ("json", "text"):
        sink = Sink.__new__(Sink)
        sink.error, sink.f, sink.on_error, sink.name = None, _Collect(), None, "test"
        sinks[kind] = sink
    slow: dict[str, list[str]] = {"json": [], "text": []}
    hexes: dict[str, set[str]] = {}
    encs = [json_batch(sinks["json"]), text_batch(sinks["text"], hexes)]

    def on_batch(b) -> None:
        for enc in encs:
            enc(b)
        slow["json"].extend(json_line(ev) + "\n" for ev in b.events())
        slow["text"].extend(text_line(ev, hexes[b.probe]) + "\n" for ev in b.events())

    p = subprocess.Popen([workload, "-w", "getppid" if spec.startswith("t:") else "calls",
                          str(n)], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL)
    with Session(pid=p.pid) as s:
        h = s.add_batch(spec.format(w=workload), on_batch)
        s.start()
        hexes[h.name] = hex_args(s, h)
        assert p.stdin is not None
        p.stdin.write(b"g")
        p.stdin.close()
        s.run(until=lambda: p.poll() is not None)
    if spec.startswith("u:"):
        assert hexes[h.name] == {"b"}
        assert " b=0x" in slow["text"][0] and " a=" in slow["text"][0]
    for kind in ("json", "text"):
        fast = "".join(sinks[kind].f.parts).splitlines(keepends=True)
        assert len(slow[kind]) == n
        assert fast == slow[kind], kind


def test_number_convention(tracefs, workload: str) -> None:
    """Decimal integers; hex for pointers (a tracepoint's ``const char *``) and xN types."""
    r = subprocess.run([*KPROBES, "trace", "t:syscalls:sys_enter_openat",
                        f"u:{workload}:target_func a=%di:s64 b=%si:x32 c=%si",
                        "-c", f"{workload} open 1 /nonexistent/x"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    opens = [ln for ln in r.stdout.splitlines() if "sys_enter_openat:" in ln
             and "flags=" in ln]
    assert opens, r.stdout
    for ln in opens:
        assert re.search(r" filename=0x[0-9a-f]+ ", ln), ln      # pointer
        assert re.search(r" flags=\d+ ", ln), ln                 # int: decimal
    r = subprocess.run([*KPROBES, "trace", f"u:{workload}:target_func a=%di:s64 b=%si:x32 c=%si",
                        "-c", f"{workload} calls 3"], capture_output=True, text=True, timeout=120)
    lines = [ln for ln in r.stdout.splitlines() if "target_func" in ln]
    assert len(lines) == 3, r.stdout + r.stderr
    assert lines[2].endswith("a=2 b=0xfffffffe c=0xfffffffe"), lines[2]  # untyped: x64 default


def _read_until(fd: int, pattern: bytes, limit: float = 120) -> bytes:
    """Read the pty until ``pattern`` shows up (or the limit passes: then fail)."""
    got = b""
    while pattern not in got:
        r, _, _ = select.select([fd], [], [], limit)
        assert r, f"no {pattern!r} on the terminal; got {got!r}"
        try:
            chunk = os.read(fd, 4096)
        except OSError:     # EIO: the other side closed
            break
        if not chunk:
            break
        got += chunk
    return got


def test_status_line_only_on_a_terminal(tracefs, hostile: str, tmp_path) -> None:
    master, slave = pty.openpty()
    p = subprocess.Popen([*KPROBES, "trace", "t:syscalls:sys_enter_getppid", "-q",
                          "-c", f"{hostile} hold 1000"], stdin=subprocess.PIPE,
                         stdout=subprocess.DEVNULL, stderr=slave)
    os.close(slave)
    try:
        seen = _read_until(master, b" events ")      # the status line drawn (once a second)
        assert p.stdin is not None
        p.stdin.close()                               # the held program ends: so does the trace
        seen += _read_until(master, b"events delivered")
        p.wait(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        os.close(master)
    text = seen.decode(errors="replace")
    status = re.search(r"\r\x1b\[Kkprobes: [\d,]+ s  ([\d,]+) events  [\d,]+/s  lost 0  "
                       r"backlog [\d,]+ \(\d+% of buffer\)", text)
    assert status, text
    assert int(status.group(1).replace(",", "")) <= 1000
    # cleared before the summary: the summary starts on a clean line
    assert "\r\x1b[Kprobe " in text or "\r\x1b[K\nprobe" in text or \
        text.rindex("\r\x1b[K") < text.index("probe "), text
    assert re.search(r"sys_enter_getppid\s+1000 ", text), text
    # stderr not a terminal: no status line
    r = subprocess.run([*KPROBES, "trace", "t:syscalls:sys_enter_getppid", "-q",
                        "-c", f"{hostile} hold 10"], input=b"", capture_output=True, timeout=120)
    assert r.returncode == 0 and b"\x1b[K" not in r.stderr, r.stderr


def test_tracepoint_string_hint_leads_to_the_string(tracefs, workload: str) -> None:
    """Asking a tracepoint for ``+0(filename):ustring``: the hint's command, run
    as given, prints the path."""
    r = subprocess.run([*KPROBES, "trace", "t:syscalls:sys_enter_openat +0(filename):ustring"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1
    hint = [ln for ln in r.stderr.splitlines() if ln.startswith("hint:")]
    assert len(hint) == 1, r.stderr
    m = re.search(r"kprobes trace ((?:'[^']+' ?)+)", hint[0])
    assert m, hint
    specs = re.findall(r"'([^']+)'", m.group(1))
    if not tracefs.has("kprobe_events"):
        assert all(s.startswith("u:libc:") for s in specs), specs
    path = "/nonexistent/kprobes-hint-test"
    r = subprocess.run([*KPROBES, "trace", *specs, "--json", "-c", f"{workload} open 3 {path}"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    rows = [json.loads(ln) for ln in r.stdout.splitlines() if ln.startswith("{")]
    got = [e["args"].get("filename") for e in rows if "summary" not in e]
    assert got.count(path) == 3, got

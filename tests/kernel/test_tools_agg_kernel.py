"""syscount, runqlat, biolatency and tcplife with the kernel backend (hist
triggers, synthetic events), against self-counting workloads and against
bpftrace one-liners on the same workloads in the same run (counts equal)."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from targets import toolchecks as tc
from targets.modules import load_module

N = 5
BPFTRACE = shutil.which("bpftrace")
needs_bpftrace = pytest.mark.skipif(BPFTRACE is None, reason="bpftrace is not installed")


def _bpftrace(prog: str, cmd: str) -> str:
    r = subprocess.run([BPFTRACE, "-e", prog, "-c", cmd], capture_output=True, text=True,
                       timeout=900)
    assert r.returncode == 0, r.stderr
    return r.stdout


def _at(out: str, name: str) -> int:
    m = re.search(rf"^@{re.escape(name)}: (\d+)$", out, re.M)
    return int(m.group(1)) if m else 0


@needs_bpftrace
def test_syscount_kernel_and_bpftrace(tracefs_root):
    ours = tc.syscount_rmdir("kernel", N, every=False)
    _no_synthetic_events_left(tracefs_root)     # syscount -L: a synthetic event per run
    nr = 84 if os.uname().machine == "x86_64" else int(subprocess.run(
        ["python3", "-c", "import system_calls as s; print(s.syscalls().get('rmdir'))"],
        capture_output=True, text=True).stdout)
    bt = _bpftrace("tracepoint:raw_syscalls:sys_exit /pid == cpid && args->ret < 0/ "
                   "{ @[args->id] = count(); }", tc.work("rmdir", N))
    assert _at(bt, f"[{nr}]") == ours == N, bt


def _tid_counts(text: str) -> dict[int, int]:
    """``runqlat -L`` text: per ``tid = N`` section, the sum of its bucket counts."""
    out: dict[int, int] = {}
    tid = None
    for ln in text.splitlines():
        m = re.match(r"tid = (\d+)$", ln)
        if m:
            tid = int(m.group(1))
            continue
        m = re.match(r"\s*\d+ -> \d+\s+: (\d+)", ln)
        if m and tid is not None:
            out[tid] = out.get(tid, 0) + int(m.group(1))
    return out


@needs_bpftrace
def test_runqlat_kernel_and_bpftrace(tracefs_root):
    assert tc.runqlat_sleeps("kernel", N, exact=False) >= N
    # the same workload run, seen by both: ours system-wide per thread, bpftrace its -c child
    ours = subprocess.Popen([sys.executable, "-m", "kprobes", "runqlat", "-L", "--backend",
                             "kernel"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        assert ours.stderr is not None
        armed = ours.stderr.readline()
        assert armed.startswith("Tracing run queue latency"), armed
        bt = _bpftrace("BEGIN { printf(\"cpid %d\\n\", cpid); } "
                       "tracepoint:sched:sched_wakeup,tracepoint:sched:sched_wakeup_new "
                       "/args->pid == cpid/ { @qt[args->pid] = nsecs; } "
                       "tracepoint:sched:sched_switch /args->next_pid == cpid && "
                       "@qt[args->next_pid]/ { @n = count(); delete(@qt[args->next_pid]); }",
                       tc.work("sleep", N))
        ours.send_signal(signal.SIGINT)
        out, err = ours.communicate(timeout=600)
        assert ours.returncode == 0, err
    finally:
        if ours.poll() is None:
            ours.kill()
            ours.wait()
    _no_synthetic_events_left(tracefs_root)
    cpid = int(re.search(r"^cpid (\d+)$", bt, re.M).group(1))
    assert _at(bt, "n") >= N
    # ours also saw the child's sched_wakeup_new: bpftrace forks it before it attaches
    assert _tid_counts(out).get(cpid) == _at(bt, "n") + 1, (out, bt)


@pytest.fixture
def loopdev(tmp_path):
    if not os.path.exists("/dev/loop-control"):
        load_module("loop", "kernel/drivers/block")
    if not os.path.exists("/dev/loop-control"):
        pytest.skip("no loop devices (modprobe loop and insmod of KPROBES_TEST_MODULES/loop.ko "
                    "failed)")
    img = tmp_path / "disk.img"
    with open(img, "wb") as f:
        f.truncate(8 << 20)
    dev = subprocess.run(["losetup", "-f", "--show", str(img)], capture_output=True,
                         text=True, check=True).stdout.strip()
    try:
        yield dev
    finally:
        subprocess.run(["losetup", "-d", dev], check=False)


@needs_bpftrace
def test_biolatency_kernel_and_bpftrace(tracefs_root, loopdev):
    assert tc.biolatency_reads("kernel", N, loopdev, every=False) == N
    rdev = os.stat(loopdev).st_rdev
    dev = os.major(rdev) << 20 | os.minor(rdev)
    bt = _bpftrace(f"tracepoint:block:block_rq_issue /args->dev == {dev}/ "
                   "{ @s[args->dev, args->sector] = nsecs; } "
                   "tracepoint:block:block_rq_complete /@s[args->dev, args->sector]/ "
                   "{ @n = count(); delete(@s[args->dev, args->sector]); }",
                   tc.work("dread", N, loopdev))
    assert _at(bt, "n") == N, bt


def test_tcplife_kernel(tracefs_root):
    have = Path(tracefs_root, "events/sock/sock_send_length").exists()
    tc.tcplife_sessions(3, have)


def _no_synthetic_events_left(tracefs_root: str) -> None:
    """After runs of runqlat and syscount -L with the kernel backend (the runs of the
    tests that call this): none of their synthetic events is left."""
    left = Path(tracefs_root, "synthetic_events").read_text()
    assert "kprobes" not in left, left

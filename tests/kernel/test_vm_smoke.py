"""Smoke test of the VM harness: a real kprobe on ``schedule`` fires.

Talks to tracefs directly (no kprobes library code), so a failure here means
the VM or the kernel, not our code.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

EVENT = "smoke_schedule"


def _write(path: Path, text: str) -> None:
    # one os.write on an O_APPEND fd: open(path, "a") gives EINVAL on kprobe_events
    fd = os.open(path, os.O_WRONLY | os.O_APPEND)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def _owner_group() -> str:
    """``kprobes_<pid>_<starttime>``: the project's owner-tagged group name."""
    stat = Path("/proc/self/stat").read_text()
    fields = stat[stat.rindex(")") + 2:].split()
    return f"kprobes_{os.getpid()}_{fields[19]}"  # field 22 = starttime


def _profile_hits(root: Path, event: str) -> int:
    for line in (root / "kprobe_profile").read_text().splitlines():
        parts = line.split()
        if parts and parts[0] == event:
            return int(parts[1])
    raise AssertionError(f"{event} missing from kprobe_profile")


def test_kprobe_events_exists(tracefs_root: Path) -> None:
    assert (tracefs_root / "kprobe_events").is_file()
    assert (tracefs_root / "kprobe_profile").is_file()


def test_in_vm_runs_the_expected_kernel() -> None:
    name = os.environ.get("KPROBES_IN_VM")
    if not name or os.path.sep in name:
        pytest.skip("KPROBES_IN_VM names no kernel of the matrix")
    assert os.uname().release.startswith(name + ".")


def test_kprobe_on_schedule_counts_hits(tracefs_root: Path) -> None:
    group = _owner_group()
    instance = tracefs_root / "instances" / group
    enable = instance / "events" / group / EVENT / "enable"
    defined = made = False
    try:
        _write(tracefs_root / "kprobe_events", f"p:{group}/{EVENT} schedule\n")
        defined = True
        assert (tracefs_root / "events" / group / EVENT / "format").is_file()
        assert _profile_hits(tracefs_root, EVENT) == 0  # defined, not armed yet

        os.mkdir(instance)
        made = True
        _write(enable, "1")
        assert enable.read_text().strip() == "1"
        for _ in range(10):  # each child exits and its parent waits: schedule() runs
            subprocess.run(["true"], check=True)
        _write(enable, "0")

        hits = _profile_hits(tracefs_root, EVENT)
        assert hits > 0
        trace = (instance / "trace").read_text()
        # the probe sits at schedule+0x0, or after the endbr64 (+0x4) on IBT kernels (6.12)
        assert re.search(rf" {EVENT}: \(schedule\+0x[04]/0x[0-9a-f]+\)$", trace, re.M)
    finally:
        if made:
            if enable.exists() and enable.read_text().strip() != "0":
                _write(enable, "0")
            os.rmdir(instance)
        if defined:
            _write(tracefs_root / "kprobe_events", f"-:{group}/{EVENT}\n")
    assert f"{group}/{EVENT}" not in (tracefs_root / "kprobe_events").read_text()
    assert not instance.exists()

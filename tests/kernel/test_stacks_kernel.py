"""Kernel stacks on a real kprobe (run inside the QEMU VM): the same frames as
bpftrace's ``kstack`` for the same workload, and the exact count of the workload's
calls for its one stack."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import uuid

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from targets.build import build  # noqa: E402
from targets.procs import run_bounded  # noqa: E402

from kprobes import Session  # noqa: E402

N = 20
OPEN = "do_sys_openat2"


@pytest.fixture(scope="module")
def workload(tmp_path_factory: pytest.TempPathFactory) -> str:
    return build("workload", str(tmp_path_factory.mktemp("targets")))


def _bpftrace_main_stack(workload: str, path: str) -> list[str]:
    """Function names of the most frequent kstack bpftrace sees at do_sys_openat2."""
    if not shutil.which("bpftrace"):
        pytest.skip("needs bpftrace")
    prog = f'kprobe:{OPEN} /comm == "workload"/ {{ @[kstack] = count(); }}'
    r = run_bounded(["bpftrace", "-e", prog, "-c", f"{workload} open {N} {path}"], timeout=600)
    assert r.returncode == 0, r.stderr
    best: tuple[int, list[str]] = (0, [])
    for m in re.finditer(r"@\[\n(.*?)\n\]: (\d+)", r.stdout, re.S):
        frames = [ln.strip().split("+")[0] for ln in m[1].splitlines() if ln.strip()]
        if int(m[2]) > best[0]:
            best = (int(m[2]), frames)
    assert best[0] >= N, r.stdout
    return best[1]


@pytest.mark.parametrize("backend", ["kernel", "user"])
def test_kprobe_kernel_stacks_match_bpftrace_and_count_exactly(workload: str, backend: str
                                                               ) -> None:
    """Both backends give the same answer: one main stack with exactly the workload's
    opens of its path (a filter on the path: the loader's opens do not count), the
    same function names as bpftrace's kstack; nothing left behind."""
    path = f"/nonexistent/kprobes-stacks-{uuid.uuid4().hex[:10]}"
    p = subprocess.Popen([workload, "-w", "open", str(N), path], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, text=True)
    try:
        with Session(pid=p.pid) as s:
            counts = s.stacks(f"p:{OPEN} path=+0(%si):ustring", kind="kernel", backend=backend,
                              filter=f'path == "{path}"')
            name = s.name
            s.start()
            p.stdin.write("g")
            p.stdin.close()
            s.run(until=lambda: p.poll() is not None, duration=300)
            live = counts.read()
    finally:
        p.kill()
        p.wait()
    assert counts.backend == backend
    rows = counts.read()
    assert rows == live and rows, "no stacks recorded"
    main = rows[-1]                                   # most frequent last
    assert main.count == N, counts.to_text()
    assert counts.total == N and counts.missing == 0 and counts.dropped == 0
    ours = list(main.key["kstack"])
    assert ours[0] == OPEN
    assert counts.to_folded().endswith(f"{';'.join(reversed(ours))} {N}")
    assert counts.to_json()["backend"] == backend
    theirs = _bpftrace_main_stack(workload, path)
    k = min(len(ours), len(theirs))
    assert k >= 3, (ours, theirs)
    assert ours[:k] == theirs[:k], (ours, theirs)
    # nothing left: no instance, no trigger, no event of the session
    tfs = "/sys/kernel/tracing"
    assert not [d for d in os.listdir(f"{tfs}/instances") if d.startswith(name)]
    with open(f"{tfs}/dynamic_events") as f:
        assert name not in f.read()


def test_kernel_backend_per_process_and_cli(workload: str) -> None:
    """``kprobes stacks --kernel -P --json``: the kernel backend says so, and the
    workload's row carries its pid and comm with its exact count."""
    path = f"/nonexistent/kprobes-stacks-{uuid.uuid4().hex[:10]}"
    r = run_bounded([sys.executable, "-m", "kprobes.cli.main", "stacks",
                     f"p:{OPEN} path=+0(%si):ustring", "--kernel", "-P", "--json",
                     "--filter", f'path == "{path}"', "-c", f"{workload} open {N} {path}"],
                    timeout=600)
    assert r.returncode == 0, r.stderr
    assert "kernel backend (hist triggers" in r.stderr, r.stderr
    d = json.loads(r.stdout.splitlines()[-1])      # after the workload's "done N" line
    assert d["backend"] == "kernel" and d["total"] == N
    (row,) = d["rows"]
    assert row["key"]["comm"] == "workload" and row["key"]["pid"] > 1 and row["count"] == N
    assert row["key"]["kstack"][0] == OPEN

"""Faults and hostile surroundings with real kprobes (run inside the QEMU VM).

- the k-th tracefs open/write/mkdir/rmdir fails (sampled k, a kprobe and a
  kretprobe): one KprobesError or an exact count, and nothing left;
- a kprobe on a module function (``dummy:dummy_setup``, run by ``ip link
  add ... type dummy``) while the module is unloaded: refused before anything
  is created; the module unloaded during a run: the session counts the calls
  made before, ends normally and leaves nothing;
- CPU 1 taken offline and back during a run: every event counted.
"""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import uuid

import pytest
from targets.modules import module_file

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from kprobes import Session  # noqa: E402
from kprobes.errors import KprobesError, SymbolError  # noqa: E402
from kprobes.kernel import faults  # noqa: E402
from kprobes.kernel.tracefs import Tracefs  # noqa: E402

N = 5


@pytest.fixture(scope="module")
def tfs() -> Tracefs:
    return Tracefs.open()


def _state(tfs: Tracefs, tag: str) -> dict[str, list[str]]:
    st = {"instances": [i for i in tfs.instances() if tag in i]}
    for f in ("kprobe_events", "dynamic_events"):
        if tfs.has(f):
            st[f] = [ln for ln in tfs.read_lines(f) if tag in ln]
    return st


def _life(workload: str) -> dict[str, int]:
    path = f"/nonexistent/kprobes-fault-{uuid.uuid4().hex[:8]}"
    p = subprocess.Popen([workload, "-w", "open", str(N), path], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, text=True)
    try:
        with Session(pid=p.pid) as s:
            s.add("p:do_sys_openat2 path=+0($arg2):ustring", name="entry")
            s.add("r:do_sys_openat2 ret=$retval:s64", name="ret")
            s.start()
            p.stdin.write("g")
            p.stdin.close()
            st = s.run(until=lambda: p.poll() is not None)
            return {n: ps.events for n, ps in st.probes.items()}
    finally:
        if p.poll() is None:
            p.kill()
        p.wait()


def test_kth_operation_fails_with_kprobes(tfs, workload):
    tag = f"kprobes_{os.getpid()}_"
    count = faults.Plan(10**9, errno.ENOMEM)
    faults.install(count)
    try:
        assert _life(workload) == {"entry": N, "ret": N}
    finally:
        faults.remove()
    before = _state(tfs, tag)
    bad = []
    ks = list(range(1, count.seen, max(1, count.seen // 8)))    # sampled: emulation is slow
    for i, k in enumerate(ks):
        err = (errno.ENOMEM, errno.EBUSY, errno.EINVAL, errno.ENOENT, errno.ENOSPC)[i % 5]
        plan = faults.Plan(k, err)
        faults.install(plan)
        try:
            got = _life(workload)
            if got != {"entry": N, "ret": N}:
                bad.append(f"k={k} {plan.fired}: recovered but counted {got}")
        except KprobesError as e:
            if "\n" in str(e):
                bad.append(f"k={k}: not one line: {e!r}")
        except Exception as e:  # noqa: BLE001 - nothing else may escape
            bad.append(f"k={k} {plan.fired}: {type(e).__name__}: {e}")
        finally:
            faults.remove()
        if _state(tfs, tag) != before:
            bad.append(f"k={k} {plan.fired}: left {_state(tfs, tag)}")
            break
    assert not bad, "\n".join(bad)


def _sh(*argv: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PATH="/usr/sbin:/sbin:/usr/bin:/bin:" + os.environ.get("PATH", ""))
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, env=env)


def _unload() -> None:
    for i in range(3):
        _sh("ip", "link", "del", f"kpdummy{i}")
    _sh("rmmod", "dummy")


@pytest.fixture
def dummy_module() -> str:
    path = module_file("dummy", "kernel/drivers/net")
    if path is None:
        pytest.skip("no dummy module for this kernel")
    _unload()
    yield path
    _unload()


def test_kprobe_on_unloaded_module_is_refused(tfs, dummy_module):
    tag = f"kprobes_{os.getpid()}_"
    with pytest.raises(SymbolError) as ei, Session() as s:
        s.add("p:dummy:dummy_setup")
        s.start()
    assert "dummy" in str(ei.value) and "\n" not in str(ei.value)
    assert _state(tfs, tag) == {k: [] for k in _state(tfs, tag)}


def test_module_unloaded_during_a_run(tfs, dummy_module):
    """3 links created (3 calls), the module unloaded mid-run: 3 events, the
    run ends normally, nothing left; the kernel marks the probe gone."""
    tag = f"kprobes_{os.getpid()}_"
    r = _sh("insmod", dummy_module, "numdummies=0")
    assert r.returncode == 0, r.stderr
    seen = []
    with Session() as s:
        s.add("p:dummy:dummy_setup", seen.append)
        s.start()
        for i in range(3):
            assert _sh("ip", "link", "add", f"kpdummy{i}", "type", "dummy").returncode == 0
        for i in range(3):
            _sh("ip", "link", "del", f"kpdummy{i}")
        s.poll(1)
        r = _sh("rmmod", "dummy")
        assert r.returncode == 0, r.stderr
        s.run(duration=1)
    assert len(seen) == 3
    assert s.cleanup_problems == []
    assert _state(tfs, tag) == {k: [] for k in _state(tfs, tag)}


def test_cpu_offline_and_back_during_a_run(tfs, workload):
    cpu1 = "/sys/devices/system/cpu/cpu1/online"
    if not os.path.exists(cpu1):
        pytest.skip("no hot-pluggable cpu1")
    n = 200
    path = f"/nonexistent/kprobes-cpu-{uuid.uuid4().hex[:8]}"
    p = subprocess.Popen([workload, "-w", "open", str(n), path], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, text=True)
    seen = []
    try:
        with Session(pid=p.pid) as s:
            s.add("p:do_sys_openat2 path=+0($arg2):ustring", seen.append)
            s.start()
            with open(cpu1, "w") as f:
                f.write("0")
            try:
                p.stdin.write("g")
                p.stdin.close()
                s.poll(0.5)
            finally:
                with open(cpu1, "w") as f:      # back while the session runs
                    f.write("1")
            st = s.run(until=lambda: p.poll() is not None)
    finally:
        with open(cpu1, "w") as f:
            f.write("1")
        if p.poll() is None:
            p.kill()
        p.wait()
    assert sum(ev.path == path for ev in seen) == n
    assert st.lost == 0

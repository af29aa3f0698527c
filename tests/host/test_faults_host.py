"""Fault injection at the tracefs boundary: the k-th open/write/mkdir/rmdir fails.

For every k across a whole session life (define a uprobe and a uretprobe,
create the instance, set a tracepoint filter, arm, read, stop, undo) and each
errno: the error reaches the caller as one KprobesError with a one-line
message, or the session recovers (the fault hit a step that is retried, like an
undo step, or a read whose failure is harmless) and counts its workload
exactly; either way nothing of ours is left in the kernel. The CLI, driven by
``KPROBES_FAULT=K:ERRNO``, prints one ``error:`` line and exits 1, or succeeds.
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys

import pytest

from kprobes import Session
from kprobes.errors import KprobesError
from kprobes.kernel import faults
from kprobes.kernel.tracefs import Tracefs
from kprobes.probes.spec import parse_spec

ERRNOS = (errno.EBUSY, errno.ENOMEM, errno.ENOSPC, errno.EINVAL, errno.ENOENT)
N = 20


def kernel_state(tfs: Tracefs, tag: str) -> dict[str, object]:
    """What of this process could be in the kernel: instances, definitions, the
    tracepoint's global enable/filter/trigger."""
    st: dict[str, object] = {"instances": [i for i in tfs.instances() if tag in i]}
    for f in ("dynamic_events", "uprobe_events", "kprobe_events"):
        if tfs.has(f):
            st[f] = [ln for ln in tfs.read_lines(f) if tag in ln]
    for f in ("enable", "filter", "trigger"):
        st[f"getppid/{f}"] = tfs.read(f"events/syscalls/sys_enter_getppid/{f}")
    return st


def _blocked(argv: list[str]) -> subprocess.Popen:
    return subprocess.Popen([argv[0], "-w", *argv[1:]], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)


def life(workload: str) -> dict[str, int]:
    """One whole session; returns the events delivered per probe."""
    calls = _blocked([workload, "calls", str(N)])
    sysc = _blocked([workload, "getppid", str(N)])
    try:
        with Session() as s:
            s.add(f"u:{workload}:target_func a=%di:s64", name="entry")
            s.add(f"ur:{workload}:target_func ret=%ax:s64", name="ret")
            s.add(parse_spec("t:syscalls:sys_enter_getppid",
                             filter=f"common_pid == {sysc.pid}"), name="tp")
            s.start()
            for p in (calls, sysc):
                p.stdin.write("g")
                p.stdin.close()
            stats = s.run(until=lambda: calls.poll() is not None and sysc.poll() is not None)
            return {n: p.events for n, p in stats.probes.items()}
    finally:
        for p in (calls, sysc):
            if p.poll() is None:
                p.kill()
            p.wait()


@pytest.fixture
def tag() -> str:
    return f"kprobes_{os.getpid()}_"


def test_counting_run_without_faults(tracefs, workload, tag):
    plan = faults.Plan(10**9, errno.EBUSY)
    faults.install(plan)
    try:
        got = life(workload)
    finally:
        faults.remove()
    assert got == {"entry": N, "ret": N, "tp": N}
    ops = {op for op, _ in plan.log}
    assert ops == {"open", "write", "mkdir", "rmdir"}, plan.log


@pytest.mark.parametrize("err", ERRNOS, ids=[errno.errorcode[e] for e in ERRNOS])
def test_every_kth_operation_fails(tracefs, workload, tag, err):
    count = faults.Plan(10**9, err)
    faults.install(count)
    try:
        life(workload)
    finally:
        faults.remove()
    total = count.seen
    before = kernel_state(tracefs, tag)
    bad: list[str] = []
    outcomes = {"error": 0, "recovered": 0}
    for k in range(1, total + 1):
        plan = faults.Plan(k, err)
        faults.install(plan)
        try:
            got = life(workload)
        except KprobesError as e:
            outcomes["error"] += 1
            if "\n" in str(e) or not str(e):
                bad.append(f"k={k} {plan.fired}: message not one line: {str(e)!r}")
        except Exception as e:  # noqa: BLE001 - the point: nothing else may escape
            bad.append(f"k={k} {plan.fired}: {type(e).__name__}: {e}")
        else:
            outcomes["recovered"] += 1
            if got != {"entry": N, "ret": N, "tp": N}:
                bad.append(f"k={k} {plan.fired}: recovered but counted {got}")
        finally:
            faults.remove()
        if plan.fired is None:      # past the end (the read phase varies by a few reads)
            assert k > total - 10, f"k={k}: the fault never fired ({plan.seen} ops)"
            break
        after = kernel_state(tracefs, tag)
        if after != before:
            bad.append(f"k={k} {plan.fired}: left {after} (before: {before})")
            break
    assert not bad, "\n".join(bad)
    # both outcomes happen: faults while arming are errors, faults while undoing are retried
    assert outcomes["error"] and outcomes["recovered"], outcomes


CLI_KS = range(1, 60, 3)


@pytest.mark.parametrize("err", ("ENOMEM", "EBUSY"))
def test_cli_fault_one_error_line(tracefs, workload, tag, err):
    """``KPROBES_FAULT=K:ERRNO kprobes trace ...``: exit 1 with one ``error:`` line
    and no traceback, or a complete run; nothing left behind either way."""
    results = set()
    for k in CLI_KS:
        env = dict(os.environ, KPROBES_FAULT=f"{k}:{err}")
        p = subprocess.Popen([sys.executable, "-m", "kprobes", "trace", "--json",
                              f"u:{workload}:target_func a=%di:s64", "-c",
                              f"{workload} calls {N}"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        out, err_text = p.communicate(timeout=60)
        assert "Traceback" not in err_text, (k, err_text)
        if p.returncode == 1:
            errs = [ln for ln in err_text.splitlines() if ln.startswith("error:")]
            assert len(errs) == 1 and err_text.startswith("error:"), (k, err_text)
            results.add("error")
        else:
            assert p.returncode == 0, (k, p.returncode, err_text)
            lines = [json.loads(ln) for ln in out.splitlines() if ln.startswith("{")]
            assert sum("summary" not in ln for ln in lines) == N, (k, out[-500:])
            results.add("ok")
        left = kernel_state(tracefs, f"kprobes_{p.pid}_")
        assert not left["instances"] and not left["uprobe_events"], (k, err_text, left)
    assert results == {"error", "ok"}

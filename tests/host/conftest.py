"""Host tests: root and this machine's tracefs (uprobes, tracepoints)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from targets.build import build  # noqa: E402

from kprobes.kernel.tracefs import Tracefs  # noqa: E402
from kprobes.runtime import owner  # noqa: E402


def _ppid(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return None


def concerns_us(name: str) -> bool:
    """Is ``name`` (a group or instance) this test run's business: owned by
    this process, one of its descendants, or a dead owner (left behind)? A
    live session of an unrelated process (another test run or tracer on
    this machine) is not."""
    own = owner.parse_owner(name)
    if own is None:
        return True
    pid = own[0]
    if not owner.owner_alive(name):
        return True
    me = os.getpid()
    for _ in range(64):
        if pid == me:
            return True
        ppid = _ppid(pid)
        if not ppid:
            return False
        pid = ppid
    return False


def _group(line: str) -> str:
    return line.split(":", 1)[1].split("/", 1)[0] if ":" in line else ""


def _ours() -> tuple[list[str], list[str]]:
    tfs = Tracefs.open()
    lines = []
    for f in ("kprobe_events", "uprobe_events", "dynamic_events"):
        if tfs.has(f):
            lines += [ln for ln in tfs.read_lines(f) if owner.PREFIX in ln or "kptest" in ln]
    insts = [i for i in tfs.instances() if i.startswith(owner.PREFIX) or i.startswith("kptest")]
    lines = [ln for ln in lines if concerns_us(_group(ln))]
    insts = [i for i in insts if concerns_us(i)]
    return lines, insts


@pytest.fixture(scope="session")
def tracefs() -> Tracefs:
    if os.geteuid() != 0:
        pytest.skip("host tests need root")
    return Tracefs.open()


@pytest.fixture(scope="session")
def workload(tmp_path_factory: pytest.TempPathFactory) -> str:
    return build("workload", str(tmp_path_factory.mktemp("targets")))


@pytest.fixture(autouse=True)
def no_leftovers(request: pytest.FixtureRequest):
    """Nothing a test created may outlive it; remove it if it does, then fail the test.

    Only state that appeared during the test and belongs to this test run
    (see :func:`concerns_us`) counts: a session of another process running
    meanwhile on this machine is left alone.
    """
    if os.geteuid() != 0:
        yield
        return
    before_lines, before_insts = _ours()
    yield
    lines, insts = _ours()
    lines = [ln for ln in lines if ln not in before_lines]
    insts = [i for i in insts if i not in before_insts]
    if lines or insts:
        tfs = Tracefs.open()
        from kprobes.kernel import dynevents
        groups = {ln.split(":", 1)[1].split("/", 1)[0] for ln in lines}
        evs = [e for e in dynevents.list_defined(tfs) if e.group in groups]
        owner.remove_owned(tfs, insts, evs)
        pytest.fail(f"test left tracing state behind: events={lines} instances={insts}")


def run_cli(*args: str, input: str | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "kprobes", *args], capture_output=True, text=True,
                          input=input, timeout=timeout)

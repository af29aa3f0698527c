"""Fixtures and skip policy for tests that need real kprobes.

These tests run inside a QEMU VM on each kernel of the matrix
(``bash .ci/test.sh`` boots one VM per kernel with ``KPROBES_IN_VM=<name>``).

- Outside a VM on a kernel without ``kprobe_events`` the whole folder is
  skipped: "needs kprobes: run via bash .ci/test.sh (QEMU VM)".
- With ``KPROBES_REQUIRE_KERNEL=1`` (set in CI) every skip in this folder is
  turned into a failure, except tests marked ``may_skip`` for this kernel: a
  missing kernel feature must not pass silently.  A module-level skip becomes
  a collection error (run with ``--continue-on-collection-errors``).
- ``tracefs_root`` finds (mounting when needed) tracefs.
- ``no_leftovers`` (autouse) checks after each test that no group or instance
  named ``kprobes_*`` created during the test remains; it removes what it
  finds, then fails the test, so one broken test does not cascade.
"""

from __future__ import annotations

import errno
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

SKIP_REASON = "needs kprobes: run via bash .ci/test.sh (QEMU VM)"
IN_VM = os.environ.get("KPROBES_IN_VM", "")
REQUIRE = os.environ.get("KPROBES_REQUIRE_KERNEL") == "1"
OURS = "kprobes_"
EVENT_FILES = ("kprobe_events", "uprobe_events", "dynamic_events")
_DEF_RE = re.compile(r"^[a-z]\d*:(?P<group>[^/\s]+)/(?P<event>\S+)")

_tracefs_cache: list[Path | None] = []


def _find_tracefs() -> Path | None:
    for cand in ("/sys/kernel/tracing", "/sys/kernel/debug/tracing"):
        if Path(cand, "README").is_file():
            return Path(cand)
    return None


def _tracefs() -> Path | None:
    """tracefs, mounted on /sys/kernel/tracing if it was not (root only)."""
    if not _tracefs_cache:
        root = _find_tracefs()
        if root is None and os.geteuid() == 0 and Path("/sys/kernel/tracing").is_dir():
            subprocess.run(["mount", "-t", "tracefs", "nodev", "/sys/kernel/tracing"],
                           check=False, capture_output=True)
            root = _find_tracefs()
        _tracefs_cache.append(root)
    return _tracefs_cache[0]


def _has_kprobes() -> bool:
    root = _tracefs()
    return root is not None and (root / "kprobe_events").exists()


def pytest_runtest_setup(item: pytest.Item) -> None:
    if _has_kprobes():
        return
    if not IN_VM:
        pytest.skip(SKIP_REASON)
    pytest.skip(f"kernel in VM {IN_VM!r} has no kprobe_events (CONFIG_KPROBE_EVENTS)")


def _skip_allowed(item: pytest.Item) -> bool:
    mark = item.get_closest_marker("may_skip")
    return mark is not None and (not mark.args or IN_VM in mark.args)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    if not (REQUIRE and report.skipped) or hasattr(report, "wasxfail") or _skip_allowed(item):
        return
    reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
    report.outcome = "failed"
    report.longrepr = (f"KPROBES_REQUIRE_KERNEL=1 turns this skip into a failure "
                       f"(kernel {IN_VM or os.uname().release}): {reason}")


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector: pytest.Collector) -> Iterator[None]:
    # a module-level pytest.skip(..., allow_module_level=True) is a collection skip
    outcome = yield
    report = outcome.get_result()
    if REQUIRE and report.skipped:
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.outcome = "failed"
        report.longrepr = (f"KPROBES_REQUIRE_KERNEL=1 turns this module skip into a failure "
                           f"(kernel {IN_VM or os.uname().release}): {reason}")


@pytest.fixture(scope="session")
def workload(tmp_path_factory: pytest.TempPathFactory) -> str:
    """tests/targets/workload.c built once per run (gcc is slow under emulation);
    its C loops also replace Python workloads, whose start costs seconds in the VM."""
    import sys
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from targets.build import build
    return build("workload", str(tmp_path_factory.mktemp("targets")))


@pytest.fixture(scope="session")
def kernel_symbols():  # -> KernelSymbols
    """All of /proc/kallsyms parsed once per run (seconds under emulation)."""
    from kprobes.kernel.kallsyms import KernelSymbols
    return KernelSymbols.load()


@pytest.fixture(scope="session")
def tracefs_root() -> Path:
    """The tracefs mount point (``/sys/kernel/tracing``), mounted if needed."""
    root = _tracefs()
    if root is None:
        pytest.skip("tracefs is not mounted and cannot be mounted (needs root)")
    return root


# ------------------------------------------------------------- leftovers

def _write(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def _our_state(root: Path) -> tuple[set[tuple[str, str, str]], set[str]]:
    """(file, group, event) of our dynamic events, and our instance names."""
    events = set()
    seen = set()
    for name in EVENT_FILES:
        try:
            text = (root / name).read_text()
        except OSError:
            continue
        for line in text.splitlines():
            m = _DEF_RE.match(line)
            key = (m.group("group"), m.group("event")) if m else None
            if key and key[0].startswith(OURS) and key not in seen:
                seen.add(key)
                events.add((name, *key))
    try:
        instances = {d.name for d in (root / "instances").iterdir() if d.name.startswith(OURS)}
    except OSError:
        instances = set()
    return events, instances


def _remove(root: Path, events: set[tuple[str, str, str]], instances: set[str]) -> list[str]:
    """Disable and delete ``events``, remove ``instances``; return what failed."""
    problems = []
    tops = [root] + [d for d in (root / "instances").glob("*") if d.is_dir()]
    for top in tops:
        for _, group, event in events:
            enable = top / "events" / group / event / "enable"
            if enable.exists():
                try:
                    _write(enable, "0")
                except OSError as e:
                    problems.append(f"disable {enable}: {os.strerror(e.errno or 0)}")
    for name in instances:
        try:
            os.rmdir(root / "instances" / name)
        except OSError as e:
            problems.append(f"rmdir instances/{name}: {os.strerror(e.errno or 0)}")
    for file, group, event in events:
        try:
            _write(root / file, f"-:{group}/{event}\n")
        except OSError as e:
            if e.errno != errno.ENOENT:  # gone with an earlier file's delete
                problems.append(f"delete {group}/{event}: {os.strerror(e.errno or 0)}")
    return problems


@pytest.fixture(autouse=True)
def no_leftovers() -> Iterator[None]:
    """Fail a test that leaves a ``kprobes_*`` event or instance behind (and remove it)."""
    root = _tracefs() if _has_kprobes() else None
    if root is None:
        yield
        return
    before_events, before_instances = _our_state(root)
    yield
    events, instances = _our_state(root)
    events -= before_events
    instances -= before_instances
    if not events and not instances:
        return
    problems = _remove(root, events, instances)
    listed = sorted(f"{g}/{e} ({f})" for f, g, e in events) + \
        sorted(f"instances/{i}" for i in instances)
    msg = "test left behind: " + ", ".join(listed)
    if problems:
        msg += "; cleanup failed: " + "; ".join(problems)
    pytest.fail(msg)

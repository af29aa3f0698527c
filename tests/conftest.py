"""Test-wide markers.

Tests are marked by the folder they live in: ``tests/host`` -> ``host``
(root and this machine's tracefs), ``tests/kernel`` -> ``kernel`` (kprobes:
run inside the QEMU VM by ``bash .ci/test.sh``).  So ``-m "not kernel"``
selects what runs anywhere.  ``tests/host`` is skipped when not root.

``may_skip(*kernels)`` marks a kernel test that may legitimately skip on the
named kernels of the VM matrix (``KPROBES_IN_VM`` names, e.g. ``"6.1"``), or
anywhere when no name is given: the only skips that ``KPROBES_REQUIRE_KERNEL=1``
does not turn into failures (see ``tests/kernel/conftest.py``).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

_HERE = Path(__file__).resolve().parent
_FOLDER_MARKS = {"host": pytest.mark.host, "kernel": pytest.mark.kernel}


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "may_skip(*kernels): this kernel test may skip on these VM kernels (all when none "
        "given) even with KPROBES_REQUIRE_KERNEL=1")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        try:
            rel = Path(str(item.path)).resolve().relative_to(_HERE)
        except ValueError:
            continue
        mark = _FOLDER_MARKS.get(rel.parts[0]) if len(rel.parts) > 1 else None
        if mark is not None:
            item.add_marker(mark)


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("host") is not None and os.geteuid() != 0:
        pytest.skip("needs root (tracefs, uprobes): run as root")

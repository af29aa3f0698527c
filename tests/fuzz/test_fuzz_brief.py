"""A brief fuzz run of every target (KPROBES_FUZZ_SECONDS each, default 5): CI's
share of ``bash tests/fuzz/run.sh SECONDS``, counted in the test summary."""

from __future__ import annotations

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from fuzz import fuzz  # noqa: E402
from fuzz_targets import TARGETS  # noqa: E402

SECONDS = float(os.environ.get("KPROBES_FUZZ_SECONDS", "5"))


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_fuzz_target_runs_clean(name):
    # derandomized: CI's verdict must not depend on a random draw (the
    # exploratory, random runs are `bash tests/fuzz/run.sh SECONDS`)
    execs, _took, report = fuzz(TARGETS[name], SECONDS, derandomize=True)
    assert report is None, report
    assert execs > 0

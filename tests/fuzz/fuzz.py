"""Run the fuzz targets of tests/fuzz/fuzz_targets.py for a time budget each.

    python tests/fuzz/fuzz.py SECONDS [TARGET ...]

Hypothesis generates inputs (mutated seeds from tests/data and random ones) in
rounds until SECONDS have passed per target. An input fails if the parser
raises anything outside the KprobesError tree, or runs longer than the
per-input timeout (KPROBES_FUZZ_TIMEOUT, default 2 s: a hang). The failing
input, shrunk, is printed. One line per target:
``TARGET: N executions in S s, clean`` or ``... FAILED``. Exit status 1 on
any failure.
"""

from __future__ import annotations

import os
import signal
import sys
import time
import traceback

from hypothesis import HealthCheck, Phase, given, settings

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from fuzz_targets import TARGETS, Target  # noqa: E402

from kprobes.errors import KprobesError  # noqa: E402

TIMEOUT = float(os.environ.get("KPROBES_FUZZ_TIMEOUT", "2"))


class Hang(Exception):
    """The per-input timeout expired."""


_expired = False


def _alarm(signum: int, frame: object) -> None:
    global _expired
    _expired = True         # also when the Hang lands in code that swallows it
    raise Hang(f"input ran longer than {TIMEOUT} s")


def fuzz(t: Target, seconds: float, *, derandomize: bool = False
         ) -> tuple[int, float, str | None]:
    """Fuzz one target; returns (executions, seconds, failure report or None).
    ``derandomize``: the same inputs on every run (CI: a red run must be
    reproducible, and new finds come from the exploratory runs of run.sh)."""
    execs = 0

    def one(data: object) -> None:
        global _expired
        nonlocal execs
        execs += 1
        _expired = False
        signal.setitimer(signal.ITIMER_REAL, TIMEOUT)
        try:
            t.run(data)
        except KprobesError:
            pass
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
        if _expired:
            raise Hang(f"input ran longer than {TIMEOUT} s")

    test = settings(max_examples=400, deadline=None, database=None, derandomize=derandomize,
                    phases=(Phase.generate, Phase.shrink), print_blob=False,
                    suppress_health_check=list(HealthCheck))(given(t.strategy)(one))
    old = signal.signal(signal.SIGALRM, _alarm)
    start = time.monotonic()
    try:
        while time.monotonic() - start < seconds:
            try:
                test()
            except Exception:  # noqa: BLE001 - the report is the result
                return execs, time.monotonic() - start, traceback.format_exc(limit=-8)
    finally:
        signal.signal(signal.SIGALRM, old)
    return execs, time.monotonic() - start, None


def main(argv: list[str]) -> int:
    seconds = float(argv[0]) if argv else 10
    names = argv[1:] or list(TARGETS)
    failed = 0
    for name in names:
        execs, took, report = fuzz(TARGETS[name], seconds)
        if report:
            failed += 1
            print(f"{name}: FAILED after {execs} executions in {took:.0f} s\n{report}", flush=True)
        else:
            print(f"{name}: {execs} executions in {took:.0f} s, clean", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

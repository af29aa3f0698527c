"""Run a command with a bound that also holds when it leaves children behind."""

from __future__ import annotations

import os
import signal
import subprocess


def run_bounded(argv: list[str], timeout: float = 300, **kw) -> subprocess.CompletedProcess:
    """Like subprocess.run(capture_output=True, text=True, timeout=...), but on
    timeout the whole process group is killed (a grandchild holding the pipes
    would otherwise make the wait for output hang) and the output so far is
    put in the assertion message."""
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         start_new_session=True, **kw)
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        out, err = p.communicate()
        raise AssertionError(f"{argv} did not finish in {timeout} s; stderr: {err[-2000:]}; "
                             f"stdout: {out[-2000:]}") from None
    return subprocess.CompletedProcess(argv, p.returncode, out, err)

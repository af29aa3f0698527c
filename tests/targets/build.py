"""Build the tiny C programs that tests probe (gcc, into a temporary folder).

``$KPROBES_TEST_BUILD_CACHE`` (set by .ci/test.sh to a folder of the run's results,
which the guests see as an ``--rwdir``): binaries are kept there by a hash of
their source and flags, and a later build of the same target copies the binary
instead of compiling. The host's run fills it, and the guests, whose gcc starts
from the uncached 9p root under emulation (seconds per build), copy from it:
the guest runs the host's user space, so the binaries are the same.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess

HERE = os.path.dirname(os.path.abspath(__file__))


def build(name: str, outdir: str, *extra: str) -> str:
    """Compile tests/targets/NAME.c to OUTDIR/NAME (with -g, -O1) and return its path."""
    src = os.path.join(HERE, f"{name}.c")
    out = os.path.join(outdir, name)
    argv = ["gcc", "-O1", "-g", *extra, "-o", out, src]
    cache = os.environ.get("KPROBES_TEST_BUILD_CACHE")
    kept = None
    if cache:
        with open(src, "rb") as f:
            key = hashlib.sha256(f.read() + "\0".join(argv[:-3]).encode()).hexdigest()[:16]
        kept = os.path.join(cache, f"{name}-{key}")
        if os.path.exists(kept):
            shutil.copy2(kept, out)
            return out
    subprocess.run(argv, check=True)
    if kept:
        try:
            os.makedirs(os.path.dirname(kept), exist_ok=True)
            shutil.copy2(out, f"{kept}.{os.getpid()}")
            os.replace(f"{kept}.{os.getpid()}", kept)
        except OSError:
            pass
    return out

"""Build the tiny C programs that tests probe (gcc, into a temporary folder)."""

from __future__ import annotations

import os
import subprocess

HERE = os.path.dirname(os.path.abspath(__file__))


def build(name: str, outdir: str, *extra: str) -> str:
    """Compile tests/targets/NAME.c to OUTDIR/NAME (with -g, -O1) and return its path."""
    src = os.path.join(HERE, f"{name}.c")
    out = os.path.join(outdir, name)
    subprocess.run(["gcc", "-O1", "-g", *extra, "-o", out, src], check=True)
    return out

"""Instruction-boundary rules per architecture (one module each).

>>> current().__name__                       # doctest: +SKIP
'kprobes.kernel.arch.x86_64'
"""

from __future__ import annotations

import os
from types import ModuleType

from kprobes.errors import NotSupported

__all__ = ["current"]


def current(machine: str | None = None) -> ModuleType:
    """The rules module for ``machine`` (default: this one's ``uname -m``)."""
    machine = machine or os.uname().machine
    if machine == "x86_64":
        from . import x86_64
        return x86_64
    raise NotSupported(f"instruction boundaries are not known for {machine}",
                       feature=f"{machine} decoding",
                       hint="probe function entries (no offset, no post-handler)")

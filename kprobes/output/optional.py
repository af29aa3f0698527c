"""Optional third-party libraries, imported only when a feature needs them.

>>> pa = require("pyarrow", "arrow")                     # doctest: +SKIP

A missing one is a :class:`MissingExtra` (a :class:`~kprobes.errors.KprobesError`)
naming the ``pip install 'kprobes[EXTRA]'`` that brings it, so the command
line prints one ``error:`` line and a hint instead of a traceback.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from ..errors import KprobesError

__all__ = ["MissingExtra", "require"]


class MissingExtra(KprobesError, ImportError):
    """A feature needs a package that is not installed; ``extra`` names the extra."""

    def __init__(self, module: str, extra: str, feature: str) -> None:
        super().__init__(f"{feature} needs {module}, which is not installed",
                         hint=f"pip install 'kprobes[{extra}]'")
        self.module = module
        self.extra = extra


def require(module: str, extra: str, feature: str | None = None) -> ModuleType:
    """Import ``module`` or raise :class:`MissingExtra` naming ``kprobes[extra]``."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        if e.name is not None and e.name.split(".")[0] != module.split(".")[0]:
            raise      # the package is there but broken: show the real problem
        raise MissingExtra(module, extra, feature or module) from None

"""Stack addresses -> names: kernel (kallsyms) and user (task mappings + ELF).

>>> from kprobes.symbolize import Frame, kernel_symbolizer, UserSymbolizer  # doctest: +SKIP
"""

from __future__ import annotations

from .elfsyms import ElfSymtab, load_symtab
from .frame import Frame
from .kernel import KernelSymbolizer, kernel_symbolizer
from .user import Mapping, UserSymbolizer, read_maps

__all__ = ["Frame", "KernelSymbolizer", "kernel_symbolizer", "UserSymbolizer", "Mapping",
           "read_maps", "ElfSymtab", "load_symtab"]

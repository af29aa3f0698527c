"""``kprobes list [PATTERN]``: probeable kernel functions, tracepoints, or a binary's symbols."""

from __future__ import annotations

import argparse
import sys

from ..kernel.tracefs import Tracefs
from .complete import spec_completer

__all__ = ["register", "run"]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "list", help="list probeable functions, tracepoints or a binary's symbols",
        description="PATTERN is a glob. 'p:GLOB' (or 'r:GLOB') lists kernel functions, "
                    "'t:GLOB' or 't:GROUP:GLOB' tracepoints; a bare GLOB lists both. "
                    "With -b PATH, the function symbols of that binary or library.",
        epilog="examples:\n  kprobes list 'p:vfs_*'\n  kprobes list 't:syscalls:*openat*'\n"
               "  kprobes list -b /bin/bash 'read*'",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("pattern", nargs="?", help="glob, optionally prefixed with p: or t:"
                   ).completer = spec_completer
    p.add_argument("-b", "--binary", metavar="PATH", help="list function symbols of this ELF file")
    p.add_argument("--all", action="store_true",
                   help="kernel functions: also those absent from available_filter_functions")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    out = sys.stdout
    pattern = args.pattern
    if args.binary:
        from ..kernel.elf import list_symbols
        for s in list_symbols(args.binary, pattern):
            out.write(f"u:{args.binary}:{s.name}\n")
        return 0
    kind = None
    if pattern and pattern[:2] in ("p:", "r:", "t:"):
        kind, pattern = pattern[0], pattern[2:] or None
    tfs = Tracefs.open()
    if kind in (None, "t"):
        for tp in tfs.tracepoints(pattern):
            out.write(f"t:{tp}\n")
    if kind in (None, "p", "r"):
        from ..kernel.kallsyms import KernelSymbols
        keep = None if args.all else tfs.filter_functions()
        for ks in KernelSymbols.load().iter_functions(pattern, filter_functions=keep):
            out.write(f"{kind or 'p'}:{ks.spec}\n")
    return 0

"""Shell completion: probe specs, kernel symbols, tracepoints and ELF symbols.

Enabled with argcomplete (``eval "$(register-python-argcomplete kprobes)"``);
argcomplete itself is imported only while completing (``_ARGCOMPLETE`` in the
environment), so a normal start pays nothing. The completers are plain
functions of the word typed so far, usable and testable without argcomplete:

>>> complete_spec("u")
['u:', 'ur:']
>>> complete_spec("t:sched:sched_swi", events_root="/nonexistent")
[]
"""

from __future__ import annotations

import os
import re

from ..kernel.tracefs import DEFAULT_ROOTS

TYPE_CHECKING = False   # typing's, without importing typing at run time
if TYPE_CHECKING:
    from typing import Any

__all__ = ["complete_spec", "kernel_symbols", "tracepoints", "elf_symbols", "paths",
           "spec_completer", "symbol_completer", "autocomplete", "LIMIT"]

#: at most this many candidates per completion (a shell shows more than that badly)
LIMIT = 2000

_KINDS = ("p:", "r:", "u:", "ur:", "t:")


def kernel_symbols(prefix: str, path: str = "/proc/kallsyms", limit: int = LIMIT) -> list[str]:
    """Kernel text symbols (``t``/``T``) starting with ``prefix``, sorted, unique.

    One bytes scan of ``/proc/kallsyms`` (no per-line parsing); module symbols
    come as ``MOD:SYM``, which is also how a spec names them.
    """
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError:
        return []
    mod, _, sym = prefix.rpartition(":")
    pre = re.escape(sym.encode())
    if mod:
        rx = re.compile(rb"^[0-9a-f]+ [tT] (" + pre + rb"[^\s]*)\t\[" + re.escape(mod.encode())
                        + rb"\]$", re.M)
        names = {m.group(1).decode() for m in rx.finditer(data)}
        return sorted(f"{mod}:{n}" for n in names)[:limit]
    rx = re.compile(rb"^[0-9a-f]+ [tT] (" + pre + rb"[^\s]*)(?:\t\[([^\]\s]+)\])?$", re.M)
    out: set[str] = set()
    for m in rx.finditer(data):
        name = m.group(1).decode()
        if m.group(2) and m.group(2).startswith(b"__builtin"):
            continue
        out.add(name)
    return sorted(out)[:limit]


def _events_root() -> str | None:
    for r in DEFAULT_ROOTS:
        if os.path.isdir(os.path.join(r, "events")):
            return os.path.join(r, "events")
    return None


def tracepoints(prefix: str, events_root: str | None = None, limit: int = LIMIT) -> list[str]:
    """``GROUP:`` (while the group is typed) or ``GROUP:EVENT`` names from tracefs ``events/``."""
    root = events_root or _events_root()
    if root is None:
        return []
    group, sep, event = prefix.partition(":")
    try:
        if not sep:
            return sorted(g + ":" for g in os.listdir(root)
                          if g.startswith(group) and os.path.isdir(os.path.join(root, g)))[:limit]
        return sorted(f"{group}:{e}" for e in os.listdir(os.path.join(root, group))
                      if e.startswith(event) and os.path.isdir(os.path.join(root, group, e)))[:limit]
    except OSError:
        return []


def elf_symbols(path: str, prefix: str, limit: int = LIMIT) -> list[str]:
    """Function symbols of the ELF file ``path`` starting with ``prefix``."""
    from ..errors import KprobesError
    from ..kernel.elf import list_symbols
    try:
        syms = list_symbols(path, None)
    except (KprobesError, OSError):
        return []
    return sorted({s.name for s in syms if s.name.startswith(prefix)})[:limit]


def paths(prefix: str, limit: int = LIMIT) -> list[str]:
    """Files and folders (with a trailing ``/``) starting with ``prefix``."""
    d, base = os.path.split(prefix)
    try:
        names = os.listdir(d or ".")
    except OSError:
        return []
    out = []
    for n in sorted(names):
        if n.startswith(base) and (base.startswith(".") or not n.startswith(".")):
            full = os.path.join(d, n)
            out.append(full + "/" if os.path.isdir(full) else full)
    return out[:limit]


def complete_spec(word: str, *, kallsyms: str = "/proc/kallsyms",
                  events_root: str | None = None) -> list[str]:
    """Completions of a probe spec typed so far (``p:``, ``r[N]:``, ``u:``, ``ur:``, ``t:``)."""
    kind, sep, rest = word.partition(":")
    if not sep:
        return [k for k in _KINDS if k.startswith(word)]
    if kind in ("t", "tp"):
        return [f"{kind}:{x}" for x in tracepoints(rest, events_root)]
    if kind in ("u", "ur"):
        path, sep2, sym = rest.partition(":")
        if not sep2:   # still typing the path; a file also offers PATH:
            out = [f"{kind}:{p}" for p in paths(path)]
            if os.path.isfile(path):
                out.append(f"{kind}:{path}:")
            return out
        return [f"{kind}:{path}:{s}" for s in elf_symbols(path, sym)]
    if re.fullmatch(r"[pr]\d*|f", kind):
        if " " in rest:   # typing fetch args: nothing to offer
            return []
        return [f"{kind}:{s}" for s in kernel_symbols(rest, kallsyms)]
    return []


def spec_completer(prefix: str, **_: Any) -> list[str]:
    """argcomplete completer for SPEC arguments (also ``kprobes list`` patterns)."""
    return complete_spec(prefix)


def symbol_completer(prefix: str, **_: Any) -> list[str]:
    """argcomplete completer for a bare kernel function name (``kprobes info``)."""
    return kernel_symbols(prefix)


def autocomplete(parser: Any) -> None:
    """Answer the shell's completion request (exits) when argcomplete asks; else return."""
    if "_ARGCOMPLETE" not in os.environ:
        return
    try:
        import argcomplete
    except ImportError:
        return
    argcomplete.autocomplete(parser)

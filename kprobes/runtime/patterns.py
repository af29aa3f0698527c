"""Probe patterns as bcc's funccount, funclatency and stackcount take them.

``[p:][MOD:]GLOB`` kernel functions, ``t:GROUP:GLOB`` tracepoints,
``u:LIB:GLOB`` (or bcc's ``LIB:GLOB``, e.g. ``c:malloc``) functions of a
binary or library; ``regex=True`` reads the last part as a regular
expression (bcc's ``-r``) instead of a ``*`` glob. :func:`expand_pattern`
returns one :class:`Match` per function, before anything is created in
the kernel, and refuses a pattern matching nothing or more than ``limit``
functions (bcc's probe limit, 1000) with one error and a hint.

>>> split_pattern("vfs_*"), split_pattern("t:sched:sched_*"), split_pattern("c:malloc")
(('p', None, 'vfs_*'), ('t', 'sched', 'sched_*'), ('u', 'c', 'malloc'))
>>> split_pattern("p:ext4:ext4_*"), split_pattern("u:/bin/bash:read*")
(('p', 'ext4', 'ext4_*'), ('u', '/bin/bash', 'read*'))
"""

from __future__ import annotations

import re
from fnmatch import translate

from ..errors import KprobesError, SpecError
from ..probes.model import KProbe, Probe, Tracepoint, UProbe
from ..values import Frozen, _set

TYPE_CHECKING = False   # typing's, without importing typing at run time
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from ..kernel.kallsyms import Sym

__all__ = ["Match", "PROBE_LIMIT", "expand_pattern", "split_pattern"]

#: at most this many probes per pattern (bcc's ``BPF.get_probe_limit()``)
PROBE_LIMIT = 1000


class Match(Frozen):
    """One function (or tracepoint) a pattern matched: ``label`` is what the
    tools print (``vfs_read``, ``sched:sched_switch``, ``malloc``)."""

    __slots__ = _fields = ("label", "probe")
    label: str
    probe: Probe

    def __init__(self, label: str, probe: Probe) -> None:
        _set(self, "label", label)
        _set(self, "probe", probe)


def split_pattern(pattern: str) -> tuple[str, str | None, str]:
    """``(kind, where, glob)``: kind ``p`` / ``t`` / ``u``; where is the kernel
    module, tracepoint group or binary (None: any / vmlinux)."""
    text = pattern.strip()
    if not text:
        raise SpecError("empty pattern", hint="e.g. 'vfs_*', 't:sched:*', 'c:malloc'")
    kind = explicit = None
    if text[:2] in ("p:", "t:", "u:"):
        kind = explicit = text[0]
        text = text[2:]
    where, sep, glob = text.rpartition(":")
    if kind is None:
        kind = "u" if sep else "p"      # bcc's LIB:PATTERN
    if explicit == "u" and not sep:
        raise SpecError(f"{pattern!r}: a user pattern is u:LIB:PATTERN",
                        hint="e.g. u:c:malloc or u:/bin/bash:read*")
    if not glob:
        raise SpecError(f"{pattern!r}: nothing to match after the last ':'",
                        hint="e.g. 'vfs_*', 't:sched:*', 'u:c:malloc'")
    return kind, where or None, glob


def _matcher(glob: str, regex: bool) -> re.Pattern[str]:
    try:
        return re.compile(glob if regex else translate(glob))
    except re.error as e:
        raise SpecError(f"bad regular expression {glob!r}: {e}",
                        hint="-r takes a Python regular expression, e.g. '^vfs_(read|write)$'"
                        ) from None


def _match(rx: re.Pattern[str], name: str, regex: bool) -> bool:
    return bool(rx.search(name) if regex else rx.match(name))


def expand_pattern(pattern: str, *, regex: bool = False, limit: int = PROBE_LIMIT,
                   tracefs_root: str | None = None) -> list[Match]:
    """The probes ``pattern`` stands for, sorted by label.

    Kernel functions a wildcard matches are those ftrace can trace
    (``available_filter_functions``, where readable) and not on the kprobe
    blacklist (an exact name is the kernel's to refuse); a name defined more than
    once (static functions) gets one probe per address, all with the same label.
    """
    kind, where, glob = split_pattern(pattern)
    rx = _matcher(glob, regex)
    wild = regex or any(c in glob for c in "*?[")
    out: list[Match] | None = None
    by_name: dict[str, list] = {}
    if kind == "t":
        out = _tracepoints(where, rx, regex, tracefs_root)
        what, listing = "tracepoint", f"kprobes list 't:{where or '*'}:*'"
    elif kind == "u":
        path, out = _user(where or "", rx, regex)
        what, listing = "function", f"kprobes list -b {path} '*'"
    else:       # counted first: no probe models made for thousands of names
        by_name = _kernel(where, glob, rx, regex, tracefs_root) if wild else _kernel_exact(where, glob)
        what, listing = "kernel function", f"kprobes list 'p:{glob if wild else glob + '*'}'"
    labels = {m.label for m in out} if out is not None else set(by_name)
    n = len(out) if out is not None else sum(len(v) for v in by_name.values())
    if not n:
        hint = f"see what there is: {listing}"
        if kind == "p" and not wild:
            from ..kernel.kallsyms import KernelSymbols
            near = KernelSymbols.load().suggest(glob)
            if near:
                hint = "did you mean " + ", ".join(near) + "?  " + hint
        raise KprobesError(f"{pattern!r} matches no {what}"
                           + (" that can be probed" if kind == "p" else ""), hint=hint)
    if n > limit:
        probes = f" ({n} probes)" if n != len(labels) else ""
        raise KprobesError(f"{pattern!r} matches {len(labels)} {what}s{probes}: "
                           f"at most {limit} probes at once",
                           hint=f"narrow the pattern; {listing} shows what it matches")
    return out if out is not None else _kernel_matches(by_name)


def _tracepoints(group: str | None, rx: re.Pattern[str], regex: bool,
                 root: str | None) -> list[Match]:
    from ..kernel.tracefs import Tracefs
    out = []
    for full in Tracefs.open(root).tracepoints():
        g, _, e = full.partition(":")
        if group is not None and not _match(re.compile(translate(group)), g, False):
            continue
        if _match(rx, e, regex):
            out.append(Match(full, Tracepoint(group=g, event=e)))
    return out


def _user(lib: str, rx: re.Pattern[str], regex: bool) -> tuple[str, list[Match]]:
    from ..kernel.elf import find_binary, list_symbols
    try:
        path = find_binary(lib)
    except KprobesError:
        if "/" in lib or lib.startswith("lib"):
            raise
        path = find_binary(f"lib{lib}.so")       # bcc's c:malloc, pthread:...
    seen: dict[str, Match] = {}
    for s in list_symbols(path):
        if s.name not in seen and s.size and _match(rx, s.name, regex):
            seen[s.name] = Match(s.name, UProbe(path=path, symbol=s.name))
    return path, sorted(seen.values(), key=lambda m: m.label)


def _kernel(module: str | None, glob: str, rx: re.Pattern[str], regex: bool,
            root: str | None) -> dict[str, list]:
    """Probeable kernel functions matching: name -> its kallsyms entries."""
    from ..kernel.blacklist import Blacklist
    from ..kernel.tracefs import Tracefs
    found = [s for s in _candidates(module, glob, regex) if _match(rx, s.name, regex)]
    ftraceable: Callable[[str], bool] | None
    try:
        tfs = Tracefs.open(root)
        if len(found) > 256:    # many names: one set of the file's names, not a search each
            keep = tfs.filter_functions()
            ftraceable = None if keep is None else keep.__contains__
        else:
            ftraceable = tfs.filter_function_test()
    except KprobesError:
        ftraceable = None
    black = Blacklist.try_load()
    by_name: dict[str, list] = {}
    for s in found:
        if ftraceable is not None and not ftraceable(s.name):
            continue
        if black is not None and black.contains(s.addr):
            continue
        by_name.setdefault(s.name, []).append(s)
    return by_name


def _candidates(module: str | None, glob: str, regex: bool) -> Iterable[Sym]:
    """Text symbols that may match: by the glob, found in kallsyms' bytes; a regular
    expression is matched against every name of the parsed table."""
    if regex:
        from ..kernel.kallsyms import KernelSymbols
        return KernelSymbols.load().iter_functions(f"{module}:*" if module else None)
    from ..kernel.symlookup import KallsymsLookup
    return KallsymsLookup.load().functions(glob, module)


def _kernel_exact(module: str | None, name: str) -> dict[str, list]:
    """One name, searched in kallsyms' bytes (not all of it parsed)."""
    from ..kernel.kallsyms import TEXT_TYPES
    from ..kernel.symlookup import KallsymsLookup
    found = [s for s in KallsymsLookup.load().lookup(name, module) if s.type in TEXT_TYPES]
    return {name: found} if found else {}


def _kernel_matches(by_name: dict[str, list]) -> list[Match]:
    out = []
    for name, found in sorted(by_name.items()):
        if len(found) == 1:         # a unique name needs no MOD: (nor takes an odd one: 9pnet)
            out.append(Match(name, KProbe(name)))
        else:
            out += [Match(name, KProbe(None, address=s.addr)) for s in found]
    return out

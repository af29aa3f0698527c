"""Can a kprobe go at ``sym+offset``?  The kernel's own checks, asked without the kernel.

:func:`probeable` raises :class:`~kprobes.errors.SymbolError` for what
``register_kprobe`` would refuse (``check_kprobe_address_safe``,
``within_kprobe_blacklist``, ``arch_check_ftrace_location``, the kretprobe
entry rule); :func:`probe_info` reports the same plus informational notes.
"""

from __future__ import annotations

from collections.abc import Callable

from kprobes.errors import NotSupported, SymbolError

from ..values import Value
from .blacklist import Blacklist, BlacklistEntry
from .kallsyms import Sym, SymbolTable
from .tracefs import Tracefs

__all__ = ["ProbeInfo", "probe_info", "probeable"]


class ProbeInfo(Value):
    """What we know about probing ``sym+offset``; ``problems`` is what the kernel would refuse."""

    __slots__ = _fields = ("sym", "offset", "address", "size", "blacklisted", "blacklist_known",
                           "ftrace_traceable", "problems", "hints", "notes")

    def __init__(self, sym: Sym, offset: int, address: int, size: int | None,
                 blacklisted: BlacklistEntry | None = None, blacklist_known: bool = False,
                 ftrace_traceable: bool | None = None, problems: list[str] | None = None,
                 hints: list[str] | None = None, notes: list[str] | None = None) -> None:
        self.sym = sym
        self.offset = offset
        self.address = address
        self.size = size
        self.blacklisted = blacklisted
        self.blacklist_known = blacklist_known
        self.ftrace_traceable = ftrace_traceable
        self.problems = [] if problems is None else problems
        self.hints = [] if hints is None else hints
        self.notes = [] if notes is None else notes

    @property
    def ok(self) -> bool:
        return not self.problems


def probe_info(sym: Sym, offset: int = 0, *, kallsyms: SymbolTable,
               blacklist: Blacklist | None = None, tracefs_root: str | None = None,
               retprobe: bool = False, filter_functions: frozenset[str] | None = None,
               notes: bool = True) -> ProbeInfo:
    """Check ``sym+offset`` the way ``register_kprobe`` would, without asking the kernel.

    ``blacklist`` None means unknown (skipped, noted).  ``tracefs_root`` enables
    the ftrace checks (``available_filter_functions[_addrs]``); unreadable files
    are noted, never errors.  ``notes=False`` skips what only makes notes (the
    ``available_filter_functions`` lookup).
    """
    size = kallsyms.size(sym) if not kallsyms.addresses_hidden else None
    info = ProbeInfo(sym, offset, sym.addr + offset, size)

    def bad(problem: str, hint: str) -> None:
        info.problems.append(problem)
        info.hints.append(hint)

    if not sym.is_text:
        bad(f"{sym.spec} is a data symbol (type {sym.type!r}), not a function",
            "probe a function (a text symbol, type T or t)")
    if sym.is_pseudo:
        bad(f"{sym.spec} is JIT or trampoline code, not kernel or module text",
            "probe the kernel function that calls it instead")
    elif sym.module is None and not kallsyms.addresses_hidden:
        if kallsyms.in_init_text(info.address):
            bad(f"{sym.spec} is __init code, freed after boot", "probe a function used at run time")
        elif kallsyms.in_core_text(info.address) is False:
            bad(f"{sym.spec} is not in kernel text (_stext.._etext)", "probe a function")
    if offset < 0:
        bad(f"negative offset {offset}", "offsets count from the function start")
    elif size is not None and offset >= size:
        bad(f"offset +{offset} is beyond the end of {sym.spec} (size {size})",
            f"use an offset below {size}")
    if retprobe and offset:
        bad(f"a return probe must be on the function entry, not +{offset}",
            f"use {sym.spec} without an offset")
    _check_blacklist(info, kallsyms, blacklist, bad)
    if tracefs_root is not None and sym.is_text:
        _check_ftrace(info, Tracefs(tracefs_root), filter_functions, bad, notes)
    return info


def _check_blacklist(info: ProbeInfo, kallsyms: SymbolTable, blacklist: Blacklist | None,
                     bad: Callable[[str, str], None]) -> None:
    sym = info.sym
    if blacklist is None:
        info.notes.append("kprobe blacklist unknown (debugfs kprobes/blacklist not readable)")
        return
    info.blacklist_known = True
    entry = None
    if blacklist.addresses_hidden:
        if sym.name in blacklist.names:
            entry = next(e for e in blacklist.entries if e.name == sym.name)
    else:
        entry = blacklist.entry_at(info.address)
        base = sym.name.partition(".")[0]
        if entry is None and base != sym.name:
            # within_kprobe_blacklist(): foo.cold / foo.isra.0 count as foo
            for b in kallsyms.lookup(base, sym.module or "vmlinux")[:1]:
                entry = blacklist.entry_at(b.addr)
    if entry is not None:
        info.blacklisted = entry
        bad(f"{sym.spec} is in the kprobe blacklist ({entry})",
            "the kernel never probes it (NOKPROBE_SYMBOL, noinstr or entry code); "
            "probe a caller or a tracepoint")


def _check_ftrace(info: ProbeInfo, tfs: Tracefs, filter_functions: frozenset[str] | None,
                  bad: Callable[[str, str], None], notes: bool) -> None:
    sym = info.sym
    if filter_functions is not None:
        info.ftrace_traceable = sym.name in filter_functions
    elif notes:
        info.ftrace_traceable = tfs.is_filter_function(sym.name)
    if info.ftrace_traceable is None and notes:
        info.notes.append("available_filter_functions not readable: ftrace status unknown")
    elif info.ftrace_traceable is False:
        info.notes.append(f"{sym.name} is not in available_filter_functions (notrace or "
                          "not ftrace-able): a kprobe may still work, the kernel decides")
    if info.offset <= 0:
        return
    locs = tfs.ftrace_locations(sym.name)
    if not locs:
        return
    from .arch import current
    try:
        size = current().FTRACE_INSN_SIZE
    except NotSupported:
        return
    for loc in locs.get(sym.name, []):
        if loc < info.address < loc + size:
            at = loc - sym.addr
            bad(f"offset +{info.offset} is inside the ftrace call site at +{at} of {sym.spec}",
                f"use +{at} or +{at + size}")


def probeable(sym: Sym, offset: int = 0, *, kallsyms: SymbolTable,
              blacklist: Blacklist | None = None, tracefs_root: str | None = None,
              retprobe: bool = False, filter_functions: frozenset[str] | None = None) -> None:
    """Raise SymbolError (with the reason and a hint) if the kernel would refuse a kprobe here.

    >>> from kprobes.kernel.kallsyms import KernelSymbols
    >>> ks = KernelSymbols.parse("ffffffff81000000 T _stext\\nffffffff81000010 D jiffies\\n"
    ...                          "ffffffff81000020 T _etext\\n")
    >>> probeable(ks.resolve("jiffies"), kallsyms=ks)
    Traceback (most recent call last):
    ...
    kprobes.errors.SymbolError: jiffies is a data symbol (type 'D'), not a function
    """
    info = probe_info(sym, offset, kallsyms=kallsyms, blacklist=blacklist,
                      tracefs_root=tracefs_root, retprobe=retprobe,
                      filter_functions=filter_functions, notes=False)
    if info.problems:
        raise SymbolError(info.problems[0], symbol=sym.spec, hint=info.hints[0])

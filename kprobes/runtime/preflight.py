"""Pre-flight checks: refuse what the kernel would refuse, before anything is created.

Kernel probes: the symbol (unknown -> suggestions, ambiguous -> ``MOD:SYM``
or addresses, data, ``__init``, the kprobe blacklist), the offset (inside
the function, on an instruction boundary), argument names compiled from BTF,
and the place of a post-handler probe (the next instruction). User probes:
the binary and the symbol's file offset.
"""

from __future__ import annotations

import os

from ..errors import NotSupported, SymbolError
from ..kernel.tracefs import Tracefs
from ..probes.model import KProbe, KRetProbe, Probe, UProbe
from .handle import ProbeHandle, Resolved

TYPE_CHECKING = False   # typing's, without importing typing at run time
if TYPE_CHECKING:
    from typing import Any

__all__ = ["Preflight", "resolve_location"]


class Preflight:
    """Kernel symbol tables loaded once per session start."""

    def __init__(self, tfs: Tracefs) -> None:
        self.tfs = tfs
        self._ksyms: Any = None
        self._blacklist: Any = None

    def resolve(self, h: ProbeHandle, parent: Resolved | None = None) -> Resolved:
        """Everything about ``h`` that can be refused or resolved before
        anything is created; ``h`` itself is left as it is. A post-handler
        probe (``h.post_of``) takes its args as resolved for that kprobe
        (``parent``): argument names only compile at the function entry."""
        p = h.probe
        module = None
        enums: dict[str, dict[int, str]] = {}
        if isinstance(p, (KProbe, KRetProbe)) and p.address is None:
            p, module = self.kernel_probe(h, parent.probe if parent else None)
            p, enums = self.btf_args(p, module)
            if parent is not None:
                enums = {**parent.enums, **enums}
        location = resolve_location(p) if p.dynamic else None
        return Resolved(p, module, enums, location)

    def kernel_probe(self, h: ProbeHandle, parent: Probe | None = None
                     ) -> tuple[Probe, str | None]:
        """Refuse, with reasons and hints, what the kernel would refuse (or
        what would mislead): unknown/ambiguous/data symbols, the blacklist,
        offsets off an instruction boundary; and place post-handler probes.

        Returns the probe (a post-handler probe: at the next instruction) and
        the module of the probed function. ``parent``: the resolved probe of
        the kprobe whose post-handler ``h`` is (its args are fetched again)."""
        from ..kernel.blacklist import load_blacklist
        from ..kernel.probeable import probeable
        from ..kernel.symlookup import KallsymsLookup
        p = h.probe
        assert isinstance(p, (KProbe, KRetProbe))
        if self._ksyms is None:
            self._ksyms = KallsymsLookup.load()
            # no kprobe_events, no blacklist: do not mount debugfs to look
            self._blacklist = load_blacklist() if self.tfs.has("kprobe_events") else None
        ks = self._ksyms
        loc = (h.post_of.probe if h.post_of else p).location()
        sym, off = ks.locate(loc)
        probeable(sym, off, kallsyms=ks, blacklist=self._blacklist,
                  tracefs_root=self.tfs.root, retprobe=p.is_return)
        if h.post_of is None and not off:
            return p, sym.module
        try:
            from ..kernel.arch import current
            from ..kernel.kcore import read_kernel_text
            arch = current()
            code = read_kernel_text(sym.addr, off + 16)
        except NotSupported as e:
            if h.post_of is None:
                return p, sym.module   # the boundary check is a courtesy; the kernel checks too
            raise NotSupported(f"a post-handler needs the kernel's code: {e}", feature=e.feature,
                               hint=e.hint) from None
        if h.post_of is None:
            arch.instruction_at(sym.addr, off, code)   # SymbolError if mid-instruction
            return p, sym.module
        nxt = arch.post_location(sym.addr, off, code, ks.function_at)
        args = (parent or h.post_of.probe).args
        return KProbe(sym.name, nxt - sym.addr, module=sym.module,
                      args=args, filter=p.filter, name=p.name), sym.module

    def btf_args(self, p: Probe, found_in: str | None) -> tuple[Probe, dict[str, dict[int, str]]]:
        """Compile argument names (``filename``, ``how->flags``, ``$retval``) from BTF:
        the probe with plain fetch args, and the enum names of its args.
        ``found_in``: the module kallsyms placed the function in."""
        from ..probes.btfargs import resolve_btf_args

        def btf_for(module: str | None) -> Any:
            from ..btf import BTF
            module = module or found_in     # a module function found in kallsyms
            try:
                return BTF.for_kernel(module)
            except OSError as e:
                raise NotSupported(f"no BTF for {module or 'vmlinux'}: {e.strerror}",
                                   feature="btf", hint="argument names need "
                                   "/sys/kernel/btf (CONFIG_DEBUG_INFO_BTF); use $argN "
                                   "or registers") from None
        res = resolve_btf_args(p, btf_for, arch=os.uname().machine)
        return res.probe, res.enums


def resolve_location(p: Probe) -> str | None:
    """Where the probe goes, as written in the definition (user symbols -> file offsets)."""
    if isinstance(p, UProbe) and p.symbol is not None:
        from ..kernel.elf import resolve_uprobe
        return resolve_uprobe(p.path, p.symbol, p.offset).location
    if isinstance(p, UProbe):
        path = os.path.realpath(p.path)
        if not os.path.exists(path):
            raise SymbolError(f"no such file: {p.path}", symbol=p.path)
        return f"{path}:0x{p.offset:x}"
    if isinstance(p, (KProbe, KRetProbe)):
        return p.location()
    return None


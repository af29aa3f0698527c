"""``kprobes info [TARGET]``: what this kernel supports; a function's prototype or a type."""

from __future__ import annotations

import argparse
import os

from .complete import symbol_completer

__all__ = ["register", "run"]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("info", help="kernel support, or a function prototype / struct from BTF",
                       description="Without TARGET: what this kernel supports and lacks. With a "
                                   "function name: its prototype from BTF and whether it can be "
                                   "probed. With 'struct NAME' (or union/enum): its members.")
    p.add_argument("target", nargs="?", help="FUNCTION, 'struct NAME', 'union NAME', 'enum NAME'"
                   ).completer = symbol_completer
    p.set_defaults(func=run)


def _yn(b: bool) -> str:
    return "yes" if b else "no"


def run(args: argparse.Namespace) -> int:
    if args.target:
        from ..errors import BTFError
        from .info_btf import describe
        try:
            print(describe(args.target))
        except BTFError as e:
            if " " not in args.target.strip():
                from ..kernel.symlookup import KallsymsLookup
                near = KallsymsLookup.load().suggest(args.target.split(":")[-1])
                if near:
                    e.hint = f"did you mean: {', '.join(near)}?"
            raise
        if args.target.split()[0] not in ("struct", "union", "enum", "typedef"):
            print(probe_status(args.target.removeprefix("kprobe:")))
        return 0
    from ..kernel.features import probe_features
    f = probe_features()
    uname = os.uname()
    print(f"kernel:            {uname.release} ({uname.machine})")
    print(f"tracefs:           {f.tracefs or 'not available'}")
    print(f"kprobes:           {_yn(f.kprobes)}"
          + ("" if f.kprobes else "  (no kprobe_events: CONFIG_KPROBE_EVENTS is off)"))
    print(f"uprobes:           {_yn(f.uprobes)}")
    print(f"tracepoints:       {f.tracepoints}")
    print(f"dynamic_events:    {_yn(f.dynamic_events)}")
    print(f"fprobe events:     {_yn(f.fprobes)}")
    print(f"BTF arg names:     {_yn(f.btf_args)}  (kernel resolves 'filename', 'how->flags')")
    print(f"BTF:               {_yn(f.btf)}")
    print(f"kallsyms:          {'addresses visible' if f.kallsyms_addresses else 'addresses hidden'}")
    print(f"/proc/kcore:       {_yn(f.kcore)}  (needed for kprobe post-handlers)")
    if f.lockdown:
        print(f"lockdown:          {f.lockdown}")
    print(f"summary:           {f.summary()}")
    return 0


def probe_status(func: str) -> str:
    """Whether and how FUNC can be probed on this kernel, in one or two lines."""
    from ..errors import KprobesError
    from ..kernel.blacklist import load_blacklist
    from ..kernel.probeable import probe_info
    from ..kernel.symlookup import KallsymsLookup
    from ..kernel.tracefs import Tracefs
    try:
        tfs = Tracefs.open()
        ks = KallsymsLookup.load()
        sym = ks.resolve(func, text_only=True)
    except KprobesError as e:
        return f"probe: unknown ({e})"
    # without kprobe_events there is no blacklist: do not mount debugfs to look
    bl = load_blacklist() if tfs.has("kprobe_events") else None
    info = probe_info(sym, 0, kallsyms=ks, blacklist=bl, tracefs_root=tfs.root)
    where = f"{sym.spec} at {sym.addr:#x}" if sym.addr else sym.spec
    if info.problems:
        return f"probe: no - {info.problems[0]}\nhint: {info.hints[0]}"
    how = ("entry via ftrace (kprobes on ftrace)" if info.ftrace_traceable
           else "int3 breakpoint (not in available_filter_functions)"
           if info.ftrace_traceable is False else "kprobe")
    lines = [f"probe: yes - p:{sym.spec} / r:{sym.spec}: {how}; {where}"]
    if not tfs.has("kprobe_events"):
        lines.append("note: this kernel has no kprobes (CONFIG_KPROBE_EVENTS is off): "
                     "try kprobes vm -- kprobes trace p:" + sym.spec)
    lines += [f"note: {n}" for n in info.notes if "blacklist unknown" not in n or tfs.has(
        "kprobe_events")]
    return "\n".join(lines)

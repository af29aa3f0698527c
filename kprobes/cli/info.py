"""``kprobes info [TARGET]``: what this kernel supports; a function's prototype or a type."""

from __future__ import annotations

import argparse
import platform

from ..kernel.features import probe_features

__all__ = ["register", "run"]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("info", help="kernel support, or a function prototype / struct from BTF",
                       description="Without TARGET: what this kernel supports and lacks. With a "
                                   "function name: its prototype from BTF and whether it can be "
                                   "probed. With 'struct NAME' (or union/enum): its members.")
    p.add_argument("target", nargs="?", help="FUNCTION, 'struct NAME', 'union NAME', 'enum NAME'")
    p.set_defaults(func=run)


def _yn(b: bool) -> str:
    return "yes" if b else "no"


def run(args: argparse.Namespace) -> int:
    if args.target:
        from .info_btf import describe
        print(describe(args.target))
        return 0
    f = probe_features()
    print(f"kernel:            {platform.release()} ({platform.machine()})")
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

"""What this kernel supports, found by looking (never by version numbers).

>>> f = probe_features("/nonexistent")     # doctest: +SKIP
"""

from __future__ import annotations

import os

from ..values import Value
from .tracefs import Tracefs

__all__ = ["Features", "probe_features"]


class Features(Value):
    __slots__ = _fields = ("tracefs", "kprobes", "uprobes", "dynamic_events", "fprobes",
                           "btf_args", "kretprobe_args", "tracepoints", "btf",
                           "kallsyms_addresses", "kcore", "lockdown", "notes")

    def __init__(self, tracefs: str | None, kprobes: bool = False, uprobes: bool = False,
                 dynamic_events: bool = False, fprobes: bool = False, btf_args: bool = False,
                 kretprobe_args: bool = False, tracepoints: int = 0, btf: bool = False,
                 kallsyms_addresses: bool = False, kcore: bool = False,
                 lockdown: str | None = None, notes: list[str] | None = None) -> None:
        self.tracefs = tracefs
        self.kprobes = kprobes
        self.uprobes = uprobes
        self.dynamic_events = dynamic_events
        self.fprobes = fprobes
        self.btf_args = btf_args  # kernel resolves BTF names in probe args
        self.kretprobe_args = kretprobe_args  # $argN on return probes
        self.tracepoints = tracepoints
        self.btf = btf
        self.kallsyms_addresses = kallsyms_addresses
        self.kcore = kcore
        self.lockdown = lockdown
        self.notes = [] if notes is None else notes

    def summary(self) -> str:
        if not self.tracefs:
            return "no tracefs: nothing can be traced"
        have = [n for n, ok in (("kprobes", self.kprobes), ("uprobes", self.uprobes),
                                ("tracepoints", self.tracepoints > 0)) if ok]
        if not self.kprobes:
            return ("no kprobes: CONFIG_KPROBE_EVENTS is off; "
                    + (" and ".join(have) + " work" if have else "nothing else works"))
        return " and ".join(have) + " work"


def probe_features(root: str | None = None) -> Features:
    try:
        tfs = Tracefs.open(root)
    except Exception:  # noqa: BLE001 - reported as "no tracefs"
        return Features(tracefs=None)
    f = Features(tracefs=tfs.root)
    f.kprobes = tfs.has("kprobe_events")
    f.uprobes = tfs.has("uprobe_events")
    f.dynamic_events = tfs.has("dynamic_events")
    readme = ""
    try:
        readme = tfs.read("README")
    except Exception:  # noqa: BLE001
        pass
    f.fprobes = "f[:[<group>/][<event>]]" in readme or "\tf[:[" in readme
    f.btf_args = "<argname>" in readme or "$arg*" in readme
    f.kretprobe_args = "kernel return probes support: $retval, $arg" in readme
    try:
        f.tracepoints = sum(1 for ln in open(tfs.path("available_events")) if ln.strip())
    except OSError:
        pass
    f.btf = os.path.exists("/sys/kernel/btf/vmlinux")
    f.kcore = os.path.exists("/proc/kcore")
    try:
        with open("/proc/kallsyms") as k:
            first = k.readline().split()
        f.kallsyms_addresses = bool(first) and int(first[0], 16) != 0
    except (OSError, ValueError):
        pass
    try:
        with open("/sys/kernel/security/lockdown") as lk:
            text = lk.read()
        f.lockdown = text[text.index("[") + 1:text.index("]")] if "[" in text else None
    except (OSError, ValueError):
        pass
    return f

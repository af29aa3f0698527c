"""Dynamic events (kprobe, kretprobe, uprobe, uretprobe) as one table.

Definitions are global; enabling is per instance (see :mod:`.tracefs`).

>>> KINDS["kretprobe"].file, KINDS["uretprobe"].profile
('kprobe_events', 'uprobe')
"""

from __future__ import annotations

import re

from ..errors import KernelRefused, NotSupported
from ..values import Frozen, _set
from .tracefs import Tracefs

__all__ = ["EventKind", "KINDS", "DefinedEvent", "define", "delete", "delete_quietly",
           "list_defined", "supported"]


class EventKind(Frozen):
    """One kind of dynamic event: its definitions file (where definitions are
    written), profile (``kprobe``/``uprobe``: its ``*_profile`` file) and feature
    name (what ``kprobes info`` calls it)."""

    __slots__ = _fields = ("name", "file", "profile", "feature", "missing_hint")
    name: str
    file: str
    profile: str
    feature: str
    missing_hint: str

    def __init__(self, name: str, file: str, profile: str, feature: str,
                 missing_hint: str) -> None:
        _set(self, "name", name)
        _set(self, "file", file)
        _set(self, "profile", profile)
        _set(self, "feature", feature)
        _set(self, "missing_hint", missing_hint)


_KHINT = ("this kernel was built without CONFIG_KPROBE_EVENTS; uprobes and tracepoints still "
          "work here, and `kprobes vm -- ...` runs kernel probes in a VM")
_UHINT = "this kernel was built without CONFIG_UPROBE_EVENTS"

KINDS: dict[str, EventKind] = {
    "kprobe": EventKind("kprobe", "kprobe_events", "kprobe", "kprobes", _KHINT),
    "kretprobe": EventKind("kretprobe", "kprobe_events", "kprobe", "kprobes", _KHINT),
    "uprobe": EventKind("uprobe", "uprobe_events", "uprobe", "uprobes", _UHINT),
    "uretprobe": EventKind("uretprobe", "uprobe_events", "uprobe", "uprobes", _UHINT),
}


class DefinedEvent(Frozen):
    """A definition read back from the events file: ``kind`` ``kprobe`` or ``uprobe``
    (by file), ``letter`` p / r / r10 ..."""

    __slots__ = _fields = ("kind", "letter", "group", "event", "line")
    kind: str
    letter: str
    group: str
    event: str
    line: str

    def __init__(self, kind: str, letter: str, group: str, event: str, line: str) -> None:
        _set(self, "kind", kind)
        _set(self, "letter", letter)
        _set(self, "group", group)
        _set(self, "event", event)
        _set(self, "line", line)


def supported(tfs: Tracefs, kind: str) -> bool:
    return tfs.has(KINDS[kind].file)


def define(tfs: Tracefs, kind: str, line: str, *, hint: str | None = None) -> None:
    """Write one definition line; KernelRefused carries the error_log reason."""
    k = KINDS[kind]
    if not tfs.has(k.file):
        raise NotSupported(f"no {k.feature}: {tfs.path(k.file)} is missing", feature=k.feature,
                           hint=k.missing_hint)
    tfs.write(k.file, line, hint=hint)


def delete(tfs: Tracefs, kind: str, group: str, event: str) -> None:
    tfs.write(KINDS[kind].file, f"-:{group}/{event}")


_LINE = re.compile(r"^(?P<letter>[a-z]\d*):(?P<group>[^/\s]+)/(?P<event>\S+)\s")


def list_defined(tfs: Tracefs) -> list[DefinedEvent]:
    """Every dynamic probe event currently defined (kprobes and uprobes)."""
    out: list[DefinedEvent] = []
    for kind, rel in (("kprobe", "kprobe_events"), ("uprobe", "uprobe_events")):
        if not tfs.has(rel):
            continue
        for ln in tfs.read_lines(rel):
            m = _LINE.match(ln + " ")
            if m:
                out.append(DefinedEvent(kind, m.group("letter"), m.group("group"),
                                        m.group("event"), ln))
    return out


def delete_quietly(tfs: Tracefs, kind: str, group: str, event: str) -> str | None:
    """Delete, returning the kernel's reason instead of raising (for cleanup paths)."""
    try:
        delete(tfs, kind, group, event)
    except KernelRefused as e:
        return e.reason or str(e)
    except NotSupported:
        return None
    return None

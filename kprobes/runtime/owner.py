"""Owner-tagged names for a session's event group and instance, and orphan cleanup.

A name is ``kprobes_<pid>_<starttime>_<n>``: the owning process id, its start
time (field 22 of /proc/PID/stat, so a recycled pid is not mistaken for the
owner) and a per-process counter (two sessions in one process). Only names of
exactly that shape are ever removed, and only when their owner is gone.

>>> parse_owner("kprobes_123_456_0")
(123, 456)
>>> parse_owner("myprobes") is None
True
"""

from __future__ import annotations

import itertools
import os
import re

from ..kernel import dynevents
from ..kernel.tracefs import Tracefs

__all__ = ["PREFIX", "new_name", "parse_owner", "owner_alive", "find_orphans", "remove_orphans",
           "remove_owned"]

PREFIX = "kprobes_"
_NAME = re.compile(r"kprobes_(\d+)_(\d+)_(\d+)\Z")
_counter = itertools.count()


def _starttime(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    # comm may contain spaces and parens: fields start after the last ')'
    rest = data[data.rindex(b")") + 2:].split()
    return int(rest[19])


def new_name(pid: int | None = None) -> str:
    pid = os.getpid() if pid is None else pid
    return f"{PREFIX}{pid}_{_starttime(pid) or 0}_{next(_counter)}"


def parse_owner(name: str) -> tuple[int, int] | None:
    m = _NAME.match(name)
    return (int(m.group(1)), int(m.group(2))) if m else None


def owner_alive(name: str) -> bool:
    owner = parse_owner(name)
    if owner is None:
        return True    # not ours: treat as alive, never touch
    pid, start = owner
    return _starttime(pid) == start


def find_orphans(tfs: Tracefs) -> tuple[list[str], list[dynevents.DefinedEvent]]:
    """Instances and events whose owner process is gone."""
    insts = [n for n in tfs.instances() if parse_owner(n) and not owner_alive(n)]
    evs = [e for e in dynevents.list_defined(tfs) if parse_owner(e.group) and not owner_alive(e.group)]
    return insts, evs


def remove_owned(tfs: Tracefs, instances: list[str],
                 events: list[dynevents.DefinedEvent]) -> list[str]:
    """Disable and remove the given instances, then delete the events. Returns problems."""
    problems: list[str] = []
    for name in instances:
        inst = tfs.instance(name)
        for g, e in list(inst.enabled_events()):
            try:
                inst.set_event_enabled(g, e, False)
            except Exception as ex:  # noqa: BLE001 - cleanup must go on
                problems.append(f"disable {name}:{g}/{e}: {ex}")
        try:
            inst.remove()
        except OSError as ex:
            problems.append(f"rmdir instance {name}: {ex.strerror}")
    for ev in events:
        why = dynevents.delete_quietly(tfs, ev.kind, ev.group, ev.event)
        if why:
            problems.append(f"delete {ev.group}/{ev.event}: {why}")
    return problems


def remove_orphans(tfs: Tracefs) -> tuple[int, int, list[str]]:
    """Remove what dead sessions left. Returns (instances, events, problems)."""
    insts, evs = find_orphans(tfs)
    problems = remove_owned(tfs, insts, evs) if (insts or evs) else []
    return len(insts), len(evs), problems

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

import errno
import itertools
import os
import re

from ..kernel import dynevents, triggers
from ..kernel.tracefs import Tracefs

__all__ = ["PREFIX", "new_name", "parse_owner", "owner_alive", "find_orphans", "remove_orphans",
           "remove_owned", "orphan_synthetic", "remove_synthetic"]

PREFIX = "kprobes_"
_NAME = re.compile(r"kprobes_(\d+)_(\d+)_(\d+)\Z")
_SYNTH = re.compile(r"(kprobes_\d+_\d+_\d+)_[A-Za-z0-9_]+\Z")   # synthetic events
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
    """Disable and remove the given instances, then delete the events. Returns problems.

    What another cleaner (a second ``kprobes clean``, a session starting) removed
    meanwhile is gone, as asked: a failure on it is not a problem."""
    problems: list[str] = []
    for name in instances:
        mine = _remove_instance(tfs, name)
        if mine and name in tfs.instances():
            problems += mine
    failed = []
    for ev in events:
        why = dynevents.delete_quietly(tfs, ev.kind, ev.group, ev.event)
        if why:
            failed.append((ev, why))
    if failed:
        still = {(e.group, e.event) for e in dynevents.list_defined(tfs)}
        problems += [f"delete {ev.group}/{ev.event}: {why}" for ev, why in failed
                     if (ev.group, ev.event) in still]
    return problems


def _remove_instance(tfs: Tracefs, name: str) -> list[str]:
    problems: list[str] = []
    inst = tfs.instance(name)
    for g, e in list(inst.enabled_events()):
        try:
            inst.set_event_enabled(g, e, False)
        except Exception as ex:  # noqa: BLE001 - cleanup must go on
            problems.append(f"disable {name}:{g}/{e}: {ex}")
    try:
        inst.remove()
    except OSError as ex:
        if ex.errno != errno.EBUSY:
            return [*problems, f"rmdir instance {name}: {ex.strerror}"]
        # an instance with triggers is busy: remove them (in dependency order), retry
        problems += triggers.clear_instance(inst)
        try:
            inst.remove()
        except OSError as ex2:
            problems.append(f"rmdir instance {name}: {ex2.strerror}")
    return problems


def orphan_synthetic(tfs: Tracefs) -> list[str]:
    """Synthetic events (``kprobes_<pid>_<start>_<n>_WHAT``) whose owner is gone."""
    out = []
    for name in triggers.list_synthetic(tfs):
        m = _SYNTH.match(name)
        if m and not owner_alive(m.group(1)):
            out.append(name)
    return out


def remove_synthetic(tfs: Tracefs, names: list[str]) -> list[str]:
    """Delete synthetic events (after the triggers that use them are gone)."""
    problems = []
    for name in names:
        try:
            triggers.delete_synthetic(tfs, name)
        except Exception as ex:  # noqa: BLE001 - cleanup must go on
            problems.append((name, f"delete synthetic event {name}: {ex}"))
    if not problems:
        return []
    still = set(triggers.list_synthetic(tfs))       # another cleaner's work is no problem
    return [why for name, why in problems if name in still]


def remove_orphans(tfs: Tracefs) -> tuple[int, int, list[str]]:
    """Remove what dead sessions left. Returns (instances, events, problems)."""
    insts, evs = find_orphans(tfs)
    problems = remove_owned(tfs, insts, evs) if (insts or evs) else []
    synth = orphan_synthetic(tfs)
    problems += remove_synthetic(tfs, synth)
    return len(insts), len(evs) + len(synth), problems

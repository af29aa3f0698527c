"""Event triggers (``hist:...``) in an instance and synthetic events: thin I/O.

Hist triggers live per instance in ``instances/X/events/G/E/trigger`` and are
read back from ``.../hist``; synthetic events are global, defined in
``synthetic_events`` (``NAME u64 lat``) and deleted with ``!NAME``. A trigger
that defines variables cannot be removed while another refers to them, and an
instance with triggers cannot be removed (EBUSY): :func:`clear_instance`
removes them in dependency order. The kernel's reason for a refused trigger
is in the instance's own ``error_log``.
"""

from __future__ import annotations

import os
import re

from ..errors import KernelRefused, KprobesError, NotSupported
from .tracefs import Instance, Tracefs

__all__ = ["has_hist", "add_trigger", "remove_trigger", "read_hist", "triggers",
           "clear_instance", "define_synthetic", "delete_synthetic", "list_synthetic",
           "has_synthetic"]


def has_hist(tfs: Tracefs) -> bool:
    """Whether this kernel has hist triggers (a ``hist`` file next to each event's ``trigger``)."""
    base = tfs.path("events")
    for group in ("sched", "syscalls", "raw_syscalls", "irq", "timer"):
        gdir = os.path.join(base, group)
        try:
            for e in os.scandir(gdir):
                if e.is_dir():
                    return os.path.exists(os.path.join(e.path, "hist"))
        except OSError:
            continue
    return False


def has_synthetic(tfs: Tracefs) -> bool:
    return tfs.has("synthetic_events")


def _rel(inst: Instance, group: str, event: str, name: str) -> str:
    return f"{inst.rel}/events/{group}/{event}/{name}"


def _write(tfs: Tracefs, rel: str, line: str, log: str | None, hint: str | None) -> None:
    """Append one line; a refusal carries the kernel's reason from ``log`` (an error_log)."""
    from .tracefs import check_line
    check_line(line, what=f"write to {rel}")
    if log is not None:
        _clear_log(tfs, log)
    try:
        fd = os.open(tfs.path(rel), os.O_WRONLY | os.O_APPEND)
    except FileNotFoundError as e:
        raise NotSupported(f"{tfs.path(rel)} does not exist", feature=rel.rsplit("/", 1)[-1],
                           hint=hint) from e
    try:
        os.write(fd, (line + "\n").encode())
    except OSError as e:
        reason, column = _last(tfs, log, line) if log is not None else (None, None)
        raise KernelRefused(f"kernel refused {line!r} in {rel}: {reason or e.strerror}",
                            errno=e.errno or 0, file=rel, command=line, reason=reason,
                            column=column, hint=hint) from e
    finally:
        os.close(fd)


def _clear_log(tfs: Tracefs, rel: str) -> None:
    Tracefs(os.path.dirname(tfs.path(rel))).clear_error_log()


def _last(tfs: Tracefs, log: str, line: str) -> tuple[str | None, int | None]:
    # Tracefs.last_error reads "error_log" under its root: root it where the log is
    return Tracefs(os.path.dirname(tfs.path(log))).last_error(line)


def add_trigger(inst: Instance, group: str, event: str, line: str, *,
                hint: str | None = None) -> None:
    """Append a trigger; KernelRefused carries the reason from the instance's error_log."""
    log = f"{inst.rel}/error_log" if os.path.exists(os.path.join(inst.path, "error_log")) \
        else "error_log"
    _write(inst.tfs, _rel(inst, group, event, "trigger"), line, log, hint)


def remove_trigger(inst: Instance, group: str, event: str, line: str) -> None:
    """Remove a trigger: ``!`` + its definition, with its filter (the kernel
    matches the filter too)."""
    _write(inst.tfs, _rel(inst, group, event, "trigger"), "!" + line.strip(), None, None)


def read_hist(inst: Instance, group: str, event: str) -> str:
    return inst.tfs.read(_rel(inst, group, event, "hist"))


def triggers(inst: Instance, group: str, event: str) -> list[str]:
    """The triggers of an event as the kernel lists them (without `` [active]``)."""
    try:
        text = inst.tfs.read(_rel(inst, group, event, "trigger"))
    except (OSError, KprobesError):
        return []
    out = []
    for ln in text.splitlines():
        if not ln or ln.startswith("#"):
            continue
        out.append(re.sub(r"\s*\[(active|paused)\]\s*$", "", ln))
    return out


def clear_instance(inst: Instance) -> list[str]:
    """Remove every trigger of every event of an instance, retrying while one
    trigger's variables are still referenced by another. Returns problems."""
    base = os.path.join(inst.path, "events")
    todo: list[tuple[str, str, str]] = []
    try:
        for g in os.scandir(base):
            if not g.is_dir():
                continue
            for e in os.scandir(g.path):
                if e.is_dir() and os.path.exists(os.path.join(e.path, "trigger")):
                    todo += [(g.name, e.name, t) for t in triggers(inst, g.name, e.name)]
    except OSError:
        return []
    problems: list[str] = []
    last = ""
    while todo:
        left = []
        for group, event, line in todo:
            try:
                remove_trigger(inst, group, event, line)
            except KprobesError as ex:
                left.append((group, event, line))
                last = f"remove trigger {group}/{event} {line!r}: {ex}"
        if len(left) == len(todo):
            problems.append(last)
            break
        todo = left
    return problems


def define_synthetic(tfs: Tracefs, line: str) -> None:
    """Define a synthetic event: ``NAME TYPE FIELD[; TYPE FIELD...]``."""
    _write(tfs, "synthetic_events", line, "error_log",
           "synthetic events need CONFIG_SYNTH_EVENTS")


def delete_synthetic(tfs: Tracefs, name: str) -> None:
    _write(tfs, "synthetic_events", "!" + name, None, None)


def list_synthetic(tfs: Tracefs) -> list[str]:
    """Names of the synthetic events defined now."""
    if not tfs.has("synthetic_events"):
        return []
    return [ln.split()[0] for ln in tfs.read_lines("synthetic_events") if ln.split()]

"""What both aggregation backends share: the key and unit names, the base class,
checking the keys and value a probe is asked for, and reading batch columns.
The backends are in :mod:`.aggregate` (user side, and choosing) and
:mod:`.agg_kernel`."""

from __future__ import annotations

from collections.abc import Sequence

from ..agg.model import Aggregation
from ..decode.format import EventFormat, parse_format
from ..errors import KprobesError
from ..probes.model import Probe, Tracepoint
from ..probes.spec import parse_spec
from ..values import replace

TYPE_CHECKING = False   # typing's, without importing typing at run time
if TYPE_CHECKING:
    from typing import Any

    from .batch import Batch

    Session = Any   # the runtime Session (its module imports this one: no import back)

__all__ = ["BASIC_KEYS", "BACKENDS", "UNITS", "DEFAULT_SIZE"]

BASIC_KEYS = ("comm", "pid", "tid", "cpu")
BACKENDS = ("auto", "kernel", "user")
UNITS = {"ns": 1, "us": 1000, "ms": 1_000_000}
DEFAULT_SIZE = 2048          # hist size= (keys the kernel keeps; a power of 2, >= 128)


def _probe(spec: Probe | str, filter: str | None) -> Probe:
    p = parse_spec(spec) if isinstance(spec, str) else spec
    if filter:
        p = replace(p, filter=filter)
    return p


def _fetch_name(p: Probe, expr: str) -> tuple[Probe, str]:
    """The arg name for ``expr`` in ``p``; a dynamic probe that does not fetch it yet
    gets it added (``how->mode`` -> arg ``how_mode``)."""
    from ..probes.spec import parse_arg
    names = {a.name for a in p.args}
    if expr in names or expr in BASIC_KEYS or not p.dynamic:
        return p, expr
    a = parse_arg(expr, len(p.args) + 1)
    if a.name in names:
        return p, a.name
    return p.with_args(a), a.name


def _tracepoint_fields(s: Session, p: Tracepoint) -> EventFormat | None:
    try:
        return parse_format(s.tracefs.event_format(p.group, p.event), p.group)
    except (OSError, KprobesError):
        return None


def _check_names(s: Session, p: Probe, names: Sequence[str], what: str) -> None:
    """Refuse names the probe does not fetch, before anything is created."""
    if isinstance(p, Tracepoint):
        fmt = _tracepoint_fields(s, p)
        known = {f.name for f in fmt.arg_fields} if fmt else None
    else:
        known = {a.name for a in p.args}
    for n in names:
        if n in BASIC_KEYS and what == "key":
            continue
        if known is not None and n not in known:
            keys = ", ".join([*(BASIC_KEYS if what == "key" else ()), *sorted(known)])
            raise KprobesError(f"unknown {what} {n!r}: {p.location()} has no field {n!r}",
                               hint=f"{what}s here: {keys or 'none'}")


def _field_kind(fmt: EventFormat, name: str, what: str) -> tuple[str, int]:
    """("str" | "int", signed bits) of a field, as a key or value."""
    try:
        f = fmt.field(name)
    except KeyError:
        raise KprobesError(f"unknown {what} {name!r}: event {fmt.system}:{fmt.name} has no "
                           f"such field", hint="fields: " + ", ".join(
                               x.name for x in fmt.arg_fields)) from None
    if f.is_string or f.kind == "char_array":
        return "str", 0
    if f.kind != "int":
        raise KprobesError(f"{what} {name!r} is a {f.decl}: not a number or a string",
                           hint="aggregate over scalar fields")
    return "int", (f.size * 8 if f.signed else 0)


class _Agg(Aggregation):
    """Common part: the session and its probe handles."""

    def __init__(self, s: Session, kind: str, name: str, by: tuple[str, ...],
                 value: str | None, unit: str | None, backend: str, reason: str) -> None:
        super().__init__(kind, name, by, value, unit, backend, reason)
        self.session = s

    def arm(self) -> None:
        """After the probes exist: set up what reads them (triggers, handlers)."""


def _columns(b: Batch, names: Sequence[str]) -> list[Sequence[Any]]:
    cols: list[Sequence[Any]] = []
    for n in names:
        if n in BASIC_KEYS:
            cols.append(getattr(b, n))
        else:
            cols.append(b.args[n])
    return cols

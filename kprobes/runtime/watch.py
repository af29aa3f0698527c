"""Notice when another process changes our armed events behind our back.

An event disabled in our instance, or its filter replaced, would otherwise
make events stop or thin out silently. :func:`tampered` compares what the
kernel shows with what the session armed; :meth:`Session.run` calls it about
once a second and ends the run with a :class:`~kprobes.errors.KprobesError`
naming the event (the events delivered until then stay counted).

Not checked: the instance removed (the kernel refuses with EBUSY while our
ring-buffer files are open) and our event definitions deleted (EBUSY while
enabled).
"""

from __future__ import annotations

from collections.abc import Iterable

from ..errors import KprobesError

TYPE_CHECKING = False   # typing's, without importing typing at run time

if TYPE_CHECKING:
    from ..kernel.tracefs import Instance
    from .handle import ProbeHandle

__all__ = ["tampered", "check"]


def tampered(inst: Instance, handles: Iterable[ProbeHandle]) -> str | None:
    """What another process changed on our events, or None."""
    for h in handles:
        base = f"events/{h.group}/{h.event}"
        if inst.read(f"{base}/enable").strip()[:1] != "1":
            return f"event {h.group}/{h.event} was disabled by another process"
        want = h.probe.filter or "none"
        got = inst.read(f"{base}/filter").strip()
        if got != want.strip():
            return (f"the filter of {h.group}/{h.event} was changed by another process "
                    f"(now {got!r}, ours {want!r})")
    return None


def check(inst: Instance, handles: Iterable[ProbeHandle]) -> None:
    why = tampered(inst, handles)
    if why:
        raise KprobesError(why + ": events would be missed, so the trace ends here",
                           hint="another tracer or script is writing to instances/"
                                f"{inst.name}; trace again once it is done")

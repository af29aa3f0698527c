"""What a session keeps per probe (:class:`ProbeHandle`), and what its reader
keeps per event stream (:class:`Stream`).

A handle is created by ``Session.add*`` and handed to the user; the session
fills in its kernel identity (``group``, ``event``, ``type_id``) when it
creates the probe, and applies what the pre-flight resolved
(:class:`Resolved`: the probe as it will be defined, its module, enum
names, its location). Nothing outside the session writes to a handle.

>>> from kprobes.probes.model import Tracepoint
>>> h = ProbeHandle("sys_enter_openat", Tracepoint("syscalls", "sys_enter_openat"), None)
>>> h.stats.events, h.created, h.hidden
(0, False, False)
"""

from __future__ import annotations

from collections import namedtuple
from collections.abc import Callable

from ..probes.model import Probe
from ..values import Frozen, Value, _set

TYPE_CHECKING = False   # typing's, without importing typing at run time
if TYPE_CHECKING:
    from typing import Any, NamedTuple

    from ..decode.record import RecordDecoder
    from .event import Event

__all__ = ["ProbeHandle", "ProbeStats", "Resolved", "Stream", "Handler"]

Handler = Callable[..., "Any"]


class ProbeStats(Value):
    """Counters of one probe.

    ``events``: delivered to the handler: this session's events (pid, filter).
    ``hits``: times the probe fired in the kernel, for EVERY process and before
    filters (kprobe_profile / uprobe_profile); the kernel counts none for
    tracepoints: 0 there and ``kernel_counted`` False. JSON: ``hits_all`` (null
    for tracepoints). ``misses``: nmissed (incl. kretprobe instances missed for
    lack of maxactive). ``errors``: handler exceptions. ``kernel_counted``:
    hits/misses come from the kernel's profile.
    """

    __slots__ = _fields = ("events", "hits", "misses", "errors", "first_error",
                           "kernel_counted")

    def __init__(self, events: int = 0, hits: int = 0, misses: int = 0, errors: int = 0,
                 first_error: str | None = None, kernel_counted: bool = False) -> None:
        self.events = events
        self.hits = hits
        self.misses = misses
        self.errors = errors
        self.first_error = first_error
        self.kernel_counted = kernel_counted


class ProbeHandle:
    """A probe added to a session: its event name and, once created, its kernel identity.
    Compared by identity (two handles are two probes, whatever their fields)."""

    __slots__ = ("name", "probe", "handler", "group", "event", "type_id", "created", "bind",
                 "stats", "hidden", "on_event", "post_of", "location", "module", "enums",
                 "pointers", "batch", "stack")

    def __init__(self, name: str, probe: Probe, handler: Handler | None, group: str = "",
                 event: str = "", type_id: int = -1, created: bool = False,
                 bind: tuple[str, ...] | None = None, stats: ProbeStats | None = None,
                 hidden: bool = False, on_event: Callable[[Event], None] | None = None,
                 post_of: ProbeHandle | None = None, location: str | None = None,
                 module: str | None = None, enums: dict[str, dict[int, str]] | None = None,
                 pointers: dict[str, dict[str, str]] | None = None,
                 batch: Callable[[Any], None] | None = None, stack: str | None = None) -> None:
        self.name = name
        self.probe = probe
        self.handler = handler
        self.group = group
        self.event = event
        self.type_id = type_id
        self.created = created
        self.bind = bind                    # handler parameters bound from args by name
        self.stats = ProbeStats() if stats is None else stats
        self.hidden = hidden                # helper probe (entry half of a kretprobe...)
        self.on_event = on_event
        self.post_of = post_of              # this is the post-handler probe of that kprobe
        self.location = location            # resolved place (user symbols -> file offsets)
        self.module = module                # kernel module of the probed function
        self.enums = {} if enums is None else enums            # arg -> value names
        self.pointers = {} if pointers is None else pointers   # param -> field -> arg
        # batch handler (Session.add_batch), called with a batch.Batch (not named
        # here: the reader imports this module)
        self.batch = batch
        self.stack = stack                  # "kernel" | "user" | "both": stacks with events

    def __repr__(self) -> str:
        return (f"ProbeHandle(name={self.name!r}, probe={self.probe!r}, group={self.group!r}, "
                f"event={self.event!r}, created={self.created!r})")

    def apply(self, r: Resolved) -> None:
        """Take what the pre-flight resolved (called by the session only)."""
        self.probe = r.probe
        self.module = r.module
        self.enums = dict(r.enums)
        self.location = r.location


class Resolved(Frozen):
    """What the pre-flight found out about one handle's probe.

    ``probe``: the probe as it will be defined (BTF names compiled to plain
    fetch args; a post-handler probe placed at the next instruction);
    ``module``: the kernel module of the probed function (None: vmlinux or
    not a kernel probe); ``enums``: arg -> {value: name} from BTF enums;
    ``location``: the place written in the definition (user symbols ->
    file offsets), None for tracepoints.
    """

    __slots__ = _fields = ("probe", "module", "enums", "location")
    probe: Probe
    module: str | None
    enums: dict[str, dict[int, str]]
    location: str | None

    def __init__(self, probe: Probe, module: str | None = None,
                 enums: dict[str, dict[int, str]] | None = None,
                 location: str | None = None) -> None:
        _set(self, "probe", probe)
        _set(self, "module", module)
        _set(self, "enums", {} if enums is None else enums)
        _set(self, "location", location)


if TYPE_CHECKING:
    class Stream(NamedTuple):
        """What the reader needs to turn one event type's records into a handle's events."""

        handle: ProbeHandle
        decoder: RecordDecoder
        has_comm: bool             # ``$comm`` fetched in the kernel: comm is in the record
        hidden: tuple[str, ...]    # fields the user does not see (``__probe_ip``...)
else:   # the same tuple without importing typing (start-up)
    Stream = namedtuple("Stream", "handle decoder has_comm hidden")
    Stream.__doc__ = "What the reader needs to turn one event type's records into a handle's events."

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
from dataclasses import dataclass, field

from ..probes.model import Probe

TYPE_CHECKING = False   # typing's, without importing typing at run time
if TYPE_CHECKING:
    from typing import Any, NamedTuple

    from ..decode.format import RecordDecoder
    from .event import Event

__all__ = ["ProbeHandle", "ProbeStats", "Resolved", "Stream", "Handler"]

Handler = Callable[..., "Any"]


@dataclass(slots=True)
class ProbeStats:
    """Counters of one probe."""

    events: int = 0        # delivered to the handler: this session's events (pid, filter)
    #: times the probe fired in the kernel, for EVERY process and before filters
    #: (kprobe_profile / uprobe_profile); the kernel counts none for tracepoints: 0
    #: there and ``kernel_counted`` False. JSON: ``hits_all`` (null for tracepoints).
    hits: int = 0
    misses: int = 0        # nmissed (incl. kretprobe instances missed for lack of maxactive)
    errors: int = 0        # handler exceptions
    first_error: str | None = None
    kernel_counted: bool = False   # hits/misses come from the kernel's profile


@dataclass(eq=False, slots=True)
class ProbeHandle:
    """A probe added to a session: its event name and, once created, its kernel identity."""

    name: str
    probe: Probe
    handler: Handler | None
    group: str = ""
    event: str = ""
    type_id: int = -1
    created: bool = False
    bind: tuple[str, ...] | None = None      # handler parameters bound from args by name
    stats: ProbeStats = field(default_factory=ProbeStats)
    hidden: bool = False                     # helper probe (entry half of a kretprobe...)
    on_event: Callable[[Event], None] | None = None
    post_of: ProbeHandle | None = None       # this is the post-handler probe of that kprobe
    location: str | None = None              # resolved place (user symbols -> file offsets)
    module: str | None = None                # kernel module of the probed function
    enums: dict[str, dict[int, str]] = field(default_factory=dict)      # arg -> value names
    pointers: dict[str, dict[str, str]] = field(default_factory=dict)   # param -> field -> arg
    # batch handler (Session.add_batch), called with a reader.Batch (not named
    # here: the reader imports this module)
    batch: Callable[[Any], None] | None = None
    stack: str | None = None                 # "kernel" | "user" | "both": stacks with events

    def apply(self, r: Resolved) -> None:
        """Take what the pre-flight resolved (called by the session only)."""
        self.probe = r.probe
        self.module = r.module
        self.enums = dict(r.enums)
        self.location = r.location


@dataclass(frozen=True, slots=True)
class Resolved:
    """What the pre-flight found out about one handle's probe.

    ``probe``: the probe as it will be defined (BTF names compiled to plain
    fetch args; a post-handler probe placed at the next instruction);
    ``module``: the kernel module of the probed function (None: vmlinux or
    not a kernel probe); ``enums``: arg -> {value: name} from BTF enums;
    ``location``: the place written in the definition (user symbols ->
    file offsets), None for tracepoints.
    """

    probe: Probe
    module: str | None = None
    enums: dict[str, dict[int, str]] = field(default_factory=dict)
    location: str | None = None


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

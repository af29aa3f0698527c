"""Session: define -> create -> enable -> read -> undo, in reverse, always.

>>> with Session() as s:                                   # doctest: +SKIP
...     @s.tracepoint("syscalls:sys_enter_openat")
...     def on_open(ev):
...         print(ev.comm, ev.filename)
...     s.run(duration=5)
...     print(s.stats().probes["sys_enter_openat"].events)

Every side effect (event definitions, the private instance, enabled events,
open ring-buffer files) is pushed on an undo stack the moment it succeeds and
popped in reverse order by :meth:`Session.close` — on normal exit, on any
exception, and on SIGINT/SIGTERM while :meth:`Session.run` is running. After a
SIGKILL the next session removes the orphans (see :mod:`.owner`).
"""

from __future__ import annotations

import inspect
import os
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from ..errors import HandlerError, KprobesError, NotSupported, SpecError, SymbolError
from ..kernel import dynevents
from ..kernel.tracefs import Instance, Tracefs
from ..probes.btfargs import Pointer
from ..probes.model import FetchArg, KProbe, KRetProbe, Probe, Tracepoint, UProbe, URetProbe
from ..probes.spec import parse_spec
from . import owner, watch
from .aggregate import AggregateMixin
from .event import Event
from .handle import Handler, ProbeHandle, ProbeStats, Resolved
from .preflight import Preflight
from .reader import COMM_ARG, Batch, Cycle, Reader, handle_of
from .signals import (
    block_signals,
    install_sigterm,
    install_stop_handlers,
    restore_handlers,
    restore_sigterm,
    unblock_signals,
)

if TYPE_CHECKING:
    from .stackcount import StackCounts
# .stacks and .stackcount (with the symbolizers: ELF, lzma, threads) are imported
# only by sessions that record stacks: a probe's start-up does not load them

__all__ = ["Session", "Stats", "ProbeStats", "ProbeHandle"]


@dataclass
class Stats:
    """Session counters. ``lost`` = events the ring buffer dropped (all probes)."""

    probes: dict[str, ProbeStats] = field(default_factory=dict)
    lost: int = 0
    lost_pages: int = 0    # pages that carried the "events were lost" flag
    events: int = 0
    aggregations: dict[str, Any] = field(default_factory=dict)   # name -> list of agg Rows

    def as_dict(self) -> dict[str, Any]:
        return {
            "probes": {n: {"events": p.events,
                           "hits_all": p.hits if p.kernel_counted else None,
                           "misses": p.misses, "errors": p.errors}
                       for n, p in self.probes.items()},
            "events": self.events, "lost": self.lost,
        }

    def to_pandas(self) -> Any:
        """One row per probe (index ``probe``; columns ``events``, ``hits``, ``misses``,
        ``errors``); ``df.attrs`` holds ``events``, ``lost``, ``lost_pages``.
        Needs pandas (``pip install 'kprobes[pandas]'``)."""
        from ..output.frames import stats_to_pandas
        return stats_to_pandas(self)


class Session(AggregateMixin):
    """A tracing session owning one event group and one private tracefs instance.

    Parameters: ``tracefs`` root (found and mounted when None), ``buffer_kb``
    per-CPU ring buffer size, ``pid`` to trace only that process (and its
    children), ``stop_on_error`` to raise on the first handler exception,
    ``trace_self`` to also see events of this process (off: the tracer's own
    reads would feed back), ``wakeup_percent`` how full a CPU buffer gets
    before the reader wakes (0: on any event), ``clock`` the trace clock
    (``mono``: timestamps compare with ``time.monotonic_ns()``), ``latency``
    how long :meth:`run` rests after a read cycle that brought few events
    (default 5 ms; 0: read again at once). Resting turns a trickle of events
    (one wakeup each) into batches: less CPU per event for the reader and for
    the traced program (no wakeup per event), each event at most that much
    later. Busy cycles never rest.
    """

    #: a read cycle with fewer events than this is "small": run() rests after it
    SMALL_CYCLE = 1024

    def __init__(self, *, tracefs: str | None = None, buffer_kb: int | None = None,
                 pid: int | None = None, stop_on_error: bool = False,
                 clock: str = "mono", wakeup_percent: int = 0,
                 trace_self: bool = False, latency: float = 0.005) -> None:
        if latency < 0:
            raise KprobesError(f"latency {latency} < 0", hint="seconds, e.g. 0.005")
        self.latency = latency
        self._tfs_root = tracefs
        self.buffer_kb = buffer_kb
        self.pid = pid
        self.stop_on_error = stop_on_error
        self.clock = clock
        self.wakeup_percent = wakeup_percent
        self.trace_self = trace_self
        self.name = owner.new_name()
        self._tag = "_" + self.name[len(owner.PREFIX):].split("_", 1)[0] + "_" + \
            self.name.rsplit("_", 1)[1]
        self.handles: list[ProbeHandle] = []
        self._names: set[str] = set()
        self._undo: list[tuple[str, Callable[[], None]]] = []
        self._tfs: Tracefs | None = None
        self._inst: Instance | None = None
        self._reader: Reader | None = None
        self._started = False
        self._closed = False
        self._stop = False
        self._wake_fds: list[int] = []
        self.orphans_removed = (0, 0)
        self._final: Stats | None = None
        self.cleanup_problems: list[str] = []
        self.aggregations: list[Any] = []           # Session.count()/hist()/funclatency()...
        self._no_enable: set[int] = set()           # handles read by triggers only
        self._no_comm: set[int] = set()             # handles that need no $comm fetch
        self._after_cycle: list[Callable[[], None]] = []   # called after each delivered cycle

    # -- describing ----------------------------------------------------------
    def add(self, probe: Probe | str, handler: Handler | None = None, *,
            name: str | None = None, stack: str | None = None) -> ProbeHandle:
        """Add a probe (a value or a CLI spec string) with its handler.

        ``stack``: ``"kernel"``, ``"user"`` or ``"both"``: the events carry
        ``ev.kstack`` / ``ev.ustack`` (see :mod:`.stacks`)."""
        if self._started:
            raise KprobesError("probes must be added before the session starts")
        if isinstance(probe, str):
            probe = parse_spec(probe)
        if stack is not None:
            from .stacks import entry_ret_arg, parse_kind
            probe = entry_ret_arg(probe, parse_kind(stack)[1])
        name = name or probe.name or probe.default_name()
        name = self._unique(name)
        h = ProbeHandle(name=name, probe=probe, handler=handler, stack=stack)
        if handler is not None:
            h.bind = _binding(handler, probe)
        self.handles.append(h)
        return h

    def _unique(self, name: str) -> str:
        import re
        name = re.sub(r"[^A-Za-z0-9_]", "_", name)
        if not re.match(r"[A-Za-z_]", name):
            name = "_" + name
        name = name[:56]
        base, n = name, 1
        while name in self._names:
            name = f"{base}_{n}"
            n += 1
        self._names.add(name)
        return name

    def _decorator(self, probe: Probe, stack: str | None = None) -> Callable[[Handler], Handler]:
        def deco(fn: Handler) -> Handler:
            self.add(probe, fn, stack=stack)
            return fn
        return deco

    def kprobe(self, where: str, *, args: Iterable[FetchArg | str] = (),
               filter: str | None = None, name: str | None = None,
               post: Handler | None = None, stack: str | None = None,
               ) -> Callable[[Handler], Handler]:
        """Decorator: kernel probe at ``[MOD:]SYM[+OFF]`` or ``0xADDR``; the
        decorated function is the pre-handler, ``post`` the post-handler."""
        p = _with(parse_spec(f"p:{where}"), args, filter, name)

        def deco(fn: Handler) -> Handler:
            self.add_kprobe(p, fn, post, stack=stack)
            return fn
        return deco

    def kretprobe(self, where: str, *, maxactive: int | None = None,
                  args: Iterable[FetchArg | str] = ("retval=$retval:s64",),
                  filter: str | None = None, name: str | None = None,
                  entry: Handler | None = None,
                  entry_args: Iterable[FetchArg | str] = ()) -> Callable[[Handler], Handler]:
        """Decorator: kernel return probe; the handler sees ``ev.retval``.

        ``entry(ev)`` runs at function entry (its own probe, fetching
        ``entry_args``); what it returns reaches the return handler of the same
        call as ``ev.data`` (matched per thread, innermost call first), or
        None when no entry was seen for it (its entry event was lost in a
        full ring buffer, or ``entry`` raised).
        ``maxactive`` bounds the instances in flight; calls entered with none
        free are counted in ``stats().probes[NAME].misses``.
        """
        p = _with(parse_spec(f"r{maxactive or ''}:{where}"), args, filter, name)

        def deco(fn: Handler) -> Handler:
            self.add_kretprobe(p, fn, entry=entry, entry_args=entry_args)
            return fn
        return deco

    def add_kretprobe(self, probe: Probe | str, handler: Handler | None, *,
                      entry: Handler | None = None,
                      entry_args: Iterable[FetchArg | str] = ()) -> ProbeHandle:
        """Add a return probe, and with ``entry`` a paired entry probe whose
        handler's return value is handed to the return handler as ``ev.data``."""
        rp: KRetProbe = _kind(probe, KRetProbe, None,
                              "add_kretprobe needs a kernel return probe (r:SYM)")
        ret = self.add(rp, handler)
        if entry is None:
            return ret
        stacks: dict[int, list[Any]] = {}
        eprobe = _with(KProbe(rp.symbol, module=rp.module, address=rp.address),
                       entry_args, None, None)
        ent = self.add(eprobe, None, name=f"{ret.name}_entry")
        ent.hidden = True

        def on_entry(ev: Event) -> None:
            st = stacks.setdefault(ev.tid, [])
            if len(st) >= 64:       # entries whose return was missed (maxactive) age out
                del st[0]
            try:
                st.append(entry(ev))
            except Exception:
                st.append(None)
                raise

        def on_return(ev: Event) -> None:
            st = stacks.get(ev.tid)
            ev.data = st.pop() if st else None     # None: the entry was not seen
        ent.handler = on_entry
        ret.on_event = on_return
        return ret

    def add_kprobe(self, probe: Probe | str, pre: Handler | None = None,
                   post: Handler | None = None, *, stack: str | None = None) -> ProbeHandle:
        """A kprobe with a pre-handler and, optionally, a post-handler.

        The post-handler is realised as a second probe at the next instruction
        boundary after the probed one (decoded from /proc/kcore), so it runs
        for the same hit, on the same CPU, right after the probed instruction.
        """
        probe = _kind(probe, KProbe, None, "add_kprobe needs a kernel entry probe (p:SYM[+OFF])")
        h = self.add(probe, pre, stack=stack)
        if post is not None:
            ph = self.add(probe, post, name=f"{h.name}_post")
            ph.post_of = h
        return h

    def jprobe(self, where: str, *, args: Iterable[FetchArg | str] | None = None,
               fields: Iterable[str] = (), filter: str | None = None,
               name: str | None = None) -> Callable[[Handler], Handler]:
        """Decorator: a function-entry probe whose handler receives the function's
        own arguments by name: ``def on_open(ev, dfd, filename, how)``.

        Without ``args`` the handler's parameter names are the function's
        parameter names, typed from BTF (``int`` signed, ``char *`` as the
        string); a name the function does not have is an error before anything
        is created. ``fields=("how->flags", "how->mode")`` fetches struct fields
        through pointer parameters: the handler's ``how`` is then a
        :class:`~kprobes.probes.btfargs.Pointer` with ``how.flags`` and
        ``how.mode`` decoded. With ``args`` (``"dfd=$arg1:s32"``...) nothing
        comes from BTF.
        """
        def deco(fn: Handler) -> Handler:
            self.add_jprobe(where, fn, args=args, fields=fields, filter=filter, name=name)
            return fn
        return deco

    def add_jprobe(self, where: str, handler: Handler, *,
                   args: Iterable[FetchArg | str] | None = None, fields: Iterable[str] = (),
                   filter: str | None = None, name: str | None = None) -> ProbeHandle:
        """:meth:`jprobe` without the decorator: ``where`` is ``[MOD:]SYM``."""
        from ..probes.btfargs import arg_name, handler_fetches
        fields = tuple(fields)
        if args is None:
            params = [p.name for p in list(inspect.signature(handler).parameters.values())[1:]]
            fetch: Iterable[FetchArg | str] = handler_fetches(params, fields)
        else:
            fetch = (*args, *handler_fetches([], fields))
        p = _with(parse_spec(f"p:{where}"), fetch, filter, name)
        if isinstance(p, KProbe) and p.offset:
            raise SpecError("a jprobe is at a function entry: no +OFF")
        h = self.add(p, handler)
        for f in fields:
            param, sep, rest = f.partition("->")
            if not sep:
                raise SpecError(f"field {f!r} must go through a pointer parameter "
                                "(PARAM->FIELD)", spec=f, column=0)
            h.pointers.setdefault(param, {})[arg_name(rest)] = arg_name(f)
        return h

    def uprobe(self, path: str, where: str, *, args: Iterable[FetchArg | str] = (),
               filter: str | None = None, name: str | None = None,
               stack: str | None = None) -> Callable[[Handler], Handler]:
        """Decorator: user probe at ``PATH:SYM[+OFF]`` (or ``0xFILEOFF``)."""
        return self._decorator(_with(parse_spec(f"u:{path}:{where}"), args, filter, name), stack)

    def add_uprobe(self, probe: UProbe | str, handler: Handler | None = None) -> ProbeHandle:
        """Add a user probe (a :class:`UProbe` or a spec ``u:PATH:SYM[+OFF] [ARGS]``)."""
        return self.add(_kind(probe, UProbe, URetProbe, "add_uprobe needs a user entry probe "
                                                        "(u:PATH:SYM[+OFF])"), handler)

    def uretprobe(self, path: str, where: str, *, args: Iterable[FetchArg | str] = (),
                  filter: str | None = None, name: str | None = None,
                  stack: str | None = None) -> Callable[[Handler], Handler]:
        """Decorator: user return probe at ``PATH:SYM``."""
        return self._decorator(_with(parse_spec(f"ur:{path}:{where}"), args, filter, name), stack)

    def add_uretprobe(self, probe: URetProbe | str, handler: Handler | None = None
                      ) -> ProbeHandle:
        """Add a user return probe (a :class:`URetProbe` or a spec ``ur:PATH:SYM [ARGS]``)."""
        return self.add(_kind(probe, URetProbe, None, "add_uretprobe needs a user return "
                                                      "probe (ur:PATH:SYM)"), handler)

    def tracepoint(self, what: str, *, filter: str | None = None,
                   name: str | None = None, stack: str | None = None,
                   ) -> Callable[[Handler], Handler]:
        """Decorator: tracepoint ``GROUP:EVENT``."""
        return self._decorator(_with(parse_spec(f"t:{what}"), (), filter, name), stack)

    def add_tracepoint(self, probe: Tracepoint | str, handler: Handler | None = None
                       ) -> ProbeHandle:
        """Add a tracepoint (a :class:`Tracepoint` or a spec ``t:GROUP:EVENT``)."""
        return self.add(_kind(probe, Tracepoint, None, "add_tracepoint needs a tracepoint "
                                                       "(t:GROUP:EVENT)"), handler)

    def trace(self, spec: str, *, filter: str | None = None,
              stack: str | None = None) -> Callable[[Handler], Handler]:
        """Decorator taking a full CLI spec string."""
        return self._decorator(parse_spec(spec, filter=filter), stack)

    # -- creating ------------------------------------------------------------
    @property
    def tracefs(self) -> Tracefs:
        if self._tfs is None:
            self._tfs = Tracefs.open(self._tfs_root)
        return self._tfs

    def supports(self, what: str) -> bool:
        """Can this kernel trace ``what``: ``"kprobe"``, ``"uprobe"``, a
        tracepoint ``"GROUP:EVENT"``, or one of its fields ``"GROUP:EVENT:FIELD"``?
        Found by looking at tracefs; nothing is created. Lets a tool choose
        between a kprobe and a tracepoint before adding either.

        >>> Session().supports("sched:sched_process_exec")     # doctest: +SKIP
        True
        """
        if what in ("kprobe", "uprobe"):
            return self.tracefs.has(f"{what}_events")
        group, _, rest = what.partition(":")
        event, _, fld = rest.partition(":")
        if not group or not event or not self.tracefs.has(f"events/{group}/{event}"):
            return False
        return not fld or re.search(rf"\s\**{re.escape(fld)}(\[\d*\])?;",
                                    self.tracefs.event_format(group, event)) is not None

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> None:
        """Create every probe and enable it in this session's instance."""
        if self._started:
            return
        if not self.handles:
            raise KprobesError("no probes to trace", hint="add at least one probe")
        self._started = True
        tfs = self.tracefs
        old_term = install_sigterm()
        if old_term is not None:
            self._undo.append(("restore SIGTERM", lambda: restore_sigterm(old_term)))
        try:
            n_i, n_e, probs = owner.remove_orphans(tfs)
            self.orphans_removed = (n_i, n_e)
            self.cleanup_problems += probs
            self._preflight()
            self._create_instance()
            inst = self._inst
            assert inst is not None
            for h in self.handles:
                self._create(h)
            split = None
            if any(h.stack is not None for h in self.handles):
                from .stacks import enable_stacks
                split = enable_stacks(inst, tfs, self.handles, self._undo)
            # helper probes first: a kretprobe's entry half is recording before
            # its return half reports anything, so no reported return can have
            # entered unseen
            for a in self.aggregations:
                a.arm()
            for h in sorted(self.handles, key=lambda h: not h.hidden):
                if id(h) not in self._no_enable:
                    self._enable(h)
            self._reader = Reader(inst, tfs, self.handles, tasks_needed=True)
            self._reader.stacks = split
            self._undo.append(("close ring buffers", self._reader.close))
            self._reader.open()
            for fd in self._wake_fds:
                self._reader.wake_on(fd)
            inst.write("tracing_on", "1")
        except BaseException:
            self.close()
            raise

    def _preflight(self) -> None:
        tfs = self.tracefs
        for h in self.handles:
            p = h.probe
            if p.dynamic and not dynevents.supported(tfs, p.kind):
                k = dynevents.KINDS[p.kind]
                raise NotSupported(f"cannot add {h.name}: no {k.feature} on this kernel "
                                   f"({tfs.path(k.file)} is missing)", feature=k.feature,
                                   hint=k.missing_hint)
            if isinstance(p, Tracepoint) and not tfs.has(f"events/{p.group}/{p.event}/format"):
                raise SymbolError(f"no tracepoint {p.group}:{p.event}", symbol=p.location(),
                                  hint="list them with: kprobes list 't:*PATTERN*'")
        # Everything that can be refused without the kernel is refused before
        # anything is created: symbols, offsets, argument names, binaries.
        # Handles are changed only once every one passed.
        checks = Preflight(tfs)
        resolved: dict[int, Resolved] = {}
        for h in self.handles:        # a kprobe comes before its post-handler probe
            parent = resolved[id(h.post_of)] if h.post_of is not None else None
            resolved[id(h)] = checks.resolve(h, parent)
        for h in self.handles:
            h.apply(resolved[id(h)])

    def _create_instance(self) -> None:
        inst = self.tracefs.instance(self.name)
        inst.create()
        self._inst = inst
        self._undo.append(("remove instance", inst.remove))
        inst.write("tracing_on", "0")
        if self.clock and os.path.exists(os.path.join(inst.path, "trace_clock")):
            try:
                inst.write("trace_clock", self.clock)
            except KprobesError:
                pass
        # Drop new events when full (counted in per_cpu stats as "dropped events")
        # rather than overwriting unread ones.
        try:
            inst.write("options/overwrite", "0")
        except KprobesError:
            pass
        try:   # keep pid -> tgid for tasks that exit before we read their events
            inst.write("options/record-tgid", "1")
        except KprobesError:
            pass
        if self.buffer_kb:
            inst.write("buffer_size_kb", str(self.buffer_kb))
        if os.path.exists(os.path.join(inst.path, "buffer_percent")):
            inst.write("buffer_percent", str(self.wakeup_percent))
        if self.pid is not None:
            self.set_pids([self.pid])
        elif not self.trace_self and os.path.exists(os.path.join(inst.path,
                                                                 "set_event_notrace_pid")):
            # our own reads of /proc and tracefs would otherwise feed back as events
            inst.write("set_event_notrace_pid", str(os.getpid()))

    def set_pids(self, pids: Iterable[int]) -> None:
        """Trace only these tasks (all their threads) and what they fork."""
        inst = self._inst
        assert inst is not None
        tids: list[int] = []
        for pid in pids:
            try:
                tids += [int(t) for t in os.listdir(f"/proc/{pid}/task")]
            except FileNotFoundError:
                raise KprobesError(f"no process {pid}", hint="check the pid with: ps -p PID") from None
        try:
            inst.write("options/event-fork", "1")
        except KprobesError:
            pass
        inst.write("set_event_pid", " ".join(map(str, tids)))

    def _create(self, h: ProbeHandle) -> None:
        p = h.probe
        tfs = self.tracefs
        inst = self._inst
        assert inst is not None
        if not p.dynamic:
            assert isinstance(p, Tracepoint)
            h.group, h.event = p.group, p.event
        else:
            # profiles name events without their group: make the name unique
            h.group, h.event = self.name, f"{h.name}{self._tag}"
            extra = () if id(h) in self._no_comm else (FetchArg(COMM_ARG, "$comm", "string"),)
            line = p.definition(h.group, h.event, h.location, extra)
            dynevents.define(tfs, p.kind, line, hint=_refusal_hint(p))
            h.created = True
            self._undo.append((f"delete {h.group}/{h.event}",
                               lambda: dynevents.delete(tfs, h.probe.kind, h.group, h.event)))
        h.type_id = tfs.event_id(h.group, h.event)
        if p.filter:
            inst.set_filter(h.group, h.event, p.filter)
            if not p.dynamic:
                self._undo.append((f"clear filter {h.group}/{h.event}",
                                   lambda: inst.clear_filter(h.group, h.event)))

    def _enable(self, h: ProbeHandle) -> None:
        inst = self._inst
        assert inst is not None
        inst.set_event_enabled(h.group, h.event, True)
        def disable() -> None:
            if inst.exists():       # gone: removing the instance disabled it
                inst.set_event_enabled(h.group, h.event, False)
        self._undo.append((f"disable {h.group}/{h.event}", disable))

    # -- running -------------------------------------------------------------
    #: seconds spent in handlers (per-event and batch) so far; compare with
    #: wall time to see whether handlers keep up.
    handler_time: float = 0.0

    def run(self, duration: float | None = None, until: Callable[[], bool] | None = None) -> Stats:
        """Deliver events to handlers until ``duration`` seconds pass, ``until()``
        is true, :meth:`stop` is called, or Ctrl-C/SIGTERM. Returns the stats.

        Each cycle waits (``poll``, woken per the instance's ``buffer_percent``,
        at most 0.2 s), reads up to :attr:`Reader.max_pages` pages per CPU and
        delivers them; ``until()`` is called after every cycle.
        """
        self.start()
        reader = self._reader
        assert reader is not None
        deadline = None if duration is None else time.monotonic() + duration
        # Ctrl-C and SIGTERM end the run between batches: no batch is half delivered.
        old = install_stop_handlers(self)
        next_check = time.monotonic() + 1.0
        try:
            while not self._stop:
                if time.monotonic() >= next_check and self._inst is not None:
                    # changed behind our back? (events read by triggers only are
                    # never enabled: nothing to compare for those)
                    watch.check(self._inst, [h for h in self.handles
                                             if id(h) not in self._no_enable])
                    next_check = time.monotonic() + 1.0
                timeout = 0.2
                if deadline is not None:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    timeout = min(timeout, left)
                cycle = reader.read_cycle()
                if cycle.n:
                    self._deliver(cycle)
                    if cycle.n < self.SMALL_CYCLE and self.latency and not self._stop:
                        time.sleep(self.latency)      # let a trickle gather
                else:
                    reader.wait(timeout)
                if until is not None and until():
                    break
        except KeyboardInterrupt:
            pass
        finally:
            restore_handlers(old)
            self._stop = False
        self.drain()
        return self.stats()

    def wake_on(self, fd: int) -> None:
        """Wake :meth:`run` (and :meth:`poll`) once, as soon as ``fd`` is
        readable, so its ``until()`` is checked at once instead of within
        0.2 s: e.g. a pidfd (``os.pidfd_open``) of the process whose exit ends
        the run."""
        self._wake_fds.append(fd)
        if self._reader is not None:
            self._reader.wake_on(fd)

    def poll(self, timeout: float = 0.0) -> int:
        """Wait up to ``timeout`` for events and deliver what is there; returns the count."""
        self.start()
        assert self._reader is not None
        if timeout:
            self._reader.wait(timeout)
        return self._deliver(self._reader.read_cycle())

    def stop(self) -> None:
        """Ask a running :meth:`run` to return (from a handler or another thread)."""
        self._stop = True

    def drain(self) -> int:
        """Stop recording and deliver everything still in the buffers (exact accounting)."""
        if self._reader is None or self._inst is None:
            return 0
        try:
            self._inst.write("tracing_on", "0")
        except KprobesError:
            pass
        n = 0
        while True:
            cycle = self._reader.read_cycle()
            if not cycle.n:
                break
            n += self._deliver(cycle)
        return n

    def _deliver(self, cycle: Cycle) -> int:
        """Hand one read cycle to the handlers; returns the events delivered.

        Batch handlers, and handles with no handler at all (counted only),
        get :class:`Batch` columns; per-event handlers get lazily decoded
        events in timestamp order.
        """
        if not cycle.n:
            return 0
        t0 = time.perf_counter()
        bulk: set[int] = set()
        each: list[ProbeHandle] = []
        for h in self.handles:
            if h.batch is not None or (h.handler is None and h.on_event is None):
                bulk.add(id(h))
            else:
                each.append(h)
        n = 0
        try:
            if bulk:
                for h, b in cycle.batches(bulk):
                    h.stats.events += len(b)
                    n += len(b)
                    if h.batch is not None:
                        try:
                            h.batch(b)
                        except Exception as e:  # noqa: BLE001 - handler errors are counted
                            self._handler_error(h, e)
            if each:
                events = cycle.events({id(h) for h in each})
                n += len(events)
                if len(each) == 1 and each[0].on_event is None and not each[0].bind \
                        and not each[0].pointers:
                    self._deliver_simple(each[0], events)
                else:
                    self._deliver_each(events)
            for hook in self._after_cycle:
                hook()
        finally:
            self.handler_time += time.perf_counter() - t0
        return n

    def _deliver_simple(self, h: ProbeHandle, events: list[Any]) -> None:
        """One probe, handler(ev): the tight loop."""
        h.stats.events += len(events)
        fn = h.handler
        assert fn is not None
        it = iter(events)
        while True:
            try:
                for ev in it:
                    fn(ev)
                return
            except Exception as e:  # noqa: BLE001 - handler errors are counted
                self._handler_error(h, e)

    def _deliver_each(self, events: list[Any]) -> None:
        for ev in events:
            h = handle_of(ev)
            h.stats.events += 1
            if h.on_event is not None:
                h.on_event(ev)
            fn = h.handler
            if fn is None:
                continue
            try:
                if h.pointers:
                    kw = {n: ev.args.get(n) for n in h.bind or ()}
                    for param, fmap in h.pointers.items():
                        if param in kw:
                            kw[param] = Pointer(kw[param], {f: ev.args.get(a)
                                                            for f, a in fmap.items()})
                    fn(ev, **kw)
                elif h.bind:
                    fn(ev, **{n: ev.args.get(n) for n in h.bind})
                else:
                    fn(ev)
            except Exception as e:  # noqa: BLE001 - handler errors are counted
                self._handler_error(h, e)

    def _handler_error(self, h: ProbeHandle, e: Exception) -> None:
        h.stats.errors += 1
        if h.stats.first_error is None:
            h.stats.first_error = f"{type(e).__name__}: {e}"
        if self.stop_on_error:
            raise HandlerError(f"handler of {h.name} raised {type(e).__name__}: {e}",
                               probe=h.name, original=e) from e

    # -- batches and back-pressure -------------------------------------------
    def add_batch(self, probe: Probe | str, handler: Callable[[Batch], None], *,
                  name: str | None = None, stack: str | None = None) -> ProbeHandle:
        """Add a probe whose handler takes a whole :class:`~.reader.Batch` per read cycle.

        >>> total = 0                                            # doctest: +SKIP
        >>> def on_batch(b):                                     # doctest: +SKIP
        ...     global total
        ...     total += len(b)                   # counting decodes nothing
        ...     hist.update(b.args["__syscall_nr"])   # columns, decoded in bulk
        >>> s.add_batch("t:syscalls:sys_enter_getppid", on_batch)  # doctest: +SKIP

        The batch holds this probe's events of one cycle (up to
        ``Reader.max_pages`` pages per CPU), rows in timestamp order; columns
        ``ts``, ``cpu``, ``tid``, ``pid``, ``comm``, ``flags``,
        ``preempt_count``, ``args[NAME]`` are built on first access, and
        ``events()`` gives the rows as events. Same accounting as per-event
        handlers: ``stats().probes[NAME].events`` counts the rows delivered.
        """
        h = self.add(probe, None, name=name, stack=stack)
        h.batch = handler
        return h

    def set_batch(self, h: ProbeHandle, handler: Callable[[Batch], None]) -> None:
        """Give an added probe a batch handler (it then gets :class:`Batch`
        columns instead of events), before the session starts."""
        self._own(h).batch = handler

    def set_handler(self, h: ProbeHandle, handler: Handler) -> None:
        """Give an added probe a per-event handler (parameters after the event
        bound from its args by name), before the session starts."""
        self._own(h).bind = _binding(handler, h.probe)
        h.handler = handler

    def _own(self, h: ProbeHandle) -> ProbeHandle:
        if self._started:
            raise KprobesError("handlers must be set before the session starts")
        if not any(x is h for x in self.handles):
            raise KprobesError(f"probe {h.name} was not added to this session")
        return h

    def stacks(self, probe: Probe | str, kind: str = "kernel", *,
               name: str | None = None) -> StackCounts:
        """Count the distinct ``kind`` stacks (``kernel``, ``user``, ``both``) at a probe.

        >>> counts = s.stacks("u:/tmp/chain:leaf", kind="user")    # doctest: +SKIP
        >>> s.run(duration=1); print(counts.to_folded())            # doctest: +SKIP
        main;top;mid;leaf 1000

        The result fills while the session runs (user stacks are symbolized
        when first seen, while the process still exists); see
        :class:`~.stackcount.StackCounts` for ``rows()``, ``to_folded()``,
        ``to_svg(path)``.
        """
        from .stackcount import StackCounts
        counts = StackCounts(kind)
        h = self.add_batch(probe, counts.add_batch, name=name, stack=kind)
        counts.handle = h
        return counts

    def batch(self, spec: str, *, filter: str | None = None,
              name: str | None = None) -> Callable[[Handler], Handler]:
        """Decorator form of :meth:`add_batch` taking a CLI spec string."""
        def deco(fn: Handler) -> Handler:
            self.add_batch(parse_spec(spec, filter=filter), fn, name=name)
            return fn
        return deco

    @property
    def reader(self) -> Reader | None:
        """The ring-buffer reader once started (``reader.targets()``: the decoders)."""
        return self._reader

    def backlog(self) -> dict[int, int]:
        """Events waiting in each CPU's ring buffer, not yet read (``per_cpu/cpuN/stats``
        ``entries``). Growing values mean the handlers fall behind."""
        return self._reader.backlog() if self._reader is not None else {}

    def buffer_fill(self) -> dict[int, float]:
        """How full each CPU's ring buffer is, 0..1 (unread bytes / buffer size):
        events are lost when one reaches 1, so this, not the backlog count,
        says whether loss is near."""
        return self._reader.fill() if self._reader is not None else {}

    def lost(self) -> int:
        """Events the ring buffers dropped so far (all probes): cheaper than :meth:`stats`."""
        return self._reader.lost()[0] if self._reader is not None else 0

    # -- statistics ----------------------------------------------------------
    def stats(self) -> Stats:
        """A snapshot of the counters (after close: the final ones, read once the
        probes were disabled and before they were deleted)."""
        if self._final is not None:
            return self._final
        st = Stats()
        tfs = self._tfs
        profiles: dict[str, tuple[int, int]] = {}
        if tfs is not None and self._started:
            for kind in ("kprobe", "uprobe"):
                profiles.update(tfs.profile(kind))
        for h in self.handles:
            if h.created and h.event in profiles:
                h.stats.hits, h.stats.misses = profiles[h.event]
                h.stats.kernel_counted = True
            st.probes[h.name] = replace(h.stats)
            st.events += h.stats.events
        if self._reader is not None:
            st.lost, st.lost_pages = self._reader.lost()
        for a in self.aggregations:
            st.aggregations[a.name] = a.read()
        return st

    # -- undoing -------------------------------------------------------------
    def close(self) -> None:
        """Undo everything in reverse order; collect (never raise) cleanup problems."""
        if self._closed:
            return
        self._closed = True
        blocked = block_signals()
        failed: list[tuple[str, Callable[[], None]]] = []
        try:
            while self._undo:
                what, fn = self._undo.pop()
                if (self._final is None and self._started
                        and (what.startswith("delete ") or what == "remove instance")):
                    # probes disabled, not yet deleted: the final counts
                    self._final = self._snapshot()
                try:
                    fn()
                except Exception:  # noqa: BLE001 - keep undoing, then try once more
                    failed.append((what, fn))
            # a step refused once (ENOMEM, EBUSY while a later step was pending)
            # is tried again after all the others: a disable that failed makes
            # the delete fail, and both succeed on the second round
            for what, fn in failed:
                try:
                    fn()
                except Exception as e:  # noqa: BLE001 - report, never raise
                    self.cleanup_problems.append(f"{what}: {e}")
        finally:
            unblock_signals(blocked)

    def _snapshot(self) -> Stats | None:
        try:
            return self.stats()
        except Exception as e:  # noqa: BLE001 - never let stats block cleanup
            self.cleanup_problems.append(f"final statistics: {e}")
            return None


def _with(p: Probe, args: Iterable[FetchArg | str], filter: str | None, name: str | None) -> Probe:
    from dataclasses import replace

    from ..probes.spec import parse_arg
    fa = tuple(a if isinstance(a, FetchArg) else parse_arg(a, i + 1)
               for i, a in enumerate(args))
    return replace(p, args=(*p.args, *fa), filter=filter or p.filter, name=name or p.name)


def _kind(probe: Probe | str, cls: type[Any], not_cls: type[Any] | None, message: str) -> Any:
    """``probe`` (parsed when a spec string) if it is a ``cls`` and not a ``not_cls``."""
    if isinstance(probe, str):
        probe = parse_spec(probe)
    if not isinstance(probe, cls) or (not_cls is not None and isinstance(probe, not_cls)):
        raise SpecError(f"{message}, got {type(probe).__name__}")
    return probe


def _binding(fn: Handler, probe: Probe) -> tuple[str, ...] | None:
    """Handler parameters after the event that are bound from fetched args by name.

    A parameter without a default that the probe does not fetch is an error,
    raised before anything is created.
    """
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        return None
    params = [p for p in params[1:] if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    if not params:
        return None
    known = {a.name for a in probe.args} if probe.dynamic else None
    if known is None:
        return tuple(p.name for p in params)
    unknown = [p.name for p in params if p.name not in known and p.default is p.empty]
    if unknown:
        raise SpecError(f"handler {getattr(fn, '__name__', 'handler')}() takes "
                        f"{', '.join(unknown)} but the probe fetches only: "
                        f"{', '.join(sorted(known)) or 'nothing'}",
                        hint="name the handler's parameters after the probe's args")
    return tuple(p.name for p in params if p.name in known) or None


def _refusal_hint(p: Probe) -> str:
    if isinstance(p, (KProbe, KRetProbe)):
        return ("check the symbol with: kprobes list 'p:PATTERN' (blacklisted, notrace and "
                "inlined functions cannot be probed)")
    return "check the fetch args: see kprobes trace --help"

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

import os
import re
import time
from collections.abc import Callable, Iterable

from ..errors import KprobesError, NotSupported, SymbolError
from ..kernel import dynevents
from ..kernel.tracefs import Instance, Tracefs
from ..probes.model import FetchArg, KProbe, KRetProbe, Probe, Tracepoint
from ..probes.spec import parse_spec
from ..values import Value, replace
from . import owner, watch
from .aggregating import AggregateMixin
from .batch import COMM_ARG
from .deliver import DeliverMixin
from .handle import Handler, ProbeHandle, ProbeStats, Resolved
from .kinds import ProbeKindsMixin, handler_binding
from .preflight import Preflight
from .reader import Reader
from .signals import (
    block_signals,
    install_sigterm,
    install_stop_handlers,
    restore_handlers,
    restore_sigterm,
    unblock_signals,
)

TYPE_CHECKING = False   # typing's, without importing typing at run time
if TYPE_CHECKING:
    from typing import Any

    from .stackcount import StackCounts
# .stacks and .stackcount (with the symbolizers: ELF, lzma, threads) are imported
# only by sessions that record stacks: a probe's start-up does not load them

__all__ = ["Session", "Stats", "ProbeStats", "ProbeHandle"]


class Stats(Value):
    """Session counters. ``lost`` = events the ring buffer dropped (all probes);
    ``lost_pages``: pages that carried the "events were lost" flag;
    ``aggregations``: name -> list of aggregation rows."""

    __slots__ = _fields = ("probes", "lost", "lost_pages", "events", "aggregations")

    def __init__(self, probes: dict[str, ProbeStats] | None = None, lost: int = 0,
                 lost_pages: int = 0, events: int = 0,
                 aggregations: dict[str, Any] | None = None) -> None:
        self.probes = {} if probes is None else probes
        self.lost = lost
        self.lost_pages = lost_pages
        self.events = events
        self.aggregations = {} if aggregations is None else aggregations

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


class Session(ProbeKindsMixin, AggregateMixin, DeliverMixin):
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
        self.clock_set = False          # the instance's trace clock is ``clock``
        self._draining = False
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
            h.bind = handler_binding(handler, probe)
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
            streams = self._streams()
            for h in sorted(streams, key=lambda h: not h.hidden):
                self._enable(h)
            # events read by triggers only (kernel-backend aggregations, hit counters)
            # never reach the ring buffer: the reader decodes the others only
            self._reader = Reader(inst, tfs, streams, tasks_needed=True)
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
                self.clock_set = True
            except KprobesError:
                pass
        if self._streams():     # the ring buffer's settings, if anything is read from it
            self._ring_buffer_options(inst)
        if self.pid is not None and not self._perf_only():
            self._set_pids([self.pid])
        elif not self.trace_self and os.path.exists(os.path.join(inst.path,
                                                                 "set_event_notrace_pid")):
            # our own reads of /proc and tracefs would otherwise feed back as events
            inst.write("set_event_notrace_pid", str(os.getpid()))

    def _ring_buffer_options(self, inst: Instance) -> None:
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

    def _streams(self) -> list[ProbeHandle]:
        """The handles whose events are recorded and read (not by triggers only)."""
        return [h for h in self.handles if id(h) not in self._no_enable]

    def set_pids(self, pids: Iterable[int]) -> None:
        """Trace only these tasks (all their threads) and what they fork."""
        if any(getattr(a, "hits_of", "") for a in self.aggregations):
            raise KprobesError("a plain count of this session is counted by a hit counter "
                               "chosen for the session's task (or all tasks)",
                               hint="give the task when the session is made: Session(pid=PID)")
        self._set_pids(pids)

    def _perf_only(self) -> bool:
        """Every probe is a plain count of the session's task by perf counters, which
        filter by task themselves: no ``set_event_pid`` (its probes on every context
        switch) unless one of them falls back to a hist trigger."""
        perf = {id(getattr(a, "handle", None)) for a in self.aggregations
                if getattr(a, "hits_of", "") == "perf"}
        return all(id(h) in perf for h in self.handles)

    @staticmethod
    def _tids(pids: Iterable[int]) -> list[int]:
        """Every thread of these processes."""
        tids: list[int] = []
        for pid in pids:
            try:
                tids += [int(t) for t in os.listdir(f"/proc/{pid}/task")]
            except FileNotFoundError:
                raise KprobesError(f"no process {pid}", hint="check the pid with: ps -p PID") from None
        return tids

    def _read_upto(self) -> int | None:
        """Every event stamped up to this time has been read (:attr:`Reader.complete_ns`);
        None when every event has (draining), or when the trace clock is not ``mono``
        (no time of ours to compare with)."""
        r = self._reader
        if r is None or self._draining or not (self.clock == "mono" and self.clock_set):
            return None
        return r.complete_ns

    def _set_pids(self, pids: Iterable[int]) -> None:
        inst = self._inst
        assert inst is not None
        tids = self._tids(pids)
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

    def run(self, duration: float | None = None, until: Callable[[], bool] | None = None,
            tick: float = 0.2) -> Stats:
        """Deliver events to handlers until ``duration`` seconds pass, ``until()``
        is true, :meth:`stop` is called, or Ctrl-C/SIGTERM. Returns the stats.

        Each cycle waits (``poll``, woken per the instance's ``buffer_percent``,
        at most ``tick`` seconds), reads up to :attr:`Reader.max_pages` pages per
        CPU and delivers them; ``until()`` is called after every cycle, so at
        least every ``tick`` seconds (a shorter tick for intervals shorter than
        0.2 s: a session read by triggers and counters only has no events to wake it).
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
                    watch.check(self._inst, self._streams())
                    next_check = time.monotonic() + 1.0
                timeout = tick
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
        self._draining = True       # all is read: after-cycle hooks hold nothing back
        try:
            for hook in self._after_cycle:
                hook()
        finally:
            self._draining = False
        return n

    # -- stacks, back-pressure, statistics -----------------------------------
    def stacks(self, probe: Probe | str, kind: str = "kernel", *,
               name: str | None = None, per_process: bool = False, backend: str = "auto",
               filter: str | None = None, size: int = 2048) -> StackCounts:
        """Count the distinct ``kind`` stacks (``kernel``, ``user``, ``both``) at a probe.

        >>> counts = s.stacks("u:/tmp/chain:leaf", kind="user")    # doctest: +SKIP
        >>> s.run(duration=1); print(counts.to_folded())            # doctest: +SKIP
        main;top;mid;leaf 1000

        An :class:`~kprobes.agg.model.Aggregation` (``read()``, ``clear()``,
        ``to_json()``) whose rows are keyed by ``kstack`` / ``ustack`` (function
        names, innermost first), after ``pid`` and ``comm`` with ``per_process``;
        ``to_folded()``, ``to_svg(path)``, ``to_text()`` on top.
        ``backend``: ``kernel`` (a ``hist:keys=stacktrace`` trigger; kernel stacks
        only, where hist triggers exist), ``user`` (stack records with each event,
        symbolized when first seen) or ``auto`` (kernel where it can);
        ``backend_reason`` says why. ``size``: keys the kernel keeps.
        """
        from .stackcount import add_stacks
        return add_stacks(self, probe, kind, name=name, per_process=per_process,
                          backend=backend, filter=filter, size=size)

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


def _refusal_hint(p: Probe) -> str:
    if isinstance(p, (KProbe, KRetProbe)):
        return ("check the symbol with: kprobes list 'p:PATTERN' (blacklisted, notrace and "
                "inlined functions cannot be probed)")
    return "check the fetch args: see kprobes trace --help"

"""The probe kinds of :class:`~kprobes.runtime.session.Session`, each as a
decorator and as an ``add_*`` method: kprobes with pre- and post-handlers,
kretprobes with an entry handler and per-call data, jprobes (entry probes whose
handler takes the function's own arguments, typed from BTF), uprobes,
uretprobes and tracepoints. Each builds a :class:`~kprobes.probes.model.Probe`
and hands it to ``Session.add``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from ..errors import KprobesError, SpecError
from ..probes.model import FetchArg, KProbe, KRetProbe, Probe, Tracepoint, UProbe, URetProbe
from ..probes.spec import parse_spec
from .event import Event
from .handle import Handler, ProbeHandle

TYPE_CHECKING = False   # typing's, without importing typing at run time
if TYPE_CHECKING:
    from typing import Any

    from .batch import Batch
    from .calls import Calls

__all__ = ["ProbeKindsMixin"]


class ProbeKindsMixin:
    """Decorators and ``add_*`` methods per probe kind (mixed into Session)."""

    if TYPE_CHECKING:
        _started: bool
        handles: list[ProbeHandle]

        def add(self, probe: Probe | str, handler: Handler | None = None, *,
                name: str | None = None, stack: str | None = None) -> ProbeHandle: ...

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
                st.append((ev.ts_ns, entry(ev)))
            except Exception:
                st.append((ev.ts_ns, None))
                raise

        def on_return(ev: Event) -> None:
            # the newest entry before this return: events of different CPUs can arrive
            # out of order across read cycles, so the next call's entry, read early from
            # another CPU, may already be on the stack
            st = stacks.get(ev.tid)
            k = len(st) - 1 if st else -1
            while k >= 0 and st[k][0] > ev.ts_ns:     # type: ignore[index]
                k -= 1
            ev.data = st.pop(k)[1] if k >= 0 else None  # type: ignore[union-attr]  # None: unseen
        ent.handler = on_entry
        ret.on_event = on_return
        return ret

    def add_calls(self, probe: Probe | str, handler: Callable[[Calls], Any], *,
                  entry_args: Iterable[FetchArg | str] = (), name: str | None = None
                  ) -> ProbeHandle:
        """A function's calls as columns: a return probe (``r:SYM``, ``ur:PATH:SYM``, with
        its own args such as ``retval=$retval:s64``) and an entry probe fetching
        ``entry_args``, paired per thread on the batch path; ``handler`` gets one
        :class:`~.calls.Calls` per read cycle with the calls that returned in it.

        >>> def on_calls(c):                                          # doctest: +SKIP
        ...     for comm, path, ret in zip(c.comm, c.args["filename"], c.args["retval"]):
        ...         print(comm, path, ret)
        >>> s.add_calls("r:do_sys_openat2 retval=$retval:s64", on_calls,   # doctest: +SKIP
        ...             entry_args=("filename",))

        The per-event form, :meth:`add_kretprobe` with ``entry=``, decodes two event
        objects per call; this decodes columns (see :mod:`.calls` for the difference).
        """
        from .calls import CallPairer
        rp = _kind(probe, (KRetProbe, URetProbe), None,
                   "add_calls needs a return probe (r:SYM or ur:PATH:SYM)")
        ret = self.add(rp, None, name=name)
        if isinstance(rp, KRetProbe):
            eprobe: Probe = KProbe(rp.symbol, module=rp.module, address=rp.address)
        else:
            eprobe = UProbe(rp.path, rp.symbol, rp.offset)
        ent = self.add(_with(eprobe, entry_args, None, None), None, name=f"{ret.name}_entry")
        ent.hidden = True
        self._no_comm.add(id(ent))      # type: ignore[attr-defined]   # comm: the return's
        pairer = CallPairer(handler, complete=self._read_upto,  # type: ignore[attr-defined]
                            on_error=lambda e: self._handler_error(ret, e))  # type: ignore[attr-defined]
        ent.batch = pairer.entries
        ret.batch = pairer.returns
        self._after_cycle.append(pairer.flush)      # type: ignore[attr-defined]
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
            import inspect
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

    def add_batch(self, probe: Probe | str, handler: Callable[[Batch], None], *,
                  name: str | None = None, stack: str | None = None) -> ProbeHandle:
        """Add a probe whose handler takes a whole :class:`~.batch.Batch` per read cycle.

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
        self._own(h).bind = handler_binding(handler, h.probe)
        h.handler = handler

    def _own(self, h: ProbeHandle) -> ProbeHandle:
        if self._started:
            raise KprobesError("handlers must be set before the session starts")
        if not any(x is h for x in self.handles):
            raise KprobesError(f"probe {h.name} was not added to this session")
        return h

    def batch(self, spec: str, *, filter: str | None = None,
              name: str | None = None) -> Callable[[Handler], Handler]:
        """Decorator form of :meth:`add_batch` taking a CLI spec string."""
        def deco(fn: Handler) -> Handler:
            self.add_batch(parse_spec(spec, filter=filter), fn, name=name)
            return fn
        return deco


def _with(p: Probe, args: Iterable[FetchArg | str], filter: str | None, name: str | None) -> Probe:
    from ..probes.spec import parse_arg
    from ..values import replace
    fa = tuple(a if isinstance(a, FetchArg) else parse_arg(a, i + 1)
               for i, a in enumerate(args))
    return replace(p, args=(*p.args, *fa), filter=filter or p.filter, name=name or p.name)


def _kind(probe: Probe | str, cls: type[Any] | tuple[type[Any], ...], not_cls: type[Any] | None,
          message: str) -> Any:
    """``probe`` (parsed when a spec string) if it is a ``cls`` and not a ``not_cls``."""
    if isinstance(probe, str):
        probe = parse_spec(probe)
    if not isinstance(probe, cls) or (not_cls is not None and isinstance(probe, not_cls)):
        raise SpecError(f"{message}, got {type(probe).__name__}")
    return probe


def handler_binding(fn: Handler, probe: Probe) -> tuple[str, ...] | None:
    """Handler parameters after the event that are bound from fetched args by name.

    A parameter without a default that the probe does not fetch is an error,
    raised before anything is created.
    """
    code = getattr(fn, "__code__", None)
    if code is not None and code.co_argcount + code.co_kwonlyargcount <= 1:
        return None     # a plain function of the event alone (inspect: start-up time)
    import inspect
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

"""Handing a read cycle to the handlers: batch handlers (and probes that are only
counted) get :class:`~.batch.Batch` columns, per-event handlers events built
from those columns in timestamp order, with their arguments bound by name and pointers
wrapped; handler errors are counted (or stop the run with ``stop_on_error``).
Mixed into :class:`~.session.Session`."""

from __future__ import annotations

import time

from ..errors import HandlerError
from ..probes.btfargs import Pointer
from .batch import handle_of

TYPE_CHECKING = False   # typing's, without importing typing at run time
if TYPE_CHECKING:
    from typing import Any

    from .handle import ProbeHandle
    from .reader import Cycle

__all__ = ["DeliverMixin"]


class DeliverMixin:
    """Delivery of read cycles; the session provides ``handles``, ``stop_on_error``,
    ``handler_time`` and ``_after_cycle``."""

    handles: list[ProbeHandle]
    stop_on_error: bool
    handler_time: float
    _after_cycle: list[Any]

    def _deliver(self, cycle: Cycle) -> int:
        """Hand one read cycle to the handlers; returns the events delivered.

        Batch handlers, and handles with no handler at all (counted only),
        get :class:`Batch` columns; per-event handlers get events made from
        them in timestamp order.
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

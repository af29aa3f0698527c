"""The aggregation methods of :class:`~kprobes.runtime.session.Session`.

Kept apart from :mod:`kprobes.runtime.aggregate` (backends, hist files, user-side
aggregators) so that a session that aggregates nothing does not import them:
each method imports the engine when first called.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

TYPE_CHECKING = False   # typing's, without importing typing at run time

if TYPE_CHECKING:
    from typing import Any

    from ..agg.model import Aggregation
    from ..probes.model import Probe

__all__ = ["AggregateMixin"]


class AggregateMixin:
    """The aggregation methods of :class:`~kprobes.runtime.session.Session`."""

    def aggregate(self, kind: str, probe: Probe | str, *, by: Iterable[str] = (),
                  value: str | None = None, log2: bool = False,
                  linear: tuple[int, int, int] | None = None, backend: str = "auto",
                  filter: str | None = None, size: int | None = None,
                  cap: int | None = None) -> Aggregation:
        """An aggregation of ``probe``'s events: ``kind`` is count, hist, sum, min, max or avg.

        ``size``: keys the kernel keeps (hist ``size=``, default 2048); ``cap``: keys
        the user side keeps (default 10240); events of further keys are ``dropped``."""
        from .aggregate import new_aggregation
        return new_aggregation(self, kind, probe, by=by, value=value, log2=log2, linear=linear,
                               backend=backend, filter=filter, size=size, cap=cap)

    def count(self, probe: Probe | str, by: Iterable[str] = (), **kw: Any) -> Aggregation:
        """Count events per key (``by``: comm, pid, tid, cpu, the probe's args)."""
        return self.aggregate("count", probe, by=by, **kw)

    def hist(self, probe: Probe | str, value: str, by: Iterable[str] = (), *,
             log2: bool = True, linear: tuple[int, int, int] | None = None,
             **kw: Any) -> Aggregation:
        """A histogram of ``value`` (kernel ``.log2`` buckets, or ``linear=(lo, hi, step)``)."""
        return self.aggregate("hist", probe, by=by, value=value, log2=log2, linear=linear, **kw)

    def sum(self, probe: Probe | str, value: str, by: Iterable[str] = (), **kw: Any) -> Aggregation:
        return self.aggregate("sum", probe, by=by, value=value, **kw)

    def min(self, probe: Probe | str, value: str, by: Iterable[str] = (), **kw: Any) -> Aggregation:
        return self.aggregate("min", probe, by=by, value=value, **kw)

    def max(self, probe: Probe | str, value: str, by: Iterable[str] = (), **kw: Any) -> Aggregation:
        return self.aggregate("max", probe, by=by, value=value, **kw)

    def avg(self, probe: Probe | str, value: str, by: Iterable[str] = (), **kw: Any) -> Aggregation:
        return self.aggregate("avg", probe, by=by, value=value, **kw)

    def funclatency(self, func: Probe | str, by: Iterable[str] = ("comm",), *,
                    unit: str = "us", backend: str = "auto", size: int | None = None,
                    cap: int | None = None) -> Aggregation:
        """Time from entry to return of the same call on the same thread, as a
        log2 histogram per key (comm, pid, tid, cpu), in ``unit`` (ns, us, ms)."""
        from .aggregate import new_latency
        return new_latency(self, func, by, unit=unit, backend=backend, size=size, cap=cap)

    def latency_between(self, starts: Probe | str | Iterable[Probe | str], end: Probe | str, *,
                        start_key: Sequence[str] = ("tid",), end_key: Sequence[str] = ("tid",),
                        by: Iterable[str] = (), unit: str = "us", backend: str = "auto",
                        size: int = 2048, cap: int = 10240) -> Aggregation:
        """Time from a start event (or any of several) to an end event with the same key
        (``start_key`` fields of the start, ``end_key`` fields of the end; ``tid``/``pid``
        where the event has no such field: the task), as a log2 histogram per ``by``
        key of the end event, in ``unit`` (ns, us, ms).

        >>> s.latency_between("t:block:block_rq_issue", "t:block:block_rq_complete",
        ...                   start_key=("dev", "sector"), end_key=("dev", "sector"),
        ...                   by=("dev",))                       # doctest: +SKIP
        """
        from .pairlat import latency_between
        agg: Aggregation = latency_between(
            self, starts, end, start_key=start_key, end_key=end_key, by=by, unit=unit,
            backend=backend, size=size, cap=cap)
        return agg

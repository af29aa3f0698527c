"""Aggregations and the tracer's own health as Prometheus metrics.

>>> exp = Exporter(session, [agg])                               # doctest: +SKIP
>>> exp.serve("127.0.0.1", 9102)       # http://127.0.0.1:9102/metrics  # doctest: +SKIP
>>> session.run(until=exp.service)                               # doctest: +SKIP

Uses ``prometheus_client`` (``pip install 'kprobes[prometheus]'``), imported
only here. Metrics (``PREFIX`` = ``kprobes`` by default):

===========================================  =========  ==================================
``PREFIX_<name>_total{keys}``                counter    a ``count`` aggregation, per key
``PREFIX_<name>[_<unit>]_bucket{keys,le}``   histogram  ``hist`` / ``latency``, per key,
``..._sum``, ``..._count``                              with ``_sum`` and ``_count``
``PREFIX_<name>{keys}``                      gauge      ``sum`` / ``min`` / ``max`` / ``avg``
``PREFIX_dropped_keys_total{aggregation}``   counter    keys dropped for lack of room
``PREFIX_events_total{probe}``               counter    events delivered, per probe
``PREFIX_probe_hits_total{probe}``           counter    kernel hit count (k/uprobes)
``PREFIX_handler_errors_total{probe}``       counter    handler exceptions
``PREFIX_lost_events_total``                 counter    events the ring buffer dropped
``PREFIX_backlog_events{cpu}``               gauge      events waiting in the ring buffer
``PREFIX_snapshot_errors_total``             counter    snapshots that failed (the scrape
                                                        got the previous one)
``process_*``                                           the tracer process's own CPU, memory
===========================================  =========  ==================================

Keys are labels (named after the ``by`` fields; stacks are joined with
``;``). Histogram buckets: an aggregation bucket holds the integers
``lo <= v < hi``, so it is cumulative bucket ``le = hi - 1`` (exact for
integer values: ``v <= hi - 1``); ``+Inf`` is the row's count and ``_sum``
its sum (NaN when the aggregation keeps no sum). Values are in the
aggregation's own unit (``_ns``, ``_bytes``...), not converted to seconds.

Consistency: ``prometheus_client`` serves scrapes from its own thread, but
aggregations and counters are read only in the session's thread. A scrape
asks, :meth:`Exporter.service` (called after every read cycle, e.g. as
``run(until=...)``) first delivers what the ring buffers hold, then takes one
snapshot of every metric, and the scrape returns it: a scrape after the
traced work ended shows all of its events. Delivering before the snapshot
stops after ``drain_cycles`` read cycles or ``drain_time`` seconds (under a
flood the snapshot is as of then). A scrape waits at most ``timeout`` seconds
(Prometheus' default scrape timeout) for the session thread, then gets the
previous snapshot. When nothing has called :meth:`Exporter.service` for 2 s
(no run loop: library use between runs), the scrape's thread reads the
metrics itself.
"""

from __future__ import annotations

import math
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator

from .frames import key_label
from .optional import require

TYPE_CHECKING = False   # typing's, without importing typing at run time
if TYPE_CHECKING:
    from typing import Any

__all__ = ["Exporter", "build_families", "health_families", "parse_listen", "le_buckets",
           "prometheus_client"]

_BAD = re.compile(r"[^a-zA-Z0-9_]")


def _metric_name(s: str) -> str:
    s = _BAD.sub("_", s)
    return s if re.match(r"[a-zA-Z_]", s) else "_" + s


def _label_name(s: str) -> str:
    s = _metric_name(s).lstrip("_") or "key"
    return s


def prometheus_client() -> Any:
    """The module, or :class:`~.optional.MissingExtra` naming ``kprobes[prometheus]``."""
    return require("prometheus_client", "prometheus", "--serve (Prometheus metrics)")


_prom = prometheus_client


def _core() -> Any:
    _prom()
    return require("prometheus_client.core", "prometheus", "--serve (Prometheus metrics)")


def le_buckets(buckets: Iterable[Any], count: int) -> list[tuple[str, float]]:
    """Integer-range buckets (``lo <= v < hi``) as cumulative ``(le, count)`` pairs
    ending with ``+Inf`` = ``count``.

    >>> class B:
    ...     def __init__(self, lo, hi, count): self.lo, self.hi, self.count = lo, hi, count
    >>> le_buckets([B(3, 5, 2), B(1, 2, 1), B(2, 3, 4)], 7)
    [('1', 1.0), ('2', 5.0), ('4', 7.0), ('+Inf', 7.0)]
    """
    out: list[tuple[str, float]] = []
    total = 0
    for b in sorted(buckets, key=lambda b: b.hi):
        total += b.count
        out.append((str(b.hi - 1), float(total)))
    out.append(("+Inf", float(max(count, total))))
    return out


def _labels(row: Any, by: tuple[str, ...]) -> list[str]:
    return [str(key_label(row.key.get(k, ""))) for k in by]


def build_families(agg: Any, prefix: str = "kprobes") -> list[Any]:
    """The metric families of one aggregation (``agg.read()`` is called once)."""
    core = _core()
    rows = agg.read()
    by = tuple(agg.by or ()) or tuple(dict.fromkeys(k for r in rows for k in r.key))
    labels = [_label_name(k) for k in by]
    kind = agg.kind
    base = _metric_name(f"{prefix}_{agg.name}")
    unit = _metric_name(agg.unit) if getattr(agg, "unit", None) else ""
    what = f"{kind} of {agg.value}" if getattr(agg, "value", None) else kind
    doc = f"kprobes {what} by {', '.join(by) or 'nothing'} ({agg.name})"
    if kind == "count":
        fam = core.CounterMetricFamily(base, doc, labels=labels)
        for r in rows:
            fam.add_metric(_labels(r, by), r.count)
    elif kind in ("hist", "latency"):
        name = f"{base}_{unit}" if unit and not base.endswith(f"_{unit}") else base
        fam = core.HistogramMetricFamily(name, doc, labels=labels)
        for r in rows:
            fam.add_metric(_labels(r, by), le_buckets(r.buckets or (), r.count),
                           float(r.sum) if r.sum is not None else math.nan)
    else:
        fam = core.GaugeMetricFamily(base, doc, labels=labels)
        for r in rows:
            if kind == "avg":
                v = (r.sum / r.count) if r.sum is not None and r.count else math.nan
            else:
                v = getattr(r, kind, None)
            fam.add_metric(_labels(r, by), math.nan if v is None else float(v))
    return [fam]


def health_families(session: Any = None, aggregations: Iterable[Any] = (),
                    prefix: str = "kprobes") -> list[Any]:
    """The tracer's own counters: events, hits, errors per probe, lost, backlog,
    dropped aggregation keys."""
    core = _core()
    fams = []
    aggs = list(aggregations)
    if aggs:
        dropped = core.CounterMetricFamily(f"{prefix}_dropped_keys",
                                           "keys an aggregation dropped for lack of room",
                                           labels=["aggregation"])
        for a in aggs:
            dropped.add_metric([a.name], int(getattr(a, "dropped", 0) or 0))
        fams.append(dropped)
    if session is None:
        return fams
    st = session.stats()
    ev = core.CounterMetricFamily(f"{prefix}_events", "events delivered to the tracer",
                                  labels=["probe"])
    hits = core.CounterMetricFamily(f"{prefix}_probe_hits",
                                    "probe hits counted by the kernel (kprobes, uprobes)",
                                    labels=["probe"])
    errs = core.CounterMetricFamily(f"{prefix}_handler_errors", "handler exceptions",
                                    labels=["probe"])
    dynamic = {h.name for h in getattr(session, "handles", ()) if h.probe.dynamic}
    for name, p in st.probes.items():
        ev.add_metric([name], p.events)
        errs.add_metric([name], p.errors)
        if name in dynamic:
            hits.add_metric([name], p.hits)
    lost = core.CounterMetricFamily(f"{prefix}_lost_events",
                                    "events the ring buffer dropped (all probes)")
    lost.add_metric([], st.lost)
    backlog = core.GaugeMetricFamily(f"{prefix}_backlog_events",
                                     "events waiting in the ring buffer, per CPU",
                                     labels=["cpu"])
    for cpu, n in sorted(session.backlog().items()):
        backlog.add_metric([str(cpu)], n)
    return fams + [ev, hits, errs, lost, backlog]


def parse_listen(text: str, default_addr: str = "127.0.0.1") -> tuple[str, int]:
    """``[ADDR:]PORT`` (``[::1]:9102`` for IPv6) -> ``(addr, port)``.

    >>> parse_listen("9102"), parse_listen("0.0.0.0:9102"), parse_listen("[::1]:0")
    (('127.0.0.1', 9102), ('0.0.0.0', 9102), ('::1', 0))
    """
    from ..errors import KprobesError
    addr, sep, port = text.rpartition(":")
    if not sep:
        addr = default_addr
    addr = addr.strip("[]") or default_addr
    try:
        p = int(port)
        if not 0 <= p <= 65535:
            raise ValueError
    except ValueError:
        raise KprobesError(f"--serve {text}: not a port", hint="[ADDR:]PORT, e.g. --serve 9102 "
                           "or --serve 0.0.0.0:9102") from None
    return addr, p


class Exporter:
    """A ``prometheus_client`` collector over a session and its aggregations.

    ``session``: the :class:`~kprobes.runtime.session.Session` (health metrics,
    and where pending events are delivered before a snapshot); ``aggregations``:
    objects with the aggregation interface (``kind``, ``name``, ``by``,
    ``value``, ``unit``, ``dropped``, ``read()``).
    """

    #: a run loop that called :meth:`service` within this many seconds answers
    #: scrapes; otherwise the scrape's thread reads the metrics itself
    ATTACHED = 2.0

    def __init__(self, session: Any = None, aggregations: Iterable[Any] = (), *,
                 prefix: str = "kprobes", timeout: float = 10.0, drain_cycles: int = 16,
                 drain_time: float = 0.25) -> None:
        self.pc = _prom()
        self.session = session
        self.aggregations = list(aggregations)
        self.prefix = prefix
        self.timeout = timeout
        self.drain_cycles = drain_cycles
        self.drain_time = drain_time
        self._cond = threading.Condition()
        self._wanted = 0
        self._done = 0
        self._families: list[Any] | None = None
        self._owner = threading.get_ident()
        self._serviced = -math.inf        # monotonic time of the last service() call
        self.server: Any = None
        self.address: tuple[str, int] | None = None
        self.registry = self.pc.CollectorRegistry(auto_describe=False)
        self.registry.register(self)
        self.pc.ProcessCollector(registry=self.registry)
        #: the last snapshot's failure (None when it worked), and how many failed
        self.snapshot_error: str | None = None
        self.snapshot_errors = 0

    # -- the session's thread --------------------------------------------------
    def snapshot(self) -> list[Any]:
        """Read every metric now (call in the session's thread)."""
        fams: list[Any] = []
        for a in self.aggregations:
            fams += build_families(a, self.prefix)
        fams += health_families(self.session, self.aggregations, self.prefix)
        errs = _core().CounterMetricFamily(f"{self.prefix}_snapshot_errors",
                                           "metric snapshots that failed")
        errs.add_metric([], self.snapshot_errors)
        return fams + [errs]

    def service(self) -> bool:
        """Answer a waiting scrape, if any: deliver what the ring buffers hold
        (bounded), then snapshot. Cheap when no scrape waits. Returns False,
        so it can be ``run(until=exporter.service)``."""
        with self._cond:
            wanted = self._wanted
            self._serviced = time.monotonic()
        if wanted == self._done:
            return False
        s = self.session
        if s is not None and getattr(s, "reader", None) is not None:
            end = time.monotonic() + self.drain_time
            for _ in range(self.drain_cycles):
                if not s.poll(0) or time.monotonic() > end:
                    break
        try:
            fams = self.snapshot()
            self.snapshot_error = None
        except Exception as e:  # noqa: BLE001 - a bad read must not end the trace
            self.snapshot_error = f"{type(e).__name__}: {e}"
            self.snapshot_errors += 1
            fams = self._families or []
        with self._cond:
            self._families = fams
            self._done = wanted
            self._cond.notify_all()
        return False

    def expect_loop(self) -> None:
        """A run loop calling :meth:`service` is coming: until it has, scrapes wait
        for it (up to ``timeout``) instead of reading the metrics without the drain."""
        with self._cond:
            self._serviced = max(self._serviced, time.monotonic() + self.timeout)

    def until(self, other: Callable[[], bool] | None = None) -> Callable[[], bool]:
        """An ``until`` for :meth:`Session.run` that services scrapes, then asks ``other``."""
        self.expect_loop()

        def check() -> bool:
            self.service()
            return bool(other()) if other is not None else False
        return check

    # -- the scrape's thread ---------------------------------------------------
    def collect(self) -> Iterator[Any]:
        """``prometheus_client`` collector API: the snapshot taken for this scrape."""
        with self._cond:
            idle = time.monotonic() - self._serviced > self.ATTACHED
        if threading.get_ident() == self._owner or idle:
            # no run loop services scrapes (library use, or between runs): read here
            try:
                fams = self.snapshot()
            except Exception as e:  # noqa: BLE001 - serve the last good snapshot
                self.snapshot_error = f"{type(e).__name__}: {e}"
                self.snapshot_errors += 1
                fams = self._families or []
            yield from fams
            return
        with self._cond:
            self._wanted += 1
            mine = self._wanted
            self._cond.wait_for(lambda: self._done >= mine, self.timeout)
            last = self._families
        yield from last or ()

    def serve(self, addr: str = "127.0.0.1", port: int = 0) -> tuple[str, int]:
        """Serve ``/metrics`` on ``addr:port`` (port 0: any free one) from a daemon
        thread; returns the address bound."""
        server, _thread = self.pc.start_http_server(port, addr=addr, registry=self.registry)
        self.server = server
        self.address = server.server_address[:2]
        return self.address

    def close(self) -> None:
        """Stop serving."""
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None
        with self._cond:           # release a scrape still waiting
            self._done = self._wanted
            self._cond.notify_all()

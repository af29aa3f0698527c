"""Counters and aggregation rows as pandas DataFrames (pandas imported lazily).

>>> s.stats().to_pandas()                                        # doctest: +SKIP
                   events  hits  misses  errors
probe
sys_enter_getppid     500     0       0       0
>>> aggregation_to_pandas(agg)                                   # doctest: +SKIP
   comm  lo  hi  count
0  gen    1   2     10
1  gen    2   3      4

Pure: no kernel access. pandas is an optional dependency
(``pip install 'kprobes[pandas]'``); without it these raise
:class:`~.optional.MissingExtra` naming that extra.
"""

from __future__ import annotations

from .optional import require

TYPE_CHECKING = False   # typing's, without importing typing at run time
if TYPE_CHECKING:
    from typing import Any

__all__ = ["pandas", "stats_to_pandas", "rows_to_records", "aggregation_to_pandas",
           "key_label"]

_VALUE_KINDS = ("count", "sum", "min", "max")


def pandas() -> Any:
    """The ``pandas`` module, or :class:`~.optional.MissingExtra` naming ``kprobes[pandas]``."""
    return require("pandas", "pandas", "DataFrame output")


def stats_to_pandas(stats: Any) -> Any:
    """``Stats.to_pandas()``: one row per probe, index ``probe``."""
    pd = pandas()
    rows = [{"probe": n, "events": p.events, "hits": p.hits, "misses": p.misses,
             "errors": p.errors} for n, p in stats.probes.items()]
    df = pd.DataFrame(rows, columns=["probe", "events", "hits", "misses", "errors"])
    df = df.set_index("probe")
    df.attrs.update(events=stats.events, lost=stats.lost, lost_pages=stats.lost_pages)
    return df


def key_label(v: Any) -> Any:
    """A key value as a table cell: stacks (tuples of frames) joined with ``;``
    (the folded-stack convention of flame graphs), other values as they are."""
    if isinstance(v, (tuple, list)):
        return ";".join(str(x) for x in v)
    return v


def rows_to_records(rows: list[Any], by: tuple[str, ...] = (),
                    buckets: bool | None = None) -> list[dict[str, Any]]:
    """Aggregation rows (``agg.model.Row``) as flat dicts.

    Without buckets: one dict per key with its key fields, ``count`` and
    whichever of ``sum``/``min``/``max`` are set. With buckets (``hist``,
    ``latency``): one dict per key and bucket with ``lo``, ``hi`` (the
    bucket holds ``lo <= v < hi``) and that bucket's ``count``. ``buckets=None``
    decides from the rows.
    """
    if buckets is None:
        buckets = any(r.buckets for r in rows)
    out: list[dict[str, Any]] = []
    for r in rows:
        names = list(by) or list(r.key)
        key = {k: key_label(r.key.get(k)) for k in names}
        if buckets:
            for b in r.buckets or ():
                out.append({**key, "lo": b.lo, "hi": b.hi, "count": b.count})
        else:
            d = {**key, "count": r.count}
            for k in ("sum", "min", "max"):
                v = getattr(r, k, None)
                if v is not None:
                    d[k] = v
            out.append(d)
    return out


def aggregation_to_pandas(agg: Any) -> Any:
    """An aggregation's current rows (``agg.read()``) as a DataFrame
    (layout per :func:`rows_to_records`; ``df.attrs``: kind, name, by, value,
    unit, backend, dropped)."""
    pd = pandas()
    by = tuple(getattr(agg, "by", ()) or ())
    kind = getattr(agg, "kind", "")
    recs = rows_to_records(agg.read(), by, buckets=kind in ("hist", "latency") or None)
    if kind in ("hist", "latency"):
        cols = [*by, "lo", "hi", "count"]
    else:
        cols = [*by, "count", *(k for k in ("sum", "min", "max") if any(k in r for r in recs))]
    df = pd.DataFrame(recs, columns=cols)
    df.attrs.update({k: getattr(agg, k, None) for k in
                     ("kind", "name", "by", "value", "unit", "backend", "dropped")})
    return df

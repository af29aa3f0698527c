"""Text rendering of aggregation rows, as bpftrace and bcc print them.

>>> from .model import Bucket, Row
>>> print(text_rows([Row({"comm": "sh"}, 2), Row({"comm": "gen"}, 5)]))
@[sh]: 2
@[gen]: 5
>>> print(text_rows([Row({}, 3, buckets=[Bucket(0, 2, 1), Bucket(3, 5, 2)])], "hist", width=8))
@:
[0, 2)                1 |@@@@    |
[3, 5)                2 |@@@@@@@@|
"""

from __future__ import annotations

from .buckets import MAX, MIN
from .model import Bucket, Row

TYPE_CHECKING = False   # typing's, without importing typing at run time
if TYPE_CHECKING:
    from typing import Any

__all__ = ["text_rows", "key_text", "bucket_label", "value_text", "log2_hist_text"]


def key_text(key: dict[str, Any]) -> str:
    """``@[a, b]`` for a row's key (``@`` without keys)."""
    if not key:
        return "@"
    return "@[" + ", ".join(_one(v) for v in key.values()) + "]"


def _one(v: Any) -> str:
    if isinstance(v, tuple):
        return "\n".join(map(str, v))
    return str(v)


def bucket_label(b: Bucket) -> str:
    """``[lo, hi)`` with open ends for under- and overflow buckets."""
    lo = "..." if b.lo <= MIN else str(b.lo)
    hi = "..." if b.hi >= MAX else str(b.hi)
    if b.lo <= MIN:
        return f"(..., {hi})"
    if b.hi >= MAX:
        return f"[{lo}, ...)"
    return f"[{lo}, {hi})"


def value_text(r: Row, kind: str) -> str:
    if kind == "sum":
        return str(r.sum)
    if kind == "min":
        return str(r.min)
    if kind == "max":
        return str(r.max)
    if kind == "avg":
        avg = r.avg
        return "-" if avg is None else str(int(avg))
    return str(r.count)


def text_rows(rows: list[Row], kind: str = "count", unit: str | None = None,
              width: int = 52) -> str:
    """Rows as text: ``@[key]: value`` lines, or per key a histogram."""
    lines: list[str] = []
    for r in rows:
        if kind not in ("hist", "latency"):
            lines.append(f"{key_text(r.key)}: {value_text(r, kind)}")
            continue
        head = key_text(r.key)
        extra = []
        if unit:
            extra.append(unit)
        if r.count and r.sum is not None:
            extra.append(f"count {r.count}, avg {r.sum // r.count}")
            if r.min is not None:
                extra.append(f"min {r.min}, max {r.max}")
        lines.append(head + (" (" + "; ".join(extra) + ")" if extra else "") + ":")
        top = max((b.count for b in r.buckets or ()), default=0)
        for b in r.buckets or ():
            bar = "@" * (b.count * width // top if top else 0)
            lines.append(f"{bucket_label(b):<16} {b.count:>6} |{bar:<{width}}|")
        if lines and r is not rows[-1]:
            lines.append("")
    return "\n".join(lines)


def log2_hist_text(buckets: list[Bucket], val_type: str, width: int = 40) -> str:
    """A log2 histogram as bcc's tools print it (``print_log2_hist``), each
    line the bucket's exact range (the kernel's ``2^(k-1)+1 -> 2^k``), empty
    buckets from 0 up to the largest filled in.

    >>> print(log2_hist_text([Bucket(5, 9, 4), Bucket(17, 33, 2)], "usecs", width=8))
         usecs               : count     distribution
             0 -> 1          : 0        |        |
             2 -> 2          : 0        |        |
             3 -> 4          : 0        |        |
             5 -> 8          : 4        |********|
             9 -> 16         : 0        |        |
            17 -> 32         : 2        |****    |
    """
    from .buckets import log2_range
    by_k = {(b.hi - 1).bit_length() - 1 if b.hi > 1 else 0: b.count for b in buckets}
    if not by_k:
        return ""
    top = max(by_k)
    peak = max(by_k.values()) or 1
    wide = top > 32
    stars = width // 2 if wide else width
    head = ("               %-29s : count     distribution" if wide
            else "     %-19s : count     distribution") % val_type
    body = "%20d -> %-20d : %-8d |%-*s|" if wide else "%10d -> %-10d : %-8d |%-*s|"
    lines = [head]
    for k in range(top + 1):
        lo, hi = log2_range(k)
        n = by_k.get(k, 0)
        lines.append(body % (lo, hi - 1, n, stars, "*" * (n * stars // peak)))
    return "\n".join(lines)

"""Counting distinct stacks at a probe (``Session.stacks``, ``kprobes stacks``).

Counting is done on the raw addresses of each batch (one dict update per
event); a stack seen for the first time is symbolized then, while its
process still exists. Rows merge stacks whose frames have the same names
(the same function chain reached from different call sites counts once).

>>> c = StackCounts("user")
>>> c._add_named((("leaf", "mid", "top", "main"),), 3)
>>> c._add_named((("leaf", "top", "main"),), 1)
>>> print(c.to_folded())
main;top;leaf 1
main;top;mid;leaf 3
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from typing import Any

from ..symbolize import Frame
from .stacks import parse_kind, raw_stacks

__all__ = ["StackCounts", "StackRow"]


@dataclass(frozen=True, slots=True)
class StackRow:
    """One distinct stack: frames innermost first (``kstack`` / ``ustack``, empty
    when not asked for), and how many events had it."""

    kstack: tuple[str, ...]
    ustack: tuple[str, ...]
    count: int

    def root_first(self) -> list[str]:
        """User frames from the outermost, then kernel frames (a flame graph's order)."""
        return [*reversed(self.ustack), *reversed(self.kstack)]


class StackCounts:
    """Stacks counted at one probe; ``kind``: ``kernel``, ``user`` or ``both``."""

    def __init__(self, kind: str = "kernel") -> None:
        self.kernel, self.user = parse_kind(kind)
        self.kind = kind
        self.handle: Any = None
        self._raw: Counter[tuple] = Counter()
        self._names: dict[tuple, tuple[tuple[str, ...], tuple[str, ...]]] = {}
        self._named: Counter[tuple[tuple[str, ...], tuple[str, ...]]] = Counter()
        self.events = 0
        self.missing = 0          # events that came without the stack asked for

    # -- filling -------------------------------------------------------------
    def add_batch(self, b: Any) -> None:
        """Batch handler: count the batch's stacks (symbolizing new ones)."""
        n = len(b)
        self.events += n
        kernel, user = self.kernel, self.user
        keys = [r for r in raw_stacks(b, kernel, user)
                if (r[0] is not None or not kernel) and (r[2] is not None or not user)]
        self.missing += n - len(keys)
        raw = self._raw
        new = [k for k in set(keys) if k not in raw]
        raw.update(keys)
        split, h = b._split, b._t.handle
        for kaddrs, tgid, uaddrs in new:
            kst = tuple(_name(f) for f in split.kernel_frames(kaddrs)) if kaddrs else ()
            ust = tuple(_name(f) for f in split.user_frames(tgid, uaddrs, h)) if uaddrs else ()
            self._names[(kaddrs, tgid, uaddrs)] = (kst, ust)

    def _add_named(self, stacks: tuple[tuple[str, ...], ...], n: int) -> None:
        """Add ``n`` events of one stack given by names (tests, merging)."""
        k = (stacks[0], ()) if self.kernel and not self.user else \
            ((), stacks[0]) if not self.kernel else (stacks[0], stacks[1])
        self._named[k] += n
        self.events += n

    # -- reading -------------------------------------------------------------
    def rows(self) -> list[StackRow]:
        """Distinct stacks, least frequent first (as bcc's stackcount prints them)."""
        merged: Counter[tuple[tuple[str, ...], tuple[str, ...]]] = Counter(self._named)
        for k, n in self._raw.items():
            merged[self._names[k]] += n
        rows = [StackRow(k, u, n) for (k, u), n in merged.items()]
        rows.sort(key=lambda r: (r.count, r.root_first()))
        return rows

    @property
    def total(self) -> int:
        return sum(self._raw.values()) + sum(self._named.values())

    def to_text(self) -> str:
        """bcc ``stackcount`` style: frames innermost first, then the count; a
        ``--`` line between kernel and user frames."""
        out = []
        for r in self.rows():
            lines = [f"  {f}" for f in r.kstack]
            if r.kstack and r.ustack:
                lines.append("  --")
            lines += [f"  {f}" for f in r.ustack]
            lines.append(f"    {r.count}")
            out.append("\n".join(lines))
        return "\n\n".join(out)

    def to_folded(self) -> str:
        """One line per stack: frames root-first joined by ``;``, a space, the count
        (what flamegraph.pl, inferno and speedscope read)."""
        return "\n".join(f"{';'.join(r.root_first())} {r.count}" for r in self.rows())

    def to_json(self) -> dict[str, Any]:
        rows = [{"count": r.count, **({"kstack": list(r.kstack)} if self.kernel else {}),
                 **({"ustack": list(r.ustack)} if self.user else {})} for r in self.rows()]
        return {"stacks": rows, "kind": self.kind, "total": self.total, "events": self.events,
                "missing": self.missing}

    def to_svg(self, path: str | None = None, *, title: str | None = None) -> str:
        """An interactive flame graph (self-contained SVG); written to ``path`` if given."""
        from ..output.flamegraph import flamegraph_svg
        svg = flamegraph_svg([(r.root_first(), r.count) for r in self.rows()],
                             title=title or f"{self.kind} stacks")
        if path is not None:
            with open(path, "w", encoding="utf-8") as f:
                f.write(svg)
        return svg

    def __repr__(self) -> str:
        return f"StackCounts({self.kind!r}, {len(self._raw) + len(self._named)} stacks, " \
               f"{self.total} events)"

    def dumps(self) -> str:
        return json.dumps(self.to_json())


def _name(f: Frame) -> str:
    if f.symbol:
        return f.symbol
    return f"0x{f.addr:x}" + (f" [{f.module}]" if f.module else "")

"""Calls as columns: a function's returns paired with their entries on the batch path
(:meth:`Session.add_calls <kprobes.runtime.kinds.ProbeKindsMixin.add_calls>`).

The entry probe (with the arguments asked for) and the return probe are both
read as :class:`~.batch.Batch` columns; after each read cycle their rows are
merged by timestamp and paired per thread, innermost call first (as the kernel
pairs a kretprobe with its entry), and the handler gets one :class:`Calls` with
the cycle's completed calls. Entries whose return comes in a later cycle wait
for it (at most ``depth`` per thread). Nothing is made per event but the
pairing's tuples: where :meth:`add_kretprobe` with ``entry=`` decodes and
hands over two events per call, this costs about a third of it per call.
"""

from __future__ import annotations

from itertools import repeat
from operator import itemgetter

TYPE_CHECKING = False   # typing's, without importing typing at run time
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from .batch import Batch

__all__ = ["Calls", "CallPairer"]

_BY_TS = itemgetter(0, 1)


class Calls:
    """The calls of one function that returned in one read cycle, oldest return first.

    ``ts`` (the return's), ``entry_ts``, ``tid``, ``pid``, ``comm``, ``cpu`` (the
    return's) are lists, one value per call; ``args`` maps every entry argument and
    every return argument (``retval``...) to its list. ``unmatched``: returns of
    this cycle whose entry was not seen (it came before tracing began, or was lost).
    """

    __slots__ = ("_ret", "_idx", "entry_ts", "_entry_names", "_entry_rows", "unmatched",
                 "_cols")

    def __init__(self, ret: Batch | None, idx: list[int], entry_ts: list[int],
                 entry_names: list[str], entry_rows: list[tuple[Any, ...]],
                 unmatched: int) -> None:
        self._ret = ret
        self._idx = idx
        self.entry_ts = entry_ts
        self._entry_names = entry_names
        self._entry_rows = entry_rows
        self.unmatched = unmatched
        self._cols: dict[str, Any] = {}

    def __len__(self) -> int:
        return len(self._idx)

    def __repr__(self) -> str:
        return f"Calls({len(self)} calls, {self.unmatched} unmatched)"

    def _pick(self, name: str, col: Callable[[], Any]) -> list[Any]:
        c = self._cols.get(name)
        if c is None:
            c = self._cols[name] = list(map(col().__getitem__, self._idx)) if self._idx else []
        return c

    @property
    def ts(self) -> list[int]:
        return self._pick("ts", lambda: self._ret.ts)          # type: ignore[union-attr]

    @property
    def tid(self) -> list[int]:
        return self._pick("tid", lambda: self._ret.tid)        # type: ignore[union-attr]

    @property
    def pid(self) -> list[int]:
        return self._pick("pid", lambda: self._ret.pid)        # type: ignore[union-attr]

    @property
    def comm(self) -> list[str]:
        return self._pick("comm", lambda: self._ret.comm)      # type: ignore[union-attr]

    @property
    def cpu(self) -> list[int]:
        return self._pick("cpu", lambda: self._ret.cpu)        # type: ignore[union-attr]

    @property
    def args(self) -> dict[str, list[Any]]:
        a = self._cols.get("args")
        if a is None:
            cols = list(zip(*self._entry_rows, strict=True)) if self._entry_rows else \
                [() for _ in self._entry_names]
            a = {n: list(c) for n, c in zip(self._entry_names, cols, strict=True)}
            if self._ret is not None:
                for n, col in self._ret.args.items():
                    a[n] = list(map(col.__getitem__, self._idx)) if self._idx else []
            self._cols["args"] = a
        return a


class CallPairer:
    """Collects a cycle's entry and return batches (:meth:`entries`, :meth:`returns`:
    the two probes' batch handlers) and, after the cycle (:meth:`flush`), pairs them
    and calls ``handler(Calls)`` when any call completed or any return was unmatched."""

    def __init__(self, handler: Callable[[Calls], Any], depth: int = 64) -> None:
        self.handler = handler
        self.depth = depth
        self.stacks: dict[int, list[tuple[int, tuple[Any, ...]]]] = {}
        self._ent: list[Batch] = []
        self._ret: list[Batch] = []
        self.names: list[str] = []
        self.unmatched = 0

    def entries(self, b: Batch) -> None:
        self._ent.append(b)

    def returns(self, b: Batch) -> None:
        self._ret.append(b)

    def flush(self) -> None:
        if not self._ent and not self._ret:
            return
        ent, self._ent = self._ent, []
        rets, self._ret = self._ret, []
        evs: list[tuple[int, int, int, Any]] = []
        for b in ent:
            self.names = list(b.args)
            cols = [b.args[n] for n in self.names]
            rows = zip(*cols, strict=True) if cols else repeat((), len(b))
            evs += zip(b.ts, repeat(0), b.tid, rows)
        ret = rets[0] if rets else None      # one batch per probe per cycle
        if ret is not None:
            evs += zip(ret.ts, repeat(1), ret.tid, range(len(ret)))
        evs.sort(key=_BY_TS)                 # an entry before a return at the same ns
        stacks, depth = self.stacks, self.depth
        idx: list[int] = []
        ets: list[int] = []
        rows_out: list[tuple[Any, ...]] = []
        unmatched = 0
        for ts, is_ret, tid, v in evs:
            st = stacks.get(tid)
            if not is_ret:
                if st is None:
                    st = stacks[tid] = []
                elif len(st) >= depth:       # entries whose return was missed age out
                    del st[0]
                st.append((ts, v))
            elif st:
                t0, vals = st.pop()
                idx.append(v)
                ets.append(t0)
                rows_out.append(vals)
            else:
                unmatched += 1
        self.unmatched += unmatched
        if idx or unmatched:
            self.handler(Calls(ret, idx, ets, self.names, rows_out, unmatched))

"""Kernel and user stacks recorded with each event (``options/stacktrace``,
``options/userstacktrace``).

With those options set in the session's instance the kernel writes, right
after every event, a ``kernel_stack`` record (``int size`` = number of
entries, then ``unsigned long caller[size]``) and/or a ``user_stack``
record (``unsigned int tgid``, ``unsigned long caller[8]``, 0-terminated)
into the same CPU's buffer (``trace_buffer_unlock_commit_regs`` in
``kernel/trace/trace.c``). :class:`StackSplitter` takes them out of a read
cycle's records and attaches them to the event they follow: the latest
event of the same CPU and task still missing that kind of stack (an
interrupt's event may come between an event and its stacks). An event that
ends what a CPU gave in a cycle, with its stacks not all there yet (they go
to the next page), is held back to the next cycle.

User stacks follow frame pointers from the registers at the probe: the
first entry is the probed address; at a function's entry the caller has not
been linked into the frame chain yet, its return address is at ``[sp]``. A
uprobe at a function's entry (offset 0) therefore fetches ``$stack0`` as a
hidden argument (:data:`RET_ARG`), inserted as the second frame.

Nothing here runs when no probe asks for stacks.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable, Sequence

from ..symbolize import Frame, UserSymbolizer, kernel_symbolizer
from .batch import LazyEvent

TYPE_CHECKING = False   # typing's, without importing typing at run time
if TYPE_CHECKING:
    from typing import Any

    from ..kernel.tracefs import Tracefs
    from ..probes.model import Probe
    from .batch import Batch
    from .event import TaskCache
    from .handle import Stream as Target

__all__ = ["StackSplitter", "StackEvent", "KINDS", "RET_ARG", "parse_kind", "raw_stacks"]

KINDS = ("kernel", "user")
RET_ARG = "__ret0"             # a uprobe at a function entry: its return address ([sp])
_K, _U = 0, 1
_PID = struct.Struct("=i")
_I32 = struct.Struct("=i")
_U32 = struct.Struct("=I")
_U64 = struct.Struct("=Q")
_HOLD_OPEN = 8                 # events per CPU still waiting for their stacks


def parse_kind(stack: str | None) -> tuple[bool, bool]:
    """``"kernel"|"user"|"both"|None`` -> (kernel, user)."""
    if stack is None:
        return False, False
    if stack not in ("kernel", "user", "both"):
        from ..errors import SpecError
        raise SpecError(f"stack={stack!r}: expected 'kernel', 'user' or 'both'",
                        hint="e.g. stack=\"user\"")
    return stack in ("kernel", "both"), stack in ("user", "both")


def _kernel_addrs(ref: tuple[bytes, int, int]) -> tuple[int, ...]:
    page, start, ln = ref
    n = min(_I32.unpack_from(page, start + 8)[0], (ln - 16) >> 3)
    if n <= 0:
        return ()
    return tuple(a for a in struct.unpack_from(f"={n}Q", page, start + 16)
                 if a and a != 0xFFFFFFFFFFFFFFFF)


def _user_addrs(ref: tuple[bytes, int, int]) -> tuple[int, tuple[int, ...]]:
    page, start, ln = ref
    n = min(8, (ln - 16) >> 3)
    calls = struct.unpack_from(f"={n}Q", page, start + 16) if n > 0 else ()
    out = []
    for a in calls:
        if not a or a == 0xFFFFFFFFFFFFFFFF:
            break
        out.append(a)
    return _U32.unpack_from(page, start + 8)[0], tuple(out)


class StackSplitter:
    """Takes stack records out of a cycle and maps each event to its stacks.

    ``kernel_id`` / ``user_id``: the ``common_type`` of ``ftrace/kernel_stack``
    and ``ftrace/user_stack`` (None: that kind is off).
    """

    def __init__(self, kernel_id: int | None, user_id: int | None, *,
                 debug_root: str | None = None) -> None:
        self.ids: dict[int, int] = {}
        if kernel_id is not None:
            self.ids[kernel_id] = _K
        if user_id is not None:
            self.ids[user_id] = _U
        self.kinds = tuple(sorted(self.ids.values()))
        self.held: dict[int, list[tuple[bytes, tuple[int, int, int], list[Any]]]] = {}
        self.open: dict[int, list[tuple[bytes, tuple[int, int, int], list[Any], int]]] = {}
        self.ret_off: dict[int, int] = {}                 # id(handle) -> offset of RET_ARG
        self.hints: dict[int, tuple[str, int]] = {}       # id(handle) -> (binary, file offset)
        # separate debug files: /usr/lib/debug unless KPROBES_DEBUG_ROOT says otherwise
        root = debug_root or os.environ.get("KPROBES_DEBUG_ROOT")
        self.user = UserSymbolizer(root) if root else UserSymbolizer()

    @classmethod
    def for_tracefs(cls, tfs: Tracefs, kernel: bool, user: bool, **kw: Any) -> StackSplitter:
        from ..decode.format import parse_format

        def ftrace_id(name: str) -> int:   # ftrace's own events have no id file
            return parse_format(tfs.event_format("ftrace", name), "ftrace").id
        return cls(ftrace_id("kernel_stack") if kernel else None,
                   ftrace_id("user_stack") if user else None, **kw)

    def split(self, pages: list[tuple[int, bytes, list[tuple[int, int, int]]]],
              ) -> tuple[list[tuple[int, bytes, list[tuple[int, int, int]]]], dict]:
        """(the pages' event records, {(id(page), start): [kernel ref, user ref]})."""
        ids, kinds = self.ids, self.kinds
        stk: dict[tuple[int, int], list[Any]] = {}
        out: list[tuple[int, bytes, list[tuple[int, int, int]]]] = []
        for cpu, held in self.held.items():
            for page, rec, refs in held:
                out.append((cpu, page, [rec]))
                stk[(id(page), rec[1])] = refs
        self.held = {}
        last: dict[int, int] = {}
        self.user.new_batch()
        seen = self.user.seen
        unpack_pid = _PID.unpack_from
        for cpu, page, recs in pages:
            u16 = memoryview(page).cast("H")
            opn = self.open.setdefault(cpu, [])
            evs: list[tuple[int, int, int]] = []
            for rec in recs:
                start = rec[1]
                kind = ids.get(u16[start >> 1])
                pid = unpack_pid(page, start + 4)[0]
                if kind is None:
                    evs.append(rec)
                    refs = [None, None]
                    stk[(id(page), start)] = refs
                    opn.append((page, rec, refs, pid))
                    if len(opn) > _HOLD_OPEN:
                        del opn[0]
                    continue
                for k in range(len(opn) - 1, -1, -1):
                    e = opn[k]
                    if e[3] == pid and e[2][kind] is None:
                        e[2][kind] = (page, start, rec[2])
                        if all(e[2][x] is not None for x in kinds):
                            del opn[k]
                        break
                if kind == _U:
                    seen(_U32.unpack_from(page, start + 8)[0])
            u16.release()
            if evs:
                out.append((cpu, page, evs))
                last[cpu] = len(out) - 1
        for cpu, i in last.items():       # hold a CPU's trailing events still missing stacks
            evs = out[i][2]
            opn = self.open.get(cpu, [])
            keep = []
            j = len(opn) - 1
            while evs and j >= 0 and opn[j][1] is evs[-1]:
                page, rec, refs, _pid = opn[j]   # stays open: its stacks come next cycle
                keep.append((page, rec, refs))
                evs.pop()
                j -= 1
            if keep:
                self.held[cpu] = keep[::-1]
        return [p for p in out if p[2]], stk

    def event_factory(self, stk: dict) -> Callable[..., LazyEvent]:
        def make(name: str, ts: int, cpu: int, page: bytes, start: int, ln: int,
                 target: Target, tasks: TaskCache) -> LazyEvent:
            return StackEvent(name, ts, cpu, page, start, ln, target, tasks,
                              stk.get((id(page), start)), self)
        return make

    # -- addresses and frames --------------------------------------------------
    def kernel_addrs(self, refs: list[Any] | None) -> tuple[int, ...] | None:
        if refs is None or refs[_K] is None:
            return None
        return _kernel_addrs(refs[_K])

    def user_addrs(self, refs: list[Any] | None, h: Any, page: bytes,
                   start: int) -> tuple[int, tuple[int, ...]] | None:
        if refs is None or refs[_U] is None:
            return None
        tgid, addrs = _user_addrs(refs[_U])
        off = self.ret_off.get(id(h))
        if off is not None and addrs:
            ret = _U64.unpack_from(page, start + off)[0]
            if ret and (len(addrs) < 2 or addrs[1] != ret):
                addrs = (addrs[0], ret, *addrs[1:])
        return tgid, addrs

    def kernel_frames(self, addrs: Sequence[int]) -> list[Frame]:
        return kernel_symbolizer().frames(addrs)

    def user_frames(self, tgid: int, addrs: Sequence[int], h: Any = None) -> list[Frame]:
        return self.user.frames(tgid, addrs, self.hints.get(id(h)))


class StackEvent(LazyEvent):
    """A :class:`LazyEvent` with the stacks the kernel recorded after it.

    ``kstack`` / ``ustack``: lists of :class:`~kprobes.symbolize.Frame`,
    innermost first (None when that stack was not recorded);
    ``kstack_addrs`` / ``ustack_addrs``: the raw addresses.
    """

    __slots__ = ("_refs", "_split", "_k", "_u")

    def __init__(self, probe: str, ts_ns: int, cpu: int, buf: bytes, off: int, ln: int,
                 target: Target, tasks: TaskCache, refs: list[Any] | None,
                 split: StackSplitter) -> None:
        super().__init__(probe, ts_ns, cpu, buf, off, ln, target, tasks)
        self._refs = refs
        self._split = split
        self._k: list[Frame] | None = None
        self._u: list[Frame] | None = None

    @property
    def kstack_addrs(self) -> tuple[int, ...] | None:
        return self._split.kernel_addrs(self._refs)

    @property
    def ustack_addrs(self) -> tuple[int, ...] | None:
        r = self._split.user_addrs(self._refs, self._t.handle, self._buf, self._off)
        return None if r is None else r[1]

    @property
    def kstack(self) -> list[Frame] | None:
        if self._k is None:
            a = self.kstack_addrs
            if a is None:
                return None
            self._k = self._split.kernel_frames(a)
        return self._k

    @property
    def ustack(self) -> list[Frame] | None:
        if self._u is None:
            r = self._split.user_addrs(self._refs, self._t.handle, self._buf, self._off)
            if r is None:
                return None
            tgid, addrs = r
            self._u = self._split.user_frames(tgid or self.pid, addrs, self._t.handle)
        return self._u


def raw_stacks(b: Batch, kernel: bool, user: bool,
               ) -> list[tuple[tuple[int, ...] | None, int, tuple[int, ...] | None]]:
    """Per row of a batch (unordered): (kernel addresses, tgid, user addresses),
    None for a stack not asked for or not recorded."""
    stk, split = b._stk, b._split
    if stk is None or split is None:
        return [(None, 0, None)] * len(b)
    h = b._t.handle
    out: list[tuple[tuple[int, ...] | None, int, tuple[int, ...] | None]] = []
    for _cpu, page, recs in b._segs:
        for _ts, start, _ln in recs:
            refs = stk.get((id(page), start))
            k = split.kernel_addrs(refs) if kernel else None
            u = split.user_addrs(refs, h, page, start) if user else None
            out.append((k, 0, None) if u is None else (k, u[0], u[1]))
    return out


def enable_stacks(inst: Any, tfs: Tracefs, handles: Sequence[Any],
                  undo: list[tuple[str, Callable[[], None]]]) -> StackSplitter | None:
    """Turn on the instance's stack options the handles ask for (``h.stack``),
    pushing their undo; returns the splitter for the session's reader, or None.

    Call after the events exist and before any is enabled: every event of the
    instance then comes with its stacks."""
    from ..decode.format import parse_format
    from ..errors import KprobesError, NotSupported
    kernel = user = False
    for h in handles:
        k, u = parse_kind(getattr(h, "stack", None))
        kernel, user = kernel or k, user or u
    if not (kernel or user):
        return None
    for opt, on in (("stacktrace", kernel), ("userstacktrace", user)):
        if not on:
            continue
        try:
            inst.write(f"options/{opt}", "1")
        except KprobesError as e:
            raise NotSupported(f"cannot record stacks: options/{opt}: {e}", feature=opt,
                               hint="the kernel needs CONFIG_STACKTRACE (and user stack "
                                    "support for user stacks)") from None
        def clear(o: str = opt) -> None:
            inst.write(f"options/{o}", "0")
        undo.append((f"clear options/{opt}", clear))
    split = StackSplitter.for_tracefs(tfs, kernel, user)
    for h in handles:
        if h.probe.dynamic and any(a.name == RET_ARG for a in h.probe.args):
            fmt = parse_format(tfs.event_format(h.group, h.event), h.group)
            split.ret_off[id(h)] = fmt.field(RET_ARG).offset
        if h.probe.kind in ("uprobe", "uretprobe") and h.location and ":0x" in h.location:
            path, _, off = h.location.rpartition(":")
            if not h.probe.is_return:
                split.hints[id(h)] = (path, int(off, 16))
    return split


def entry_ret_arg(probe: Probe, user: bool) -> Probe:
    """The probe, with :data:`RET_ARG` fetched when it is a uprobe at a function's
    entry and user stacks are wanted (see the module docs)."""
    from ..probes.model import FetchArg, UProbe
    if (user and isinstance(probe, UProbe) and not probe.is_return
            and probe.symbol is not None and probe.offset == 0
            and not any(a.name == RET_ARG for a in probe.args)):
        return probe.with_args(FetchArg(RET_ARG, "$stack0", "x64"))
    return probe

"""The event a handler receives, and the per-task lookups behind pid and comm.

>>> ev = Event("p_schedule", 1000, 1, 42, 0x08, 2, {"x": 5}, comm="bash", pid=40)
>>> ev.x, ev.pid, ev.tid, ev.comm, ev.in_irq, ev.preempt_count
(5, 40, 42, 'bash', True, 2)
"""

from __future__ import annotations

from ..decode.flags import CONTEXTS, in_irq, in_nmi, in_softirq, irqs_off

TYPE_CHECKING = False   # typing's, without importing typing at run time
if TYPE_CHECKING:
    from typing import Any

__all__ = ["Event", "TaskCache"]


class TaskCache:
    """tid -> tgid and comm, from /proc, falling back to the kernel's own
    ``saved_cmdlines``/``saved_tgids`` for tasks that already exited.

    comm is re-read once per batch (a task may exec and change it); tgid is
    kept for the life of the cache, and so is the comm of a task found gone
    (it cannot change any more; re-reading ``saved_cmdlines`` per batch while
    a backlog of its events drains cost more than decoding them).
    """

    def __init__(self, tracefs_root: str | None = None) -> None:
        self.root = tracefs_root
        self._tgid: dict[int, int] = {}
        self._comm: dict[int, str] = {}
        self._gone: dict[int, str] = {}
        self._saved_comm: dict[int, str] | None = None
        self._saved_tgid: dict[int, int] | None = None

    def new_batch(self) -> None:
        self._comm.clear()
        self._saved_comm = None
        self._saved_tgid = None

    def _saved(self, name: str) -> dict[int, str]:
        out: dict[int, str] = {}
        if self.root is None:
            return out
        try:
            with open(f"{self.root}/{name}", "rb") as f:
                for line in f:
                    pid, _, rest = line.rstrip(b"\n").partition(b" ")
                    if pid.isdigit():
                        out[int(pid)] = rest.decode(errors="surrogateescape")
        except OSError:
            pass
        return out

    def tgid(self, tid: int) -> int:
        t = self._tgid.get(tid)
        if t is None:
            t = 0
            try:
                with open(f"/proc/{tid}/status", "rb") as f:
                    for line in f:
                        if line.startswith(b"Tgid:"):
                            t = int(line.split()[1])
                            break
            except (OSError, ValueError):
                if self._saved_tgid is None:
                    self._saved_tgid = {k: int(v) for k, v in self._saved("saved_tgids").items()
                                        if v.isdigit()}
                t = self._saved_tgid.get(tid, 0)
            if t == 0:
                t = tid
            elif tid:
                self._tgid[tid] = t
        return t

    def comm(self, tid: int) -> str:
        c = self._comm.get(tid)
        if c is None:
            if tid == 0:
                c = "<idle>"
            else:
                try:
                    with open(f"/proc/{tid}/comm", "rb") as f:
                        c = f.read().rstrip(b"\n").decode(errors="surrogateescape")
                except OSError:
                    c = self._gone.get(tid)
                    if c is None:
                        if self._saved_comm is None:
                            self._saved_comm = self._saved("saved_cmdlines")
                        c = self._saved_comm.get(tid, "<...>")
                        if len(self._gone) > 65536:
                            self._gone.clear()
                        self._gone[tid] = c
            self._comm[tid] = c
        return c


class Event:
    """One probe hit as decoded from the ring buffer.

    Fetched arguments are in ``args`` (by name) and also readable as
    attributes: ``ev.filename``. For return probes ``ev.retval`` is the return
    value when fetched; ``ev.data`` is what the entry handler returned for the
    same call (kretprobes with an entry handler).
    """

    __slots__ = ("probe", "ts_ns", "cpu", "tid", "trace_flags", "preempt_count", "args",
                 "_comm", "_pid", "_tasks", "data")

    #: stacks recorded with the event (``stack=`` on the probe): lists of
    #: :class:`~kprobes.symbolize.Frame`, innermost first; None when not recorded
    kstack: Any = None
    ustack: Any = None

    def __init__(self, probe: str, ts_ns: int, cpu: int, tid: int, flags: int,
                 preempt_count: int, args: dict[str, Any], *, comm: str | None = None,
                 pid: int | None = None, tasks: TaskCache | None = None) -> None:
        self.probe = probe
        self.ts_ns = ts_ns
        self.cpu = cpu
        self.tid = tid
        self.trace_flags = flags
        self.preempt_count = preempt_count
        self.args = args
        self._comm = comm
        self._pid = pid
        self._tasks = tasks
        self.data: Any = None

    @property
    def pid(self) -> int:
        """Process id (thread group id) of the task that hit the probe."""
        if self._pid is None:
            self._pid = self._tasks.tgid(self.tid) if self._tasks else self.tid
        return self._pid

    @property
    def comm(self) -> str:
        """Task name: fetched in the kernel ($comm) for probes, from /proc for tracepoints."""
        if self._comm is None:
            self._comm = self._tasks.comm(self.tid) if self._tasks else "<...>"
        return self._comm

    # common_flags bits: kprobes.decode.format.TraceFlag
    @property
    def in_irq(self) -> bool:
        return in_irq(self.trace_flags)

    @property
    def in_softirq(self) -> bool:
        return in_softirq(self.trace_flags)

    @property
    def in_nmi(self) -> bool:
        return in_nmi(self.trace_flags)

    @property
    def irqs_off(self) -> bool:
        return irqs_off(self.trace_flags)

    @property
    def context(self) -> str:
        """'nmi', 'irq', 'softirq' or 'task'."""
        return CONTEXTS[self.trace_flags & 0xFF]

    def __getattr__(self, name: str) -> Any:
        try:
            return self.args[name]
        except KeyError:
            raise AttributeError(f"event {self.probe!r} has no field {name!r}; it has: "
                                 f"{', '.join(self.args) or 'none'}") from None

    def as_dict(self) -> dict[str, Any]:
        return {"probe": self.probe, "ts_ns": self.ts_ns, "cpu": self.cpu, "pid": self.pid,
                "tid": self.tid, "comm": self.comm, "preempt_count": self.preempt_count,
                "context": self.context, "args": self.args}

    def __repr__(self) -> str:
        return (f"Event({self.probe!r}, ts={self.ts_ns}, cpu={self.cpu}, pid={self.pid}, "
                f"tid={self.tid}, comm={self.comm!r}, args={self.args!r})")

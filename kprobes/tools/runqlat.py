"""runqlat: run-queue (scheduler) latency as a histogram, as bcc's ``runqlat``.

The time from a task's wakeup (``sched:sched_wakeup``, ``sched:sched_wakeup_new``)
to its switch onto a CPU (``sched:sched_switch`` with ``next_pid`` = the woken
``pid``), paired in the kernel with hist-trigger variables and a synthetic
event where the kernel has them, else in this process
(:meth:`Session.latency_between`). Unlike bcc's, a task preempted while
runnable is not counted again when it is switched back in (the
tracepoints do not say whether ``prev`` stays runnable on every kernel).
"""

from __future__ import annotations

import argparse
import os
import sys

from ..agg.model import Aggregation, Row, merge_rows
from ..cli.aggregate import run_aggregations
from ..runtime.session import Session
from .aggtool import agg_tool, hist_show, tgid_of

__all__ = ["NAME", "register", "main", "run"]

NAME = "runqlat"
DESCRIPTION = "Summarize run queue (scheduler) latency as a histogram."
EXAMPLES = """examples:
    kprobes runqlat            # summarize run queue latency as a histogram
    kprobes runqlat 1 10       # print 1 second summaries, 10 times
    kprobes runqlat -mT 1      # 1s summaries, milliseconds, and timestamps
    kprobes runqlat -P         # show each PID separately
    kprobes runqlat -L         # show each TID separately
    kprobes runqlat -p 185     # trace PID 185 only
    kprobes runqlat --json -c './work'   # JSON lines, only this command
"""

STARTS = ("t:sched:sched_wakeup", "t:sched:sched_wakeup_new")
END = "t:sched:sched_switch"


def options(p: argparse.ArgumentParser) -> None:
    p.add_argument("-T", "--timestamp", action="store_true", help="include timestamp on output")
    p.add_argument("-m", "--milliseconds", action="store_true",
                   help="millisecond histogram")
    p.add_argument("-P", "--pids", action="store_true", help="print a histogram per process ID")
    p.add_argument("-L", "--tids", action="store_true", help="print a histogram per thread ID")
    p.add_argument("-p", "--pid", type=int, help="trace this PID only")
    p.add_argument("interval", nargs="?", type=float, help="output interval, in seconds")
    p.add_argument("count", nargs="?", type=int, help="number of outputs")


def _per_process(rows: list[Row]) -> list[Row]:
    out = []
    for r in rows:
        tid = r.key["pid"]
        out.append(Row({"pid": tgid_of(tid) or tid}, r.count, r.sum, r.min, r.max, r.buckets))
    return merge_rows(out)


def _threads(pid: int | None) -> set[int]:
    if pid is None:
        return set()
    try:
        return {pid, *map(int, os.listdir(f"/proc/{pid}/task"))}
    except OSError:
        return {pid}


def run(args: argparse.Namespace) -> int:
    # with -p/-c the tracer's pid filter also passes wakeups *done by* the target (from
    # interrupts while it runs): key by the woken thread, keep the target's threads only
    tree: set[int] | None = set() if args.pid or args.command else None
    by = ("next_pid",) if args.pids or args.tids or tree is not None else ()
    if args.count is not None and args.interval is not None and args.duration is None:
        args.duration = args.interval * args.count
    args.top = None
    unit = "ms" if args.milliseconds else "us"

    def build(s: Session) -> list[Aggregation]:
        if tree is not None:
            tree.update(_threads(s.pid))
            s.add("t:sched:sched_process_fork", lambda ev: tree.add(ev.args["child_pid"]))
        return [s.latency_between(STARTS, END, start_key=("pid",), end_key=("next_pid",),
                                  by=by, unit=unit, backend=args.backend)]

    def rename(rows: list[Row]) -> list[Row]:
        if tree is not None:
            rows = [r for r in rows if r.key["next_pid"] in tree]
            if not (args.pids or args.tids):
                return merge_rows([Row({}, r.count, r.sum, r.min, r.max, r.buckets)
                                   for r in rows])
        rows = [Row({"tid" if args.tids else "pid": r.key["next_pid"]}, r.count, r.sum, r.min,
                    r.max, r.buckets) if by else r for r in rows]
        return _per_process(rows) if args.pids else rows

    section = "tid" if args.tids else "pid" if args.pids else None
    show = hist_show(args, "msecs" if args.milliseconds else "usecs", section, merge=rename)
    return run_aggregations(args, "Tracing run queue latency", build, show=show)


register, main = agg_tool(__name__)

if __name__ == "__main__":
    sys.exit(main())

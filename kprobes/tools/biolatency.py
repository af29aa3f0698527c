"""biolatency: block device I/O latency as a histogram, as bcc's ``biolatency``.

The time from ``block:block_rq_issue`` (the request goes to the device) to
``block:block_rq_complete`` of the same request, paired by device and start
sector, in the kernel with hist-trigger variables and a synthetic event where
the kernel has them, else in this process (:meth:`Session.latency_between`).
``-D`` keys by device (the kernel's ``dev_t``, shown as the disk name),
``-F`` by the request's flags as the tracepoint spells them (``rwbs``: ``R``
read, ``W`` write, ``S`` sync, ``F`` flush, ``M`` metadata, ...).
"""

from __future__ import annotations

import argparse
import sys

from ..agg.model import Aggregation, Row
from ..cli.aggregate import run_aggregations
from ..runtime.session import Session
from .aggtool import agg_tool, hist_show

__all__ = ["NAME", "disk_name", "register", "main", "run"]

NAME = "biolatency"
DESCRIPTION = "Summarize block device I/O latency as a histogram."
EXAMPLES = """examples:
    kprobes biolatency                    # summarize block I/O latency as a histogram
    kprobes biolatency 1 10               # print 1 second summaries, 10 times
    kprobes biolatency -mT 1              # 1s summaries, milliseconds, and timestamps
    kprobes biolatency -D                 # show each disk device separately
    kprobes biolatency -F                 # show I/O flags separately
    kprobes biolatency --json -c 'dd if=/dev/vda of=/dev/null bs=4k count=100 iflag=direct'
"""

START = "t:block:block_rq_issue"
END = "t:block:block_rq_complete"


def disk_name(dev: int) -> str:
    """The disk of a tracepoint ``dev_t`` (``MAJOR << 20 | MINOR``), e.g. ``vda``."""
    major, minor = dev >> 20, dev & 0xFFFFF
    try:
        with open(f"/sys/dev/block/{major}:{minor}/uevent") as f:
            for line in f:
                if line.startswith("DEVNAME="):
                    return line.split("=", 1)[1].strip()
    except OSError:
        pass
    return f"{major}:{minor}"


def options(p: argparse.ArgumentParser) -> None:
    p.add_argument("-T", "--timestamp", action="store_true", help="include timestamp on output")
    p.add_argument("-m", "--milliseconds", action="store_true", help="millisecond histogram")
    p.add_argument("-D", "--disks", action="store_true", help="print a histogram per disk device")
    p.add_argument("-F", "--flags", action="store_true", help="print a histogram per set of I/O "
                   "flags")
    p.add_argument("interval", nargs="?", type=float, help="output interval, in seconds")
    p.add_argument("count", nargs="?", type=int, help="number of outputs")


def run(args: argparse.Namespace) -> int:
    by = (("dev",) if args.disks else ()) + (("rwbs",) if args.flags else ())
    if args.count is not None and args.interval is not None and args.duration is None:
        args.duration = args.interval * args.count
    args.top, args.pid = None, None

    def build(s: Session) -> list[Aggregation]:
        return [s.latency_between(START, END, start_key=("dev", "sector"),
                                  end_key=("dev", "sector"), by=by,
                                  unit="ms" if args.milliseconds else "us",
                                  backend=args.backend)]

    def named(rows: list[Row]) -> list[Row]:
        out = []
        for r in rows:
            key = {}
            if args.disks:
                key["disk"] = disk_name(r.key["dev"])
            if args.flags:
                key["flags"] = r.key["rwbs"]
            out.append(Row(key, r.count, r.sum, r.min, r.max, r.buckets))
        return out

    section = "disk" if args.disks else "flags" if args.flags else None
    show = hist_show(args, "msecs" if args.milliseconds else "usecs", section,
                     key_text=lambda k: " ".join(map(str, k.values())), merge=named)
    return run_aggregations(args, "Tracing block device I/O", build, show=show,
                            pid_filter=False)


register, main = agg_tool(__name__)

if __name__ == "__main__":
    sys.exit(main())

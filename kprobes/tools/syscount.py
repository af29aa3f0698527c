"""syscount: count system calls, by syscall or by process, as bcc's ``syscount``.

Kernel side: ``raw_syscalls:sys_exit`` counted per ``id`` (or per process
with ``-P``), in the kernel with a hist trigger where the kernel has them
(:meth:`Session.count`); ``-x`` / ``-e`` filter ``ret`` in the kernel.
``-L`` adds the time from ``raw_syscalls:sys_enter`` to ``sys_exit`` on the
same thread (:meth:`Session.latency_between`), summed per key.

Syscall names come from the ``system-calls`` package (PyPI; Marcin
Juszkiewicz's tables generated from the kernel's own ``syscall.tbl`` and
``unistd.h`` files for every architecture), for this machine's architecture.
"""

from __future__ import annotations

import argparse
import errno
import json
import platform
import sys
import time
from functools import cache

from ..agg.model import Aggregation, Row
from ..cli.aggregate import run_aggregations
from ..errors import KprobesError
from ..runtime.session import Session
from .aggtool import agg_tool

TYPE_CHECKING = False   # typing's, without importing typing at run time
if TYPE_CHECKING:
    from typing import Any

__all__ = ["NAME", "syscall_name", "syscall_number", "register", "run", "main"]

NAME = "syscount"
DESCRIPTION = "Summarize syscall counts and latencies."
EXAMPLES = """examples:
    kprobes syscount                 # count all syscalls, print the top 10 at Ctrl-C
    kprobes syscount -p 181          # only trace PID 181
    kprobes syscount -i 1            # print every second (and start over)
    kprobes syscount -d 10           # trace for 10 seconds
    kprobes syscount -T 20           # print the top 20
    kprobes syscount -x              # only count failed syscalls
    kprobes syscount -e ENOENT       # only count syscalls failing with ENOENT
    kprobes syscount -L              # also measure the time spent in them
    kprobes syscount -L -m           # ... in milliseconds
    kprobes syscount -P              # count by process, not by syscall
    kprobes syscount -l              # list the syscall names known here
    kprobes syscount --json -c 'ls /'   # JSON lines, only this command
"""


@cache
def _table() -> Any:
    import system_calls
    return system_calls.syscalls()


def _arch() -> str:
    m = platform.machine()
    return {"aarch64": "arm64", "armv7l": "arm"}.get(m, m)


def syscall_name(nr: int) -> str:
    """The name of syscall ``nr`` on this architecture (``[unknown: NR]`` if none).

    >>> syscall_name(257) if platform.machine() == "x86_64" else "openat"
    'openat'
    """
    try:
        return str(_table().get_name(nr, _arch()))
    except Exception:                          # noqa: BLE001 - the package raises its own
        return f"[unknown: {nr}]"


def syscall_number(name: str) -> int | None:
    try:
        return int(_table().get(name, _arch()))
    except Exception:                          # noqa: BLE001
        return None


def _errno(text: str) -> int:
    t = text.strip().upper()
    if t.isdigit():
        return int(t)
    v = getattr(errno, t, None)
    if not isinstance(v, int):
        raise KprobesError(f"-e {text!r}: unknown errno", hint="a number or a name such as "
                                                               "ENOENT, EPERM, EAGAIN")
    return v


def options(p: argparse.ArgumentParser) -> None:
    p.add_argument("-p", "--pid", type=int, help="trace only this pid")
    p.add_argument("-i", "--interval", type=float, metavar="SEC",
                   help="print summary at this interval (seconds)")
    p.add_argument("-T", "--top", type=int, default=10, help="print only the top syscalls by "
                   "count or latency (default 10)")
    p.add_argument("-x", "--failures", action="store_true", help="trace only failed syscalls "
                   "(return < 0)")
    p.add_argument("-e", "--errno", metavar="ERRNO",
                   help="trace only syscalls that return this error (numeric or EPERM, etc.)")
    p.add_argument("-L", "--latency", action="store_true",
                   help="collect syscall latency")
    p.add_argument("-m", "--milliseconds", action="store_true",
                   help="display latency in milliseconds (default: microseconds)")
    p.add_argument("-P", "--process", action="store_true", help="count by process and not "
                   "by syscall")
    p.add_argument("-l", "--list", action="store_true", help="print list of recognized "
                   "syscalls and exit")


def _named(rows: list[Row], process: bool) -> list[Row]:
    if process:
        return rows
    return [Row({"syscall": syscall_name(r.key["id"])}, r.count, r.sum, r.min, r.max,
                r.buckets) for r in rows]


def _show(args: argparse.Namespace) -> Any:
    unit = "ms" if args.milliseconds else "us"

    def show(aggs: list[Aggregation], rows: list[list[Row]], _args: Any,
             interval: int | None) -> None:
        out = sys.stdout
        rows = [_named(r, args.process) for r in rows]
        if args.json:
            for a, r in zip(aggs, rows, strict=True):
                d = a.to_json(interval, r)
                out.write(json.dumps(d, ensure_ascii=False) + "\n")
            out.flush()
            return
        r = rows[0]
        if args.latency:                      # bcc sorts by time with -L
            r = sorted(r, key=lambda x: (x.sum or 0, x.count))
        r = list(reversed(r[-args.top:]))
        out.write(f"[{time.strftime('%H:%M:%S')}]\n" if interval is not None else "\n")
        head = "PID    COMM             " if args.process else "SYSCALL                  "
        tail = f"        TIME ({unit})" if args.latency else ""
        out.write(f"{head}{'COUNT':>6}{tail}\n")
        for x in r:
            lead = (f"{x.key['pid']:<6} {x.key['comm']:<16} " if args.process
                    else f"{x.key['syscall']:<24} ")
            lat = f" {x.sum or 0:>16}" if args.latency else ""
            out.write(f"{lead}{x.count:>6}{lat}\n")
        out.write("\n" if interval is not None else "")
        out.flush()
    return show


def run(args: argparse.Namespace) -> int:
    if args.list:
        t = _table()
        names = sorted(n for n in t.names() if syscall_number(n) is not None)
        print("\n".join(names))
        return 0
    if args.top < 1:
        raise KprobesError(f"-T {args.top}: must be 1 or more", hint="e.g. -T 10")
    flt = None
    if args.errno is not None:
        flt = f"ret == -{_errno(args.errno)}"
    elif args.failures:
        flt = "ret < 0"
    by = ("pid", "comm") if args.process else ("id",)
    exit_ = "t:raw_syscalls:sys_exit"

    def build(s: Session) -> list[Aggregation]:
        if args.latency:
            return [s.latency_between("t:raw_syscalls:sys_enter",
                                      exit_ if flt is None else _with_filter(exit_, flt),
                                      by=by, unit="ms" if args.milliseconds else "us",
                                      backend=args.backend)]
        return [s.count(exit_, by=by, filter=flt, backend=args.backend)]

    return run_aggregations(args, f"Tracing syscalls, printing top {args.top}", build,
                            show=_show(args))


def _with_filter(spec: str, flt: str) -> Any:
    from ..probes.spec import parse_spec
    return parse_spec(spec, filter=flt)


register, main = agg_tool(__name__)

if __name__ == "__main__":
    sys.exit(main())

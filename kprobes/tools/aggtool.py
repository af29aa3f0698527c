"""What the histogram and counting tools (syscount, runqlat, biolatency) share:
their parser tail (``-c CMD``, ``-d SEC``, ``--json``, ``--backend``), the
entry points, and bcc's log2 histogram text.

A tool module defines ``NAME``, ``DESCRIPTION``, ``EXAMPLES``,
``options(parser)`` and ``run(args)`` (which calls
:func:`~kprobes.cli.aggregate.run_aggregations`), then
``register, main = agg_tool(__name__)``.

>>> from kprobes.agg.model import Bucket
>>> print(log2_text([Bucket(0, 2, 1), Bucket(3, 5, 4)], "usecs", width=8))
     usecs               : count     distribution
         0 -> 1          : 1        |**      |
         2 -> 2          : 0        |        |
         3 -> 4          : 4        |********|
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

from ..agg.model import Bucket
from ..errors import KprobesError

__all__ = ["agg_tool", "log2_text", "hist_show", "tgid_of"]


def log2_text(buckets: list[Bucket], label: str, width: int = 40) -> str:
    """bcc's ``print_log2_hist``: every bucket from the first to the last, inclusive
    integer ranges (``lo -> hi-1``; the kernel's log2 buckets are ``2^(k-1) < v <= 2^k``)."""
    if not buckets:
        return ""
    from ..agg.buckets import log2_index, log2_range
    counts = {log2_index(b.lo): b.count for b in buckets}
    top = max(counts.values())
    lines = [f"     {label:<19} : count     distribution"]
    for k in range(min(counts), max(counts) + 1):
        lo, hi = log2_range(k)
        c = counts.get(k, 0)
        bar = "*" * (c * width // top if top else 0)
        lines.append(f"{lo:>10} -> {hi - 1:<10} : {c:<8} |{bar:<{width}}|")
    return "\n".join(lines)


def _parser(p: argparse.ArgumentParser, m: Any) -> argparse.ArgumentParser:
    m.options(p)
    p.add_argument("-d", "--duration", type=float, metavar="SEC",
                   help="total duration of trace, in seconds")
    p.add_argument("-c", "--command", metavar="'CMD ARGS'",
                   help="run CMD with the probes armed, trace only it (and its children), "
                        "stop when it exits")
    p.add_argument("--backend", choices=("auto", "kernel", "user"), default="auto",
                   help="kernel: hist triggers and synthetic events, nothing per event leaves "
                        "the kernel; user: in this process; auto: kernel where it can (default)")
    p.add_argument("--json", action="store_true",
                   help="one JSON line per aggregation (per interval), then {\"summary\": ...}")
    return p


def agg_tool(module_name: str) -> tuple[Callable[[Any], None], Callable[..., int]]:
    """``register(sub)`` (for ``kprobes TOOL``) and ``main(argv)`` (for
    ``python -m kprobes.tools.TOOL``) of the tool module ``module_name``."""
    m = sys.modules[module_name]

    def run(args: argparse.Namespace) -> int:
        args.serve = None
        for opt in ("duration", "interval"):
            v = getattr(args, opt, None)
            if v is not None and v <= 0:
                raise KprobesError(f"--{opt} {v:g}: must be more than 0",
                                   hint="seconds, e.g. 10")
        return int(m.run(args))

    def register(sub: Any) -> None:
        from ..cli.main import SUBCOMMANDS
        p = sub.add_parser(m.NAME, help=SUBCOMMANDS.get(m.NAME, m.DESCRIPTION),
                           description=m.DESCRIPTION, epilog=m.EXAMPLES,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        _parser(p, m).set_defaults(func=run)

    def main(argv: list[str] | None = None) -> int:
        from ..cli.main import format_error
        p = _parser(argparse.ArgumentParser(
            prog=m.NAME, description=m.DESCRIPTION, epilog=m.EXAMPLES,
            formatter_class=argparse.RawDescriptionHelpFormatter), m)
        p.add_argument("--debug", action="store_true", help=argparse.SUPPRESS)
        args = p.parse_args(argv)
        try:
            return run(args)
        except KprobesError as e:
            if args.debug:
                raise
            print(format_error(e), file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            return 130
        except BrokenPipeError:
            return 0
    return register, main


def hist_show(args: argparse.Namespace, label: str, section: str | None,
              key_text: Callable[[dict[str, Any]], str] | None = None,
              merge: Callable[[list[Any]], list[Any]] | None = None) -> Callable[..., None]:
    """The ``show`` of :func:`~kprobes.cli.aggregate.run_aggregations` for a log2
    latency tool: bcc's histogram per ``section`` key (``pid = 181``), or JSON lines."""
    import json
    import time

    def show(aggs: list[Any], rows: list[list[Any]], _args: Any, interval: int | None) -> None:
        out = sys.stdout
        if merge is not None:
            rows = [merge(r) for r in rows]
        if args.json:
            for a, r in zip(aggs, rows, strict=True):
                out.write(json.dumps(a.to_json(interval, r), ensure_ascii=False) + "\n")
            out.flush()
            return
        out.write("\n")
        if interval is not None and getattr(args, "timestamp", False):
            out.write(time.strftime("%H:%M:%S") + "\n")
        for i, r in enumerate(sorted(rows[0], key=lambda x: repr(x.key_tuple()))):
            if section is not None:
                k = key_text(r.key) if key_text else str(next(iter(r.key.values())))
                out.write(("\n" if i else "") + f"{section} = {k}\n")
            out.write(log2_text(r.buckets or [], label) + "\n")
        out.flush()
    return show


def tgid_of(tid: int) -> int | None:
    """The process (thread group) of a live thread (None once it is gone)."""
    try:
        with open(f"/proc/{tid}/status", "rb") as f:
            for line in f:
                if line.startswith(b"Tgid:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None

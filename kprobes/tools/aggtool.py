"""What the histogram and counting tools (syscount, runqlat, biolatency) share:
their parser tail (``-c CMD``, ``-d SEC``, ``--json``, ``--backend``), the
entry points, and printing bcc's log2 histograms (:func:`~kprobes.agg.render.log2_hist_text`).

A tool module defines ``NAME``, ``DESCRIPTION``, ``EXAMPLES``,
``options(parser)`` and ``run(args)`` (which calls
:func:`~kprobes.cli.aggregate.run_aggregations`), then
``register, main = agg_tool(__name__)``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from ..agg.render import log2_hist_text
from ..cli.running import add_run_options
from ..errors import KprobesError
from .common import entry_points

TYPE_CHECKING = False   # typing's, without importing typing at run time
if TYPE_CHECKING:
    from typing import Any

__all__ = ["agg_tool", "hist_show", "tgid_of"]


def _parser(p: argparse.ArgumentParser, m: Any) -> argparse.ArgumentParser:
    m.options(p)
    add_run_options(p, pid=False)   # each tool words its own -p
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
    return entry_points(m, _parser, run)


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
            out.write(log2_hist_text(r.buckets or [], label) + "\n")
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

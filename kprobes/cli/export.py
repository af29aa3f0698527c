"""Command-line glue for the data-out paths: ``--format parquet`` and ``--serve``.

Used by ``kprobes trace`` (and the aggregation subcommands for ``--serve``);
the libraries (pyarrow, prometheus_client) are imported only when asked for.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from ..errors import KprobesError

TYPE_CHECKING = False   # typing's, without importing typing at run time
if TYPE_CHECKING:
    from typing import Any

__all__ = ["add_serve_argument", "check_serve", "start_exporter", "open_parquet",
           "close_parquet"]

SERVE_HELP = ("serve Prometheus metrics on http://[ADDR:]PORT/metrics while tracing (ADDR "
              "defaults to 127.0.0.1; 0.0.0.0:PORT for a scraper on another host; PORT 0 "
              "picks a free one). Needs pip install 'kprobes[prometheus]'")


def add_serve_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("--serve", metavar="[ADDR:]PORT", help=SERVE_HELP)


def check_serve(args: argparse.Namespace) -> None:
    """Before anything is created: ``--serve`` parses and prometheus_client imports."""
    if getattr(args, "serve", None):
        from ..output.prometheus import parse_listen, prometheus_client
        parse_listen(args.serve)
        prometheus_client()


def start_exporter(args: argparse.Namespace, session: Any,
                   aggregations: Sequence[Any] = ()) -> Any:
    """An :class:`~kprobes.output.prometheus.Exporter` serving ``--serve``, or None."""
    if not getattr(args, "serve", None):
        return None
    from ..output.prometheus import Exporter, parse_listen
    addr, port = parse_listen(args.serve)
    exp = Exporter(session, aggregations)
    exp.expect_loop()              # the command's run loop answers scrapes
    try:
        host, port = exp.serve(addr, port)
    except OSError as e:
        raise KprobesError(f"--serve {args.serve}: cannot listen on {addr}:{port}: "
                           f"{e.strerror or e}",
                           hint="pick a free port (or 0 for any), e.g. --serve 9102") from None
    shown = f"[{host}]" if ":" in host else host
    print(f"kprobes: serving metrics on http://{shown}:{port}/metrics", file=sys.stderr,
          flush=True)
    return exp


def open_parquet(args: argparse.Namespace, session: Any) -> Any:
    """After ``session.start()``: a ParquetSink on ``-o FILE`` taking every probe's batches."""
    from ..output.arrow import ParquetSink
    reader = session.reader
    assert reader is not None
    if args.row_group < 1:
        raise KprobesError(f"--row-group {args.row_group}: must be at least 1")
    sink = ParquetSink(args.output, reader.targets(), row_group_rows=args.row_group,
                       stacks=getattr(reader, "stacks", None) is not None)
    for h in session.handles:
        if not h.hidden:
            h.batch = sink.add
    return sink


def close_parquet(sink: Any) -> str:
    """Write the rest and the footer, with Ctrl-C/SIGTERM held off meanwhile; a summary."""
    from ..runtime.signals import block_signals, unblock_signals
    blocked = block_signals()
    try:
        sink.close()
    finally:
        unblock_signals(blocked)
    size = os.path.getsize(sink.path)
    per = f", {size / sink.rows:.1f} bytes/event" if sink.rows else ""
    return (f"kprobes: wrote {sink.rows} events in {sink.row_groups} row groups to "
            f"{sink.path} ({size:,} bytes{per})")

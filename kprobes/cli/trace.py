"""``kprobes trace SPEC...``: print every event, as text or JSON lines."""

from __future__ import annotations

import argparse
import sys
import time

from ..errors import KprobesError, SpecError
from ..output.render import summary_json, summary_text
from ..probes.spec import SPEC_HELP, parse_spec
from ..runtime.session import Session
from .complete import spec_completer
from .export import (
    add_serve_argument,
    check_serve,
    close_parquet,
    open_parquet,
    start_exporter,
)
from .running import Target, Watch, add_run_options
from .trace_out import Sink, hex_args, json_batch, json_event, text_batch, text_event

TYPE_CHECKING = False   # typing's, without importing typing at run time
if TYPE_CHECKING:
    from typing import Any

__all__ = ["register", "run"]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "trace", help="trace probes and print each event",
        description="Create the probes, print one line (or JSON object) per event, and remove "
                    "everything on exit (Ctrl-C, -d, or when the -c command exits).",
        epilog=SPEC_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("specs", nargs="+", metavar="SPEC", help="probe spec (quote each one)"
                   ).completer = spec_completer
    add_run_options(p)
    p.add_argument("--filter", metavar="EXPR",
                   help="in-kernel filter for every probe, e.g. 'ret < 0' or 'comm == \"cat\"'")
    p.add_argument("--json", action="store_true",
                   help="one JSON object per event per line, then {\"summary\": ...}")
    p.add_argument("--format", choices=("text", "json", "parquet"), default=None,
                   help="text (default), json (as --json), or parquet: an Apache Parquet "
                        "file (-o FILE), written in row groups as events come; columns "
                        "probe, ts_ns, time, cpu, pid, tid, comm, then each probe's args "
                        "(needs pip install 'kprobes[arrow]')")
    p.add_argument("--row-group", type=int, default=65536, metavar="ROWS",
                   help="--format parquet: events per row group, written as soon as that "
                        "many are read (bounds memory; default 65536)")
    p.add_argument("-q", "--quiet", action="store_true",
                   help="count every event without decoding or printing it (summary only)")
    p.add_argument("-o", "--output", metavar="FILE",
                   help="write events (and the JSON summary) to FILE instead of stdout")
    p.add_argument("--buffer-kb", type=int, metavar="KB", help="per-CPU ring buffer size")
    p.add_argument("--wakeup", type=int, default=0, metavar="PERCENT",
                   help="wake the reader when a CPU buffer is PERCENT full (0 = on any event)")
    p.add_argument("--latency", type=float, default=5.0, metavar="MS",
                   help="rest MS milliseconds after reading only a few events, so a trickle "
                        "arrives in batches (less CPU per event); 0 = print at once (default 5)")
    p.add_argument("--stack", choices=("kernel", "user", "both"),
                   help="record the kernel and/or user stack with each event and print it "
                        "under the event (JSON: \"kstack\"/\"ustack\" arrays); user stacks "
                        "follow frame pointers")
    p.add_argument("--status", choices=("auto", "always", "never"), default="auto",
                   help="a live status line on stderr (events/s, lost, backlog, elapsed); auto: "
                        "when stderr is a terminal that events do not print to")
    add_serve_argument(p)
    p.add_argument("--armed", action="store_true", help=argparse.SUPPRESS)  # bench: start-up
    p.set_defaults(func=run)




def run(args: argparse.Namespace) -> int:
    try:
        probes = [parse_spec(s, filter=args.filter) for s in args.specs]
    except SpecError as e:
        from .hints import better_spec_hint
        better_spec_hint(e)
        raise
    if args.latency < 0:
        raise KprobesError(f"--latency {args.latency:g}: must be 0 or more",
                           hint="milliseconds, e.g. --latency 5")
    if args.format == "json":
        args.json = True
    parquet = args.format == "parquet"
    if parquet:
        if args.json or args.quiet:
            raise KprobesError("--format parquet writes events to a file: not with --json or -q")
        if not args.output:
            raise KprobesError("--format parquet needs an output file",
                               hint="kprobes trace SPEC --format parquet -o events.parquet")
        from ..output.arrow import pyarrow
        pyarrow(parquet=True)       # a missing extra is reported before anything is created
    check_serve(args)
    target = Target(args)           # -p/-d checked before anything is created
    sink = Sink(None if parquet else args.output)
    pq_sink = exporter = None
    status = _want_status(args)
    watch: Watch | None = None
    try:
        target.open()
        with Session(buffer_kb=args.buffer_kb, pid=target.pid, wakeup_percent=args.wakeup,
                     latency=args.latency / 1000) as s:
            sink.on_error = s.stop
            hexes: dict[str, set[str]] = {}     # filled once started (compiled arg types)
            stacked = bool(args.stack)
            for p in probes:
                if args.quiet:
                    s.add(p, stack=args.stack)  # no handler: counted per batch, not decoded
                elif len(probes) == 1 and not stacked:   # one probe: whole batches, in order
                    s.add_batch(p, json_batch(sink) if args.json else text_batch(sink, hexes))
                else:                           # several, or stacks: one time-ordered stream
                    s.add(p, json_event(sink, stacked) if args.json
                          else text_event(sink, hexes, stacked), stack=args.stack)
            s.start()
            hexes.update({h.name: hex_args(s, h) for h in s.handles})
            if parquet:
                pq_sink = open_parquet(args, s)
            exporter = start_exporter(args, s)
            if args.armed:
                print(f"armed {time.monotonic_ns()}", file=sys.stderr, flush=True)
            if not args.json and not args.quiet:
                names = ", ".join(h.name for h in s.handles)
                print(f"Tracing {names}. Ctrl-C to end.", file=sys.stderr, flush=True)
            target.start(s)
            watch = Watch(s, target, sink=sink, status=status)
            stats = s.run(duration=args.duration,
                          until=exporter.until(watch) if exporter else watch)
            sink.flush()
            watch.clear()
            if sink.error is None:
                _summary(args, s, stats, sink, target)
            if pq_sink is not None:
                print(close_parquet(pq_sink), file=sys.stderr)
    finally:
        if watch is not None:
            watch.clear()
        if exporter is not None:
            exporter.close()
        if pq_sink is not None:
            close_parquet(pq_sink)  # a readable file whatever ended the run
        sink.close()
        target.close()
    if sink.error is not None:       # the session is closed: nothing left in the kernel
        raise sink.problem()
    return 0


def _summary(args: argparse.Namespace, s: Session, stats: Any, sink: Sink,
             target: Target) -> None:
    extra = target.ended()
    if "process_exited" in extra:
        if not args.json:
            print(f"kprobes: process {args.pid} exited", file=sys.stderr)
    if args.json:
        sink.write(summary_json(stats, extra) + "\n")
        sink.flush()
    else:
        print(summary_text(stats), file=sys.stderr)
    for problem in s.cleanup_problems:
        print(f"warning: {problem}", file=sys.stderr)



def _want_status(args: argparse.Namespace) -> bool:
    """The live status line: only on a terminal, and not where events print to it."""
    if args.status == "never" or not _isatty(sys.stderr):
        return False
    if args.status == "always":
        return True
    return bool(args.quiet or args.output or not _isatty(sys.stdout))


def _isatty(f: Any) -> bool:
    try:
        return f.isatty()
    except (AttributeError, ValueError, OSError):
        return False

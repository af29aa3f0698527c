"""``kprobes trace SPEC...``: print every event, as text or JSON lines."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from typing import IO, Any

from ..decode.flags import CONTEXTS
from ..errors import KprobesError
from ..output.render import json_line, summary_json, summary_text, text_line
from ..probes.spec import SPEC_HELP, parse_spec
from ..runtime.session import Session
from .running import Child as _Child
from .running import Watch as _Watch
from .running import pidfd as _pidfd

__all__ = ["register", "run"]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "trace", help="trace probes and print each event",
        description="Create the probes, print one line (or JSON object) per event, and remove "
                    "everything on exit (Ctrl-C, -d, or when the -c command exits).",
        epilog=SPEC_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("specs", nargs="+", metavar="SPEC", help="probe spec (quote each one)")
    p.add_argument("-d", "--duration", type=float, metavar="SECONDS", help="stop after SECONDS")
    p.add_argument("-p", "--pid", type=int,
                   help="trace only this process (and its children); end when it exits")
    p.add_argument("-c", "--command", metavar="'CMD ARGS'",
                   help="run CMD with the probes already armed; trace only it (and its "
                        "children) and stop when it exits")
    p.add_argument("--filter", metavar="EXPR",
                   help="in-kernel filter for every probe, e.g. 'ret < 0' or 'comm == \"cat\"'")
    p.add_argument("--json", action="store_true",
                   help="one JSON object per event per line, then {\"summary\": ...}")
    p.add_argument("-q", "--quiet", action="store_true",
                   help="decode and count every event without printing it (summary only)")
    p.add_argument("-o", "--output", metavar="FILE",
                   help="write events (and the JSON summary) to FILE instead of stdout")
    p.add_argument("--buffer-kb", type=int, metavar="KB", help="per-CPU ring buffer size")
    p.add_argument("--wakeup", type=int, default=0, metavar="PERCENT",
                   help="wake the reader when a CPU buffer is PERCENT full (0 = on any event)")
    p.add_argument("--latency", type=float, default=5.0, metavar="MS",
                   help="rest MS milliseconds after reading only a few events, so a trickle "
                        "arrives in batches (less CPU per event); 0 = print at once (default 5)")
    p.add_argument("--armed", action="store_true", help=argparse.SUPPRESS)  # bench: start-up
    p.set_defaults(func=run)




def _json_batch(out: IO[str]) -> Callable[[Any], None]:
    """A batch handler writing one JSON line per event, the same text as
    :func:`json_line`, built per batch from columns with one ``%`` template
    when every argument is an int (the common case), else event by event."""
    enc = json.JSONEncoder(ensure_ascii=False).encode
    comm_js: dict[str, str] = {}
    templates: dict[tuple[str, tuple[str, ...]], str] = {}

    def on_batch(b: Any) -> None:
        args = b.args
        keys = tuple(args)
        cols = list(args.values())
        if not all(type(v) is int for col in cols for v in col):
            out.write("".join(json_line(ev) + "\n" for ev in b.events()))
            return
        t = templates.get((b.probe, keys))
        if t is None:
            def lit(x: str) -> str:
                return enc(x).replace("%", "%%")
            body = ", ".join(f"{lit(k)}: %d" for k in keys)
            t = templates[b.probe, keys] = (
                f'{{"probe": {lit(b.probe)}, "ts_ns": %d, "cpu": %d, "pid": %d, "tid": %d, '
                '"comm": %s, "preempt_count": %d, "context": "%s", '
                f'"args": {{{body}}}}}\n')
        comms = []
        for c in b.comm:
            js = comm_js.get(c)
            if js is None:
                js = comm_js[c] = enc(c)
            comms.append(js)
        ctx = [CONTEXTS[f] for f in b.trace_flags]
        out.write("".join(map(t.__mod__, zip(b.ts, b.cpu, b.pid, b.tid, comms,
                                             b.preempt_count, ctx, *cols, strict=True))))
    return on_batch


def _text_batch(out: IO[str], hexes: set[str]) -> Callable[[Any], None]:
    def on_batch(b: Any) -> None:
        out.write("".join(text_line(ev, hexes) + "\n" for ev in b.events()))
    return on_batch


def _count_batch(b: Any) -> None:
    """-q: decode every event (columns), print nothing."""
    b.args, b.tid     # noqa: B018 - decoding is the point


def run(args: argparse.Namespace) -> int:
    probes = [parse_spec(s, filter=args.filter) for s in args.specs]
    if args.latency < 0:
        raise KprobesError(f"--latency {args.latency:g}: must be 0 or more",
                           hint="milliseconds, e.g. --latency 5")
    child = _Child(args.command) if args.command else None
    out = open(args.output, "w") if args.output else sys.stdout  # noqa: SIM115
    target = _pidfd(args.pid) if args.pid and not child else None
    try:
        pid = child.pid if child else args.pid
        with Session(buffer_kb=args.buffer_kb, pid=pid, wakeup_percent=args.wakeup,
                     latency=args.latency / 1000) as s:
            hexes: dict[str, set[str]] = {}

            def emit_json(ev: Any) -> None:
                out.write(json_line(ev) + "\n")

            def emit_text(ev: Any) -> None:
                out.write(text_line(ev, hexes[ev.probe]) + "\n")

            for p in probes:
                xs = {a.name for a in p.args if (a.type or "x64").startswith("x")}
                if args.quiet:
                    h = s.add_batch(p, _count_batch)
                elif len(probes) == 1:      # one probe: whole batches, in time order
                    h = s.add_batch(p, _json_batch(out) if args.json else _text_batch(out, xs))
                else:                       # several: one time-ordered stream of events
                    h = s.add(p, emit_json if args.json else emit_text)
                hexes[h.name] = xs
            s.start()
            if args.armed:
                print(f"armed {time.monotonic_ns()}", file=sys.stderr, flush=True)
            if not args.json and not args.quiet:
                names = ", ".join(h.name for h in s.handles)
                print(f"Tracing {names}. Ctrl-C to end.", file=sys.stderr, flush=True)
            if child:
                if child.pidfd is not None:
                    s.wake_on(child.pidfd)
                child.go()
            elif target is not None:
                s.wake_on(target)
            watch = _Watch(s, child, target=target)
            stats = s.run(duration=args.duration, until=watch)
            out.flush()
            extra: dict[str, Any] = {}
            if child and child.exited():
                extra["command_exit"] = child.status
            if watch.target_exited:
                extra["process_exited"] = args.pid
                if not args.json:
                    print(f"kprobes: process {args.pid} exited", file=sys.stderr)
            if args.json:
                out.write(summary_json(stats, extra) + "\n")
                out.flush()
            else:
                print(summary_text(stats), file=sys.stderr)
            for problem in s.cleanup_problems:
                print(f"warning: {problem}", file=sys.stderr)
    finally:
        if out is not sys.stdout:
            out.close()
        for fd in (target, child.pidfd if child else None):
            if fd is not None:
                os.close(fd)
        if child:
            if child.status is None and not child.exited():
                child.kill()
    return 0

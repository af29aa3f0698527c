"""``kprobes trace SPEC...``: print every event, as text or JSON lines."""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from typing import Any

from ..errors import KprobesError
from ..output.render import json_line, summary_json, summary_text, text_line
from ..probes.spec import SPEC_HELP, parse_spec
from ..runtime.session import Session

__all__ = ["register", "run"]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "trace", help="trace probes and print each event",
        description="Create the probes, print one line (or JSON object) per event, and remove "
                    "everything on exit (Ctrl-C, -d, or when the -c command exits).",
        epilog=SPEC_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("specs", nargs="+", metavar="SPEC", help="probe spec (quote each one)")
    p.add_argument("-d", "--duration", type=float, metavar="SECONDS", help="stop after SECONDS")
    p.add_argument("-p", "--pid", type=int, help="trace only this process (and its children)")
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
    p.set_defaults(func=run)


class _Child:
    """A command forked now, exec'd only once the probes are armed."""

    def __init__(self, cmd: str) -> None:
        argv = shlex.split(cmd)
        if not argv:
            raise KprobesError("empty -c command")
        self.argv = argv
        self.r, self.w = os.pipe()
        self.pid = os.fork()
        if self.pid == 0:   # child: wait for the go, then exec
            try:
                os.close(self.w)
                os.read(self.r, 1)
                os.close(self.r)
                os.execvp(argv[0], argv)
            except OSError as e:
                os.write(2, f"kprobes: cannot run {argv[0]}: {e.strerror}\n".encode())
            finally:
                os._exit(127)
        os.close(self.r)
        self.status: int | None = None

    def go(self) -> None:
        os.write(self.w, b"g")
        os.close(self.w)

    def exited(self) -> bool:
        if self.status is None:
            pid, st = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.status = os.waitstatus_to_exitcode(st)
        return self.status is not None

    def kill(self) -> None:
        if self.status is None:
            try:
                os.kill(self.pid, 9)
                os.waitpid(self.pid, 0)
            except (ProcessLookupError, ChildProcessError):
                pass
            self.status = -9


def run(args: argparse.Namespace) -> int:
    probes = [parse_spec(s, filter=args.filter) for s in args.specs]
    child = _Child(args.command) if args.command else None
    out = open(args.output, "w") if args.output else sys.stdout  # noqa: SIM115
    try:
        pid = child.pid if child else args.pid
        with Session(buffer_kb=args.buffer_kb, pid=pid, wakeup_percent=args.wakeup) as s:
            hexes: dict[str, set[str]] = {}
            for p in probes:
                h = s.add(p)
                hexes[h.name] = {a.name for a in p.args if (a.type or "x64").startswith("x")}
            if not args.quiet:
                if args.json:
                    def emit(ev: Any) -> None:
                        out.write(json_line(ev) + "\n")
                else:
                    def emit(ev: Any) -> None:
                        out.write(text_line(ev, hexes[ev.probe]) + "\n")
                for h in s.handles:
                    h.handler = emit
            s.start()
            if not args.json and not args.quiet:
                names = ", ".join(h.name for h in s.handles)
                print(f"Tracing {names}. Ctrl-C to end.", file=sys.stderr, flush=True)
            if child:
                child.go()
            stats = s.run(duration=args.duration, until=child.exited if child else None)
            out.flush()
            extra: dict[str, Any] = {}
            if child and child.exited():
                extra["command_exit"] = child.status
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
        if child:
            if child.status is None and not child.exited():
                child.kill()
    return 0

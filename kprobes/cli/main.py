"""The ``kprobes`` command: one thin module per subcommand.

Each subcommand module has ``register(sub)`` (adds its parser, sets
``func=run``) and ``run(args) -> int``. Errors are ``KprobesError``: printed as
``error: ...`` plus a hint, exit status 1; a traceback only with ``--debug``.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from ..errors import KernelRefused, KprobesError, SpecError

__all__ = ["main", "build_parser", "SUBCOMMANDS"]

SUBCOMMANDS = ("trace", "list", "info", "clean", "demo", "vm")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kprobes",
        description="Dynamic tracing of the running Linux kernel and its programs: kprobes, "
                    "kretprobes, uprobes and tracepoints, with Python handlers.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMANDS:
        try:
            mod = importlib.import_module(f"kprobes.cli.{name}")
        except ImportError as e:  # a subcommand still missing must not break the others
            if e.name != f"kprobes.cli.{name}":
                raise
            continue
        mod.register(sub)
    return parser


def format_error(e: KprobesError) -> str:
    lines = [f"error: {e}"]
    if isinstance(e, SpecError) and e.caret():
        lines += ["  " + ln for ln in e.caret().splitlines()]
    if isinstance(e, KernelRefused) and e.column is not None:
        lines += [f"  {e.command}", "  " + " " * e.column + "^"]
    if e.hint:
        lines.append(f"hint: {e.hint}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except KprobesError as e:
        if args.debug:
            raise
        print(format_error(e), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())

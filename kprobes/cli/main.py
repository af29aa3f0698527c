"""The ``kprobes`` command: one thin module per subcommand.

Each subcommand module ``kprobes.cli.<name>`` has ``register(sub)`` (adds its
parser, sets ``func=run``) and ``run(args) -> int``. Errors are
``KprobesError``: printed as ``error: ...`` plus a hint, exit status 1; a
traceback only with ``--debug``.

Only the subcommand named on the command line is imported and registered
(its imports and argparse tree are most of a short command's start-up);
``kprobes``, ``kprobes --help`` and an unknown name list every subcommand
from the :data:`SUBCOMMANDS` table without importing any of them.

Adding a subcommand is one line in :data:`SUBCOMMANDS` (name -> one-line
help, listed in this order) plus the module ``kprobes/cli/<name>.py``
(or, for the bcc-style tools, ``kprobes/tools/<name>.py``)::

    SUBCOMMANDS = {
        ...
        "count": "count events per key (in the kernel where it can)",
    }
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import sys
from collections.abc import Callable

from ..errors import KernelRefused, KprobesError, SpecError

__all__ = ["main", "build_parser", "format_error", "version", "SUBCOMMANDS"]

#: Subcommand name -> the one-line help ``kprobes --help`` shows; the module
#: is ``kprobes.cli.<name>``.
SUBCOMMANDS: dict[str, str] = {
    "trace": "trace probes and print each event",
    "count": "count events per key, in the kernel where it can",
    "hist": "histogram of a value, in the kernel where it can",
    "latency": "latency histogram of a function, in the kernel where it can",
    "stacks": "count distinct kernel/user stacks at a probe; flame graphs",
    "list": "list probeable functions, tracepoints or a binary's symbols",
    "info": "kernel support, or a function prototype / struct from BTF",
    "clean": "remove probes and instances left by dead kprobes sessions",
    "demo": "run the kprobe, jprobe and kretprobe demonstrations",
    "vm": "run a command on a Debian kernel under QEMU (kprobes tests)",
    "opensnoop": "bcc's opensnoop: open() calls, their path and result",
    "execsnoop": "bcc's execsnoop: new processes and their arguments",
    "exitsnoop": "bcc's exitsnoop: process exits, age and exit status",
    "killsnoop": "bcc's killsnoop: signals sent by kill()",
    "syscount": "bcc's syscount: syscalls by count or process, -L their time",
    "runqlat": "bcc's runqlat: run-queue (scheduler) latency histogram",
    "biolatency": "bcc's biolatency: block I/O latency histogram",
    "tcplife": "bcc's tcplife: TCP sessions with their bytes and duration",
    "funccount": "bcc's funccount: calls per function or tracepoint",
    "funclatency": "bcc's funclatency: latency histogram of functions",
    "stackcount": "bcc's stackcount: stacks leading to functions",
}


class _Version(argparse.Action):
    """``--version``: from the installed package's metadata, looked up only when asked."""

    def __init__(self, option_strings: list[str], dest: str, **kw: object) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS,
                         help=str(kw.get("help")))

    def __call__(self, parser: argparse.ArgumentParser, *_: object) -> None:
        print(f"kprobes {version()}")
        parser.exit()


def version() -> str:
    """The installed distribution's version (``pyproject.toml``), or ``unknown``."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as _v
    try:
        return _v("kprobes")
    except PackageNotFoundError:
        return "unknown (not installed)"


def _chosen(argv: list[str]) -> str | None:
    """The subcommand named in ``argv`` (the first word not an option), if known."""
    for word in argv:
        if word == "--":
            return None
        if not word.startswith("-"):
            return word if word in SUBCOMMANDS else None
    return None


def _module(name: str) -> str:
    """The module of subcommand ``name``: ``kprobes.cli.<name>``, else the tool
    ``kprobes.tools.<name>``."""
    cli = f"kprobes.cli.{name}"
    return cli if importlib.util.find_spec(cli) is not None else f"kprobes.tools.{name}"


class _Formatter(argparse.HelpFormatter):
    """Lines the subcommands' help up past the longest name (argparse leaves
    out the subcommands' extra indent and wraps names longer than 8)."""

    def add_argument(self, action: argparse.Action) -> None:
        super().add_argument(action)
        if isinstance(action, argparse._SubParsersAction):
            longest = max((len(a.dest) for a in action._choices_actions), default=0)
            self._action_max_length = max(self._action_max_length,
                                          longest + self._current_indent + 4)


def _columns() -> int:
    """What ``shutil.get_terminal_size().columns`` says: $COLUMNS, else stdout's
    terminal, else 80."""
    try:
        cols = int(os.environ.get("COLUMNS", ""))
    except ValueError:
        cols = 0
    if cols <= 0:
        try:
            cols = os.get_terminal_size(sys.__stdout__.fileno()).columns  # type: ignore[union-attr]
        except (AttributeError, ValueError, OSError):
            cols = 0
    return cols or 80


class _Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose help formatters are given their width.

    argparse makes a formatter for every ``add_argument`` (to check the
    metavar), and a formatter without a width imports :mod:`shutil` to ask for
    the terminal's, which imports bz2, lzma and zlib with their C libraries:
    ~10 files read before any probe is armed, slow over a VM's 9p root.
    Subparsers inherit this class."""

    def _get_formatter(self) -> argparse.HelpFormatter:
        return self.formatter_class(prog=self.prog, width=_columns() - 2)  # type: ignore[call-arg]


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The parser for ``argv``: the full tree of the subcommand it names, else
    a one-line placeholder per subcommand (enough for ``--help`` and for the
    "invalid choice" error).  ``argv=None`` builds every subcommand's tree."""
    parser = _Parser(
        prog="kprobes", formatter_class=_Formatter,
        description="Dynamic tracing of the running Linux kernel and its programs: kprobes, "
                    "kretprobes, uprobes and tracepoints, with Python handlers.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    parser.add_argument("--version", action=_Version, help="print the version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    chosen = _chosen(argv) if argv is not None else None
    for name, help_text in SUBCOMMANDS.items():
        if argv is None or name == chosen:
            importlib.import_module(_module(name)).register(sub)
        else:
            sub.add_parser(name, help=help_text, add_help=False)
    return parser


def format_error(e: KprobesError) -> str:
    """``error: ...`` (with the caret lines of a spec or kernel error) and ``hint: ...``."""
    lines = [f"error: {e}"]
    caret = e.caret() if isinstance(e, SpecError) else None
    if caret:
        lines += ["  " + ln for ln in caret.splitlines()]
    if isinstance(e, KernelRefused) and e.column is not None:
        lines += [f"  {e.command}", "  " + " " * e.column + "^"]
    if e.hint:
        lines.append(f"hint: {e.hint}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the ``kprobes`` command line (``sys.argv[1:]`` by default); return the exit status."""
    if argv is None:
        argv = sys.argv[1:]
    if "_ARGCOMPLETE" in os.environ:     # the shell asks for completions (answers, exits)
        from .complete import autocomplete
        autocomplete(build_parser(None))  # every subcommand's tree
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    return run_command(args.func, args)


def run_command(func: Callable[[argparse.Namespace], int | None],
                args: argparse.Namespace) -> int:
    """Run a subcommand (or a tool's ``main``): a :class:`KprobesError` becomes its
    one-line message and status 1 (``--debug`` re-raises it), Ctrl-C 130, a
    closed stdout 0."""
    try:
        return int(func(args) or 0)
    except KprobesError as e:
        if getattr(args, "debug", False):
            raise
        print(format_error(e), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())

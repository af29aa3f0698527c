"""What every snoop tool shares: its parser (the bcc tool's options plus
``-c CMD``, ``-d SEC``, ``--json``), the run loop (the ``-c`` command, the
``-p`` process, Ctrl-C), and the rows it prints, as bcc's fixed-width
columns or one JSON object per row.

A tool module defines ``NAME``, ``DESCRIPTION``, ``EXAMPLES``,
``options(parser)``, ``columns(args)`` and ``setup(session, args, rows)``
(which adds its probes, whose handlers call ``rows.emit(...)``), then
``register, run, main = tool(__name__)``. A tool that aggregates instead
(funccount, funclatency, stackcount) defines ``execute(args)`` in place of
``columns`` and ``setup``.

>>> r = Rows([("PID", -6), ("COMM", -16), ("FD", 4), ("PATH", 0)], as_json=False, out=None)
>>> r.header_line()
'PID    COMM               FD PATH'
>>> r.text(1234, "cat", 3, "/etc/passwd")
'1234   cat                 3 /etc/passwd'
>>> Rows.key("TIME(s)"), Rows.key("EXIT_CODE")
('time_s', 'exit_code')
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable, Sequence
from types import ModuleType

from kprobes import KprobesError, NotSupported, Session

from ..cli.running import Target, Watch, add_run_options

TYPE_CHECKING = False   # typing's, without importing typing at run time
if TYPE_CHECKING:
    from typing import IO, Any

__all__ = ["Rows", "Pending", "tool", "entry_points", "comm_filter", "uid_of", "ppid_of"]

#: (HEADER, width): negative = left-aligned, 0 = the last, unpadded column
Column = tuple[str, int]


class Rows:
    """Prints rows under a header, as text columns or JSON objects."""

    def __init__(self, columns: list[Column], *, as_json: bool, out: IO[str] | None) -> None:
        self.columns = columns
        self.as_json = as_json
        self.out = out if out is not None else sys.stdout
        self.keys = [self.key(c) for c, _ in columns]
        self.count = 0
        # one format per row, built once: str() of each value, padded as its column
        # (w < 0 left-aligned, w > 0 right-aligned, 0 as it is)
        self._fmt = " ".join("{!s}" if w == 0 else f"{{!s:{'<' if w < 0 else '>'}{abs(w)}}}"
                             for _, w in columns).format

    @staticmethod
    def key(header: str) -> str:
        """The JSON key of a column: its header in lower case, ``(s)`` -> ``_s``."""
        return re.sub(r"[^a-z0-9]+", "_", header.lower()).strip("_")

    def header_line(self) -> str:
        return self._line([c for c, _ in self.columns])

    def _line(self, values: Sequence[Any]) -> str:
        if len(values) != len(self.columns):
            raise ValueError(f"{len(values)} values for {len(self.columns)} columns")
        return self._fmt(*values)

    def text(self, *values: Any) -> str:
        return self._line(list(values))

    def header(self) -> None:
        if not self.as_json:
            self.out.write(self.header_line() + "\n")
            self.out.flush()

    def emit(self, *values: Any, text: list[Any] | None = None, **extra: Any) -> None:
        """One row: ``values`` in column order (JSON: numbers stay numbers);
        ``text`` replaces them in the text form (e.g. ``"code 3"``), ``extra``
        adds JSON-only keys."""
        self.count += 1
        if self.as_json:
            obj = dict(zip(self.keys, values, strict=True))
            obj.update(extra)
            self.out.write(json.dumps(obj, ensure_ascii=False) + "\n")
        else:
            self.out.write(self._line(text if text is not None else values) + "\n")


class Pending:
    """Per-thread pairing of a syscall's entry with its exit: ``put(tid, x)``
    at the entry, ``take(tid)`` at the exit (None: the entry was not seen,
    e.g. it happened before tracing started or was filtered out)."""

    def __init__(self) -> None:
        self._by_tid: dict[int, Any] = {}

    def put(self, tid: int, value: Any) -> None:
        self._by_tid[tid] = value

    def take(self, tid: int) -> Any:
        return self._by_tid.pop(tid, None)


def comm_filter(name: str) -> str:
    """The kernel filter for "process name contains NAME" (every event has ``comm``)."""
    if not name or any(c in name for c in '"\\*?[]'):
        raise KprobesError(f"-n {name!r}: a process name without quotes, backslashes or "
                           "glob characters", hint="e.g. -n cat")
    return f'comm ~ "*{name}*"'


def uid_of(pid: int) -> int | None:
    """The real uid of a live process (None once it is gone)."""
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            for line in f:
                if line.startswith(b"Uid:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


def ppid_of(pid: int) -> int | None:
    """The parent of a live (or zombie) process (None once it is reaped)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
        return int(stat[stat.rindex(b")") + 2:].split()[1])
    except (OSError, ValueError, IndexError):
        return None


def _parser(p: argparse.ArgumentParser, m: ModuleType) -> argparse.ArgumentParser:
    m.options(p)
    add_run_options(p, pid=False)   # each tool words its own -p
    p.add_argument("--json", action="store_true",
                   help="one JSON object per row, keyed by the column names in lower case")
    return p


def _run(m: ModuleType, args: argparse.Namespace) -> int:
    with Target(args) as target:
        args.target_pid = target.pid
        # PID_FILTER = False: the tool filters by process itself (events in softirqs)
        with Session(pid=target.pid if getattr(m, "PID_FILTER", True) else None) as s:
            rows = Rows(m.columns(args), as_json=args.json, out=sys.stdout)
            m.setup(s, args, rows)
            try:
                s.start()
            except NotSupported as e:
                hint = getattr(m, "NOT_SUPPORTED_HINT", None)
                if hint is None:
                    raise
                raise NotSupported(f"{m.NAME}: {e}", feature=e.feature, hint=hint) from None
            rows.header()
            target.start(s)
            stats = s.run(duration=args.duration, until=Watch(s, target))
            sys.stdout.flush()
            if stats.lost:
                print(f"{m.NAME}: warning: the ring buffer dropped {stats.lost} events",
                      file=sys.stderr)
            for problem in s.cleanup_problems:
                print(f"warning: {problem}", file=sys.stderr)
    return 0


def tool(module_name: str) -> tuple[Callable[[Any], None], Callable[[argparse.Namespace], int],
                                     Callable[..., int]]:
    """``register(sub)`` (for ``kprobes TOOL``), ``run(args)`` and ``main(argv)``
    (for ``python -m kprobes.tools.TOOL``) of the tool module ``module_name``."""
    m = sys.modules[module_name]

    def run(args: argparse.Namespace) -> int:
        if hasattr(m, "execute"):           # a counting tool runs its own loop
            return int(m.execute(args))
        return _run(m, args)
    register, main = entry_points(m, _parser, run)
    return register, run, main


def entry_points(m: ModuleType,
                 parser: Callable[[argparse.ArgumentParser, ModuleType], argparse.ArgumentParser],
                 run: Callable[[argparse.Namespace], int],
                 ) -> tuple[Callable[[Any], None], Callable[..., int]]:
    """``register(sub)`` and ``main(argv)`` of tool module ``m``: its ``NAME``,
    ``DESCRIPTION`` and ``EXAMPLES``, options from ``parser(p, m)``, run by ``run``."""
    def register(sub: Any) -> None:
        from ..cli.main import SUBCOMMANDS
        p = sub.add_parser(m.NAME, help=SUBCOMMANDS.get(m.NAME, m.DESCRIPTION),
                           description=m.DESCRIPTION,
                           epilog=m.EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
        parser(p, m).set_defaults(func=run)

    def main(argv: list[str] | None = None) -> int:
        from ..cli.main import run_command
        p = parser(argparse.ArgumentParser(
            prog=m.NAME, description=m.DESCRIPTION, epilog=m.EXAMPLES,
            formatter_class=argparse.RawDescriptionHelpFormatter), m)
        p.add_argument("--debug", action="store_true", help=argparse.SUPPRESS)
        return run_command(run, p.parse_args(argv))
    return register, main

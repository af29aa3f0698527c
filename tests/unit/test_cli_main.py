"""The ``kprobes`` entry point: only the named subcommand is built, the table lists all."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

from kprobes.cli.main import SUBCOMMANDS, build_parser, main


def _choices(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def _helps(parser: argparse.ArgumentParser) -> dict[str, str | None]:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return {c.dest: c.help for c in action._choices_actions}


def test_table_help_matches_each_module() -> None:
    assert _helps(build_parser()) == SUBCOMMANDS


def test_help_lists_every_subcommand(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for name, text in SUBCOMMANDS.items():
        assert f"    {name} " in out and text in out


def test_no_subcommand_prints_help_and_returns_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    out = capsys.readouterr().out
    assert all(text in out for text in SUBCOMMANDS.values())


def test_only_the_named_subcommand_gets_its_tree() -> None:
    parser = build_parser(["--debug", "info", "--help"])
    full = {n for n, p in _choices(parser).items() if p.add_help}
    assert full == {"info"}
    args = parser.parse_args(["--debug", "info", "sched_fork"])
    assert args.target == "sched_fork" and args.debug and callable(args.func)


def test_unknown_subcommand_is_one_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        main(["tarce"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "invalid choice: 'tarce'" in err and "trace" in err


def test_help_does_not_import_subcommands() -> None:
    code = ("import sys; from kprobes.cli.main import main\n"
            "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            "print(sorted(m for m in sys.modules if m.startswith('kprobes.cli.')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip().splitlines()[-1] == "['kprobes.cli.main']"


def test_trace_parser_loads_no_shutil() -> None:
    """Start-up: argparse's formatters get their width from us, not from shutil
    (which loads bz2, lzma and zlib with their C libraries)."""
    code = ("import sys; from kprobes.cli.main import build_parser\n"
            "build_parser(['trace', 'p:x', '-q']).parse_args(['trace', 'p:x', '-q'])\n"
            "print('shutil' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip().splitlines()[-1] == "False"


def test_help_width_follows_columns(monkeypatch: pytest.MonkeyPatch,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    def usage(columns: str) -> list[str]:
        monkeypatch.setenv("COLUMNS", columns)
        with pytest.raises(SystemExit):
            main(["trace", "--help"])
        out = capsys.readouterr().out
        return out[:out.index("\n\n")].splitlines()     # the usage paragraph
    narrow, wide = usage("50"), usage("200")
    assert len(narrow) > len(wide) and max(map(len, narrow)) < max(map(len, wide))

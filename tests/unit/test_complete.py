"""Shell completion functions, on crafted kallsyms text and a crafted events/ tree."""

from __future__ import annotations

import os
import shutil
import sys

import pytest

from kprobes.cli import complete
from kprobes.cli.complete import complete_spec, kernel_symbols, tracepoints

KALLSYMS = (
    "ffffffff81000000 T _stext\n"
    "ffffffff81001000 T do_sys_open\n"
    "ffffffff81001100 T do_sys_openat2\n"
    "ffffffff81001200 t do_sys_poll\n"
    "ffffffff81002000 D do_sys_data\n"          # data: not probeable text
    "ffffffff81003000 T do_sys_openat2\n"       # a second copy: listed once
    "ffffffffc0001000 t ext4_open\t[ext4]\n"
    "ffffffffc0001100 t do_sys_modfn\t[mymod]\n"
    "ffffffffc0002000 t ftrace_trampoline\t[__builtin__ftrace]\n"
)


@pytest.fixture
def kallsyms(tmp_path) -> str:
    p = tmp_path / "kallsyms"
    p.write_text(KALLSYMS)
    return str(p)


@pytest.fixture
def events(tmp_path) -> str:
    root = tmp_path / "events"
    for g, e in [("sched", "sched_switch"), ("sched", "sched_wakeup"), ("syscalls", "sys_enter_openat")]:
        (root / g / e).mkdir(parents=True)
    (root / "enable").write_text("0\n")          # files next to groups are not groups
    (root / "sched" / "enable").write_text("0\n")
    return str(root)


def test_kinds() -> None:
    assert complete_spec("") == ["p:", "r:", "u:", "ur:", "t:"]
    assert complete_spec("u") == ["u:", "ur:"]
    assert complete_spec("x") == []


def test_kernel_symbols_text_only_unique_sorted(kallsyms: str) -> None:
    assert kernel_symbols("do_sys_", kallsyms) == ["do_sys_modfn", "do_sys_open",
                                                   "do_sys_openat2", "do_sys_poll"]
    assert kernel_symbols("ftrace_tr", kallsyms) == []      # builtin trampolines
    assert kernel_symbols("mymod:do", kallsyms) == ["mymod:do_sys_modfn"]
    assert kernel_symbols("do_sys_", kallsyms, limit=2) == ["do_sys_modfn", "do_sys_open"]


def test_spec_kernel(kallsyms: str) -> None:
    assert complete_spec("p:do_sys_open", kallsyms=kallsyms) == ["p:do_sys_open",
                                                                  "p:do_sys_openat2"]
    assert complete_spec("r10:do_sys_openat", kallsyms=kallsyms) == ["r10:do_sys_openat2"]
    assert complete_spec("p:do_sys_open fil", kallsyms=kallsyms) == []   # fetch args
    assert complete_spec("p:a.b[", kallsyms=kallsyms) == []             # regex-safe


def test_spec_tracepoints(events: str) -> None:
    assert tracepoints("s", events) == ["sched:", "syscalls:"]
    assert complete_spec("t:sched:sched_s", events_root=events) == ["t:sched:sched_switch"]
    assert complete_spec("t:sys", events_root=events) == ["t:syscalls:"]
    assert complete_spec("t:nogroup:x", events_root=events) == []


def test_spec_user_paths_and_elf_symbols(tmp_path) -> None:
    exe = os.path.realpath(shutil.which("bash") or "/bin/bash")
    d = os.path.dirname(exe)
    got = complete_spec(f"u:{exe}")
    assert f"u:{exe}:" in got                     # a file: go on with the symbol
    assert f"u:{d}/" in complete_spec(f"u:{d}")   # a folder: go into it
    pytest.importorskip("elftools")
    syms = complete_spec(f"u:{exe}:readli")
    assert f"u:{exe}:readline" in syms
    assert all(s.startswith(f"u:{exe}:readli") for s in syms)
    (tmp_path / "notelf").write_text("x")
    assert complete_spec(f"ur:{tmp_path}/notelf:") == []


def test_argcomplete_not_imported_at_startup() -> None:
    import subprocess
    code = ("import sys; from kprobes.cli.main import build_parser; build_parser(); "
            "print('argcomplete' in sys.modules, 'elftools' in sys.modules, "
            "'capstone' in sys.modules)")
    env = {k: v for k, v in os.environ.items() if k != "_ARGCOMPLETE"}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                       check=True)
    assert r.stdout.split() == ["False", "False", "False"]
    assert complete.LIMIT > 100


def test_version_from_package_metadata() -> None:
    import subprocess
    from importlib.metadata import version
    r = subprocess.run([sys.executable, "-m", "kprobes", "--version"], capture_output=True,
                       text=True, check=True)
    assert r.stdout == f"kprobes {version('kprobes')}\n"

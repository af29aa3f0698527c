"""Real uprobes at the file offsets we compute: hit counts must equal the calls made.

Each test program calls the probed functions exactly N times (N from argv); a
uprobe is defined at our offset in a test-owned group, enabled in a test-owned
instance, and ``uprobe_profile`` must then show exactly N hits.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from kprobes.kernel.elf import resolve_uprobe

pytestmark = pytest.mark.host
pytest.importorskip("elftools", reason="pyelftools not installed (a dependency: pip install pyelftools)")

TRACEFS = "/sys/kernel/tracing"
GROUP = "kpelftest"
if os.geteuid() != 0:
    pytest.skip("uprobes need root", allow_module_level=True)
if not os.path.exists(f"{TRACEFS}/uprobe_events"):
    pytest.skip(f"{TRACEFS}/uprobe_events missing (tracefs not mounted or no uprobes)",
                allow_module_level=True)
if not shutil.which("gcc"):
    pytest.skip("needs gcc to build the target programs", allow_module_level=True)

PROG = r"""
#include <stdlib.h>
int lib_func(int x);
static int __attribute__((noinline)) helper(int x) { return x * 3 + 1; }
int __attribute__((noinline)) work(int x) { return helper(x) + 2; }
int main(int argc, char **argv) {
    int n = atoi(argv[1]), s = 0;
    for (int i = 0; i < n; i++) s += work(i);
    for (int i = 0; i < n; i++) s += lib_func(i);
    return s == 12345678;
}
"""
LIB = r"""
static int __attribute__((noinline)) lib_static(int x) { return x + 7; }
int __attribute__((noinline)) lib_func(int x) { return lib_static(x) * 2; }
"""


@pytest.fixture(scope="module")
def bins(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("uprobe")
    (d / "prog.c").write_text(PROG)
    (d / "lib.c").write_text(LIB)

    def cc(*args: str) -> None:
        subprocess.run(["gcc", "-O0", *args], check=True, cwd=d)

    cc("-shared", "-fpic", "-o", "libkpt.so", "lib.c")
    common = ["prog.c", "-L.", "-lkpt", "-Wl,-rpath,$ORIGIN"]
    cc("-no-pie", "-fno-pie", "-o", "nopie", *common)
    cc("-pie", "-fpie", "-o", "pie", *common)
    cc("-pie", "-fpie", "-rdynamic", "-o", "stripped", *common)
    subprocess.run(["strip", "--strip-all", "stripped"], check=True, cwd=d)
    return {p.name: p for p in d.iterdir()}


def _write(path: str, line: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


@pytest.fixture
def uprobes() -> Iterator:
    """Define+enable uprobes in GROUP within a private instance; remove everything after."""
    inst = f"{TRACEFS}/instances/{GROUP}_{os.getpid()}"
    events: list[str] = []
    os.mkdir(inst)

    def add(event: str, location: str) -> None:
        _write(f"{TRACEFS}/uprobe_events", f"p:{GROUP}/{event} {location}")
        events.append(event)
        _write(f"{inst}/events/{GROUP}/{event}/enable", "1")

    try:
        yield add
    finally:
        for ev in events:
            try:
                _write(f"{inst}/events/{GROUP}/{ev}/enable", "0")
            except OSError:
                pass
        os.rmdir(inst)
        for ev in events:
            _write(f"{TRACEFS}/uprobe_events", f"-:{GROUP}/{ev}")


def hits() -> dict[str, int]:
    """Event -> hits for the uprobes on our test binaries (``PATH EVENT HITS`` lines)."""
    out = {}
    with open(f"{TRACEFS}/uprobe_profile") as f:
        for ln in f:
            parts = ln.split()
            if len(parts) == 3 and "/uprobe" in parts[0]:  # our tmp_path_factory folder
                out[parts[1]] = int(parts[2])
    return out


def run(prog: Path, n: int) -> None:
    subprocess.run([str(prog), str(n)], check=True)


@pytest.mark.parametrize("which, n", [("nopie", 7), ("pie", 11), ("stripped", 5)])
def test_uprobe_on_executable(bins: dict[str, Path], uprobes, which: str, n: int) -> None:
    prog = bins[which]
    uprobes(f"{which}_work", resolve_uprobe(str(prog), "work").location)
    if which != "stripped":  # static function: only in .symtab
        uprobes(f"{which}_helper", resolve_uprobe(str(prog), "helper").location)
    run(prog, n)
    h = hits()
    assert h[f"{which}_work"] == n
    if which != "stripped":
        assert h[f"{which}_helper"] == n


def test_uprobe_inside_function(bins: dict[str, Path], uprobes) -> None:
    pytest.importorskip("capstone")
    from kprobes.kernel.arch.x86_64 import decode

    t0 = resolve_uprobe(str(bins["pie"]), "work")
    code = bins["pie"].read_bytes()[t0.file_offset:t0.file_offset + t0.size]
    second = decode(code)[1].offset  # the instruction after "push rbp"
    t = resolve_uprobe(str(bins["pie"]), "work", second)
    assert t.file_offset == t0.file_offset + second
    uprobes("pie_work_off", t.location)
    run(bins["pie"], 9)
    assert hits()["pie_work_off"] == 9


def test_uprobe_in_shared_library(bins: dict[str, Path], uprobes) -> None:
    lib = bins["libkpt.so"]
    uprobes("lib_func", resolve_uprobe(str(lib), "lib_func").location)
    uprobes("lib_static", resolve_uprobe(str(lib), "lib_static").location)
    run(bins["pie"], 6)
    run(bins["nopie"], 4)
    h = hits()
    assert (h["lib_func"], h["lib_static"]) == (10, 10)

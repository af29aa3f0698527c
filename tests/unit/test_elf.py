"""ELF symbol -> uprobe file offset, on C programs compiled here and checked with nm/readelf."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from kprobes.errors import KprobesError, SymbolError
from kprobes.kernel import elf
from kprobes.kernel.elf import find_binary, list_symbols, resolve_uprobe, vaddr_to_offset

pytest.importorskip("elftools", reason="pyelftools not installed (a dependency: pip install pyelftools)")
if not shutil.which("gcc") or not shutil.which("nm") or not shutil.which("readelf"):
    pytest.skip("needs gcc, nm and readelf to build and check test programs",
                allow_module_level=True)

PROG = r"""
#include <stdio.h>
#include <stdlib.h>
int counter;
static int __attribute__((noinline)) helper(int x) { return x * 3 + 1; }
int __attribute__((noinline)) work(int x) { counter++; return helper(x) + 2; }
int other(int x);
int main(int argc, char **argv) {
    int n = argc > 1 ? atoi(argv[1]) : 1, s = 0;
    for (int i = 0; i < n; i++) s += work(i) + other(i);
    printf("%d\n", s);
    return 0;
}
"""
OTHER = r"""
static int __attribute__((noinline)) helper(int x) { return x - 1; }
int __attribute__((noinline)) other(int x) { return helper(x); }
"""
LIB = r"""
static int __attribute__((noinline)) lib_static(int x) { return x + 7; }
int lib_func(int x) { return lib_static(x) * 2; }
int vfunc_old(int x) { return x; }
int vfunc_new(int x) { return -x; }
__asm__(".symver vfunc_old, vfunc@VERS_1");
__asm__(".symver vfunc_new, vfunc@@VERS_2");
static int impl(int x) { return x + 1; }
static int (*pick(void))(int) { return impl; }
int ifn(int x) __attribute__((ifunc("pick")));
"""
VERSIONS = "VERS_1 { global: lib_func; vfunc; ifn; local: *; };\nVERS_2 { global: vfunc; } VERS_1;\n"


@pytest.fixture(scope="module")
def bins(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("elf")
    (d / "prog.c").write_text(PROG)
    (d / "other.c").write_text(OTHER)
    (d / "lib.c").write_text(LIB)
    (d / "lib.map").write_text(VERSIONS)
    out = {k: d / k for k in ("nopie", "pie", "libkpt.so", "stripped")}

    def cc(*args: str | Path) -> None:
        subprocess.run(["gcc", "-O0", "-g0", *map(str, args)], check=True, cwd=d)

    cc("-no-pie", "-fno-pie", "-o", out["nopie"], "prog.c", "other.c")
    cc("-pie", "-fpie", "-o", out["pie"], "prog.c", "other.c")
    cc("-shared", "-fpic", "-Wl,--version-script=lib.map", "-o", out["libkpt.so"], "lib.c")
    cc("-pie", "-fpie", "-rdynamic", "-o", out["stripped"], "prog.c", "other.c")
    subprocess.run(["strip", "--strip-all", str(out["stripped"])], check=True)
    return out


def nm_value(path: Path, name: str, dynamic: bool = False) -> int:
    """st_value of ``name`` as nm prints it (versioned names as ``nm -D`` spells them)."""
    out = subprocess.run(["nm", *(["-D"] if dynamic else []), str(path)],
                         capture_output=True, text=True, check=True).stdout
    vals = [int(v, 16) for v, _t, n in (ln.split() for ln in out.splitlines()
                                         if len(ln.split()) == 3) if n == name]
    assert len(vals) == 1, (name, vals)
    return vals[0]


def readelf_offset(path: Path, vaddr: int) -> int:
    """vaddr -> file offset through readelf's program headers (an independent parser)."""
    out = subprocess.run(["readelf", "-lW", str(path)], capture_output=True, text=True,
                         check=True).stdout
    for m in re.finditer(r"^\s*LOAD\s+(0x\S+) (0x\S+) 0x\S+ (0x\S+)", out, re.M):
        off, va, filesz = (int(x, 16) for x in m.groups())
        if va <= vaddr < va + filesz:
            return vaddr - va + off
    raise AssertionError(f"0x{vaddr:x} in no LOAD segment")


@pytest.mark.parametrize("which", ["nopie", "pie"])
def test_global_function_matches_nm_and_readelf(bins: dict[str, Path], which: str) -> None:
    path = bins[which]
    t = resolve_uprobe(str(path), "work")
    assert t.path == str(path) and t.symbol == "work" and not t.ifunc
    assert t.vaddr == nm_value(path, "work")
    assert t.file_offset == readelf_offset(path, t.vaddr)
    assert t.location == f"{path}:0x{t.file_offset:x}"
    assert vaddr_to_offset(str(path), t.vaddr) == t.file_offset
    # the bytes at the file offset are the function's code: push rbp (gcc -O0)
    assert path.read_bytes()[t.file_offset] == 0x55


def test_nopie_offset_differs_from_vaddr(bins: dict[str, Path]) -> None:
    t = resolve_uprobe(str(bins["nopie"]), "work")
    assert t.vaddr >= 0x400000 and t.file_offset == t.vaddr - 0x400000


def test_offset_inside_function(bins: dict[str, Path]) -> None:
    t0 = resolve_uprobe(str(bins["pie"]), "work")
    t1 = resolve_uprobe(str(bins["pie"]), "work", 1)
    assert (t1.file_offset, t1.vaddr, t1.offset) == (t0.file_offset + 1, t0.vaddr + 1, 1)
    with pytest.raises(SymbolError, match=rf"offset \+{t0.size} is outside work \(size {t0.size}\)"):
        resolve_uprobe(str(bins["pie"]), "work", t0.size)
    with pytest.raises(SymbolError, match="outside"):
        resolve_uprobe(str(bins["pie"]), "work", -1)


def test_ambiguous_static(bins: dict[str, Path]) -> None:
    with pytest.raises(SymbolError, match="'helper' is ambiguous.*2 functions") as ei:
        resolve_uprobe(str(bins["pie"]), "helper")
    assert len(ei.value.suggestions) == 2
    assert all("local helper" in s for s in ei.value.suggestions)
    assert "0xOFFSET" in (ei.value.hint or "")


def test_static_function_in_shared_library(bins: dict[str, Path]) -> None:
    lib = bins["libkpt.so"]
    t = resolve_uprobe(str(lib), "lib_static")
    assert t.vaddr == nm_value(lib, "lib_static")
    assert t.file_offset == readelf_offset(lib, t.vaddr)
    assert resolve_uprobe(str(lib), "lib_func").symbol == "lib_func@@VERS_1"


def test_versioned_names(bins: dict[str, Path]) -> None:
    lib = str(bins["libkpt.so"])
    new, old = nm_value(bins["libkpt.so"], "vfunc@@VERS_2", dynamic=True), \
        nm_value(bins["libkpt.so"], "vfunc@VERS_1", dynamic=True)
    assert new != old
    assert resolve_uprobe(lib, "vfunc").vaddr == new  # bare name = default version
    assert resolve_uprobe(lib, "vfunc@@VERS_2").vaddr == new
    assert resolve_uprobe(lib, "vfunc@VERS_1").vaddr == old
    assert resolve_uprobe(lib, "vfunc@VERS_1").symbol == "vfunc@VERS_1"
    with pytest.raises(SymbolError):
        resolve_uprobe(lib, "vfunc@@VERS_1")  # VERS_1 is not the default


def test_ifunc(bins: dict[str, Path]) -> None:
    t = resolve_uprobe(str(bins["libkpt.so"]), "ifn")
    assert t.ifunc and t.vaddr == nm_value(bins["libkpt.so"], "ifn")


def test_stripped_binary_uses_dynsym(bins: dict[str, Path]) -> None:
    path = bins["stripped"]
    t = resolve_uprobe(str(path), "work")
    assert t.vaddr == nm_value(path, "work", dynamic=True)
    assert t.file_offset == readelf_offset(path, t.vaddr)
    with pytest.raises(SymbolError, match="no function 'helper'") as ei:
        resolve_uprobe(str(path), "helper")
    assert "stripped" in (ei.value.hint or "")


def test_errors(bins: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(SymbolError) as ei:
        resolve_uprobe(str(bins["pie"]), "wrok")
    assert ei.value.suggestions[0] == "work"
    with pytest.raises(SymbolError, match="data object"):
        resolve_uprobe(str(bins["pie"]), "counter")
    with pytest.raises(SymbolError, match="printf is imported") as ei:
        resolve_uprobe(str(bins["pie"]), "printf")
    assert "libc.so.6:printf" in (ei.value.hint or "")
    script = tmp_path / "script.sh"
    script.write_text("#!/bin/sh\necho hi\n")
    with pytest.raises(KprobesError, match="not an ELF file"):
        resolve_uprobe(str(script), "main")
    with pytest.raises(KprobesError, match="no such file"):
        resolve_uprobe(str(tmp_path / "missing"), "main")
    with pytest.raises(KprobesError, match=r"not found in \$PATH"):
        resolve_uprobe("no-such-program-kprobes", "main")


def test_list_symbols(bins: dict[str, Path]) -> None:
    names = [s.name for s in list_symbols(str(bins["pie"]))]
    assert {"work", "other", "main"} <= set(names)
    assert names.count("helper") == 2 and "counter" not in names
    assert [s.full_name for s in list_symbols(str(bins["libkpt.so"]), "vfunc")] == [
        "vfunc@@VERS_2", "vfunc@VERS_1"]
    assert [s.full_name for s in list_symbols(str(bins["libkpt.so"]), "lib_*")] == [
        "lib_func@@VERS_1", "lib_static"]
    assert [s.name for s in list_symbols(str(bins["libkpt.so"]), "vfunc_*")] == [
        "vfunc_new", "vfunc_old"]


def test_find_binary(bins: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(bins["pie"].parent)
    assert find_binary("./pie") == str(bins["pie"])  # relative paths become absolute
    monkeypatch.setenv("PATH", str(bins["pie"].parent))
    assert find_binary("nopie") == str(bins["nopie"])  # bare program names use $PATH


def test_find_library_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(elf, "_ldconfig_entries", lambda: [
        ("libc.so.6", "libc6", "/lib32/libc.so.6"),
        ("libc.so.6", "libc6,x86-64", "/lib/x86_64-linux-gnu/libc.so.6"),
        ("libcap.so.2", "libc6,x86-64", "/lib/x86_64-linux-gnu/libcap.so.2")])
    monkeypatch.setattr(elf.platform, "machine", lambda: "x86_64")
    for name in ("libc", "libc.so", "libc.so.6"):
        assert elf._find_library(name) == "/lib/x86_64-linux-gnu/libc.so.6"
    assert elf._find_library("libcap") == "/lib/x86_64-linux-gnu/libcap.so.2"


@pytest.mark.skipif(not shutil.which("ldconfig") and not Path("/sbin/ldconfig").exists(),
                    reason="no ldconfig on this machine")
def test_real_libc_by_name() -> None:
    path = find_binary("libc")
    assert Path(path).name.startswith("libc.so") and Path(path).is_file()
    t = resolve_uprobe("libc", "malloc")
    assert t.symbol.startswith("malloc@@GLIBC_") and t.path == path

"""One-name kallsyms lookups agree with the whole parsed table, on recorded excerpts."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from kprobes.errors import PermissionDenied, SymbolError
from kprobes.kernel.blacklist import Blacklist
from kprobes.kernel.kallsyms import KernelSymbols
from kprobes.kernel.probeable import probe_info, probeable
from kprobes.kernel.symlookup import KallsymsLookup, cached_kallsyms
from kprobes.kernel.tracefs import Tracefs

DATA = Path(__file__).parent.parent / "data" / "kallsyms"
FILES = ["host-6.18-excerpt.txt", "modules.txt", "kallsyms-6.12-excerpt.txt"]


def _both(name: str) -> tuple[KallsymsLookup, KernelSymbols]:
    path = str(DATA / name)
    return KallsymsLookup.load(path), KernelSymbols.load(path)


@pytest.mark.parametrize("name", FILES)
def test_every_name_and_size_agrees(name: str) -> None:
    fast, full = _both(name)
    assert not fast.addresses_hidden
    for sym in full:
        for module in (None, "vmlinux", sym.module):
            assert fast.lookup(sym.name, module) == full.lookup(sym.name, module), (sym, module)
        assert fast.size(sym) == full.size(sym), sym
        assert fast.in_core_text(sym.addr) == full.in_core_text(sym.addr)
        assert fast.in_init_text(sym.addr) == full.in_init_text(sym.addr)
    assert fast.lookup("no_such_symbol") == []
    # a prefix of a real name is not that name
    assert fast.lookup("vfs_rea") == [] and fast.lookup("_read") == []


def test_ambiguous_static_names() -> None:
    fast, _ = _both("host-6.18-excerpt.txt")
    assert len(fast.lookup("__nr_to_section")) == 4
    with pytest.raises(SymbolError, match="ambiguous: 2 symbols") as ei:
        fast.resolve("__nr_to_section")
    assert ei.value.suggestions == ["0xffffffff81216920", "0xffffffff816608b0"]


def test_modules_and_mod_sym() -> None:
    fast, _ = _both("modules.txt")
    assert [s.spec for s in fast.lookup("init_once")] == [
        "ext4:init_once", "xfs:init_once", "btrfs:init_once", "btrfs:init_once"]
    assert fast.resolve("ext4:init_once").addr == 0xFFFFFFFFC0A00000
    assert fast.resolve("vmlinux:vfs_read").module is None
    with pytest.raises(SymbolError) as ei:
        fast.resolve("init_once")
    assert ei.value.suggestions == ["ext4:init_once", "xfs:init_once",
                                    "0xffffffffc0c00000", "0xffffffffc0c00020"]
    with pytest.raises(SymbolError, match="ambiguous: 2"):
        fast.resolve("btrfs:init_once")
    with pytest.raises(SymbolError, match="module 'nfs' is not loaded"):
        fast.resolve("nfs:nfs_read")
    assert fast.size(fast.resolve("ext4_read")) == 0x1B0
    assert fast.size(fast.resolve("ext4_fill_super")) is None
    assert fast.function_at(0xFFFFFFFFC0A02010) == (fast.resolve("ext4_fill_super"), 0x10)
    assert fast.locate("xfs:xfs_read+0x10") == (fast.resolve("xfs_read"), 16)


def test_unknown_name_suggests() -> None:
    fast, _ = _both("host-6.18-excerpt.txt")
    with pytest.raises(SymbolError) as ei:
        fast.resolve("schedul")
    assert ei.value.suggestions[0] == "schedule"
    assert not any(s.startswith("__pfx_") for s in ei.value.suggestions)
    with pytest.raises(SymbolError) as ei:
        fast.resolve("vfs_raed")
    assert ei.value.suggestions[:2] == ["vfs_read", "vfs_readv"]
    assert "did you mean" in (ei.value.hint or "")


def test_blacklist_and_refusals_through_the_lookup() -> None:
    fast, _ = _both("host-6.18-excerpt.txt")
    bl = Blacklist.parse((DATA / "blacklist-example.txt").read_text())
    with pytest.raises(SymbolError, match=r"kprobe blacklist \(exc_int3"):
        probeable(fast.resolve("exc_int3"), kallsyms=fast, blacklist=bl)
    with pytest.raises(SymbolError, match="__init code"):
        probeable(fast.resolve("use_tpause_delay"), kallsyms=fast, blacklist=bl)
    with pytest.raises(SymbolError, match="JIT or trampoline"):
        probeable(fast.resolve("ftrace_trampoline"), kallsyms=fast, blacklist=bl)
    with pytest.raises(SymbolError, match=r"beyond the end of schedule \(size 160\)"):
        probeable(fast.resolve("schedule"), 0xA0, kallsyms=fast, blacklist=bl)
    info = probe_info(fast.resolve("schedule"), 4, kallsyms=fast, blacklist=bl)
    assert info.ok and info.size == 0xA0 and info.blacklist_known
    mods = KallsymsLookup.load(str(DATA / "modules.txt"))
    with pytest.raises(SymbolError, match="xfs:xfs_read.cold is in the kprobe blacklist"):
        probeable(mods.resolve("xfs_read.cold"), kallsyms=mods, blacklist=bl)
    ks = KallsymsLookup.load(str(DATA / "kallsyms-6.12-excerpt.txt"))
    bl12 = Blacklist.parse((DATA / "blacklist-6.12-excerpt.txt").read_text())
    with pytest.raises(SymbolError, match="do_int3 is in the kprobe blacklist"):
        probeable(ks.resolve("do_int3"), kallsyms=ks, blacklist=bl12)
    probeable(ks.resolve("schedule"), kallsyms=ks, blacklist=bl12)


def test_hidden_addresses() -> None:
    ks = KallsymsLookup.parse("0000000000000000 T _stext\n0000000000000000 T vfs_read\n")
    assert ks.addresses_hidden and ks.resolve("vfs_read").name == "vfs_read"
    with pytest.raises(PermissionDenied, match="hidden"):
        ks.size(ks.resolve("vfs_read"))
    # percpu symbols at zero come first on older kernels: not "hidden"
    assert not KallsymsLookup.parse("0000000000000000 A fixed_percpu_data\n"
                                    "ffffffff81000000 T _stext\n").addresses_hidden


def test_per_boot_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KPROBES_CACHE_DIR", str(tmp_path / "cache"))
    src = tmp_path / "kallsyms"
    src.write_text("ffffffff81000000 T _stext\nffffffff81000010 T vfs_read\n")
    assert cached_kallsyms(str(src)) == src.read_bytes()
    copies = os.listdir(tmp_path / "cache" / "kallsyms")
    assert len(copies) == 1 and copies[0].startswith("kallsyms-")
    # the copy is what the next session reads ...
    (tmp_path / "cache" / "kallsyms" / copies[0]).write_bytes(b"ffffffff81000000 T _stext\n")
    assert cached_kallsyms(str(src)) == b"ffffffff81000000 T _stext\n"
    # ... until the table's start (KASLR, visibility) changes: a new copy replaces it
    src.write_text("ffffffff82000000 T _stext\nffffffff82000010 T vfs_read\n")
    assert cached_kallsyms(str(src)) == src.read_bytes()
    assert len(os.listdir(tmp_path / "cache" / "kallsyms")) == 1


def test_one_name_ftrace_lookups(tmp_path: Path) -> None:
    (tmp_path / "available_filter_functions").write_text(
        "schedule\nvfs_read\next4_read [ext4]\nvfs_readv\n")
    (tmp_path / "available_filter_functions_addrs").write_text(
        "ffffffff821fb620 schedule\nffffffff816bab70 vfs_read\nffffffffc0a00050 ext4_read [ext4]\n")
    tfs = Tracefs(str(tmp_path))
    assert [tfs.is_filter_function(n) for n in ("schedule", "ext4_read", "vfs_readv", "vfs_rea",
                                                "chedule")] == [True, True, True, False, False]
    assert tfs.ftrace_locations("ext4_read") == {"ext4_read": [0xFFFFFFFFC0A00050]}
    assert tfs.ftrace_locations("vfs_rea") == {}
    assert Tracefs(str(tmp_path / "none")).is_filter_function("schedule") is None

"""kallsyms parsing, lookups, blacklist and probeability on recorded/crafted data."""

from __future__ import annotations

from pathlib import Path

import pytest

from kprobes.errors import NotSupported, PermissionDenied, SymbolError
from kprobes.kernel.blacklist import Blacklist
from kprobes.kernel.kallsyms import KernelSymbols, Sym, near_names
from kprobes.kernel.probeable import probe_info, probeable
from kprobes.kernel.tracefs import Tracefs

DATA = Path(__file__).parent.parent / "data" / "kallsyms"
SCHEDULE = 0xFFFFFFFF821FB620


@pytest.fixture(scope="module")
def host() -> KernelSymbols:
    return KernelSymbols.load(str(DATA / "host-6.18-excerpt.txt"))


@pytest.fixture(scope="module")
def mods() -> KernelSymbols:
    return KernelSymbols.load(str(DATA / "modules.txt"))


@pytest.fixture(scope="module")
def blacklist() -> Blacklist:
    return Blacklist.parse((DATA / "blacklist-example.txt").read_text())


# -- parsing and lookups -------------------------------------------------------------
def test_parse_sorts_and_keeps_every_line(host: KernelSymbols) -> None:
    lines = (DATA / "host-6.18-excerpt.txt").read_text().splitlines()
    assert len(host) == len(lines) == 81
    addrs = [s.addr for s in host]
    assert addrs == sorted(addrs)
    # module symbols are not in address order in kallsyms: order must not matter
    shuffled = KernelSymbols.parse("\n".join(lines[40:] + lines[:40]))
    assert list(shuffled) == list(host)
    ftr = host.lookup("ftrace_trampoline")
    assert ftr == [Sym(0xFFFFFFFFC0201000, "t", "ftrace_trampoline", "__builtin__ftrace")]


def test_resolve_size_and_function_at(host: KernelSymbols) -> None:
    s = host.resolve("schedule")
    assert (s.addr, s.type, s.module) == (SCHEDULE, "T", None)
    assert host.size(s) == 0xA0  # up to __pfx_io_schedule
    assert host.function_at(SCHEDULE + 5) == (s, 5)
    assert host.function_at(SCHEDULE - 1)[0].name == "__pfx_schedule"
    # four aliases at _stext: the first real text name wins, not the __pfx_ one
    assert host.function_at(0xFFFFFFFF81000000)[0].name == "srso_alias_untrain_ret"
    with pytest.raises(SymbolError, match="below the first"):
        host.function_at(0x1000)


def test_locate_specs(host: KernelSymbols) -> None:
    assert host.locate("schedule+0x10") == (host.resolve("schedule"), 16)
    assert host.locate("schedule+8")[1] == 8
    assert host.locate(hex(SCHEDULE + 7)) == (host.resolve("schedule"), 7)
    assert host.resolve(hex(SCHEDULE + 7)).name == "schedule"
    with pytest.raises(SymbolError, match="cannot parse"):
        host.locate("schedule+zz")


def test_unknown_symbol_suggests(host: KernelSymbols) -> None:
    with pytest.raises(SymbolError) as ei:
        host.resolve("schedul")
    assert ei.value.suggestions[0] == "schedule"
    assert "schedule_idle" in ei.value.suggestions
    assert not any(s.startswith("__pfx_") for s in ei.value.suggestions)
    assert "did you mean" in (ei.value.hint or "")
    with pytest.raises(SymbolError) as ei:
        host.resolve("vfs_raed")
    assert ei.value.suggestions[:2] == ["vfs_read", "vfs_readv"]


def test_ambiguous_static_lists_addresses(host: KernelSymbols) -> None:
    # recorded: __nr_to_section appears twice at each of two addresses
    assert len(host.lookup("__nr_to_section")) == 4
    with pytest.raises(SymbolError, match="ambiguous: 2 symbols") as ei:
        host.resolve("__nr_to_section")
    assert ei.value.suggestions == ["0xffffffff81216920", "0xffffffff816608b0"]
    assert "0xffffffff81216920" in (ei.value.hint or "")


def test_data_symbol_is_not_a_function(host: KernelSymbols) -> None:
    assert host.resolve("__start_rodata").type == "D"
    with pytest.raises(SymbolError, match="data symbol .type 'D'., not a function"):
        host.resolve("__start_rodata", text_only=True)
    with pytest.raises(SymbolError, match="data symbol"):
        host.locate("__start_rodata")


def test_modules(mods: KernelSymbols) -> None:
    assert [s.spec for s in mods.lookup("init_once")] == [
        "ext4:init_once", "xfs:init_once", "btrfs:init_once", "btrfs:init_once"]
    assert mods.resolve("ext4:init_once").addr == 0xFFFFFFFFC0A00000
    assert mods.resolve("vmlinux:vfs_read").module is None
    with pytest.raises(SymbolError) as ei:
        mods.resolve("init_once")
    assert ei.value.suggestions == ["ext4:init_once", "xfs:init_once",
                                    "0xffffffffc0c00000", "0xffffffffc0c00020"]
    with pytest.raises(SymbolError, match="ambiguous: 2"):
        mods.resolve("btrfs:init_once")
    with pytest.raises(SymbolError, match="module 'nfs' is not loaded"):
        mods.resolve("nfs:nfs_read")
    # sizes stop at the module's last symbol
    assert mods.size(mods.resolve("ext4_read")) == 0x1B0
    assert mods.size(mods.resolve("ext4_fill_super")) is None
    assert mods.function_at(0xFFFFFFFFC0A02010) == (mods.resolve("ext4_fill_super"), 0x10)


def test_iter_functions(mods: KernelSymbols) -> None:
    assert [s.spec for s in mods.iter_functions("*read*")] == [
        "ext4:ext4_read", "vfs_read", "xfs:xfs_read",
        "xfs:xfs_read.cold"]
    assert [s.name for s in mods.iter_functions("ext4:*")] == [
        "ext4_fill_super", "ext4_read", "init_once"]
    assert [s.name for s in mods.iter_functions("vmlinux:*")] == ["_etext", "_stext", "vfs_read"]
    only = [s.name for s in mods.iter_functions("*", filter_functions={"vfs_read", "xfs_read"})]
    assert only == ["vfs_read", "xfs_read"]
    names = {s.name for s in mods.iter_functions()}
    assert "ftrace_trampoline" not in names and "jiffies" not in names
    assert not any(n.startswith(("bpf_prog_", "__pfx_")) for n in names)


def test_hidden_addresses() -> None:
    ks = KernelSymbols.parse("0000000000000000 T schedule\n0000000000000000 T vfs_read\n")
    assert ks.addresses_hidden
    assert ks.resolve("schedule").name == "schedule"
    with pytest.raises(PermissionDenied, match="hidden"):
        ks.function_at(0x10)


def test_near_names() -> None:
    names = sorted(["kmalloc", "kmalloc_node", "__kmalloc", "kfree", "vmalloc"])
    assert near_names("kmalloc", names) == ["kmalloc_node", "__kmalloc", "vmalloc"]
    assert near_names("kfre", names)[0] == "kfree"
    assert near_names("zzzzzz", names) == []


# -- blacklist ---------------------------------------------------------------------
def test_blacklist_parse(blacklist: Blacklist) -> None:
    assert len(blacklist) == 5
    assert blacklist.contains(0xFFFFFFFF821F30C0) == "exc_int3"
    assert blacklist.contains(0xFFFFFFFF821F31CF) == "exc_int3"
    assert blacklist.contains(0xFFFFFFFF821F31D0) is None
    assert blacklist.contains(SCHEDULE) is None
    e = blacklist.entry_at(0xFFFFFFFFC0B00090)
    assert e is not None and (e.name, e.module) == ("xfs_read", "xfs")


def test_blacklist_overlapping_ranges() -> None:
    bl = Blacklist.parse("0x1000-0x2000\tbig\n0x1100-0x1200\tsmall\n0x1300-0x1400\tlater\n")
    assert bl.contains(0x1150) in ("big", "small")
    assert bl.contains(0x1500) == "big"  # covered by the earlier, longer range
    assert bl.contains(0x2000) is None


def test_blacklist_load_missing(tmp_path: Path) -> None:
    with pytest.raises(NotSupported) as ei:
        Blacklist.load(str(tmp_path))
    assert ei.value.feature == "kprobes blacklist"
    assert Blacklist.try_load(str(tmp_path)) is None
    (tmp_path / "kprobes").mkdir()
    (tmp_path / "kprobes" / "blacklist").write_text("0x10-0x20\tfoo\n")
    assert Blacklist.load(str(tmp_path)).contains(0x15) == "foo"


# -- probeability ------------------------------------------------------------------
def test_probeable_ok(host: KernelSymbols, blacklist: Blacklist) -> None:
    s = host.resolve("schedule")
    probeable(s, 0, kallsyms=host, blacklist=blacklist)
    probeable(s, 0x9F, kallsyms=host, blacklist=blacklist)
    info = probe_info(s, 4, kallsyms=host, blacklist=blacklist)
    assert info.ok and info.address == SCHEDULE + 4 and info.size == 0xA0


@pytest.mark.parametrize("spec, offset, message", [
    ("exc_int3", 0, r"kprobe blacklist \(exc_int3 \[0xffffffff821f30c0-0xffffffff821f31d0\)\)"),
    ("sync_regs", 0x10, "kprobe blacklist"),
    ("schedule", 0xA0, r"offset \+160 is beyond the end of schedule \(size 160\)"),
    ("schedule", -1, "negative offset"),
    ("__start_rodata", 0, "data symbol"),
    ("ftrace_trampoline", 0, "JIT or trampoline"),
    ("use_tpause_delay", 0, "__init code"),
])
def test_probeable_refusals(host: KernelSymbols, blacklist: Blacklist, spec: str,
                            offset: int, message: str) -> None:
    with pytest.raises(SymbolError, match=message) as ei:
        probeable(host.resolve(spec), offset, kallsyms=host, blacklist=blacklist)
    assert ei.value.hint


def test_probeable_retprobe_needs_entry(host: KernelSymbols) -> None:
    s = host.resolve("schedule")
    probeable(s, 0, kallsyms=host, retprobe=True)
    with pytest.raises(SymbolError, match="return probe must be on the function entry"):
        probeable(s, 4, kallsyms=host, retprobe=True)


def test_blacklist_covers_suffixed_parts(mods: KernelSymbols) -> None:
    bl = Blacklist.parse((DATA / "blacklist-example.txt").read_text())
    cold = mods.resolve("xfs_read.cold")
    assert bl.contains(cold.addr) is None  # only the base is listed ...
    with pytest.raises(SymbolError, match="xfs:xfs_read.cold is in the kprobe blacklist"):
        probeable(cold, 0, kallsyms=mods, blacklist=bl)  # ... but the kernel refuses .cold too
    probeable(mods.resolve("xfs_helper"), 0, kallsyms=mods, blacklist=bl)


def test_blacklist_with_hidden_addresses_matches_names(host: KernelSymbols) -> None:
    bl = Blacklist.parse("0x0000000000000000-0x0000000000000000\texc_int3\n")
    assert bl.addresses_hidden
    with pytest.raises(SymbolError, match="blacklist"):
        probeable(host.resolve("exc_int3"), kallsyms=host, blacklist=bl)


def test_unknown_blacklist_is_a_note(host: KernelSymbols) -> None:
    info = probe_info(host.resolve("exc_int3"), kallsyms=host, blacklist=None)
    assert info.ok and not info.blacklist_known
    assert any("blacklist unknown" in n for n in info.notes)


def _fake_tracefs(root: Path) -> Path:
    (root / "available_filter_functions").write_text("schedule\nvfs_read\next4_read [ext4]\n")
    (root / "available_filter_functions_addrs").write_text(
        f"{SCHEDULE:x} schedule\nffffffff816bab70 vfs_read\n")
    for d in ("sched/sched_switch", "sched/sched_wakeup", "syscalls/sys_enter_read",
              "ftrace/function"):
        (root / "events" / d).mkdir(parents=True)
        (root / "events" / d / "format").write_text("name: x\n")
        if not d.startswith("ftrace"):
            (root / "events" / d / "enable").write_text("0\n")
    (root / "events" / "enable").write_text("0\n")
    return root


def test_ftrace_checks(host: KernelSymbols, tmp_path: Path) -> None:
    root = str(_fake_tracefs(tmp_path))
    assert Tracefs(root).filter_functions() == {"schedule", "vfs_read", "ext4_read"}
    assert Tracefs(root).ftrace_locations() == {"schedule": [SCHEDULE], "vfs_read": [0xFFFFFFFF816BAB70]}
    info = probe_info(host.resolve("schedule"), 0, kallsyms=host, tracefs_root=root)
    assert info.ok and info.ftrace_traceable is True
    with pytest.raises(SymbolError, match=r"inside the ftrace call site at \+0") as ei:
        probeable(host.resolve("schedule"), 3, kallsyms=host, tracefs_root=root)
    assert ei.value.hint == "use +0 or +5"
    probeable(host.resolve("schedule"), 5, kallsyms=host, tracefs_root=root)
    # notrace is information, not a refusal: kprobes work without ftrace
    info = probe_info(host.resolve("preempt_schedule_notrace"), 0, kallsyms=host,
                      tracefs_root=root)
    assert info.ok and info.ftrace_traceable is False
    assert any("not in available_filter_functions" in n for n in info.notes)
    # unreadable files (the host's EPERM) are unknown, not errors
    info = probe_info(host.resolve("schedule"), 3, kallsyms=host, tracefs_root=str(tmp_path / "x"))
    assert info.ok and info.ftrace_traceable is None


def test_iter_tracepoints(tmp_path: Path) -> None:
    root = str(_fake_tracefs(tmp_path))
    assert list(Tracefs(root).tracepoints()) == [
        "sched:sched_switch", "sched:sched_wakeup", "syscalls:sys_enter_read"]
    assert list(Tracefs(root).tracepoints("sched_*")) == ["sched:sched_switch", "sched:sched_wakeup"]
    assert list(Tracefs(root).tracepoints("sys*:*read")) == ["syscalls:sys_enter_read"]
    with pytest.raises(NotSupported):
        list(Tracefs(str(tmp_path / "nope")).tracepoints())


def test_recorded_6_12_blacklist() -> None:
    ks = KernelSymbols.load(str(DATA / "kallsyms-6.12-excerpt.txt"))
    bl = Blacklist.parse((DATA / "blacklist-6.12-excerpt.txt").read_text())
    assert len(bl) == 11 and not bl.addresses_hidden
    for name in ("do_int3", "kprobe_int3_handler", "notify_die", "exc_int3", "sync_regs"):
        with pytest.raises(SymbolError, match=f"{name} is in the kprobe blacklist"):
            probeable(ks.resolve(name), 0, kallsyms=ks, blacklist=bl)
    probeable(ks.resolve("schedule"), 0, kallsyms=ks, blacklist=bl)

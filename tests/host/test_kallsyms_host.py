"""kallsyms, debugfs and tracepoint listing against this machine's running kernel."""

from __future__ import annotations

import os
import subprocess
import time

import pytest

from kprobes.errors import NotSupported, SymbolError
from kprobes.kernel.blacklist import Blacklist, ensure_debugfs
from kprobes.kernel.kallsyms import KernelSymbols
from kprobes.kernel.probeable import probe_info
from kprobes.kernel.tracefs import Tracefs

pytestmark = pytest.mark.host

KALLSYMS = "/proc/kallsyms"
TRACEFS = "/sys/kernel/tracing"


def _raw_lines() -> list[list[str]]:
    with open(KALLSYMS) as f:
        return [ln.split() for ln in f if ln.strip()]


@pytest.fixture(scope="module")
def raw() -> list[list[str]]:
    if not os.access(KALLSYMS, os.R_OK):
        pytest.skip(f"{KALLSYMS} not readable")
    lines = _raw_lines()
    if not any(int(p[0], 16) for p in lines[:100]):
        pytest.skip("kallsyms addresses are hidden (not root or kptr_restrict)")
    return lines


@pytest.fixture(scope="module")
def ks(raw: list[list[str]], record_testsuite_property) -> KernelSymbols:
    t0 = time.perf_counter()
    ks = KernelSymbols.load(KALLSYMS)
    record_testsuite_property("kallsyms_load_seconds", f"{time.perf_counter() - t0:.3f}")
    return ks


def test_every_line_is_parsed(ks: KernelSymbols, raw: list[list[str]]) -> None:
    # kallsyms can gain lines between two reads (a module or BPF program loading)
    assert abs(len(ks) - len(raw)) < 50
    assert len(ks) > 10_000


def test_schedule_matches_the_file(ks: KernelSymbols, raw: list[list[str]]) -> None:
    lines = [p for p in raw if p[2] == "schedule" and len(p) == 3]
    assert len(lines) == 1
    addr = int(lines[0][0], 16)
    s = ks.resolve("schedule")
    assert (s.addr, s.type, s.module) == (addr, lines[0][1], None)
    assert ks.function_at(addr + 1) == (s, 1)
    higher = sorted({int(p[0], 16) for p in raw if len(p) == 3 and int(p[0], 16) > addr})
    assert ks.size(s) == higher[0] - addr
    assert ks.in_core_text(addr) is True


def test_real_ambiguous_static(ks: KernelSymbols, raw: list[list[str]]) -> None:
    by_name: dict[str, set[int]] = {}
    for p in raw:
        if p[1] in "tT" and len(p) == 3 and not p[2].startswith("__pfx_"):
            by_name.setdefault(p[2], set()).add(int(p[0], 16))
    name, addrs = next((n, a) for n, a in sorted(by_name.items()) if len(a) > 1)
    with pytest.raises(SymbolError, match="ambiguous") as ei:
        ks.resolve(name)
    assert {int(a, 16) for a in ei.value.suggestions} == set(sorted(addrs)[:5])


def test_suggestions_on_real_names(ks: KernelSymbols) -> None:
    with pytest.raises(SymbolError) as ei:
        ks.resolve("vfs_raed")
    assert "vfs_read" in ei.value.suggestions
    assert "schedule" in ks.suggest("schedul")


def test_iter_functions_real(ks: KernelSymbols) -> None:
    funcs = list(ks.iter_functions("vfs_*"))
    names = [s.name for s in funcs]
    assert "vfs_read" in names and names == sorted(names)
    assert all(s.is_text and s.name.startswith("vfs_") for s in funcs)
    ff = Tracefs(TRACEFS).filter_functions()
    if ff is not None:  # EPERM on the dev host; readable on kernels with ftrace
        assert set(n.name for n in ks.iter_functions("vfs_*", filter_functions=ff)) <= ff


def test_tracepoints_real() -> None:
    if not os.path.isdir(os.path.join(TRACEFS, "events")):
        pytest.skip(f"tracefs not mounted at {TRACEFS}")
    # other tracers' probe groups (kprobes_*) may come and go meanwhile: not counted
    tps = [t for t in Tracefs(TRACEFS).tracepoints() if not t.startswith("kprobes_")]
    assert "sched:sched_switch" in tps and "syscalls:sys_enter_openat" in tps
    on_disk = sum(1 for g in os.scandir(os.path.join(TRACEFS, "events"))
                  if g.is_dir() and not g.name.startswith("kprobes_")
                  for e in os.scandir(g.path) if os.path.exists(os.path.join(e.path, "enable")))
    assert len(tps) == on_disk
    assert list(Tracefs(TRACEFS).tracepoints("sched:sched_switch")) == ["sched:sched_switch"]


def test_debugfs_and_blacklist() -> None:
    if os.geteuid() != 0:
        pytest.skip("mounting debugfs needs root")
    mounted = ensure_debugfs()
    try:
        assert ensure_debugfs() is False  # mounted now, by us or before
        has_kprobes = os.path.exists(os.path.join(TRACEFS, "kprobe_events"))
        if has_kprobes:
            bl = Blacklist.load()
            assert len(bl) > 0
            ks = KernelSymbols.load()
            e = bl.entries[0]
            if not bl.addresses_hidden:
                assert bl.contains(e.start) == e.name
                sym, off = ks.function_at(e.start)
                assert not probe_info(sym, off, kallsyms=ks, blacklist=bl).ok
        else:
            with pytest.raises(NotSupported, match="kprobes/blacklist") as ei:
                Blacklist.load()
            assert "CONFIG_KPROBES" in (ei.value.hint or "")
    finally:
        if mounted:
            subprocess.run(["umount", "/sys/kernel/debug"], check=True)


def test_one_name_lookup_agrees_with_the_whole_table(ks: KernelSymbols) -> None:
    from kprobes.kernel.symlookup import KallsymsLookup

    fast = KallsymsLookup.load(KALLSYMS, cache=False)
    assert not fast.addresses_hidden
    syms = list(ks)
    sample = syms[::997] + [s for s in syms if s.name in ("schedule", "vfs_read", "_stext")]
    checked = 0
    for s in sample:
        if s.is_pseudo:      # BPF programs and trampolines come and go between two reads
            continue
        assert fast.lookup(s.name) == ks.lookup(s.name), s
        assert fast.size(s) == ks.size(s), s
        checked += 1
    assert checked > 50
    assert fast.in_core_text(fast.resolve("schedule").addr) is True

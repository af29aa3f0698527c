"""Kernel text, instruction boundaries and probeability, checked against the kernel itself.

Runs inside the QEMU VM (kprobes, /proc/kcore, debugfs); skipped elsewhere.
The kernel is the referee: offsets we call boundaries must be accepted by
``kprobe_events``, offsets inside an instruction and blacklisted functions
must be refused by it.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator

import pytest

from kprobes.errors import SymbolError
from kprobes.kernel.blacklist import Blacklist
from kprobes.kernel.kallsyms import KernelSymbols
from kprobes.kernel.probeable import probe_info, probeable

pytestmark = pytest.mark.kernel
TRACEFS = "/sys/kernel/tracing"
KPROBE_EVENTS = f"{TRACEFS}/kprobe_events"
GROUP = "kpinsntest"

if not os.path.exists("/proc/kcore"):
    pytest.skip("/proc/kcore missing (needs the QEMU VM: the host has no CONFIG_PROC_KCORE)",
                allow_module_level=True)
if not os.path.exists(KPROBE_EVENTS):
    pytest.skip(f"{KPROBE_EVENTS} missing (kernel without kprobes, or tracefs not mounted)",
                allow_module_level=True)
pytest.importorskip("capstone", reason="capstone not installed (a dependency: pip install capstone)")
pytest.importorskip("elftools", reason="pyelftools not installed (a dependency: pip install pyelftools)")

from kprobes.kernel.arch.x86_64 import decode, is_instruction_boundary, next_instruction  # noqa: E402
from kprobes.kernel.kcore import read_kernel_text  # noqa: E402


def _write(line: str) -> None:
    fd = os.open(KPROBE_EVENTS, os.O_WRONLY | os.O_APPEND)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


@pytest.fixture
def kprobe() -> Iterator:
    """Define kprobes in GROUP; every one defined is deleted afterwards."""
    made: list[str] = []

    def define(event: str, where: str) -> None:
        _write(f"p:{GROUP}/{event} {where}")
        made.append(event)

    try:
        yield define
    finally:
        for ev in made:
            _write(f"-:{GROUP}/{ev}")


@pytest.fixture(scope="module")
def ks(kernel_symbols: KernelSymbols) -> KernelSymbols:
    return kernel_symbols


@pytest.fixture(scope="module")
def schedule(ks: KernelSymbols) -> tuple[int, bytes]:
    sym = ks.resolve("schedule", text_only=True)
    size = ks.size(sym)
    assert size is not None and 16 <= size < 4096
    return sym.addr, read_kernel_text(sym.addr, size)


def test_schedule_decodes_to_its_end(schedule: tuple[int, bytes]) -> None:
    addr, code = schedule
    insns = decode(code, addr)
    assert insns and insns[-1].end == len(code)  # every byte is in some instruction
    first = insns[0]
    if first.mnemonic == "endbr64":
        first = insns[1]
    assert first.size == 5  # the ftrace site: a 5-byte nop, or a call when ftrace is on
    for i in insns:
        assert is_instruction_boundary(addr, i.offset, code)
        for inside in range(i.offset + 1, i.end):
            assert not is_instruction_boundary(addr, inside, code)


def test_kernel_accepts_the_next_instruction(schedule: tuple[int, bytes], kprobe) -> None:
    addr, code = schedule
    insns = decode(code, addr)
    ftrace = insns[1] if insns[0].mnemonic == "endbr64" else insns[0]
    after = next_instruction(addr + ftrace.offset, func_start=addr)  # reads kcore itself
    assert after == addr + ftrace.end
    kprobe("e", f"schedule+{after - addr}")
    with open(KPROBE_EVENTS) as f:
        assert f"p:{GROUP}/e schedule+{after - addr}" in f.read()


def test_kernel_refuses_mid_instruction(schedule: tuple[int, bytes], kprobe) -> None:
    addr, code = schedule
    big = next(i for i in decode(code, addr) if i.size > 1 and i.offset > 0)
    off = big.offset + 1
    assert not is_instruction_boundary(addr, off, code)
    with pytest.raises(OSError) as ei:
        kprobe("mid", f"schedule+{off}")
    assert ei.value.errno in (errno.EILSEQ, errno.EINVAL, errno.ENOENT)


def test_blacklist_agrees_with_the_kernel(ks: KernelSymbols, kprobe) -> None:
    bl = Blacklist.load()
    assert len(bl) > 0 and not bl.addresses_hidden
    for e in bl.entries:  # a blacklisted function with a unique name and no module
        syms = ks.lookup(e.name)
        if e.module is None and len(syms) == 1 and syms[0].addr == e.start:
            break
    else:
        pytest.skip("no uniquely named blacklisted vmlinux function")
    with pytest.raises(SymbolError, match="kprobe blacklist"):
        probeable(syms[0], 0, kallsyms=ks, blacklist=bl)
    with pytest.raises(OSError):
        kprobe("bl", e.name)
    info = probe_info(ks.resolve("schedule"), 0, kallsyms=ks, blacklist=bl, tracefs_root=TRACEFS)
    assert info.ok and info.blacklist_known and info.ftrace_traceable is True


def test_one_name_lookup_agrees_with_the_whole_table(ks: KernelSymbols) -> None:
    """The guest has modules: names, ambiguity and sizes from the raw-bytes lookup
    are the whole table's, for core and module symbols alike."""
    from kprobes.kernel.symlookup import KallsymsLookup

    fast = KallsymsLookup.load(cache=False)
    syms = [s for s in ks if not s.is_pseudo]
    mods = [s for s in syms if s.module]
    assert mods, "the guest loads modules (9p, virtio)"
    for s in syms[::1499] + mods[::97]:
        assert fast.lookup(s.name) == ks.lookup(s.name), s
        assert fast.lookup(s.name, s.module or "vmlinux") == ks.lookup(s.name, s.module or "vmlinux")
        assert fast.size(s) == ks.size(s), s
    assert fast.has_module(mods[0].module) and not fast.has_module("no_such_module")

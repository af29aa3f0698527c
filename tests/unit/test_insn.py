"""Instruction boundaries (capstone) on hand-made x86-64 bytes, and kcore reads on a crafted core."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from kprobes.errors import DecodeError, KprobesError, NotSupported, SymbolError
from kprobes.kernel import kcore
from kprobes.kernel.arch.x86_64 import (
    decode,
    instruction_at,
    is_instruction_boundary,
    next_instruction,
)

pytest.importorskip("capstone", reason="capstone not installed (a dependency: pip install capstone)")

BASE = 0xFFFFFFFF81000000
# endbr64; ftrace nop; push rbp; mov rbp,rsp; call .+5; mov eax,1; jne .+2; pop rbp; ret
FUNC = bytes.fromhex(
    "f30f1efa"      # +0  endbr64
    "0f1f440000"    # +4  nop dword ptr [rax+rax]   (ftrace site)
    "55"            # +9  push rbp
    "4889e5"        # +10 mov rbp, rsp
    "e800000000"    # +13 call
    "b801000000"    # +18 mov eax, 1
    "7500"          # +23 jne
    "5d"            # +25 pop rbp
    "c3"            # +26 ret
)


def test_decode_linear() -> None:
    insns = decode(FUNC, BASE)
    assert [(i.offset, i.size, i.mnemonic) for i in insns] == [
        (0, 4, "endbr64"), (4, 5, "nop"), (9, 1, "push"), (10, 3, "mov"), (13, 5, "call"),
        (18, 5, "mov"), (23, 2, "jne"), (25, 1, "pop"), (26, 1, "ret")]


@pytest.mark.parametrize("offset", [0, 4, 9, 10, 13, 18, 23, 25, 26])
def test_boundaries(offset: int) -> None:
    assert is_instruction_boundary(BASE, offset, FUNC)


@pytest.mark.parametrize("offset", [1, 2, 3, 5, 8, 11, 12, 14, 17, 19, 24])
def test_not_boundaries(offset: int) -> None:
    assert not is_instruction_boundary(BASE, offset, FUNC)


def test_inside_instruction_message() -> None:
    with pytest.raises(SymbolError) as ei:
        instruction_at(BASE, 11, FUNC)
    assert str(ei.value) == ("offset +11 is inside the instruction at +10 (mov rbp, rsp): "
                             "use +10 or +13")
    assert ei.value.suggestions == ["+10", "+13"]
    with pytest.raises(SymbolError, match=r"inside the instruction at \+4 \(nop dword ptr"):
        next_instruction(BASE + 7, func_start=BASE, code=FUNC)


@pytest.mark.parametrize("offset, after", [(0, 4), (4, 9), (9, 10), (10, 13), (18, 23), (25, 26)])
def test_next_instruction(offset: int, after: int) -> None:
    assert next_instruction(BASE + offset, func_start=BASE, code=FUNC) == BASE + after


@pytest.mark.parametrize("offset, why", [
    (13, "calls a function"), (23, "jumps"), (26, "returns")])
def test_control_transfer_is_refused(offset: int, why: str) -> None:
    with pytest.raises(SymbolError, match=why) as ei:
        next_instruction(BASE + offset, func_start=BASE, code=FUNC)
    assert "post-handler would not run" in str(ei.value)


@pytest.mark.parametrize("code, why", [
    (bytes.fromhex("cc"), "breakpoint"),            # int3: someone else's probe
    (bytes.fromhex("0f05"), "traps or enters"),     # syscall
    (bytes.fromhex("0f0b"), "never falls through"),  # ud2 (BUG())
    (bytes.fromhex("ff2500000000"), "jumps"),       # indirect jmp
])
def test_other_refusals(code: bytes, why: str) -> None:
    with pytest.raises(SymbolError, match=why):
        next_instruction(BASE, func_start=BASE, code=code)


def test_truncated_and_undecodable_code() -> None:
    with pytest.raises(DecodeError, match="past the 3 bytes"):
        is_instruction_boundary(BASE, 3, FUNC[:3])
    with pytest.raises(DecodeError, match="code ends"):
        next_instruction(BASE + 4, func_start=BASE, code=FUNC[:6])
    with pytest.raises(DecodeError, match=r"cannot decode the instruction at \+1"):
        is_instruction_boundary(BASE, 3, bytes.fromhex("55" "06" "55" "55"))  # 06 is invalid in 64-bit


# -- kcore --------------------------------------------------------------------------
def _write_core(path: Path, segments: list[tuple[int, bytes]]) -> None:
    """A minimal ELF64 ET_CORE with one PT_LOAD per (vaddr, data), like /proc/kcore."""
    phoff, phnum = 64, len(segments)
    data_off = phoff + 56 * phnum
    ehdr = b"\x7fELF" + bytes([2, 1, 1, 0]) + bytes(8) + struct.pack(
        "<HHIQQQIHHHHHH", 4, 62, 1, 0, phoff, 0, 0, 64, 56, phnum, 64, 0, 0)
    phdrs, blobs, off = b"", b"", data_off
    for vaddr, blob in segments:
        phdrs += struct.pack("<IIQQQQQQ", 1, 7, off, vaddr, 0, len(blob), len(blob), 4096)
        blobs += blob
        off += len(blob)
    path.write_bytes(ehdr + phdrs + blobs)


def test_read_kernel_text_from_core(tmp_path: Path) -> None:
    pytest.importorskip("elftools")
    core = tmp_path / "kcore"
    _write_core(core, [(BASE, FUNC), (BASE + len(FUNC), b"\x90" * 8), (BASE + 0x1000, b"XYZ")])
    assert kcore.read_kernel_text(BASE + 9, 4, kcore=str(core)) == FUNC[9:13]
    # a read across two adjacent segments
    assert kcore.read_kernel_text(BASE + 25, 4, kcore=str(core)) == b"\x5d\xc3\x90\x90"
    assert kcore.read_kernel_text(BASE + 0x1001, 2, kcore=str(core)) == b"YZ"
    with pytest.raises(KprobesError, match="not mapped"):
        kcore.read_kernel_text(BASE + 0x1002, 4, kcore=str(core))
    segs = kcore.kcore_segments(str(core))
    assert [s[0] for s in segs] == [BASE, BASE + len(FUNC), BASE + 0x1000]


def test_kcore_missing(tmp_path: Path) -> None:
    with pytest.raises(NotSupported) as ei:
        kcore.read_kernel_text(BASE, 4, kcore=str(tmp_path / "kcore"))
    assert ei.value.feature == "kcore" and "code=" in (ei.value.hint or "")

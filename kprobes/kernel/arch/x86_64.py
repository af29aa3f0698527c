"""x86-64 instruction boundaries for kprobes and post-handlers (capstone, a dependency, imported when needed).

Every x86 rule lives here: decoding, the ENDBR64 landing pad at a function's
entry, the 5-byte ftrace call site counted as one instruction, refusing a
post-handler after a branch, call or return, and the next boundary.

A kprobe must sit on an instruction boundary: the kernel's x86 ``can_probe()``
decodes from the function start to check it, and so does ``perf probe``.  A
post-handler runs after the probed instruction was single-stepped, i.e. at the
next instruction, unless that instruction transfers control (jmp, jcc, call,
ret, int, syscall): then the "after" point is the branch target, so we refuse.

Decoding is linear from the function start (``code`` must start there).

>>> code = bytes.fromhex("0f1f440000" "55" "4889e5" "c3")   # ftrace nop; push rbp; mov rbp,rsp; ret
>>> is_instruction_boundary(0x1000, 5, code), is_instruction_boundary(0x1000, 7, code)
(True, False)
>>> hex(next_instruction(0x1005, func_start=0x1000, code=code))
'0x1006'
"""

from __future__ import annotations

from collections.abc import Callable

from kprobes.errors import DecodeError, KprobesError, NotSupported, SymbolError

from ...values import Frozen, _set

__all__ = [
    "Insn",
    "decode",
    "instruction_at",
    "is_instruction_boundary",
    "next_instruction",
    "post_location",
    "is_ftrace_site",
    "MAX_INSN_SIZE",
    "ENDBR64",
    "FTRACE_INSN_SIZE",
    "FTRACE_NOP",
]

MAX_INSN_SIZE = 15
#: the IBT landing pad a function may start with
ENDBR64 = bytes.fromhex("f30f1efa")
#: the ftrace call site: a 5-byte nop (or a call) patched at the function's entry
FTRACE_INSN_SIZE = 5
FTRACE_NOP = bytes.fromhex("0f1f440000")
_md_cache: list = []


class Insn(Frozen):
    """One decoded instruction: ``offset`` from the function start."""

    __slots__ = _fields = ("offset", "size", "mnemonic", "op_str")
    offset: int
    size: int
    mnemonic: str
    op_str: str

    def __init__(self, offset: int, size: int, mnemonic: str, op_str: str) -> None:
        _set(self, "offset", offset)
        _set(self, "size", size)
        _set(self, "mnemonic", mnemonic)
        _set(self, "op_str", op_str)

    @property
    def text(self) -> str:
        return f"{self.mnemonic} {self.op_str}".strip()

    @property
    def end(self) -> int:
        return self.offset + self.size


def _capstone(detail: bool = False):
    try:
        import capstone
    except ImportError:
        raise NotSupported("instruction decoding needs capstone", feature="capstone",
                           hint="pip install capstone (a dependency of kprobes: reinstall it)") from None
    if not _md_cache:
        plain = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_64)
        full = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_64)
        full.detail = True
        _md_cache.extend([plain, full])
    return capstone, _md_cache[1 if detail else 0]


def decode(code: bytes, base: int = 0, *, until: int | None = None) -> list[Insn]:
    """Decode linearly from ``code[0]`` (at address ``base``) up to offset ``until``.

    Stops early at bytes capstone cannot decode; compare the last ``end`` with
    ``len(code)`` to notice.

    >>> [i.text for i in decode(bytes.fromhex("554889e5c3"))]
    ['push rbp', 'mov rbp, rsp', 'ret']
    """
    _, md = _capstone()
    out: list[Insn] = []
    for addr, size, mnem, ops in md.disasm_lite(code, base):
        off = addr - base
        if until is not None and off > until:
            break
        out.append(Insn(off, size, mnem, ops))
    return out


def _locate(func_start: int, offset: int, code: bytes) -> tuple[Insn | None, Insn | None]:
    """(instruction starting at ``offset``, or the one covering it) with decode checks."""
    if offset < 0:
        raise SymbolError(f"negative offset {offset}", hint="offsets count from the function start")
    if offset >= len(code):
        raise DecodeError(f"offset +{offset} is past the {len(code)} bytes of code given")
    insns = decode(code, func_start, until=offset)
    end = insns[-1].end if insns else 0
    if end <= offset and end < len(code):
        padded = decode(code[end:end + MAX_INSN_SIZE] + bytes(MAX_INSN_SIZE), until=0)
        if padded and padded[0].size > len(code) - end:
            raise DecodeError(f"code ends at +{len(code)} inside the instruction at +{end}",
                              hint="pass more bytes of the function")
        raise DecodeError(f"cannot decode the instruction at +{end} "
                          f"(bytes {code[end:end + 8].hex(' ')})")
    for i in insns:
        if i.offset == offset:
            return i, None
        if i.offset < offset < i.end:
            return None, i
    raise DecodeError(f"code ends at +{len(code)} inside the instruction before +{offset}")


def is_instruction_boundary(func_start: int, offset: int, code: bytes) -> bool:
    """True if an instruction starts exactly at ``offset`` (decoding from ``func_start``)."""
    at, _ = _locate(func_start, offset, code)
    return at is not None


def instruction_at(func_start: int, offset: int, code: bytes) -> Insn:
    """The instruction starting at ``offset``; SymbolError when ``offset`` is mid-instruction.

    >>> instruction_at(0, 3, bytes.fromhex("0f1f440000"))
    Traceback (most recent call last):
    ...
    kprobes.errors.SymbolError: offset +3 is inside the instruction at +0 (nop dword ptr [rax + rax]): use +0 or +5
    """
    at, covering = _locate(func_start, offset, code)
    if at is None:
        assert covering is not None
        raise SymbolError(
            f"offset +{offset} is inside the instruction at +{covering.offset} "
            f"({covering.text}): use +{covering.offset} or +{covering.end}",
            symbol=f"+{offset}", suggestions=[f"+{covering.offset}", f"+{covering.end}"],
            hint="kprobes must sit on an instruction boundary")
    if at.end > len(code):
        raise DecodeError(f"code ends inside the instruction at +{offset}")
    return at


_REFUSE = {
    "jump": "jumps",
    "call": "calls a function",
    "ret": "returns",
    "iret": "returns from an interrupt",
    "int": "traps or enters the kernel",
    "branch_relative": "branches",
}


def next_instruction(addr: int, *, func_start: int, code: bytes | None = None) -> int:
    """Address of the instruction after the one at ``addr``: where a post-handler runs.

    ``code`` holds the function's bytes from ``func_start``; when None they are
    read from ``/proc/kcore``.  Raises SymbolError when ``addr`` is not an
    instruction boundary, or when that instruction transfers control (the
    "after" point would be the branch target, not the next instruction).
    """
    offset = addr - func_start
    if code is None:
        from kprobes.kernel.kcore import read_kernel_text

        code = read_kernel_text(func_start, max(offset, 0) + MAX_INSN_SIZE)
    insn = instruction_at(func_start, offset, code)
    capstone, md = _capstone(detail=True)
    detailed = next(md.disasm(code[offset:insn.end], addr), None)
    if detailed is None:
        raise DecodeError(f"cannot decode the instruction at +{offset}")
    groups = {detailed.group_name(g) for g in detailed.groups}
    why = next((_REFUSE[g] for g in _REFUSE if g in groups), None)
    if insn.mnemonic == "int3" or code[offset] == 0xCC:
        why = "is a breakpoint (another probe is there, hiding the original instruction)"
    elif insn.mnemonic in ("ud2", "hlt"):
        why = "never falls through (BUG() or halt)"
    if why:
        raise SymbolError(
            f"the instruction at +{offset} ({insn.text}) {why}: a post-handler would not "
            f"run at +{insn.end}, the next instruction",
            symbol=f"+{offset}",
            hint="drop the post-handler, or put a pre-handler on the instruction you want "
                 f"to see next (+{insn.end} if the branch is not taken, or its target)")
    return addr + insn.size


def is_ftrace_site(addr: int, code: bytes, function_at: Callable[[int], tuple]) -> bool:
    """Is the 5-byte instruction ``code`` at ``addr`` the function's ftrace call site
    (a nop, or a call into ftrace while it is active)?  ``function_at`` names a
    call's target (``SymbolTable.function_at``).

    >>> is_ftrace_site(0x1000, FTRACE_NOP, None), is_ftrace_site(0x1000, b"\\x55", None)
    (True, False)
    """
    if code == FTRACE_NOP:
        return True
    if len(code) == FTRACE_INSN_SIZE and code[0] == 0xE8:
        target = (addr + 5 + int.from_bytes(code[1:], "little", signed=True)) & (2**64 - 1)
        try:
            name = function_at(target)[0].name
        except KprobesError:
            return True     # a dynamically allocated ftrace trampoline has no symbol
        return "ftrace" in name or "fentry" in name
    return False


def post_location(func_start: int, offset: int, code: bytes,
                  function_at: Callable[[int], tuple]) -> int:
    """Where a post-handler for a probe at ``func_start+offset`` goes: the next instruction.

    ``code`` holds the function's bytes from its start (at least ``offset`` +
    16).  A probe on an ENDBR64 at the entry is placed after it by the kernel
    (``arch_adjust_kprobe_addr()``), so the probed instruction is the one at +4;
    the ftrace site counts as one 5-byte instruction whether it is a nop or a
    live call.  Raises SymbolError where :func:`next_instruction` does.

    >>> hex(post_location(0x1000, 0, ENDBR64 + FTRACE_NOP + bytes.fromhex("55c3"), None))
    '0x1009'
    """
    if offset == 0 and code[:4] == ENDBR64:
        offset = 4
    addr = func_start + offset
    if is_ftrace_site(addr, code[offset:offset + FTRACE_INSN_SIZE], function_at):
        return addr + FTRACE_INSN_SIZE
    return next_instruction(addr, func_start=func_start, code=code)

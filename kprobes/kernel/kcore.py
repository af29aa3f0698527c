"""Read live kernel text from ``/proc/kcore`` (pyelftools, a dependency, imported when needed).

``/proc/kcore`` is an ELF core file whose PT_LOAD segments map kernel virtual
addresses (direct map, vmalloc, kernel text, modules) to file offsets.  The
segment table is read once per path and cached; bytes are read with
``os.pread``.  It needs root, ``CONFIG_PROC_KCORE`` and no
``lockdown=confidentiality``.  The bytes are what runs *now*: active kprobes
show as ``int3`` (0xcc) and optimized probes as a 5-byte ``jmp``.

>>> read_kernel_text(0xffffffff81000000, 16)   # doctest: +SKIP
b'\\xf3\\x0f\\x1e\\xfa...'
"""

from __future__ import annotations

import os

from kprobes.errors import DecodeError, KprobesError, NotSupported, PermissionDenied

__all__ = ["Segment", "kcore_segments", "read_kernel_text", "KCORE"]

KCORE = "/proc/kcore"
#: (vaddr, memsz, file offset, filesz) of one PT_LOAD segment
Segment = tuple[int, int, int, int]
_CACHE: dict[str, tuple[Segment, ...]] = {}


def _no_kcore(path: str) -> NotSupported:
    return NotSupported(
        f"{path} does not exist: cannot read kernel text", feature="kcore",
        hint="needs CONFIG_PROC_KCORE (absent on this host); run inside the VM "
             "(`kprobes vm`), or pass the function's bytes as code=")


def kcore_segments(path: str = KCORE, *, refresh: bool = False) -> tuple[Segment, ...]:
    """The PT_LOAD segments of ``path``, sorted by address (cached per path)."""
    if not refresh and path in _CACHE:
        return _CACHE[path]
    try:
        from elftools.common.exceptions import ELFError
        from elftools.elf.elffile import ELFFile
    except ImportError:
        raise NotSupported("reading /proc/kcore needs pyelftools", feature="pyelftools",
                           hint="pip install pyelftools (a dependency of kprobes: reinstall it)") from None
    try:
        with open(path, "rb") as f:
            segs = tuple(sorted(
                (p.header.p_vaddr, p.header.p_memsz, p.header.p_offset, p.header.p_filesz)
                for p in ELFFile(f).iter_segments() if p.header.p_type == "PT_LOAD"))
    except FileNotFoundError:
        raise _no_kcore(path) from None
    except PermissionError:
        raise PermissionDenied(f"cannot read {path}",
                               hint="run as root; lockdown=confidentiality forbids it") from None
    except ELFError as e:
        raise DecodeError(f"{path} is not a readable ELF core: {e}") from None
    _CACHE[path] = segs
    return segs


def _find(segs: tuple[Segment, ...], addr: int) -> Segment | None:
    for seg in segs:
        if seg[0] <= addr < seg[0] + min(seg[1], seg[3]):
            return seg
    return None


def read_kernel_text(addr: int, size: int, *, kcore: str = KCORE) -> bytes:
    """``size`` bytes of kernel memory at virtual address ``addr``.

    Raises NotSupported without /proc/kcore, KprobesError when the range is not
    mapped (rereading the segment table once, in case memory or modules changed).
    """
    if size <= 0:
        return b""
    out = bytearray()
    refreshed = False
    try:
        fd = os.open(kcore, os.O_RDONLY)
    except FileNotFoundError:
        raise _no_kcore(kcore) from None
    except PermissionError:
        raise PermissionDenied(f"cannot open {kcore}", hint="run as root") from None
    try:
        segs = kcore_segments(kcore)
        while len(out) < size:
            cur = addr + len(out)
            seg = _find(segs, cur)
            if seg is None and not refreshed:
                segs, refreshed = kcore_segments(kcore, refresh=True), True
                continue
            if seg is None:
                raise KprobesError(f"kernel address 0x{cur:x} is not mapped in {kcore}",
                                   hint="is it a kernel text address (see /proc/kallsyms)?")
            vaddr, memsz, off, filesz = seg
            n = min(size - len(out), vaddr + min(memsz, filesz) - cur)
            try:
                chunk = os.pread(fd, n, off + (cur - vaddr))
            except OSError as e:
                raise KprobesError(f"reading 0x{cur:x} from {kcore}: {e.strerror}") from None
            if not chunk:
                raise KprobesError(f"short read at 0x{cur:x} from {kcore}")
            out += chunk
    finally:
        os.close(fd)
    return bytes(out)

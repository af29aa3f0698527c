"""One stack frame: an address and what it resolved to.

>>> str(Frame(0xffffffff81a0b2c5, "do_sys_openat2", 0x45, None))
'do_sys_openat2+0x45'
>>> str(Frame(0x401186, "leaf", 0x20, "/tmp/chain"))
'leaf+0x20 [/tmp/chain]'
>>> str(Frame(0x7f0000001234, None, 0, "/usr/lib/libx.so"))
'0x7f0000001234 [/usr/lib/libx.so]'
"""

from __future__ import annotations

from typing import NamedTuple

__all__ = ["Frame"]


class Frame(NamedTuple):
    """``addr``: the address in the stack; ``symbol`` (None when unresolved) and
    ``offset`` into it; ``module``: the kernel module (None for vmlinux) or, for
    user frames, the mapped file (None when the address is in no known file)."""

    addr: int
    symbol: str | None
    offset: int
    module: str | None

    def __str__(self) -> str:
        where = f"{self.symbol}+0x{self.offset:x}" if self.symbol else f"0x{self.addr:x}"
        return f"{where} [{self.module}]" if self.module else where

    @property
    def name(self) -> str:
        """The symbol, or ``0xADDR`` when unresolved (what folded stacks and flame graphs show)."""
        return self.symbol if self.symbol else f"0x{self.addr:x}"

"""Rendering the stacks an event carries (``trace --stack``).

Text: one frame per line under the event, tab-indented, kernel frames
first (like bpftrace's ``kstack``/``ustack`` printing); JSON: ``"kstack"`` /
``"ustack"`` arrays of ``SYMBOL+0xOFF [MODULE]`` strings.

>>> from kprobes.symbolize import Frame
>>> class E: kstack = [Frame(1, "do_sys_openat2", 0, None)]; ustack = None
>>> stack_text(E())
'\\tdo_sys_openat2+0x0\\n'
>>> with_stacks('{"probe": "p"}', E())
'{"probe": "p", "kstack": ["do_sys_openat2+0x0"]}'
"""

from __future__ import annotations

import json

TYPE_CHECKING = False   # typing's, without importing typing at run time
if TYPE_CHECKING:
    from typing import Any

__all__ = ["stack_text", "with_stacks"]


def stack_text(ev: Any) -> str:
    """The event's frames, one ``\\tFRAME`` line each (empty when none)."""
    out = []
    for st in (ev.kstack, ev.ustack):
        if st:
            out += [f"\t{f}\n" for f in st]
    return "".join(out)


def with_stacks(line: str, ev: Any) -> str:
    """A JSON object line with ``kstack`` / ``ustack`` added (those recorded)."""
    extra = ""
    for key, st in (("kstack", ev.kstack), ("ustack", ev.ustack)):
        if st is not None:
            extra += f', "{key}": ' + json.dumps([str(f) for f in st], ensure_ascii=False)
    return line[:-1] + extra + "}" if extra else line

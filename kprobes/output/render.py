"""Text and JSON rendering of events and summaries (no kernel access).

Strings from the kernel (``comm``, string args) are decoded as Python decodes
file names (UTF-8, ``surrogateescape``: an invalid byte 0xff becomes
``\\udcff``). Text output escapes what a terminal would act on: control
characters, DEL, C1 codes and invalid bytes as ``\\xNN``, a backslash as
``\\\\`` (and ``\\"`` inside quoted strings); JSON output is valid UTF-8 with an
invalid byte as the escape ``\\udcNN``, so ``json.loads(line)["comm"].encode(
"utf-8", "surrogateescape")`` gives back the kernel's bytes.

>>> from kprobes.runtime.event import Event
>>> ev = Event("p_open", 1_500_000_000, 1, 42, 0, 0, {"fd": -2, "path": "/x"}, comm="cat", pid=42)
>>> text_line(ev, hex_args=set())
'     1.500000 [001] cat-42/42 p_open: fd=-2 path="/x"'
>>> json_line(ev)
'{"probe": "p_open", "ts_ns": 1500000000, "cpu": 1, "pid": 42, "tid": 42, "comm": "cat", "preempt_count": 0, "context": "task", "args": {"fd": -2, "path": "/x"}}'
"""

from __future__ import annotations

import json

TYPE_CHECKING = False   # typing's, without importing typing at run time
if TYPE_CHECKING:
    from typing import Any

__all__ = ["text_line", "json_line", "format_value", "summary_text", "summary_json", "json_args",
           "escape_text", "json_safe"]

# what text output escapes: C0 controls, DEL, C1 controls, the backslash, and
# the bytes surrogateescape kept (U+DC80..U+DCFF = invalid bytes 0x80..0xff)
_ESC = {c: f"\\x{c:02x}" for c in (*range(0x20), 0x7F, *range(0x80, 0xA0))}
_ESC[ord("\\")] = "\\\\"
_ESC.update({0xDC00 + b: f"\\x{b:02x}" for b in range(0x80, 0x100)})
_ESC_Q = {**_ESC, ord('"'): '\\"'}


def escape_text(s: str, quote: bool = False) -> str:
    r"""``s`` with nothing a terminal acts on: controls and invalid bytes as ``\xNN``.

    >>> escape_text("a\x1b[31mb\udcff")
    'a\\x1b[31mb\\xff'
    >>> escape_text('say "hi"', quote=True)
    'say \\"hi\\"'
    """
    if s.isascii() and s.isprintable() and "\\" not in s and not (quote and '"' in s):
        return s
    s = s.translate(_ESC_Q if quote else _ESC)
    if not s.isprintable():   # other non-printing code points (U+2028, lone surrogates...)
        s = "".join(c if c.isprintable() else f"\\u{ord(c):04x}" for c in s)
    return s


def json_safe(js: str) -> str:
    """JSON text with lone surrogates (invalid bytes kept by surrogateescape)
    written as ``\\udcNN`` escapes, so the text is valid UTF-8."""
    if js.isascii():
        return js
    try:
        js.encode("utf-8")
        return js
    except UnicodeEncodeError:
        return js.encode("utf-8", "backslashreplace").decode("utf-8")


def _is_fault(v: Any) -> bool:
    return type(v).__name__ == "Fault"


def format_value(v: Any, hexed: bool = False) -> str:
    if _is_fault(v):
        return "<fault>"
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, int):
        return hex(v) if hexed else str(v)
    if isinstance(v, str):
        return f'"{escape_text(v, True)}"'
    if isinstance(v, (tuple, list)):
        return "[" + ",".join(format_value(x, hexed) for x in v) + "]"
    return repr(v)


def text_line(ev: Any, hex_args: set[str] | frozenset[str] = frozenset()) -> str:
    args = " ".join(f"{k}={format_value(v, k in hex_args)}" for k, v in ev.args.items())
    ts = ev.ts_ns / 1e9
    comm = escape_text(ev.comm)
    return f"{ts:13.6f} [{ev.cpu:03d}] {comm}-{ev.pid}/{ev.tid} {ev.probe}: {args}".rstrip()


def json_args(args: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    out: dict[str, Any] = {}
    faults: list[str] = []
    for k, v in args.items():
        if _is_fault(v):
            out[k] = None
            faults.append(k)
        elif isinstance(v, tuple):
            out[k] = [None if _is_fault(x) else x for x in v]
        else:
            out[k] = v
    return out, faults


def json_line(ev: Any) -> str:
    d = ev.as_dict()
    d["args"], faults = json_args(ev.args)
    if faults:
        d["faults"] = faults
    if ev.data is not None:
        try:
            json.dumps(ev.data)
            d["data"] = ev.data
        except (TypeError, ValueError):
            d["data"] = repr(ev.data)
    return json_safe(json.dumps(d, ensure_ascii=False))


def summary_json(stats: Any, extra: dict[str, Any] | None = None) -> str:
    d = stats.as_dict()
    if extra:
        d.update(extra)
    return json.dumps({"summary": d})


def summary_text(stats: Any) -> str:
    lines = [f"{'probe':<40} {'events':>10} {'hits (all)':>10} {'misses':>8} {'errors':>7}"]
    for name, p in stats.probes.items():
        hits = p.hits if p.kernel_counted else "-"
        lines.append(f"{name:<40} {p.events:>10} {hits:>10} {p.misses:>8} {p.errors:>7}")
        if p.first_error:
            lines.append(f"  first handler error: {p.first_error}")
    lines.append(f"events delivered: {stats.events}, lost in ring buffer: {stats.lost}")
    if any(p.kernel_counted for p in stats.probes.values()):
        lines.append("hits (all): times the probe fired in the kernel, every process, "
                     "before filters")
    return "\n".join(lines)

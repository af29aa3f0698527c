"""Text and JSON rendering of events and summaries (no kernel access).

>>> from kprobes.runtime.event import Event
>>> ev = Event("p_open", 1_500_000_000, 1, 42, 0, 0, {"fd": -2, "path": "/x"}, comm="cat", pid=42)
>>> text_line(ev, hex_args=set())
'     1.500000 [001] cat-42/42 p_open: fd=-2 path="/x"'
>>> json_line(ev)
'{"probe": "p_open", "ts_ns": 1500000000, "cpu": 1, "pid": 42, "tid": 42, "comm": "cat", "preempt_count": 0, "context": "task", "args": {"fd": -2, "path": "/x"}}'
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["text_line", "json_line", "format_value", "summary_text", "summary_json", "json_args"]


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
        return json.dumps(v, ensure_ascii=False)
    if isinstance(v, (tuple, list)):
        return "[" + ",".join(format_value(x, hexed) for x in v) + "]"
    return repr(v)


def text_line(ev: Any, hex_args: set[str] | frozenset[str] = frozenset()) -> str:
    args = " ".join(f"{k}={format_value(v, k in hex_args)}" for k, v in ev.args.items())
    ts = ev.ts_ns / 1e9
    return f"{ts:13.6f} [{ev.cpu:03d}] {ev.comm}-{ev.pid}/{ev.tid} {ev.probe}: {args}".rstrip()


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
    return json.dumps(d, ensure_ascii=False)


def summary_json(stats: Any, extra: dict[str, Any] | None = None) -> str:
    d = stats.as_dict()
    if extra:
        d.update(extra)
    return json.dumps({"summary": d})


def summary_text(stats: Any) -> str:
    lines = [f"{'probe':<40} {'events':>10} {'hits':>10} {'misses':>8} {'errors':>7}"]
    for name, p in stats.probes.items():
        lines.append(f"{name:<40} {p.events:>10} {p.hits:>10} {p.misses:>8} {p.errors:>7}")
        if p.first_error:
            lines.append(f"  first handler error: {p.first_error}")
    lines.append(f"events delivered: {stats.events}, lost in ring buffer: {stats.lost}")
    return "\n".join(lines)

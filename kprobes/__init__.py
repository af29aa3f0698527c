"""kprobes: dynamic tracing of the running Linux kernel and its programs, from Python.

>>> from kprobes import Session
>>> with Session() as s:                                   # doctest: +SKIP
...     @s.kretprobe("do_sys_openat2", maxactive=1)
...     def on_ret(ev):
...         if ev.retval < 0:
...             print(ev.comm, ev.retval)
...     s.run(duration=5)
"""

from __future__ import annotations

TYPE_CHECKING = False   # typing's, without importing typing at run time
if TYPE_CHECKING:
    from typing import Any

# Names are imported on first use (PEP 562): ``import kprobes.cli.main`` and
# ``kprobes info`` must not pay for the session, reader and decoder modules.
_WHERE = {
    "Aggregation": "agg.model", "Bucket": "agg.model", "Row": "agg.model",
    "FAULT": "decode.format",
    "BTFError": "errors", "DecodeError": "errors", "HandlerError": "errors",
    "KernelRefused": "errors", "KprobesError": "errors", "NotSupported": "errors",
    "PermissionDenied": "errors", "SpecError": "errors", "SymbolError": "errors",
    "Pointer": "probes.btfargs",
    "FetchArg": "probes.model", "KProbe": "probes.model", "KRetProbe": "probes.model",
    "Probe": "probes.model", "Tracepoint": "probes.model", "UProbe": "probes.model",
    "URetProbe": "probes.model",
    "parse_spec": "probes.spec",
    "Event": "runtime.event",
    "ProbeHandle": "runtime.handle",
    "Batch": "runtime.batch", "Calls": "runtime.calls",
    "ProbeStats": "runtime.session", "Session": "runtime.session", "Stats": "runtime.session",
    "expand_pattern": "runtime.patterns", "Match": "runtime.patterns",
    "StackCounts": "runtime.stackcount",
    "Frame": "symbolize.frame",
}

if TYPE_CHECKING:
    from .agg.model import Aggregation, Bucket, Row
    from .decode.format import FAULT
    from .errors import (
        BTFError,
        DecodeError,
        HandlerError,
        KernelRefused,
        KprobesError,
        NotSupported,
        PermissionDenied,
        SpecError,
        SymbolError,
    )
    from .probes.btfargs import Pointer
    from .probes.model import FetchArg, KProbe, KRetProbe, Probe, Tracepoint, UProbe, URetProbe
    from .probes.spec import parse_spec
    from .runtime.batch import Batch
    from .runtime.calls import Calls
    from .runtime.event import Event
    from .runtime.handle import ProbeHandle
    from .runtime.patterns import Match, expand_pattern
    from .runtime.session import ProbeStats, Session, Stats
    from .runtime.stackcount import StackCounts
    from .symbolize.frame import Frame


def __getattr__(name: str) -> Any:
    where = _WHERE.get(name)
    if where is None:
        raise AttributeError(f"module 'kprobes' has no attribute {name!r}")
    import importlib
    value = getattr(importlib.import_module(f".{where}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_WHERE))


__all__ = [
    "Session", "Stats", "ProbeStats", "ProbeHandle", "Event", "Batch", "Calls", "Pointer", "FAULT",
    "Frame", "StackCounts", "Aggregation", "Row", "Bucket",
    "Probe", "KProbe", "KRetProbe", "UProbe", "URetProbe", "Tracepoint", "FetchArg", "parse_spec",
    "expand_pattern", "Match",
    "KprobesError", "SpecError", "KernelRefused", "NotSupported", "PermissionDenied",
    "DecodeError", "SymbolError", "BTFError", "HandlerError",
]
__version__ = "0.1.0"

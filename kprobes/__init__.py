"""kprobes: dynamic tracing of the running Linux kernel and its programs, from Python.

>>> from kprobes import Session
>>> with Session() as s:                                   # doctest: +SKIP
...     @s.kretprobe("do_sys_openat2", maxactive=1)
...     def on_ret(ev):
...         if ev.retval < 0:
...             print(ev.comm, ev.retval)
...     s.run(duration=5)
"""

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
from .runtime.event import Event
from .runtime.handle import ProbeHandle
from .runtime.reader import Batch
from .runtime.session import ProbeStats, Session, Stats

__all__ = [
    "Session", "Stats", "ProbeStats", "ProbeHandle", "Event", "Batch", "Pointer", "FAULT",
    "Aggregation", "Row", "Bucket",
    "Probe", "KProbe", "KRetProbe", "UProbe", "URetProbe", "Tracepoint", "FetchArg", "parse_spec",
    "KprobesError", "SpecError", "KernelRefused", "NotSupported", "PermissionDenied",
    "DecodeError", "SymbolError", "BTFError", "HandlerError",
]
__version__ = "0.1.0"

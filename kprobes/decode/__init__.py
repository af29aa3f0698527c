"""Decoding of kernel trace data: event formats, records and ring-buffer pages.

No I/O here: callers read ``format`` files and ``trace_pipe_raw`` pages and
hand the text and bytes in.
"""

from kprobes.decode.flags import (
    TraceFlag,
    context,
    flags_text,
    in_irq,
    in_nmi,
    in_softirq,
    irqs_off,
    need_resched,
)
from kprobes.decode.format import (
    FAULT,
    EventFormat,
    Fault,
    Field,
    parse_field_line,
    parse_format,
)
from kprobes.decode.record import RecordDecoder, common_type
from kprobes.decode.ringbuf import PageDecoder, PageHeader, fix_abs_ts

__all__ = [
    "FAULT",
    "EventFormat",
    "Fault",
    "Field",
    "PageDecoder",
    "PageHeader",
    "RecordDecoder",
    "TraceFlag",
    "common_type",
    "context",
    "fix_abs_ts",
    "flags_text",
    "in_irq",
    "in_nmi",
    "in_softirq",
    "irqs_off",
    "need_resched",
    "parse_field_line",
    "parse_format",
]

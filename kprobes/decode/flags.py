"""The ``common_flags`` byte of every event: bits from the kernel's ``enum
trace_flag_type`` (``include/linux/trace_events.h``), defined here once.

:func:`flags_text` renders them like the
latency columns of the ``trace`` file (``kernel/trace/trace_output.c``
``trace_print_lat_fmt``). Seen on the 6.18 host: uprobe events carry
``common_flags`` = ``common_preempt_count`` = 0xff, so both are
meaningless for uprobe events there (consistent with the kernel's
``tracing_gen_ctx_dec()`` subtracting one from a context word of 0 in the
preemptible uprobe handler); tracepoint events are fine.
"""

from __future__ import annotations

import enum

__all__ = ["TraceFlag", "CONTEXTS", "context", "flags_text", "irqs_off", "in_irq",
           "in_softirq", "in_nmi", "need_resched"]


class TraceFlag(enum.IntFlag):
    """Bits of ``common_flags`` (``enum trace_flag_type``).

    0x02 was ``IRQS_NOSUPPORT`` (only on architectures without irqflags
    tracing support, i.e. none that matter) until kernel 6.13 reused it for
    ``NEED_RESCHED_LAZY``; we read it as the latter.
    """

    IRQS_OFF = 0x01
    NEED_RESCHED_LAZY = 0x02
    NEED_RESCHED = 0x04
    HARDIRQ = 0x08
    SOFTIRQ = 0x10
    PREEMPT_RESCHED = 0x20
    NMI = 0x40
    BH_OFF = 0x80


def irqs_off(flags: int) -> bool:
    """Interrupts were disabled when the event was recorded."""
    return bool(flags & TraceFlag.IRQS_OFF)


def in_irq(flags: int) -> bool:
    """Recorded in hard interrupt context."""
    return bool(flags & TraceFlag.HARDIRQ)


def in_softirq(flags: int) -> bool:
    """Recorded while serving a softirq."""
    return bool(flags & TraceFlag.SOFTIRQ)


def in_nmi(flags: int) -> bool:
    """Recorded in NMI context."""
    return bool(flags & TraceFlag.NMI)


def need_resched(flags: int) -> bool:
    """A reschedule (of any kind: TIF, preempt or lazy) was pending."""
    return bool(flags & (TraceFlag.NEED_RESCHED | TraceFlag.PREEMPT_RESCHED
                         | TraceFlag.NEED_RESCHED_LAZY))


class _I:
    """The bits as plain ints: the 256-entry tables below are built at import,
    and IntFlag arithmetic would cost ~25 ms of start-up."""

    IRQS_OFF = int(TraceFlag.IRQS_OFF)
    NEED_RESCHED_LAZY = int(TraceFlag.NEED_RESCHED_LAZY)
    NEED_RESCHED = int(TraceFlag.NEED_RESCHED)
    HARDIRQ = int(TraceFlag.HARDIRQ)
    SOFTIRQ = int(TraceFlag.SOFTIRQ)
    PREEMPT_RESCHED = int(TraceFlag.PREEMPT_RESCHED)
    NMI = int(TraceFlag.NMI)
    BH_OFF = int(TraceFlag.BH_OFF)


def _context(flags: int) -> str:
    if flags & _I.NMI:
        return "nmi"
    if flags & _I.HARDIRQ:
        return "irq"
    if flags & _I.SOFTIRQ:
        return "softirq"
    return "task"


#: ``common_flags`` (0..255) -> :func:`context`, precomputed
CONTEXTS: tuple[str, ...] = tuple(_context(i) for i in range(256))


def context(flags: int) -> str:
    """Where the event was recorded: ``'nmi'``, ``'irq'``, ``'softirq'`` or ``'task'``.

    >>> context(0x08), context(0x10), context(0x48), context(0x01)
    ('irq', 'softirq', 'nmi', 'task')
    """
    return CONTEXTS[flags & 0xFF]


def _flags_chars(flags: int) -> str:
    irq = flags & _I.IRQS_OFF
    bh = flags & _I.BH_OFF
    c1 = "D" if irq and bh else "d" if irq else "b" if bh else "."
    n = bool(flags & _I.NEED_RESCHED)
    lz = bool(flags & _I.NEED_RESCHED_LAZY)
    p = bool(flags & _I.PREEMPT_RESCHED)
    c2 = {
        (True, True, True): "B", (True, False, True): "N", (False, True, True): "L",
        (True, True, False): "b", (True, False, False): "n", (False, False, True): "p",
        (False, True, False): "l",
    }.get((n, lz, p), ".")
    nmi = flags & _I.NMI
    hard = flags & _I.HARDIRQ
    soft = flags & _I.SOFTIRQ
    c3 = ("Z" if nmi and hard else "z" if nmi else "H" if hard and soft
          else "h" if hard else "s" if soft else ".")
    return c1 + c2 + c3


_FLAGS_TEXT = tuple(_flags_chars(i) for i in range(256))


def flags_text(flags: int, preempt_count: int | None = None) -> str:
    """The latency-format columns for ``common_flags``, as ftrace prints them.

    Three characters: irqs-off (``d``, ``b`` = BH off, ``D`` = both),
    need-resched (``n``/``N``/``p``/``l``/``L``/``b``/``B``) and context
    (``h`` hardirq, ``s`` softirq, ``H`` both, ``z``/``Z`` NMI). With
    ``preempt_count`` (``common_preempt_count``) two more follow: the preempt
    depth (low nibble) and the migrate-disable depth (high nibble), in hex
    or ``.`` when 0.

    >>> flags_text(0x09)
    'd.h'
    >>> flags_text(0x01 | 0x04 | 0x10, 0x21)
    'dns12'
    """
    s = _FLAGS_TEXT[flags & 0xFF]
    if preempt_count is None:
        return s
    lo = preempt_count & 0xF
    hi = (preempt_count >> 4) & 0xF
    return s + (f"{lo:x}" if lo else ".") + (f"{hi:x}" if hi else ".")

"""Fault injection at the tracefs boundary (a test mode; off and free by default).

When a :class:`Plan` is installed, the k-th tracefs operation of the chosen
kinds (``open``, ``write``, ``mkdir``, ``rmdir``) fails with the chosen errno
instead of reaching the kernel, once. Every tracefs open (reads included),
write, mkdir and rmdir made by :mod:`.tracefs` and by the ring-buffer reader
counts, so a sweep over k = 1, 2, ... walks a whole session life: define,
create, arm, read, stop, undo.

Turned on by a test (``faults.install(Plan(k, errno.EBUSY))``) or, for the
CLI, by the environment: ``KPROBES_FAULT=K:ERRNO[:OPS]``, e.g.
``KPROBES_FAULT=7:ENOSPC`` or ``KPROBES_FAULT=3:EBUSY:write,rmdir``. Off, the
cost is one module-attribute test per operation.

>>> p = Plan.parse("2:EBUSY:write")
>>> (p.k, p.errno, p.ops)
(2, 16, frozenset({'write'}))
>>> p.hit("write", "a"); p.hit("write", "b")
Traceback (most recent call last):
...
OSError: [Errno 16] Device or resource busy (injected fault #2): 'b'
"""

from __future__ import annotations

import errno as _errno
import os

__all__ = ["Plan", "plan", "install", "remove", "ENV", "OPS"]

ENV = "KPROBES_FAULT"
OPS = frozenset({"open", "write", "mkdir", "rmdir"})


class Plan:
    """Fail the ``k``-th operation (1-based) among ``ops`` with ``errno``, once.

    ``seen`` counts the operations so far, ``log`` lists them as (op, path),
    ``fired`` is the (op, path) that failed.
    """

    def __init__(self, k: int, errno: int, ops: frozenset[str] = OPS) -> None:
        if k < 1 or not ops <= OPS:
            raise ValueError(f"bad fault plan: k={k} ops={sorted(ops)}")
        self.k = k
        self.errno = errno
        self.ops = frozenset(ops)
        self.seen = 0
        self.log: list[tuple[str, str]] = []
        self.fired: tuple[str, str] | None = None

    @classmethod
    def parse(cls, text: str) -> Plan:
        """``K:ERRNO[:OP,OP]`` with ERRNO a name (``EBUSY``) or a number."""
        parts = text.split(":")
        if len(parts) not in (2, 3):
            raise ValueError(f"{ENV}={text!r}: expected K:ERRNO[:OPS]")
        k = int(parts[0])
        code = int(parts[1]) if parts[1].isdigit() else getattr(_errno, parts[1].upper(), None)
        if not isinstance(code, int):
            raise ValueError(f"{ENV}={text!r}: unknown errno {parts[1]!r}")
        ops = frozenset(parts[2].split(",")) if len(parts) == 3 else OPS
        return cls(k, code, ops)

    def hit(self, op: str, path: str) -> None:
        """Count one operation; raise the injected error when it is the k-th."""
        if op not in self.ops:
            return
        self.seen += 1
        self.log.append((op, path))
        if self.seen == self.k:
            self.fired = (op, path)
            raise OSError(self.errno, f"{os.strerror(self.errno)} (injected fault #{self.k})",
                          path)


#: the installed plan; ``None`` (the default) means no injection
plan: Plan | None = None


def install(p: Plan | None) -> Plan | None:
    """Install ``p`` (``None``: turn injection off); returns the previous plan."""
    global plan
    old, plan = plan, p
    return old


def remove() -> None:
    install(None)


if os.environ.get(ENV):
    plan = Plan.parse(os.environ[ENV])

"""One exception tree for everything kprobes reports.

Every error carries a one-line message (``str(err)``) and an optional
``hint`` telling the user what to do next.  The CLI prints
``error: <message>`` and ``hint: <hint>`` and exits non-zero.

>>> try:
...     raise SpecError("unknown probe kind 'x'", spec="x:foo", column=0,
...                     hint="use p:, r:, u:, ur: or t:")
... except KprobesError as e:
...     print(e)
unknown probe kind 'x'
"""

from __future__ import annotations

__all__ = [
    "KprobesError",
    "SpecError",
    "KernelRefused",
    "NotSupported",
    "PermissionDenied",
    "DecodeError",
    "SymbolError",
    "HandlerError",
    "BTFError",
]


class KprobesError(Exception):
    """Base class: a message for the user and an optional hint."""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message


class SpecError(KprobesError, ValueError):
    """A probe spec, argument or filter we refuse before asking the kernel.

    ``column`` is the 0-based position in ``spec`` of the offending part.
    """

    def __init__(self, message: str, *, spec: str | None = None, column: int | None = None,
                 hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.spec = spec
        self.column = column

    def caret(self) -> str | None:
        """Two lines: the spec and a caret under the offending column."""
        if self.spec is None or self.column is None:
            return None
        return f"{self.spec}\n{' ' * self.column}^"


class KernelRefused(KprobesError, OSError):
    """The kernel refused a write to tracefs.

    ``errno`` is the write's errno, ``command`` what we wrote, ``file`` the
    tracefs file, ``reason`` the kernel's own message from ``error_log`` (or
    from the event's ``filter`` file) and ``column`` the caret position in
    ``command`` that the kernel pointed at, when it did.
    """

    def __init__(self, message: str, *, errno: int, file: str, command: str,
                 reason: str | None = None, column: int | None = None,
                 hint: str | None = None) -> None:
        KprobesError.__init__(self, message, hint=hint)
        self.errno = errno
        self.file = file
        self.command = command
        self.reason = reason
        self.column = column

    def __str__(self) -> str:
        return self.message


class NotSupported(KprobesError):
    """This kernel lacks a feature (``feature`` names it, e.g. ``"kprobes"``)."""

    def __init__(self, message: str, *, feature: str, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.feature = feature


class PermissionDenied(KprobesError, PermissionError):
    """Not root / lacking CAP_SYS_ADMIN or CAP_PERFMON, or lockdown."""


class DecodeError(KprobesError):
    """Our own decoding of kernel data failed (a bug or corrupt input, not a refusal)."""


class SymbolError(KprobesError, LookupError):
    """Unknown, ambiguous or unprobeable symbol (kernel or ELF)."""

    def __init__(self, message: str, *, symbol: str | None = None,
                 suggestions: list[str] | None = None, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.symbol = symbol
        self.suggestions = suggestions or []


class BTFError(KprobesError):
    """Malformed or missing BTF, or a type/name that BTF does not have."""


class HandlerError(KprobesError):
    """A user handler raised, and the session was told to stop on handler errors."""

    def __init__(self, message: str, *, probe: str, original: BaseException) -> None:
        super().__init__(message)
        self.probe = probe
        self.original = original

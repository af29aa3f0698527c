"""Signal handling for sessions: Ctrl-C/SIGTERM end a run between batches,
SIGTERM outside a run unwinds (and so cleans up), and signals wait while undoing."""

from __future__ import annotations

import signal

TYPE_CHECKING = False   # typing's, without importing typing at run time
if TYPE_CHECKING:
    from typing import Any

__all__ = ["install_sigterm", "restore_sigterm", "install_stop_handlers", "restore_handlers",
           "block_signals", "unblock_signals"]


class _Terminate(KeyboardInterrupt):
    pass


def install_sigterm() -> Any:
    try:
        def handler(signum: int, frame: Any) -> None:
            raise _Terminate()
        return signal.signal(signal.SIGTERM, handler)
    except ValueError:       # not the main thread
        return None


def install_stop_handlers(session: Any) -> dict[int, Any] | None:
    def handler(signum: int, frame: Any) -> None:
        session._stop = True
    try:
        return {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    except ValueError:       # not the main thread
        return None


def restore_handlers(old: dict[int, Any] | None) -> None:
    for sig, h in (old or {}).items():
        signal.signal(sig, h)


def restore_sigterm(old: Any) -> None:
    if old is not None:
        try:
            signal.signal(signal.SIGTERM, old)
        except ValueError:
            pass


def block_signals() -> set[int] | None:
    try:
        return signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    except (ValueError, OSError):
        return None


def unblock_signals(old: set[int] | None) -> None:
    if old is not None:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)

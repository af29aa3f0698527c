"""mount(2) and umount2(2) through libc, for tracefs and debugfs.

>>> mount("nodev", "/nonexistent-dir", "tracefs")      # doctest: +SKIP
Traceback (most recent call last):
FileNotFoundError: [Errno 2] No such file or directory: '/nonexistent-dir'
"""

from __future__ import annotations

import os

TYPE_CHECKING = False   # typing's, without importing typing at run time
if TYPE_CHECKING:
    from typing import Any

__all__ = ["mount", "umount", "is_mounted"]

_libc: list = []


def _c() -> Any:
    # ctypes only when something is mounted (its import costs seconds under
    # emulation); the interpreter is linked against libc: no find_library()
    # (it runs ldconfig).
    if not _libc:
        import ctypes
        _libc.append(ctypes)
        _libc.append(ctypes.CDLL(None, use_errno=True))
    return _libc[1]


def _fail(target: str) -> OSError:
    err = _libc[0].get_errno()
    return OSError(err, os.strerror(err), target)


def mount(source: str, target: str, fstype: str, flags: int = 0) -> None:
    """``mount -t FSTYPE SOURCE TARGET``; OSError (with errno) when refused."""
    if _c().mount(source.encode(), target.encode(), fstype.encode(), flags, None) != 0:
        raise _fail(target)


def umount(target: str, flags: int = 0) -> None:
    """``umount TARGET``; OSError (with errno) when refused."""
    if _c().umount2(target.encode(), flags) != 0:
        raise _fail(target)


def is_mounted(path: str, fstype: str) -> bool:
    """True if ``path`` is a mount point of ``fstype`` (per /proc/self/mounts)."""
    try:
        with open("/proc/self/mounts") as f:
            return any(ln.split()[1:3] == [path, fstype] for ln in f if ln.strip())
    except OSError:
        return False

"""Fetch stock Debian kernels and run a command on them under QEMU (``kprobes vm``).

Two modules: :mod:`kprobes.vm.kernels` fetches and caches Debian kernel
packages (apt, dpkg); :mod:`kprobes.vm.qemu` builds the ``vng`` command and
runs it.  Nothing else in the library imports this package.

The host this project is developed on has no kprobes, so the tests that need
them boot a stock Debian kernel with virtme-ng (``vng``), which shares the
host's root file system read-only over 9p: the guest sees the same Python,
virtualenv and checkout at the same paths.

Two steps, kept apart:

``fetch_kernel(name)``
    ``"6.1"`` (Debian 12 "bookworm") or ``"6.12"`` (Debian 13 "trixie"), or a
    path to a ``vmlinuz``.  The newest matching ``linux-image-*-amd64``
    package is downloaded with ``apt-get download`` and unpacked with
    ``dpkg -x`` into ``/var/cache/kprobes/kernels/<uname -r>/`` (or
    ``$KPROBES_KERNEL_CACHE/<uname -r>/``).  A suite that the host's apt
    sources do not list (trixie on a Debian 12 host) is fetched through a
    private sources list and state directory under the cache, so the host's
    apt configuration is never touched.  The mirror is the host's own
    Debian mirror with the suite name swapped (``$KPROBES_DEBIAN_MIRROR``
    overrides it).  A cached kernel is reused without any network access.

``run_in_vm(kernel, argv, cwd=...)``
    Boots the kernel with ``vng --exec`` and returns the command's exit
    status; its output goes straight to ours.  Software emulation (TCG) is
    used unless ``$KPROBES_VM_KVM=1``: nested KVM hangs on the machines this
    project is developed on.  TCG runs single-threaded (both guest CPUs
    take turns on one host thread, ``-accel tcg,thread=single``): with one
    host thread per guest CPU (QEMU 7.2's default), a CPU kept running its
    stale translation of code that another CPU had just patched with
    ``text_poke_bp`` (int3, then the new bytes).  Flipping a static key in a
    hot path (a tracepoint being enabled, as every tracing session does for
    ``sched_switch``) then live-locked 6.1 (the int3 handler rewinds to an
    instruction the CPU never re-reads) and oopsed 6.12 ("Oops: int3").
    ``$KPROBES_VM_TCG_THREAD=multi`` restores the faster, unsafe mode.

What the guest looks like (seen on 6.1 and 6.12): root is the host's root,
read-only; ``/sys/kernel/tracing`` (tracefs) and ``/sys/kernel/debug``
(debugfs) are mounted; ``/proc/kcore`` exists; ``/tmp``, ``/run``,
``/var/tmp`` are private tmpfs; only the ``rwdirs`` are writable host
folders.  ``PATH`` is reset by the guest's init, so ``run_in_vm`` passes the
host's ``PATH`` (with this interpreter's ``bin`` first) through ``env``.

>>> k = fetch_kernel("6.1")                      # doctest: +SKIP
>>> k.version                                    # doctest: +SKIP
'6.1.0-56-amd64'
>>> run_in_vm(k, ["uname", "-r"], cwd="/")       # doctest: +SKIP
6.1.0-56-amd64
0
"""

from __future__ import annotations

from .kernels import (
    KERNELS,
    AptSource,
    KernelImage,
    KernelSource,
    cached_kernels,
    debian_mirror,
    fetch_kernel,
    host_apt_sources,
    kernel_cache_dir,
)
from .qemu import run_in_vm, vm_command

__all__ = [
    "KERNELS",
    "KernelImage",
    "KernelSource",
    "AptSource",
    "kernel_cache_dir",
    "host_apt_sources",
    "debian_mirror",
    "cached_kernels",
    "fetch_kernel",
    "vm_command",
    "run_in_vm",
]

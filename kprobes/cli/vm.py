"""``kprobes vm``: run a command on a stock Debian kernel under QEMU.

The host's root is shared read-only with the guest, so the same checkout and
virtualenv are there; only ``--rwdir`` folders are writable.  Kernels are
downloaded once into ``/var/cache/kprobes/kernels`` ($KPROBES_KERNEL_CACHE).

``--local`` runs the command from a copy of this Python, its packages and the
``--cwd`` folder unpacked on the guest's tmpfs (:mod:`kprobes.vm.local`): the
guest sees the host's root over 9p without a page cache, where Python starts
about 3x slower.

Boot cost under software emulation (TCG, 2 vCPUs, 2 GB, measured for
``true`` from start to exit status): about 15 s on 6.1 and 12 s on 6.12; a
pytest run of the smoke tests takes 33-35 s in all.  Everything inside runs
emulated, so a guest is several times slower than the host (and much slower
when the host is busy).  Emulation is single-threaded (both guest CPUs on
one host thread): one thread per guest CPU hangs guests that patch hot kernel
code, see :mod:`kprobes.vm.qemu`.  ``KPROBES_VM_KVM=1`` uses KVM where
nested KVM works.

Examples::

    kprobes vm -- uname -r
    kprobes vm --kernel 6.12 --rwdir /tmp/out -- python -m pytest tests/kernel \\
        -p no:cacheprovider --junitxml=/tmp/out/junit.xml
    kprobes vm --local --kernel 6.12 -- python -m pytest tests/kernel   # from a copy in memory
    kprobes vm --kernel /boot/vmlinuz-6.8.0-1-amd64 -- cat /proc/version
    kprobes vm --kernel 6.12 --fetch-only
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import tempfile

from ..errors import KprobesError

__all__ = ["register", "run"]


def _env_pair(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    return name, value


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``vm`` subcommand."""
    p = sub.add_parser(
        "vm", help="run a command on a Debian kernel under QEMU (kprobes tests)",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--kernel", default="6.1", metavar="6.1|6.12|PATH",
                   help="kernel to boot: 6.1 or 6.12 (Debian package, cached) "
                        "or a vmlinuz path (default: %(default)s)")
    p.add_argument("--memory", default="2G", help="guest memory (default: %(default)s)")
    p.add_argument("--cpus", type=int, default=2, help="guest vCPUs (default: %(default)s)")
    p.add_argument("--cwd", default=None, help="guest working folder (default: the current one)")
    p.add_argument("--rwdir", action="append", default=[], metavar="DIR",
                   help="host folder the guest may write (repeatable; created if missing)")
    p.add_argument("--env", action="append", default=[], type=_env_pair, metavar="NAME=VALUE",
                   help="environment variable in the guest (repeatable)")
    p.add_argument("--timeout", type=float, default=None, metavar="SECONDS",
                   help="kill the VM after this long")
    p.add_argument("--local", action="store_true",
                   help="run from a copy of this Python, its packages and the --cwd folder "
                        "on the guest's tmpfs (the host's root is uncached 9p: Python "
                        "starts several times faster from the copy)")
    p.add_argument("--refresh", action="store_true",
                   help="ask apt for a newer kernel package even when one is cached")
    p.add_argument("--fetch-only", action="store_true",
                   help="download and unpack the kernel, print its version and image, no boot")
    p.add_argument("command", nargs=argparse.REMAINDER, metavar="-- CMD ARGS...",
                   help="command to run in the guest")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Fetch the kernel, boot it, run the command; return its exit status."""
    from ..vm import fetch_kernel, run_in_vm  # only when a VM is asked for
    kernel = fetch_kernel(args.kernel, refresh=args.refresh)
    if args.fetch_only:
        print(f"{kernel.name} {kernel.version} {kernel.vmlinuz}")
        return 0
    command = list(args.command)
    if command and command[0] == "--":
        command = command[1:]
    if not command:
        raise KprobesError("no command given", hint="kprobes vm [OPTIONS] -- CMD ARGS...")
    if args.cpus < 1:
        raise KprobesError(f"--cpus must be at least 1, got {args.cpus}")
    # the VM runs in its own process group: turn SIGTERM/SIGHUP into an exception
    # so that run_in_vm stops qemu before we go (a killed CI job leaves no VM)
    old = {sig: signal.signal(sig, _raise_interrupt) for sig in (signal.SIGTERM, signal.SIGHUP)}
    cwd = args.cwd or os.getcwd()
    tmp = None
    try:
        if args.local:
            from ..vm import local
            # the guest's /tmp is an overlay on the host's: it sees the tar there
            # (its /var/tmp and /var/cache are its own tmpfs)
            tmp = tempfile.mkdtemp(prefix="kprobes-vm-local-", dir="/tmp")
            local.pack(os.path.join(tmp, "local.tar"), os.path.abspath(cwd))
            command = local.guest_argv(os.path.join(tmp, "local.tar"), command)
        return run_in_vm(kernel, command, cwd=cwd, rwdirs=args.rwdir,
                         env=dict(args.env), memory=args.memory, cpus=args.cpus,
                         timeout=args.timeout)
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
        for sig, handler in old.items():
            signal.signal(sig, handler)


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")

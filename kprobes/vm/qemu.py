"""Boot a kernel with virtme-ng (``vng``) under QEMU and run one command in it.

``vm_command`` builds the ``vng`` command line (pure; unit-tested),
``run_in_vm`` checks the host tools, runs it, streams the guest's output to
ours and returns the command's exit status.

Software emulation (TCG) is used unless ``$KPROBES_VM_KVM=1``: nested KVM
hangs on the machines this project is developed on.  TCG runs
single-threaded (both guest CPUs take turns on one host thread,
``-accel tcg,thread=single``): with one host thread per guest CPU (QEMU 7.2's
default), a CPU kept running its stale translation of code that another CPU
had just patched with ``text_poke_bp`` (int3, then the new bytes).  Flipping
a static key in a hot path (a tracepoint being enabled, as every tracing
session does for ``sched_switch``) then live-locked 6.1 (the int3 handler
rewinds to an instruction the CPU never re-reads) and oopsed 6.12
("Oops: int3").  ``$KPROBES_VM_TCG_THREAD=multi`` restores the faster,
unsafe mode.

``$KPROBES_VM_ICOUNT=N`` (benchmarks) adds QEMU's ``-icount shift=N``: the
guest clock then advances 2^N ns per emulated instruction, so times measured
inside the guest count instructions and do not depend on how busy the host is
(every instruction costs the same: caches and memory are not modelled).
"""

from __future__ import annotations

import base64
import os
import re
import selectors
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping, Sequence

from ..errors import KprobesError, NotSupported
from .kernels import KernelImage

__all__ = ["vm_command", "run_in_vm", "GUEST_CACHE_DIR"]

_MAX_EXEC_B64 = 1200
GUEST_CACHE_DIR = "/tmp/kprobes-cache"

def _tool_path() -> str:
    """The host's PATH with this interpreter's ``bin`` folder first."""
    bindir = os.path.dirname(os.path.abspath(sys.executable))
    parts = [bindir, *os.environ.get("PATH", "").split(":"),
             "/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"]
    return ":".join(dict.fromkeys(p for p in parts if p))


def _check_host_tools(path: str) -> str:
    vng = shutil.which("vng", path=path)
    if vng is None:
        raise NotSupported("vng (virtme-ng) not found", feature="virtme-ng",
                           hint="pip install 'kprobes[vm]' in this virtualenv")
    missing = [(tool, pkg) for tool, pkg in (("qemu-system-x86_64", "qemu-system-x86"),
                                             ("depmod", "kmod"), ("busybox", "busybox-static"))
               if shutil.which(tool, path=path) is None]
    if not any(os.path.exists(p) for p in ("/lib/systemd/systemd-udevd",
                                           "/usr/lib/systemd/systemd-udevd")):
        # without udevd the guest has no /dev/virtio-ports/virtme.* and the
        # command's output and exit status are lost
        missing.append(("systemd-udevd", "udev"))
    if missing:
        raise NotSupported(
            f"missing on the host: {', '.join(t for t, _ in missing)}", feature="qemu",
            hint=f"apt-get install {' '.join(sorted({p for _, p in missing}))} "
                 "(or bash .ci/setup.sh)")
    return vng


def vm_command(kernel: KernelImage, argv: Sequence[str], *, cwd: str,
               rwdirs: Iterable[str] = (), env: Mapping[str, str] | None = None,
               memory: str = "2G", cpus: int = 2, vng: str = "vng") -> list[str]:
    """The ``vng`` command line that runs ``argv`` in ``cwd`` on ``kernel``.

    The guest command is ``env -- PATH=... NAME=VALUE ... ARGV`` quoted with
    ``shlex.join``; ``PATH`` is the host's (this interpreter's ``bin`` first),
    ``PYTHONDONTWRITEBYTECODE=1`` because the shared root is read-only, and
    ``KPROBES_CACHE_DIR`` a folder of the guest's private ``/tmp``.
    """
    if not argv:
        raise KprobesError("no command to run in the VM", hint="kprobes vm -- CMD ARGS...")
    # the shared root (and so /var/cache) is read-only: caches (the BTF name
    # index, ~2.6 s to build per process under TCG) go to the guest's private
    # /tmp, shared by every process of one boot
    guest_env = {"PATH": _tool_path(), "PYTHONDONTWRITEBYTECODE": "1",
                 "KPROBES_CACHE_DIR": GUEST_CACHE_DIR}
    if os.environ.get("VIRTUAL_ENV"):
        guest_env["VIRTUAL_ENV"] = os.environ["VIRTUAL_ENV"]
    guest_env.update(env or {})
    for k in guest_env:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", k):
            raise KprobesError(f"bad environment variable name {k!r}")
    inner = ["env", "--", *(f"{k}={v}" for k, v in guest_env.items()), *argv]
    cmd = [vng]
    if os.environ.get("KPROBES_VM_KVM") != "1":
        # single-threaded TCG: see the module docstring (cross-modifying code)
        thread = os.environ.get("KPROBES_VM_TCG_THREAD", "single")
        if thread not in ("single", "multi"):
            raise KprobesError(f"KPROBES_VM_TCG_THREAD={thread!r}",
                               hint="use single (the default) or multi")
        # one "--opt=value" word: vng's argparse would take "-accel ..." for -a
        opts = f"-accel tcg,thread={thread}"
        icount = os.environ.get("KPROBES_VM_ICOUNT")
        if icount:
            if not icount.isdigit() or int(icount) > 10 or thread != "single":
                raise KprobesError(f"KPROBES_VM_ICOUNT={icount!r}",
                                   hint="a shift of 0..10 (ns per instruction = 2^shift), "
                                        "with single-threaded TCG")
            opts += f" -icount shift={icount},sleep=on"
        cmd += ["--disable-kvm", f"--qemu-opts={opts}"]
    cmd += ["--run", str(kernel.vmlinuz), "--cpus", str(cpus), "--memory", memory,
            "--cwd", cwd]
    for d in rwdirs:
        cmd += ["--rwdir", d]
    script = shlex.join(inner)
    # vng hands the command to the guest base64-encoded on the kernel command
    # line, which x86 caps at 2048 bytes in all (vng's own options included)
    if len(base64.b64encode(script.encode())) > _MAX_EXEC_B64:
        raise KprobesError(
            f"the command for the VM is too long ({len(script)} bytes with its environment)",
            hint="put it in a script in an --rwdir folder and run that")
    cmd += ["--exec", script]
    return cmd


def run_in_vm(kernel: KernelImage, argv: Sequence[str], *, cwd: str,
              rwdirs: Iterable[str] = (), env: Mapping[str, str] | None = None,
              memory: str = "2G", cpus: int = 2, timeout: float | None = None) -> int:
    """Boot ``kernel``, run ``argv`` in ``cwd`` and return its exit status.

    Output is streamed to our stdout/stderr.  ``rwdirs`` are host folders
    (created if missing) that the guest may write; everything else is
    read-only.  ``env`` adds variables in the guest.  On ``timeout`` (seconds)
    the VM is killed and ``KprobesError`` raised.  vng's own failures (no
    boot) come back as its non-zero status, typically 255.
    """
    path = _tool_path()
    vng = _check_host_tools(path)
    rwdirs = [os.path.abspath(d) for d in rwdirs]
    for d in rwdirs:
        os.makedirs(d, exist_ok=True)
    if not os.path.isdir(cwd):
        raise KprobesError(f"no such folder {cwd}", hint="--cwd must exist on the host")
    cmd = vm_command(kernel, argv, cwd=os.path.abspath(cwd), rwdirs=rwdirs, env=env,
                     memory=memory, cpus=cpus, vng=vng)
    host_env = dict(os.environ, PATH=path)
    # qemu reopens /proc/self/fd/1 for the guest's output: on a file opened
    # without O_APPEND that write would start at offset 0 and be overwritten.
    # A pipe that we copy to our own fds 1 and 2 keeps the output in order.
    # vng runs in its own process group so a timeout can stop qemu with it.
    proc = subprocess.Popen(cmd, env=host_env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)
    try:
        _pump(proc, timeout)
        return proc.wait(timeout=None if timeout is None else 30)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        raise KprobesError(f"the VM ({kernel.version}) did not finish within {timeout:g} s",
                           hint="raise the timeout; under TCG a boot alone takes ~20-40 s"
                           ) from None
    finally:
        _kill_group(proc)


def _pump(proc: subprocess.Popen[bytes], timeout: float | None) -> None:
    """Copy the child's stdout/stderr to ours until both close (or time out)."""
    assert proc.stdout is not None and proc.stderr is not None
    targets = {proc.stdout.fileno(): 1, proc.stderr.fileno(): 2}
    deadline = None if timeout is None else time.monotonic() + timeout
    with selectors.DefaultSelector() as sel:
        for fd in targets:
            sel.register(fd, selectors.EVENT_READ)
        while sel.get_map():
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise subprocess.TimeoutExpired(proc.args, timeout or 0)
            for key, _ in sel.select(left):
                data = os.read(key.fd, 65536)
                if not data:
                    sel.unregister(key.fd)
                    continue
                _write_all(targets[key.fd], data)
    proc.stdout.close()
    proc.stderr.close()


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            n = os.write(fd, view)
        except BrokenPipeError:
            return  # our reader went away; keep draining the VM
        view = view[n:]


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    """Stop vng and qemu (its process group) if anything of it still runs."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=10)
            return
        except subprocess.TimeoutExpired:
            continue

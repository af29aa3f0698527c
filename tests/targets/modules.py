"""Kernel modules for guest tests: the guest's /lib/modules holds only what the
VM runner needs and the host's kernel cache is hidden from it, so `.ci/test.sh`
hands copies in through ``KPROBES_TEST_MODULES`` (a folder the guest sees)."""

from __future__ import annotations

import os
import subprocess

__all__ = ["module_file", "load_module"]


def module_file(name: str, rel_dir: str) -> str | None:
    """``NAME.ko[.xz|.zst]``: from ``KPROBES_TEST_MODULES``, the kernel cache, or
    ``/lib/modules``; ``rel_dir`` is its folder under the modules tree
    (``kernel/drivers/net``)."""
    rel_ver = os.uname().release
    extra = os.environ.get("KPROBES_TEST_MODULES")
    bases = [extra] if extra else []
    bases += [f"{b}/{rel_dir}" for b in (
        f"/var/cache/kprobes/kernels/{rel_ver}/lib/modules/{rel_ver}",
        f"/var/cache/kprobes/kernels/{rel_ver}/usr/lib/modules/{rel_ver}",
        f"/lib/modules/{rel_ver}")]
    for base in bases:
        for ext in ("", ".xz", ".zst"):
            if os.path.exists(f"{base}/{name}.ko{ext}"):
                return f"{base}/{name}.ko{ext}"
    return None


def load_module(name: str, rel_dir: str) -> bool:
    """modprobe NAME, else insmod its file from :func:`module_file`; True if it took."""
    if subprocess.run(["modprobe", name], capture_output=True).returncode == 0:
        return True
    path = module_file(name, rel_dir)
    return bool(path) and subprocess.run(["insmod", path], capture_output=True).returncode == 0

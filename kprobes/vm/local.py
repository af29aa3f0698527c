"""Run a guest command from a copy of this Python on the guest's own tmpfs.

The guest sees the host's root over 9p without a page cache (virtme-ng mounts
it ``sync``, and its initramfs fixes the mount options): under TCG every file
a Python process opens costs a round trip to the host, so importing pytest,
hypothesis and kprobes takes ~15-20 s and each ``python -m kprobes`` starts in
~5 s.  A user's Python lives on a local disk with a page cache.

``pack`` writes one tar on the host: this interpreter (binary, ``libpython``,
the standard library with its compiled files, minus tests and tools), a
virtualenv whose site-packages hold the installed packages a test run needs
(the big ones no guest test imports are left out, and a ``.pth`` line puts the
host's site-packages after the copy, so a package left out is still found,
only slower), and a copy of a source tree (the checkout, without ``.git`` and
``.venv``).  ``guest_argv`` wraps a command so that the guest unpacks the tar
into ``GUEST_TOP`` with ``tar`` (C: quick under TCG) and runs it there, with
the copy's Python first on ``PATH`` and the tree's copy as the working folder
and ``PYTHONPATH``.  Nothing is written back: results go to an ``--rwdir``.
"""

from __future__ import annotations

import os
import re
import shlex
import sys
import sysconfig
import tarfile
from collections.abc import Sequence

__all__ = ["GUEST_TOP", "pack", "guest_argv", "same_python"]

#: where the guest unpacks the copy (a tmpfs in every virtme-ng guest)
GUEST_TOP = "/dev/shm/kprobes-local"

#: standard-library folders no run needs
_SKIP_STDLIB = {"test", "site-packages", "idlelib", "tkinter", "turtledemo", "ensurepip",
                "lib2to3", "pydoc_data", "__phello__"}
#: installed packages left out of the copy: big, and imported by no guest test
#: (they stay reachable through the host's site-packages, after the copy)
_SKIP_SITE = ("playwright", "pyarrow", "pandas", "numpy", "duckdb", "_duckdb",
              "adbc_driver_duckdb", "mypy", "pip", "setuptools", "virtme", "ruff", "greenlet",
              "tzdata", "pygments", "ast_serialize", "librt", "__editable__",
              "distutils-precedence.pth", "_distutils_hack", "pkg_resources")

#: what of the tree is neither copied nor compiled
_NOT_TREE = (".git", ".venv", ".mypy_cache", ".pytest_cache", ".ruff_cache")
_NOT_COMPILED = re.compile("/(" + "|".join(map(re.escape, _NOT_TREE)) + ")/")

_CONSOLE_SCRIPT = """# -*- coding: utf-8 -*-
import sys
from kprobes.cli.main import main
if __name__ == '__main__':
    sys.exit(main())
"""


def _skipped_site(name: str) -> bool:
    if name.endswith(".dist-info"):
        return False            # small, and pytest finds its plugins through them
    return name.startswith(_SKIP_SITE) or "__mypyc" in name


def _tree_filter(t: tarfile.TarInfo) -> tarfile.TarInfo | None:
    name = os.path.basename(t.name)
    if name in _NOT_TREE or ".opt-" in name:
        return None
    return t


def same_python(path: str) -> bool:
    """Whether ``path`` runs this interpreter (the venv's ``python`` is a symlink)."""
    return os.path.realpath(path) == os.path.realpath(sys.executable)


def pack(tar_path: str, tree: str, top: str = GUEST_TOP) -> None:
    """Write the tar of this Python, its site-packages and ``tree`` (see the module
    docstring); its symlinks and scripts point into ``top``."""
    stdlib = sysconfig.get_paths()["stdlib"]
    purelib = sysconfig.get_paths()["purelib"]
    libdir = os.path.dirname(stdlib)
    ver = os.path.basename(stdlib)                        # python3.11
    site = f"venv/lib/{ver}/site-packages"

    def stdlib_filter(t: tarfile.TarInfo) -> tarfile.TarInfo | None:
        name = os.path.basename(t.name)
        if name in _SKIP_STDLIB or name.startswith("config-") or ".opt-" in name or \
                name.endswith((".a", ".exe")):
            return None
        return t

    def text(tar: tarfile.TarFile, name: str, data: str | bytes, mode: int = 0o644) -> None:
        import io
        raw = data.encode() if isinstance(data, str) else data
        info = tarfile.TarInfo(name)
        info.size, info.mode = len(raw), mode
        tar.addfile(info, io.BytesIO(raw))

    def link(tar: tarfile.TarFile, name: str, target: str) -> None:
        info = tarfile.TarInfo(name)
        info.type, info.linkname = tarfile.SYMTYPE, target
        tar.addfile(info)

    # compiled files for the tree (the guest cannot write them; it would compile every
    # module in every process): quick here, and kept valid by the tar's mtimes
    import compileall
    compileall.compile_dir(tree, quiet=2, workers=0, rx=_NOT_COMPILED)
    with tarfile.open(tar_path, "w") as tar:
        with open(os.path.realpath(sys.executable), "rb") as binary:
            exe = _relative_run_path(binary.read())
        text(tar, "py/bin/python3", exe, 0o755)
        for f in os.listdir(libdir):
            if f.startswith("libpython"):
                tar.add(_without_debug_info(os.path.join(libdir, f), tar_path),
                        f"py/lib/{f}")
        tar.add(stdlib, f"py/lib/{ver}", filter=stdlib_filter)
        text(tar, "venv/pyvenv.cfg", f"home = {top}/py/bin\ninclude-system-site-packages = false\n")
        link(tar, "venv/bin/python3", f"{top}/py/bin/python3")
        link(tar, "venv/bin/python", "python3")
        text(tar, "venv/bin/kprobes", f"#!{top}/venv/bin/python3\n{_CONSOLE_SCRIPT}", 0o755)
        for f in sorted(os.listdir(purelib)):
            if not _skipped_site(f):
                tar.add(os.path.join(purelib, f), f"{site}/{f}", filter=_tree_filter)
        # last on sys.path: what was left out is still found, from the host
        text(tar, f"{site}/zzz-kprobes-host-site.pth", f"{purelib}\n")
        tar.add(tree, "work", filter=_tree_filter)


def _without_debug_info(path: str, near: str) -> str:
    """A copy of the shared library ``path`` without its debug sections (binutils'
    ``strip --strip-debug``: pyenv's ``libpython`` is 22 MB with them, a fifth of
    the tar the guest reads over 9p), next to ``near``; ``path`` itself where
    ``strip`` is missing or fails, or for what is not a regular file."""
    import shutil
    import subprocess
    strip = shutil.which("strip")
    if strip is None or os.path.islink(path) or not os.path.isfile(path):
        return path
    out = os.path.join(os.path.dirname(os.path.abspath(near)), os.path.basename(path))
    r = subprocess.run([strip, "--strip-debug", "-o", out, path], capture_output=True)
    return out if r.returncode == 0 else path


def _relative_run_path(exe: bytes) -> bytes:
    """``exe`` with its absolute ELF run path (where a shared build finds ``libpython``)
    rewritten in place to ``$ORIGIN/../lib``: the copy then loads the copied library
    without ``LD_LIBRARY_PATH``, which every program the tests start would inherit
    (and its loader would search: failed opens the tests count)."""
    import io

    from elftools.elf.dynamic import DynamicSection
    from elftools.elf.elffile import ELFFile
    elf = ELFFile(io.BytesIO(exe))
    dyn = next((s for s in elf.iter_sections() if isinstance(s, DynamicSection)), None)
    if dyn is None:
        return exe                                   # a static build: nothing to find
    strtab = elf.get_section_by_name(".dynstr")
    out = bytearray(exe)
    new = b"$ORIGIN/../lib"
    for tag in dyn.iter_tags():
        if tag.entry.d_tag in ("DT_RUNPATH", "DT_RPATH") and strtab is not None:
            old = strtab.get_string(tag.entry.d_val).encode()    # type: ignore[attr-defined]
            at = strtab["sh_offset"] + tag.entry.d_val
            if len(new) <= len(old) and old.startswith(b"/"):
                out[at:at + len(old)] = new.ljust(len(old), b"\0")
    return bytes(out)


def guest_argv(tar_path: str, argv: Sequence[str], top: str = GUEST_TOP) -> list[str]:
    """``argv`` wrapped to unpack ``tar_path`` into ``top`` and run there; an
    ``argv[0]`` that is this interpreter becomes the copy's. The wrapper is a
    script written next to the tar (the command itself travels on the guest's
    kernel command line, which is short)."""
    argv = list(argv)
    if argv and same_python(argv[0]):
        argv[0] = f"{top}/venv/bin/python"     # the name tests see as the task's comm
    q = shlex.quote
    script = os.path.join(os.path.dirname(os.path.abspath(tar_path)), "run.sh")
    with open(script, "w") as f:
        f.write(f"""set -e
t0=$(date +%s%N)
mkdir -p {q(top)}
tar -xf {q(tar_path)} -C {q(top)}
echo "kprobes vm --local: copy unpacked in $(( ($(date +%s%N) - t0) / 1000000 )) ms" >&2
cd {q(top)}/work
export PATH={q(top)}/venv/bin:$PATH PYTHONPATH={q(top)}/work VIRTUAL_ENV={q(top)}/venv
exec "$@"
""")
    return ["sh", script, *argv]

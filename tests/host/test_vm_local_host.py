"""``kprobes vm --local``: the copy of this Python runs on its own, found where the
guest will find it (here: a temporary folder standing for the guest's tmpfs)."""

import os
import subprocess
import sys
import tarfile

from kprobes.vm import local


def test_copy_runs_alone_with_its_library_and_packages(tmp_path):
    tree = tmp_path / "tree"
    (tree / "pkg").mkdir(parents=True)
    (tree / "pkg" / "__init__.py").write_text("WHERE = __file__\n")
    (tree / ".git").mkdir()
    (tree / ".git" / "HEAD").write_text("ref\n")
    top = tmp_path / "top"
    tar = tmp_path / "local.tar"
    local.pack(str(tar), str(tree), top=str(top))
    with tarfile.open(tar) as t:
        names = set(t.getnames())
        t.extractall(top)
    assert "work/pkg/__init__.py" in names and not any(n.startswith("work/.git") for n in names)
    assert not any("/site-packages/pyarrow/" in n for n in names)     # left out: big
    argv = local.guest_argv(str(tar), [sys.executable, "-c", "import sys, os, elftools, pkg; "
                                       "print(sys.prefix, sys.base_prefix, pkg.WHERE, "
                                       "elftools.__file__, os.environ.get('LD_LIBRARY_PATH'))"],
                            top=str(top))
    assert argv[2] == f"{top}/venv/bin/python"
    # what the guest runs after unpacking (the tar is unpacked again over the copy)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    r = subprocess.run(argv, capture_output=True, text=True, env=env, cwd="/")
    assert r.returncode == 0, r.stderr
    prefix, base, where, elftools_at, ldpath = r.stdout.split()
    assert prefix == f"{top}/venv" and base == f"{top}/py"
    assert where == f"{top}/work/pkg/__init__.py"
    assert elftools_at.startswith(f"{top}/venv/lib/") and ldpath == "None"
    # the copy's python loads the copied libpython (its run path is $ORIGIN/../lib)
    maps = subprocess.run([f"{top}/venv/bin/python", "-c",
                           "print(open('/proc/self/maps').read())"],
                          capture_output=True, text=True, env=env, check=True).stdout
    libs = {ln.split()[-1] for ln in maps.splitlines() if "libpython" in ln}
    assert libs and all(p.startswith(f"{top}/py/lib/") for p in libs), libs
    tar.unlink()

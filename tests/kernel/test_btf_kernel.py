"""Arguments by name from BTF on a real kernel (run inside the QEMU VM).

6.1 cannot resolve names in probe definitions: we compute offsets. 6.12 can:
there our results must agree with the kernel's own.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid

import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from targets.procs import run_bounded  # noqa: E402

from kprobes import Session
from kprobes.cli.main import main as cli_main
from kprobes.errors import BTFError, KernelRefused
from kprobes.kernel import dynevents
from kprobes.kernel.features import probe_features
from kprobes.kernel.tracefs import Tracefs
from kprobes.probes.btfargs import Pointer
from kprobes.runtime import owner

OPEN = "do_sys_openat2"


@pytest.fixture(scope="module")
def tfs() -> Tracefs:
    return Tracefs.open()


def _open_known(workload: str, path: str) -> int:
    """Open PATH with O_WRONLY | O_CREAT | O_EXCL, mode 0o640, in a child; returns its pid."""
    p = subprocess.Popen([workload, "create", path], stdout=subprocess.PIPE, text=True)
    assert p.communicate()[0].strip() == "done 1" and p.returncode == 0
    return p.pid


def test_jprobe_binds_parameters_by_name(tfs, tmp_path, workload):
    path = str(tmp_path / f"jp-{uuid.uuid4().hex[:8]}")
    got = []
    with Session() as s:
        @s.jprobe(OPEN, fields=("how->flags", "how->mode"))
        def on_open(ev, dfd, filename, how):
            if filename == path:
                got.append((ev.pid, dfd, how))
        s.start()
        pid = _open_known(workload, path)
        s.run(duration=0)
    assert len(got) == 1
    gpid, dfd, how = got[0]
    assert gpid == pid
    assert dfd == -100                                   # AT_FDCWD, a signed int
    assert isinstance(how, Pointer) and int(how) != 0    # the pointer value itself
    want = os.O_WRONLY | os.O_CREAT | os.O_EXCL
    assert how.flags & want == want
    assert how.mode == 0o640


def test_handler_parameter_not_in_prototype_is_refused(tfs):
    with pytest.raises(BTFError) as ei:
        with Session() as s:
            @s.jprobe(OPEN)
            def on_open(ev, dfd, nosuch):
                pass
            s.start()
    assert "nosuch" in str(ei.value) and "filename" in str(ei.value)
    assert not [e for e in dynevents.list_defined(tfs) if e.group.startswith(owner.PREFIX)]
    assert not [i for i in tfs.instances() if i.startswith(owner.PREFIX)]


def test_spec_with_field_paths_and_typed_retval(tfs, tmp_path, workload):
    path = str(tmp_path / f"spec-{uuid.uuid4().hex[:8]}")
    r = run_bounded([sys.executable, "-m", "kprobes", "trace", "--json",
                        f"p:{OPEN} filename how->flags how->mode", f"r:{OPEN} $retval",
                        "-c", f"{workload} create {path}"], timeout=300)
    assert r.returncode == 0, r.stderr
    events = [json.loads(ln) for ln in r.stdout.splitlines() if ln.startswith("{")][:-1]
    mine = [e for e in events if e["args"].get("filename") == path]
    assert len(mine) == 1
    assert mine[0]["args"]["how_mode"] == 0o640
    assert mine[0]["args"]["how_flags"] & os.O_CREAT
    # the return of that same call, on the same thread, right after it
    rets = [e for e in events if e["probe"].startswith("r_") and e["tid"] == mine[0]["tid"]
            and e["ts_ns"] > mine[0]["ts_ns"]]
    assert rets and rets[0]["args"]["retval"] >= 3      # a file descriptor, signed type


def test_nested_field_path_reads_dentry_name(tfs, tmp_path):
    name = f"dn-{uuid.uuid4().hex[:8]}"
    f = tmp_path / name
    f.write_text("x" * 10)
    got = []
    with Session() as s:
        s.add("p:vfs_read file->f_path.dentry->d_name.name count", got.append)
        s.start()
        subprocess.run(["cat", str(f)], capture_output=True, check=True)
        s.run(duration=0)
    mine = [e for e in got if e.file_f_path_dentry_d_name_name == name]
    assert mine and mine[0].comm == "cat" and mine[0].count > 0


def test_char_pointer_raw_with_x64(tfs, tmp_path, workload):
    got = []
    with Session() as s:
        s.add(f"p:{OPEN} filename:x64 dfd", got.append)
        s.start()
        _open_known(workload, str(tmp_path / "raw"))
        s.run(duration=0)
    assert got and all(isinstance(e.filename, int) and e.filename > 0 for e in got)


def test_native_btf_names_agree_or_are_refused(tfs, tmp_path, workload):
    """Where the kernel resolves names itself (6.12), it must agree with our offsets;
    where it cannot (6.1), it refuses them and ours still work."""
    # the kernel shows a char * as the pointer unless told to read the string
    native = (f"p:kptestbtf/native {OPEN} filename:ustring flags=how->flags "
              "mode=how->mode")
    has_names = probe_features().btf_args
    try:
        dynevents.define(tfs, "kprobe", native)
    except KernelRefused as e:
        assert not has_names, f"kernel claims BTF arg names but refused: {e.reason}"
        return
    try:
        path = str(tmp_path / f"nat-{uuid.uuid4().hex[:8]}")
        ours = []
        with Session() as s:
            s.add(f"p:{OPEN} filename how->flags how->mode", ours.append)
            s.add("t:kptestbtf:native", ours.append)
            s.start()
            _open_known(workload, path)
            s.run(duration=0)
        mine = [e for e in ours if e.probe.startswith("p_") and e.filename == path]
        theirs = [e for e in ours if e.probe == "native" and e.filename == path]
        assert len(mine) == 1 and len(theirs) == 1
        assert mine[0].how_flags == theirs[0].flags     # an arg, not the trace flags
        assert mine[0].how_mode == theirs[0].mode == 0o640
    finally:
        dynevents.delete(tfs, "kprobe", "kptestbtf", "native")


def test_info_function_and_struct(capsys):
    # the command's code in this process (a new interpreter costs seconds in the VM;
    # tests/host run the whole command)
    assert cli_main(["info", OPEN]) == 0
    out = capsys.readouterr().out
    assert f"{OPEN}(int dfd, const char" in out and "struct open_how *how" in out
    assert "probe: yes" in out
    assert cli_main(["info", "struct open_how"]) == 0
    out = capsys.readouterr().out
    lines = {ln.split()[-1]: ln.split()[0] for ln in out.splitlines()[2:-1]}
    assert lines == {"flags": "0", "mode": "8", "resolve": "16"}


def test_module_function_args_from_split_btf(tfs):
    """v9fs_vfs_lookup (module 9p, split BTF): the VM's root is the host's, over 9p
    (the tests may run from a copy on its tmpfs: ``kprobes vm --local``)."""
    if not os.path.exists("/sys/kernel/btf/9p"):
        pytest.fail("the VM's 9p module has no BTF (/sys/kernel/btf/9p)")
    name = f"kp-missing-{uuid.uuid4().hex[:8]}"
    got = []
    with Session() as s:
        s.add("p:v9fs_vfs_lookup dentry->d_name.name flags", got.append)
        s.start()
        # (not from this process: a session does not trace itself)
        r = subprocess.run(["stat", f"/{name}"],
                           capture_output=True)
        assert r.returncode != 0
        s.run(duration=0)
    assert [e for e in got if e.dentry_d_name_name == name]

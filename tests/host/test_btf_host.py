"""The BTF reader on this machine's /sys/kernel/btf/vmlinux, checked against bpftool."""

from __future__ import annotations

import os
import re
import shutil
import subprocess

import pytest

from kprobes.btf import BTF, compile_fetch
from kprobes.cli.info_btf import describe

VMLINUX = "/sys/kernel/btf/vmlinux"

pytestmark = pytest.mark.skipif(not os.path.exists(VMLINUX),
                                reason=f"{VMLINUX} missing: kernel built without BTF")


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory) -> str:
    return str(tmp_path_factory.mktemp("btfcache"))


@pytest.fixture(scope="module")
def btf(cache_dir) -> BTF:
    return BTF.load(VMLINUX, cache=cache_dir)


@pytest.fixture(scope="module")
def bpftool_raw() -> dict[int, tuple[str, str, list[tuple[str, int, int]]]]:
    """type id -> (kind, name, [(member, bits_offset, bitfield_size)]) from bpftool."""
    tool = shutil.which("bpftool")
    if tool is None:
        pytest.skip("bpftool not installed (apt-get install bpftool)")
    out = subprocess.run([tool, "btf", "dump", "file", VMLINUX, "format", "raw"],
                         capture_output=True, text=True, check=True).stdout
    types: dict[int, tuple[str, str, list[tuple[str, int, int]]]] = {}
    head = re.compile(r"^\[(\d+)\] (\w+) '([^']*)'")
    member = re.compile(r"^\t'([^']*)' type_id=\d+ bits_offset=(\d+)(?: bitfield_size=(\d+))?")
    cur: list[tuple[str, int, int]] = []
    for line in out.splitlines():
        m = head.match(line)
        if m:
            cur = []
            types[int(m.group(1))] = (m.group(2).lower(), m.group(3), cur)
            continue
        m = member.match(line)
        if m:
            cur.append((m.group(1), int(m.group(2)), int(m.group(3) or 0)))
    return types


def test_vfs_read_prototype(btf):
    sig = btf.func_proto("vfs_read")
    assert [p.name for p in sig.params] == ["file", "buf", "count", "pos"]
    names = [btf.type_name(p.type) for p in sig.params]
    assert names[0] == "struct file *"
    assert names[1] in ("char *", "char __user *")
    assert names[2:] == ["size_t", "loff_t *"]
    assert btf.type_name(sig.ret) == "ssize_t"
    ret = btf.resolve(sig.ret)
    assert (ret.kind, ret.size, ret.is_signed) == ("int", 8, True)
    count = btf.resolve(sig.params[2].type)
    assert (count.size, count.is_signed) == (8, False)


def test_every_type_matches_bpftool(btf, bpftool_raw):
    assert btf.last_id == max(bpftool_raw)
    mismatched = []
    for tid, (kind, name, members) in bpftool_raw.items():
        t = btf.type(tid)
        if t.kind != kind or (t.name or "(anon)") != name:
            mismatched.append((tid, t.kind, t.name, kind, name))
        elif members and t.kind in ("struct", "union"):
            ours = [(m.name or "(anon)", m.bit_offset, m.bitfield_size) for m in t.members]
            if ours != members:
                mismatched.append((tid, "members"))
    assert mismatched == []


def test_task_struct_pid_offset_matches_bpftool(btf, bpftool_raw):
    (task,) = btf.find("task_struct", "struct")
    ours = {m.name: m.bit_offset for m in task.members}
    theirs = {n: off for n, off, _ in bpftool_raw[task.id][2]}
    assert ours["pid"] == theirs["pid"] and ours["pid"] % 8 == 0
    assert ours["tgid"] == ours["pid"] + 32  # pid_t pid; pid_t tgid; adjacent in sched.h


def test_open_how_and_openat2_fetch_args(btf):
    (how,) = btf.find("open_how", "struct")
    assert [(m.name, m.bit_offset) for m in how.members] == [
        ("flags", 0), ("mode", 64), ("resolve", 128)]
    sig = btf.func_proto("do_sys_openat2")
    assert [p.name for p in sig.params] == ["dfd", "filename", "how"]
    assert compile_fetch(btf, sig, "dfd").arg == "%di:s32"
    fn = compile_fetch(btf, sig, "filename")
    assert fn.fetcharg == "+0(%si)" and fn.type in ("string", "ustring") and fn.is_string
    assert compile_fetch(btf, sig, "how->flags").arg == "+0(%dx):u64"
    assert compile_fetch(btf, sig, "how->mode").arg == "+8(%dx):u64"
    assert compile_fetch(btf, sig, "how->resolve").arg == "+16(%dx):u64"


def _offset(btf: BTF, struct: str, *path: str) -> int:
    from kprobes.btf.fetch import member_path

    t = btf.find(struct, "struct")[0]
    total = 0
    for name in path:
        bits, tid, _ = member_path(btf, btf.resolve(t), name)
        total += bits
        t = btf.type(tid)
    return total // 8


def test_vfs_read_dentry_name_path(btf, bpftool_raw):
    got = compile_fetch(btf, btf.func_proto("vfs_read"), "file->f_path.dentry->d_name.name")
    dentry_off = _offset(btf, "file", "f_path", "dentry")
    name_off = _offset(btf, "dentry", "d_name", "name")
    assert got.arg == f"+0(+{name_off}(+{dentry_off}(%di))):string"
    # cross-check the two leaf offsets with bpftool's numbers
    path_id = btf.find("path", "struct")[0].id
    assert dict((n, o) for n, o, _ in bpftool_raw[path_id][2])["dentry"] == 64
    qstr_id = btf.find("qstr", "struct")[0].id
    assert dict((n, o) for n, o, _ in bpftool_raw[qstr_id][2])["name"] == 64


def test_describe_on_the_real_kernel(btf):
    text = describe("vfs_read", btf)
    assert text.splitlines()[0].startswith("ssize_t vfs_read(struct file *file, char ")
    assert "%di" in text and "$retval" in text
    task = describe("struct task_struct", btf)
    pid = next(ln for ln in task.splitlines() if ln.endswith(" pid"))
    assert pid.split()[0] == str(_offset(btf, "task_struct", "pid"))


def test_warm_cache_gives_the_same_index(btf, cache_dir):
    assert os.listdir(cache_dir) == [btf.key + ".idx"]
    again = BTF.load(VMLINUX, cache=cache_dir)
    assert again.key == btf.key
    assert list(again._offsets) == list(btf._offsets)
    assert again.find("vfs_read", "func")[0].id == btf.find("vfs_read", "func")[0].id


def test_module_btf_is_split():
    mods = [m for m in os.listdir(os.path.dirname(VMLINUX)) if m != "vmlinux"]
    if not mods:
        pytest.skip("no module BTF under /sys/kernel/btf on this kernel")
    vm = BTF.for_kernel()
    mod = BTF.for_kernel(mods[0])
    assert mod.first_id == vm.last_id + 1
    for tid in range(mod.first_id, min(mod.last_id, mod.first_id + 200) + 1):
        mod.type_name(tid)

"""BTF API on a crafted kernel-like blob: fetch-arg compiler, describe, index cache."""

from __future__ import annotations

import os

import pytest

from kprobes.btf import BTF, compile_fetch
from kprobes.btf import index as btf_index
from kprobes.btf.build import Builder
from kprobes.cli.info_btf import describe
from kprobes.errors import BTFError, SpecError


def kernel_like(user_tags: bool = True) -> tuple[bytes, dict[str, int]]:
    b = Builder()
    ids: dict[str, int] = {}
    i = ids["int"] = b.int("int", 4, signed=True)
    uint = b.int("unsigned int", 4)
    long_ = b.int("long", 8, signed=True)
    ulong = b.int("long unsigned int", 8)
    u64 = b.typedef("__u64", b.int("long long unsigned int", 8))
    char = b.int("char", 1, signed=True, char=True)
    uchar = b.int("unsigned char", 1)
    u8 = b.typedef("u8", uchar)
    ssize_t = b.typedef("ssize_t", long_)
    size_t = b.typedef("size_t", ulong)
    cchar = b.const(char)
    ufilename = b.ptr(b.type_tag("user", cchar) if user_tags else cchar)
    ubuf = b.ptr(b.type_tag("user", char) if user_tags else char)
    how = ids["open_how"] = b.struct("open_how", 24, [("flags", u64, 0), ("mode", u64, 64),
                                                      ("resolve", u64, 128)])
    qstr = b.struct("qstr", 16, [("hash", uint, 0), ("len", uint, 32),
                                 ("name", b.ptr(b.const(uchar)), 64)])
    dentry = b.struct("dentry", 64, [("d_flags", uint, 0), ("d_name", qstr, 256)])
    path = b.struct("path", 16, [("mnt", b.ptr(i), 0), ("dentry", b.ptr(dentry), 64)])
    mode = b.enum("fmode", 4, [("FMODE_READ", 1), ("FMODE_WRITE", 2)])
    anon_union = b.union("", 16, [("f_path", path, 0), ("f_raw", b.array(u8, i, 16), 0)])
    file_ = ids["file"] = b.struct("file", 96, [
        ("f_lock", i, 0),
        ("f_mode", mode, 32),
        ("", anon_union, 64),
        ("f_pos", long_, 192),
        ("f_ro", uint, 256, 1),
        ("f_kind", uint, 257, 4),
        ("f_comm", b.array(char, i, 16), 320),
        ("f_words", b.array(uint, i, 4), 448),
        ("f_tail", b.array(uint, i, 0), 576),
    ])
    file_ptr = b.ptr(file_)
    b.func("vfs_read", b.func_proto(ssize_t, [("file", file_ptr), ("buf", ubuf),
                                              ("count", size_t), ("pos", b.ptr(long_))]))
    b.func("do_sys_openat2", b.func_proto(i, [("dfd", i), ("filename", ufilename),
                                               ("how", b.ptr(how))]))
    b.func("many", b.func_proto(b.ptr(file_), [(f"a{n}", long_) for n in range(8)]))
    pair = b.struct("pair", 16, [("lo", uint, 0), ("hi", uint, 32), ("p", file_ptr, 64)])
    big = b.struct("big", 32, [("x", long_, 0), ("y", long_, 192)])
    b.func("byval", b.func_proto(0,
                                 [("a", i), ("pr", pair), ("bg", big), ("z", i)]))
    usock = b.struct("sockaddr", 16, [("sa_family", b.int("short unsigned int", 2), 0),
                                      ("sa_data", b.array(char, i, 14), 16)])
    b.func("do_bind", b.func_proto(i, [("fd", i),
                                       ("uaddr", b.ptr(b.type_tag("user", usock)))]))
    return b.build(), ids


@pytest.fixture(scope="module")
def btf() -> BTF:
    return BTF.from_bytes(kernel_like()[0])


def plan(btf: BTF, func: str, expr: str, **kw) -> str:
    return compile_fetch(btf, btf.func_proto(func), expr, **kw).arg


def test_params_in_registers_and_user_strings(btf):
    sig = btf.func_proto("do_sys_openat2")
    dfd = compile_fetch(btf, sig, "dfd")
    assert (dfd.fetcharg, dfd.type, dfd.ctype) == ("%di", "s32", "int")
    fn = compile_fetch(btf, sig, "filename")
    assert (fn.fetcharg, fn.type, fn.is_string, fn.is_user) == ("+0(%si)", "ustring", True, True)
    assert fn.ctype == "const char __user *"
    assert plan(btf, "do_sys_openat2", "how->flags") == "+0(%dx):u64"
    assert plan(btf, "do_sys_openat2", "how->mode") == "+8(%dx):u64"
    assert plan(btf, "do_sys_openat2", "$arg3") == "%dx:x64"


def test_untagged_char_pointer_is_a_kernel_string():
    btf = BTF.from_bytes(kernel_like(user_tags=False)[0])
    fn = compile_fetch(btf, btf.func_proto("do_sys_openat2"), "filename")
    assert (fn.arg, fn.is_user) == ("+0(%si):string", False)


def test_nested_path_offsets(btf):
    # file->(anon union at 8).f_path(+0).dentry(+8) ; dentry->d_name(+32).name(+8)
    assert plan(btf, "vfs_read", "file->f_path.dentry->d_name.name") == \
        "+0(+40(+16(%di))):string"
    assert plan(btf, "vfs_read", "file->f_path.dentry->d_name.len") == "+36(+16(%di)):u32"
    assert plan(btf, "vfs_read", "file->f_pos") == "+24(%di):s64"
    assert plan(btf, "vfs_read", "count") == "%dx:u64"
    assert plan(btf, "vfs_read", "pos") == "%cx:x64"
    assert plan(btf, "vfs_read", "$retval", retval=True) == "%ax:s64"


def test_bitfields_enums_arrays(btf):
    assert plan(btf, "vfs_read", "file->f_ro") == "+32(%di):b1@0/8"
    assert plan(btf, "vfs_read", "file->f_kind") == "+32(%di):b4@1/8"
    mode = compile_fetch(btf, btf.func_proto("vfs_read"), "file->f_mode")
    assert (mode.arg, mode.enum) == ("+4(%di):u32", {1: "FMODE_READ", 2: "FMODE_WRITE"})
    assert plan(btf, "vfs_read", "file->f_comm") == "+40(%di):string"
    assert plan(btf, "vfs_read", "file->f_words") == "+56(%di):u32[4]"
    assert plan(btf, "vfs_read", "file->f_words[2]") == "+64(%di):u32"
    assert plan(btf, "vfs_read", "file->f_tail[3]") == "+84(%di):u32"
    assert plan(btf, "vfs_read", "file->f_raw") == "+8(%di):u8[16]"  # u8 is bytes, not text
    assert plan(btf, "vfs_read", "pos[1]") == "+8(%cx):s64"


def test_user_struct_memory_uses_u_prefix(btf):
    fam = compile_fetch(btf, btf.func_proto("do_bind"), "uaddr->sa_family")
    assert (fam.arg, fam.is_user) == ("+u0(%si):u16", True)
    assert plan(btf, "do_bind", "uaddr->sa_data") == "+u2(%si):ustring"


def test_stack_args_and_by_value_structs(btf):
    assert plan(btf, "many", "a5") == "%r9:s64"
    assert plan(btf, "many", "a6") == "$stack1:s64"
    assert plan(btf, "many", "a7") == "$stack2:s64"
    assert plan(btf, "many", "a7", arch="arm64") == "%x7:s64"
    # pair (16 bytes) takes %si+%dx; big (32 bytes) goes to the stack; z gets %cx
    assert plan(btf, "byval", "pr.lo") == "%si:u32"
    assert plan(btf, "byval", "pr.hi") == "%si:b32@32/64"
    assert plan(btf, "byval", "pr.p->f_pos") == "+24(%dx):s64"
    assert plan(btf, "byval", "bg.y") == "+32($stack):s64"
    assert plan(btf, "byval", "z") == "%cx:s32"
    assert plan(btf, "many", "$retval->f_pos", retval=True) == "+24(%ax):s64"


@pytest.mark.parametrize("func, expr, kw, message", [
    ("do_sys_openat2", "flags", {}, r"no parameter 'flags'; its parameters are: dfd, filename, how"),
    ("do_sys_openat2", "how->flag", {}, r"no member 'flag'.*flags, mode, resolve"),
    ("vfs_read", "file->nope", {}, r"f_lock, f_mode, f_path, f_raw, f_pos"),
    ("do_sys_openat2", "how.flags", {}, r"use 'how->flags'"),
    ("do_sys_openat2", "dfd->x", {}, r"not a pointer"),
    ("do_sys_openat2", "$retval", {}, r"only available in a return probe"),
    ("do_sys_openat2", "dfd", {"retval": True}, r"not available in a return probe"),
    ("do_sys_openat2", "$arg9", {}, r"no \$arg9"),
    ("vfs_read", "file", {"arch": "sparc"}, r"unknown architecture"),
    ("vfs_read", "file->f_path", {}, r"pick a member: mnt, dentry"),
    ("vfs_read", "file->f_words[4]", {}, r"out of range"),
    ("vfs_read", "file->f_tail", {}, r"flexible array"),
])
def test_errors_name_what_exists(btf, func, expr, kw, message):
    with pytest.raises(BTFError, match=message):
        compile_fetch(btf, btf.func_proto(func), expr, **kw)


@pytest.mark.parametrize("expr, column", [("how->", 5), ("how-flags", 3), ("how[x]", 4),
                                           ("->x", 0), ("how flags", 4)])
def test_syntax_errors_point_at_the_column(btf, expr, column):
    with pytest.raises(SpecError) as e:
        compile_fetch(btf, btf.func_proto("do_sys_openat2"), expr)
    assert e.value.column == column


def test_describe_function(btf):
    text = describe("vfs_read", btf)
    assert text.splitlines()[0] == ("ssize_t vfs_read(struct file *file, char __user *buf, "
                                    "size_t count, long *pos)")
    rows = {ln.split()[0]: ln.split()[1:3] for ln in text.splitlines()[2:]}
    assert rows == {"file": ["%di", "x64"], "buf": ["%si", "ustring"], "count": ["%dx", "u64"],
                    "pos": ["%cx", "x64"], "$retval": ["%ax", "s64"]}
    assert describe("kprobe:vfs_read", btf) == text


def test_describe_struct_flattens_anonymous_members(btf):
    text = describe("struct file", btf)
    lines = text.splitlines()
    assert lines[0] == "struct file {  /* size: 96, members: 9 */"
    assert any(ln.split()[:2] == ["8", "16"] and ln.split()[2] == "union" for ln in lines)
    f_path = next(ln for ln in lines if ln.endswith(" f_path"))
    assert f_path.split()[:4] == ["8", "16", "struct", "path"]
    assert next(ln for ln in lines if "f_kind" in ln).split()[0] == "32:1"
    assert next(ln for ln in lines if "f_kind" in ln).split()[-1] == "f_kind:4"
    assert describe("file", btf) == text  # bare name falls back to the struct


def test_describe_enum_typedef_and_unknown(btf):
    assert describe("enum fmode", btf).splitlines()[1:3] == ["  FMODE_READ = 1,",
                                                             "  FMODE_WRITE = 2,"]
    assert describe("typedef size_t", btf).startswith("typedef long unsigned int size_t;")
    with pytest.raises(BTFError, match="no function, struct"):
        describe("nothing_here", btf)
    with pytest.raises(BTFError, match="no struct 'nothing'"):
        describe("struct nothing", btf)


def test_index_cache_roundtrip(tmp_path, monkeypatch):
    data, ids = kernel_like()
    path = tmp_path / "vmlinux"
    path.write_bytes(data)
    cache = str(tmp_path / "cache")
    first = BTF.load(str(path), cache=cache)
    files = os.listdir(cache)
    assert files == [first.key + ".idx"]

    def no_scan(*a, **k):
        raise AssertionError("index should come from the cache")

    monkeypatch.setattr(btf_index, "scan", no_scan)
    second = BTF.load(str(path), cache=cache)
    assert second.find("open_how", "struct")[0].id == ids["open_how"]
    assert list(second._offsets) == list(first._offsets)
    monkeypatch.undo()
    # corrupt cache file: rebuilt silently
    (tmp_path / "cache" / files[0]).write_bytes(b"garbage")
    third = BTF.load(str(path), cache=cache)
    assert third.func_proto("vfs_read").params[0].name == "file"
    assert (tmp_path / "cache" / files[0]).read_bytes().startswith(b"KPBTFIX1")
    # different bytes -> different key, and no cache when asked not to
    path.write_bytes(kernel_like(user_tags=False)[0])
    assert BTF.load(str(path), cache=cache).key != first.key
    assert BTF.load(str(path), cache=False).key is None


def test_unwritable_cache_dir_is_not_an_error(tmp_path):
    data, _ = kernel_like()
    path = tmp_path / "vmlinux"
    path.write_bytes(data)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    btf = BTF.load(str(path), cache=str(blocker / "sub"))
    assert btf.find("file", "struct")


def test_missing_file():
    with pytest.raises(BTFError, match="no BTF at"):
        BTF.load("/nonexistent/btf", cache=False)

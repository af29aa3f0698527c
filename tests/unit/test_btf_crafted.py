"""The BTF reader on crafted blobs: every kind, split BTF, malformed input."""

from __future__ import annotations

import random
import struct

import pytest

from kprobes.btf import BTF
from kprobes.btf.build import Builder
from kprobes.errors import BTFError


def every_kind() -> tuple[Builder, dict[str, int]]:
    b = Builder()
    ids: dict[str, int] = {}
    ids["int"] = b.int("int", 4, signed=True)
    ids["uchar"] = b.int("unsigned char", 1, char=True)
    ids["bool"] = b.int("_Bool", 1, bool_=True)
    ids["char"] = b.int("char", 1, signed=True, char=True)
    ids["ptr"] = b.ptr(ids["int"])
    ids["array"] = b.array(ids["uchar"], ids["int"], 16)
    ids["fwd_struct"] = b.fwd("later")
    ids["fwd_union"] = b.fwd("ulater", union=True)
    ids["typedef"] = b.typedef("u8", ids["uchar"])
    ids["volatile"] = b.volatile(ids["int"])
    ids["const"] = b.const(ids["char"])
    ids["restrict"] = b.restrict(ids["ptr"])
    ids["enum"] = b.enum("color", 4, [("RED", 0), ("BLUE", -2)], signed=True)
    ids["uenum"] = b.enum("flag", 4, [("BIG", 0xFFFFFFFF)])
    ids["enum64"] = b.enum64("big", 8, [("HUGE", 1 << 40), ("NEG", -1)], signed=True)
    ids["float"] = b.float("double", 8)
    ids["struct"] = b.struct("pair", 8, [("a", ids["int"], 0), ("b", ids["int"], 32)])
    ids["bits"] = b.struct("bits", 4, [("lo", ids["int"], 0, 3), ("hi", ids["int"], 3, 29)])
    ids["union"] = b.union("either", 4, [("i", ids["int"], 0), ("c", ids["char"], 0)])
    ids["proto"] = b.func_proto(ids["int"], [("x", ids["int"]), ("s", b.ptr(ids["const"]))])
    ids["vproto"] = b.func_proto(ids["int"], [("fmt", b.ptr(ids["const"]))], variadic=True)
    ids["func"] = b.func("f", ids["proto"], linkage=1)
    ids["vfunc"] = b.func("printf_like", ids["vproto"], linkage=2)
    ids["var"] = b.var("counter", ids["int"], linkage=1)
    ids["datasec"] = b.datasec(".data", 4, [(ids["var"], 0, 4)])
    ids["decl_tag"] = b.decl_tag("kfunc", ids["func"], component_idx=-1)
    ids["decl_tag0"] = b.decl_tag("nonnull", ids["func"], component_idx=0)
    ids["type_tag"] = b.type_tag("user", ids["char"])
    ids["uptr"] = b.ptr(ids["type_tag"])
    return b, ids


@pytest.fixture(params=[False, True], ids=["le", "be"])
def blob(request) -> tuple[BTF, dict[str, int]]:
    b, ids = every_kind()
    return BTF.from_bytes(b.build(big_endian=request.param)), ids


def test_every_kind_decodes(blob):
    btf, ids = blob
    t = btf.type
    assert btf.byteorder in "<>"
    assert (t(ids["int"]).kind, t(ids["int"]).size, t(ids["int"]).bits) == ("int", 4, 32)
    assert t(ids["int"]).is_signed and not t(ids["uchar"]).is_signed
    assert t(ids["bool"]).encoding == 4
    assert t(ids["ptr"]).ref == t(ids["int"])
    a = t(ids["array"])
    assert (a.kind, a.type_id, a.index_type_id, a.nelems) == ("array", ids["uchar"], ids["int"], 16)
    assert (t(ids["fwd_struct"]).kind_flag, t(ids["fwd_union"]).kind_flag) == (False, True)
    assert t(ids["typedef"]).name == "u8"
    for k in ("volatile", "const", "restrict"):
        assert t(ids[k]).kind == k
    assert [(v.name, v.value) for v in t(ids["enum"]).values] == [("RED", 0), ("BLUE", -2)]
    assert t(ids["uenum"]).values[0].value == 0xFFFFFFFF and not t(ids["uenum"]).is_signed
    assert [(v.name, v.value) for v in t(ids["enum64"]).values] == [("HUGE", 1 << 40), ("NEG", -1)]
    assert (t(ids["float"]).kind, t(ids["float"]).size) == ("float", 8)
    s = t(ids["struct"])
    assert [(m.name, m.bit_offset, m.bitfield_size) for m in s.members] == [("a", 0, 0), ("b", 32, 0)]
    bits = t(ids["bits"])
    assert bits.kind_flag
    assert [(m.name, m.bit_offset, m.bitfield_size) for m in bits.members] == [("lo", 0, 3), ("hi", 3, 29)]
    assert t(ids["union"]).kind == "union" and t(ids["union"]).member("c").type.name == "char"
    p = t(ids["proto"])
    assert [(m.name, m.type_id) for m in p.params][0] == ("x", ids["int"]) and not p.variadic
    assert t(ids["vproto"]).variadic and len(t(ids["vproto"]).params) == 1
    assert (t(ids["func"]).linkage, t(ids["vfunc"]).linkage) == ("global", "extern")
    assert (t(ids["var"]).name, t(ids["var"]).linkage) == ("counter", "global")
    ds = t(ids["datasec"])
    assert (ds.name, ds.size, [(v.type_id, v.offset, v.size) for v in ds.vars]) == (
        ".data", 4, [(ids["var"], 0, 4)])
    assert (t(ids["decl_tag"]).component_idx, t(ids["decl_tag0"]).component_idx) == (-1, 0)
    assert t(ids["type_tag"]).name == "user"
    assert btf.is_user_pointer(ids["uptr"]) and not btf.is_user_pointer(ids["ptr"])
    assert t(0).kind == "void"
    assert btf.last_id == ids["uptr"]


def test_c_spelling(blob):
    btf, ids = blob
    n = btf.type_name
    assert n(ids["ptr"]) == "int *"
    assert n(ids["array"]) == "unsigned char[16]"
    assert n(ids["fwd_union"]) == "union ulater"
    assert n(ids["const"]) == "const char"
    assert n(ids["restrict"]) == "int *restrict"
    assert n(ids["enum64"]) == "enum big"
    assert n(ids["uptr"]) == "char __user *"
    assert n(ids["func"]) == "int f(int x, const char *s)"
    assert n(ids["vfunc"]) == "int printf_like(const char *fmt, ...)"
    assert btf.declaration(ids["array"], "buf") == "unsigned char buf[16]"


def test_find_and_kinds(blob):
    btf, ids = blob
    assert [t.id for t in btf.find("f")] == [ids["func"]]
    assert btf.find("f", "struct") == []
    assert [t.id for t in btf.find("big", "enum")] == [ids["enum64"]]
    assert [t.id for t in btf.find("color", "enum")] == [ids["enum"]]
    assert btf.find("no_such_name") == []
    with pytest.raises(BTFError, match="unknown BTF kind"):
        btf.find("f", "structure")
    sig = btf.func_proto("f")
    assert [p.name for p in sig.params] == ["x", "s"] and sig.ret.name == "int"


def test_duplicate_names_in_undeduplicated_strings():
    # two copies of the string "dup": both types must be found
    b = Builder()
    i = b.int("int", 4)
    b._strs += b"dup\0"  # a second, non-deduplicated copy
    second = len(b._strs) - 4
    b.typedef("dup", i)
    b.raw(second, 8 << 24, i)  # typedef with the second copy's offset
    btf = BTF.from_bytes(b.build())
    assert [t.id for t in btf.find("dup")] == [2, 3]


def test_split_btf_continues_ids_and_strings():
    base = Builder()
    i = base.int("int", 4, signed=True)
    file_ = base.struct("file", 8, [("f_pos", i, 0)])
    split = Builder(base=base)
    mod_struct = split.struct("mod_ctx", 16, [("f", split.ptr(file_), 0), ("n", i, 64)])
    fn = split.func("mod_open", split.func_proto(i, [("ctx", split.ptr(mod_struct))]))
    split.typedef("int", i)  # a split type whose name lives in the base strings
    vm = BTF.from_bytes(base.build())
    mod = BTF.from_bytes(split.build(), base=vm)
    assert mod.first_id == vm.last_id + 1 == 3
    assert mod.type(mod_struct).name == "mod_ctx"
    assert mod.type(file_) is vm.type(file_)
    assert mod.type(mod_struct).members[0].type.ref.name == "file"
    assert [t.id for t in mod.find("int")] == [i, mod.last_id]
    assert mod.find("file", "struct")[0].id == file_
    sig = mod.func_proto("mod_open")
    assert sig.func.id == fn and mod.type_name(sig.params[0].type) == "struct mod_ctx *"
    with pytest.raises(BTFError, match="out of range"):
        mod.type(mod.last_id + 1)


def _header(data: bytes, **fields) -> bytes:
    names = ["magic", "version", "flags", "hdr_len", "type_off", "type_len", "str_off", "str_len"]
    vals = dict(zip(names, struct.unpack_from("<HBBIIIII", data), strict=True))
    vals.update(fields)
    return struct.pack("<HBBIIIII", *(vals[n] for n in names)) + data[24:]


def good() -> bytes:
    return every_kind()[0].build()


@pytest.mark.parametrize("data, message", [
    (b"", "too short"),
    (b"\x9f\xeb\x01", "too short"),
    (b"\x00" * 40, "bad magic"),
    (_header(good(), version=2), "unsupported BTF version 2"),
    (_header(good(), hdr_len=8), "bad header length 8"),
    (_header(good(), hdr_len=1 << 20), "past the end"),
    (good()[:-10], "truncated"),
    (_header(good(), type_len=6), "multiple of 4"),
    (_header(good(), str_len=1 << 30), "runs past the end"),
])
def test_malformed_headers(data, message):
    with pytest.raises(BTFError, match=message):
        BTF.from_bytes(data)


def test_string_section_must_end_with_nul():
    data = good()
    with pytest.raises(BTFError, match="NUL"):
        BTF.from_bytes(data[:-1] + b"x")


def test_unknown_kind_and_overrun():
    b = Builder()
    b.int("int", 4)
    b.raw(0, 25 << 24, 0)
    with pytest.raises(BTFError, match="unknown kind 25"):
        BTF.from_bytes(b.build())
    b = Builder()
    b.int("int", 4)
    b.raw(0, (4 << 24) | 50, 8)  # struct claiming 50 members, none present
    with pytest.raises(BTFError, match="type id 2 .* runs past the end"):
        BTF.from_bytes(b.build())


def test_bad_references_fail_on_use():
    b = Builder()
    p = b.ptr(999)
    bad_name = b.raw(1 << 20, 1 << 24, 4, 32)  # int with a name offset outside the strings
    btf = BTF.from_bytes(b.build())
    assert btf.type(p).type_id == 999
    with pytest.raises(BTFError, match="type id 999 is out of range"):
        _ = btf.type(p).ref
    with pytest.raises(BTFError, match="type id 999"):
        btf.type_name(p)
    with pytest.raises(BTFError, match="string offset"):
        btf.type(bad_name)
    with pytest.raises(BTFError, match="out of range"):
        btf.type(-1)


def test_reference_cycles_raise():
    b = Builder()
    a_id = b.next_id
    b.typedef("A", a_id + 1)
    b.typedef("B", a_id)
    loop_ptr = b.ptr(b.next_id)  # points at itself
    s_id = b.next_id
    b.struct("", 8, [("", s_id, 0)])  # anonymous struct containing itself
    btf = BTF.from_bytes(b.build())
    with pytest.raises(BTFError, match="cycle"):
        btf.resolve(a_id)
    with pytest.raises(BTFError, match="cycle"):
        btf.type_name(loop_ptr)
    with pytest.raises(BTFError, match="cycle|deep"):
        btf.sizeof(a_id)
    from kprobes.btf.fetch import member_names, member_path

    with pytest.raises(BTFError, match="nested too deep"):
        member_path(btf, btf.type(s_id), "x")
    with pytest.raises(BTFError, match="nested too deep"):
        member_names(btf, btf.type(s_id))


def _exercise(btf: BTF) -> None:
    for tid in range(1, btf.last_id + 1):
        t = btf.type(tid)
        btf.type_name(t)
        btf.resolve(t)
        for m in t.members or ():
            btf.type_name(m.type_id)


def test_fuzz_truncation_and_bitflips_only_raise_btferror():
    data = good()
    for cut in range(len(data)):
        try:
            _exercise(BTF.from_bytes(data[:cut]))
        except BTFError:
            pass
    rng = random.Random(1234)
    for _ in range(400):
        mutated = bytearray(data)
        for _ in range(rng.randint(1, 4)):
            mutated[rng.randrange(len(mutated))] = rng.randrange(256)
        try:
            _exercise(BTF.from_bytes(bytes(mutated)))
        except BTFError:
            pass

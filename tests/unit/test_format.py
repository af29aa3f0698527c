"""Event format parsing and record decoding, against format files recorded on a
6.18 x86-64 host (tests/data/formats) and payloads built here byte by byte."""

from __future__ import annotations

import json
import pickle
import struct
import sys
from pathlib import Path

import pytest

from kprobes.decode import (
    FAULT,
    EventFormat,
    Fault,
    PageDecoder,
    RecordDecoder,
    TraceFlag,
    common_type,
    flags_text,
    in_irq,
    in_nmi,
    in_softirq,
    irqs_off,
    need_resched,
    parse_field_line,
    parse_format,
)
from kprobes.decode.format import declared_int
from kprobes.errors import DecodeError

DATA = Path(__file__).resolve().parent.parent / "data"
FORMATS = DATA / "formats"
ALL_FORMATS = sorted(FORMATS.glob("*.format"))


def load(name: str, system: str = "test") -> EventFormat:
    return parse_format((FORMATS / f"{name}.format").read_text(), system)


def build(fmt: EventFormat, values: dict[str, object], *, flags: int = 0, pc: int = 0,
          pid: int = 4242, tail: int = 0) -> bytes:
    """A payload for ``fmt``: ints, bytes for char arrays, lists for arrays,
    bytes (stored with a NUL) or None (a fault) for __data_loc strings,
    lists of those for string arrays. Dynamic data goes after the fields."""
    fixed = max(f.offset + f.size for f in fmt.fields)
    buf = bytearray(fixed)
    dyn = bytearray()
    order = sys.byteorder

    def put(off: int, size: int, v: int, signed: bool) -> None:
        buf[off:off + size] = v.to_bytes(size, order, signed=signed)

    def loc(data: bytes | None) -> int:
        if data is None:
            return fixed + len(dyn)  # length 0: the kernel's fetch fault
        start = fixed + len(dyn)
        dyn.extend(data)
        return (len(data) << 16) | start

    common = {"common_type": fmt.id, "common_flags": flags, "common_preempt_count": pc,
              "common_pid": pid}
    for f in fmt.fields:
        v = common.get(f.name, values.get(f.name, 0))
        if f.kind == "int":
            put(f.offset, f.size, v, f.signed)  # type: ignore[arg-type]
        elif f.kind == "char_array":
            raw = bytes(v) if v else b""  # type: ignore[arg-type]
            buf[f.offset:f.offset + f.size] = raw.ljust(f.size, b"\0")[:f.size]
        elif f.kind == "array":
            for i, e in enumerate(v or []):  # type: ignore[arg-type]
                put(f.offset + i * f.elem_size, f.elem_size, e, f.signed)
        else:  # data_loc
            items = v if isinstance(v, list) else [v]
            for i, item in enumerate(items):
                data = None if item is None else (item if isinstance(item, bytes)
                                                  else bytes(item))  # type: ignore[arg-type]
                put(f.offset + 4 * i, 4, loc(data), False)
    return bytes(buf + dyn) + bytes(tail)


# --------------------------------------------------------------------------
# parsing the recorded files


@pytest.mark.parametrize("path", ALL_FORMATS, ids=lambda p: p.stem)
def test_every_recorded_format_parses(path: Path) -> None:
    fmt = parse_format(path.read_text(), "sys")
    assert fmt.system == "sys"
    assert fmt.id > 0
    assert [(f.name, f.offset, f.size, f.signed) for f in fmt.common_fields] == [
        ("common_type", 0, 2, False), ("common_flags", 2, 1, False),
        ("common_preempt_count", 3, 1, False), ("common_pid", 4, 4, True)]
    assert fmt.arg_fields and all(not f.is_common for f in fmt.arg_fields)
    assert fmt.common_fields + fmt.arg_fields == fmt.fields
    ends = [f.offset + f.size for f in fmt.fields]
    assert all(f.offset >= e for f, e in zip(fmt.fields[1:], ends, strict=False))
    RecordDecoder(fmt)  # compiles


def test_uprobe_integer_types() -> None:
    fmt = load("uprobe_ints")
    assert (fmt.name, fmt.id) == ("ints", 2326)
    got = [(f.name, f.decl, f.offset, f.size, f.signed, f.kind) for f in fmt.arg_fields]
    assert got == [
        ("__probe_ip", "unsigned long", 8, 8, False, "int"),
        ("s8v", "s8", 16, 1, True, "int"), ("s16v", "s16", 17, 2, True, "int"),
        ("s32v", "s32", 19, 4, True, "int"), ("s64v", "s64", 23, 8, True, "int"),
        ("u8v", "u8", 31, 1, False, "int"), ("u16v", "u16", 32, 2, False, "int"),
        ("u32v", "u32", 34, 4, False, "int"), ("u64v", "u64", 38, 8, False, "int"),
        # x-types look like u-types in the format; hex comes from the probe definition
        ("x8v", "u8", 46, 1, False, "int"), ("x16v", "u16", 47, 2, False, "int"),
        ("x32v", "u32", 49, 4, False, "int"), ("x64v", "u64", 53, 8, False, "int"),
        ("dflt", "u64", 61, 8, False, "int"),
    ]
    assert "print fmt" not in fmt.print_fmt and fmt.print_fmt.startswith('"(%lx) s8v=%d')


def test_uprobe_arrays_have_empty_brackets_and_total_size() -> None:
    fmt = load("uprobe_arrays")
    got = {f.name: (f.decl, f.kind, f.size, f.elem_size, f.count, f.signed)
           for f in fmt.arg_fields}
    assert got["a8"] == ("u8[]", "array", 4, 1, 4, False)
    assert got["s32a"] == ("s32[]", "array", 12, 4, 3, True)
    assert got["x64a"] == ("u64[]", "array", 16, 8, 2, False)
    assert got["chars"] == ("u8[]", "array", 8, 1, 8, False)  # char[8] in the definition


def test_uprobe_strings_and_string_array() -> None:
    fmt = load("uprobe_strs")
    for name in ("s", "us", "comm", "imm"):
        f = fmt.field(name)
        assert (f.kind, f.decl, f.size, f.count, f.is_string) == (
            "data_loc", "__data_loc char[]", 4, None, True)
    assert fmt.field("ch").kind == "int" and fmt.field("ch").size == 1
    sa = load("uprobe_strarr").field("sa")
    assert (sa.kind, sa.decl, sa.size, sa.count, sa.is_string) == (
        "data_loc", "__data_loc char[][2]", 8, 2, True)


def test_tracepoint_field_kinds() -> None:
    sw = load("sched_sched_switch")
    assert sw.field("prev_comm").kind == "char_array"
    assert (sw.field("prev_comm").count, sw.field("prev_comm").decl) == (16, "char[16]")
    assert (sw.field("prev_state").size, sw.field("prev_state").signed) == (8, True)
    # the size is what counts, not the declared type
    assert load("syscalls_sys_enter_openat").field("dfd").size == 8
    buf = load("ftrace_print").field("buf")
    assert (buf.kind, buf.size, buf.count) == ("char_array", 0, None)
    dma = load("dma_dma_map_sg")
    assert (dma.field("phys_addrs").elem_size, dma.field("lengths").elem_size) == (8, 4)
    assert not dma.field("phys_addrs").is_string and dma.field("device").is_string
    mem = load("sock_sock_exceed_buf_limit").field("sysctl_mem")
    assert (mem.kind, mem.elem_size, mem.count, mem.signed) == ("array", 8, 3, True)
    stack = load("ftrace_kernel_stack").field("caller")
    assert (stack.decl, stack.count, stack.elem_size) == ("unsigned long[8]", 8, 8)


def test_field_lookup() -> None:
    fmt = load("sched_sched_process_exec")
    assert fmt.field("pid").offset == 12
    with pytest.raises(KeyError, match="no field 'nope'"):
        fmt.field("nope")


def test_header_page_lines_parse() -> None:
    f = parse_field_line("\tfield: local_t commit;\toffset:8;\tsize:8;\tsigned:1;")
    assert (f.name, f.decl, f.offset, f.size, f.signed) == ("commit", "local_t", 8, 8, True)
    old = parse_field_line("\tfield:int x;\toffset:8;\tsize:4;")  # no signed: (old kernels)
    assert old.signed is False


GOOD = ("name: e\nID: 7\nformat:\n"
        "\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;\n"
        "\tfield:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;\n"
        "\tfield:unsigned char common_preempt_count;\toffset:3;\tsize:1;\tsigned:0;\n"
        "\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;\n\n"
        "{extra}\nprint fmt: \"x\"\n")


ONE_ARG = GOOD.format(extra="\tfield:int a;\toffset:8;\tsize:4;\tsigned:1;")


@pytest.mark.parametrize("text, message", [
    (ONE_ARG.replace("name: e\n", ""), "no 'name:'"),
    (ONE_ARG.replace("ID: 7\n", ""), "no 'ID:'"),
    (ONE_ARG.replace("ID: 7", "ID: seven"), "bad ID"),
    (ONE_ARG.replace("format:\n", ""), "unexpected"),
    (GOOD.format(extra="\tfield:int a;\toffset:8;\tsize:4;\tsigned:1;\n"
                       "\tfield:int a;\toffset:12;\tsize:4;\tsigned:1;"), "appears twice"),
    (GOOD.format(extra="\tfield:int a;\toffset:x;\tsize:4;\tsigned:1;"), "malformed field"),
    (GOOD.format(extra="\tfield:int a\toffset:8;\tsize:4;\tsigned:1;"), "malformed field"),
    (GOOD.format(extra="\tfield:__data_loc char[] s;\toffset:8;\tsize:8;\tsigned:1;"),
     "__data_loc of size 8"),
    (GOOD.format(extra="\tgarbage"), "expected a field"),
    ("name: e\nID: 1\nformat:\nprint fmt: \"\"\n", "no fields"),
    ("", "no 'name:'"),
])
def test_malformed_formats(text: str, message: str) -> None:
    with pytest.raises(DecodeError, match=message):
        parse_format(text)


def test_good_template_parses() -> None:
    fmt = parse_format(ONE_ARG)
    assert (fmt.name, fmt.id, fmt.print_fmt, fmt.system) == ("e", 7, '"x"', "")


# --------------------------------------------------------------------------
# decoding crafted payloads


def test_decode_integers_signed_per_format() -> None:
    fmt = load("uprobe_ints")
    vals = {"__probe_ip": 0x401000, "s8v": -1, "s16v": -300, "s32v": -5, "s64v": -(2 ** 40),
            "u8v": 255, "u16v": 65535, "u32v": 2 ** 32 - 1, "u64v": 2 ** 64 - 1,
            "x8v": 0xAB, "x16v": 0xBEEF, "x32v": 0xDEADBEEF, "x64v": 0xFFFF_8000_0000_1234,
            "dflt": 7}
    types = {"s8v": "s8", "s16v": "s16", "s32v": "s32", "s64v": "s64", "x8v": "x8",
             "x16v": "x16", "x32v": "x32", "x64v": "x64"}
    dec = RecordDecoder(fmt, types)
    payload = build(fmt, vals, flags=0x09, pc=0x21, pid=31337)
    assert dec.decode(payload) == (0x09, 0x21, 31337, vals)
    assert list(dec.decode(payload)[3]) == [f.name for f in fmt.arg_fields]
    assert dec.hex_fields == {"x8v", "x16v", "x32v", "x64v"}
    assert dec.symbol_fields == frozenset()
    assert dec.names == tuple(f.name for f in fmt.arg_fields)


def test_decode_at_offset_in_a_larger_buffer_and_memoryview() -> None:
    fmt = load("syscalls_sys_exit_getppid")
    dec = RecordDecoder(fmt)
    p1 = build(fmt, {"__syscall_nr": 110, "ret": -14}, pid=1)
    p2 = build(fmt, {"__syscall_nr": 110, "ret": 2 ** 62}, pid=2)
    buf = b"\xee" * 20 + p1 + b"\xee" * 4 + p2
    for b in (buf, memoryview(buf), bytearray(buf)):
        assert dec.decode(b, 20) == (0, 0, 1, {"__syscall_nr": 110, "ret": -14})
        assert dec.decode(b, 24 + len(p1))[3]["ret"] == 2 ** 62
        assert dec.decode_many(b, [20, 24 + len(p1)]) == [
            dec.decode(b, 20), dec.decode(b, 24 + len(p1))]
    assert common_type(buf, 20) == fmt.id == 304


def test_decode_strings_fault_and_utf8() -> None:
    fmt = load("uprobe_strs")
    dec = RecordDecoder(fmt, {"s": "string", "us": "ustring", "ch": "char"})
    payload = build(fmt, {"s": b"w\xc3\xb6rld\0", "us": b"bad\xff\xfe\0", "ch": ord("A"),
                          "comm": b"\0", "imm": None})
    flags, pc, pid, args = dec.decode(payload, 0, len(payload))
    assert args["s"] == "w\u00f6rld"
    assert args["us"] == "bad\udcff\udcfe"   # surrogateescape: the bytes come back
    assert args["ch"] == "A"
    assert args["comm"] == ""  # an empty string is a NUL of length 1, not a fault
    assert args["imm"] is FAULT
    assert dec.decode_many(payload, [0]) == [dec.decode(payload)]


def test_string_without_nul_and_with_embedded_nul() -> None:
    fmt = load("sched_sched_process_exec")
    dec = RecordDecoder(fmt)
    assert dec.decode(build(fmt, {"filename": b"/bin/true"}))[3]["filename"] == "/bin/true"
    assert dec.decode(build(fmt, {"filename": b"/bin\0junk\0"}))[3]["filename"] == "/bin"


def test_data_loc_past_the_record_is_an_error() -> None:
    fmt = load("sched_sched_process_exec")
    dec = RecordDecoder(fmt)
    payload = build(fmt, {"filename": b"/bin/true\0"})
    with pytest.raises(DecodeError, match="runs past the record end"):
        dec.decode(payload, 0, len(payload) - 3)
    with pytest.raises(DecodeError, match="runs past"):
        dec.decode(payload[:-3])


def test_short_record_is_an_error() -> None:
    dec = RecordDecoder(load("uprobe_ints"))
    with pytest.raises(DecodeError, match="shorter than 69 bytes"):
        dec.decode(bytes(68))
    with pytest.raises(DecodeError, match="shorter"):
        dec.decode_many(bytes(100), [0, 40])


def test_decode_arrays() -> None:
    fmt = load("uprobe_arrays")
    vals = {"a8": [1, 2, 250, 255], "s32a": [-1, 2, -(2 ** 31)], "x64a": [0, 2 ** 64 - 1],
            "chars": list(b"ab\0cdefg")}
    payload = build(fmt, vals)
    plain = RecordDecoder(fmt).decode(payload)[3]
    assert plain["a8"] == (1, 2, 250, 255)
    assert plain["s32a"] == (-1, 2, -(2 ** 31))
    assert plain["x64a"] == (0, 2 ** 64 - 1)
    assert plain["chars"] == tuple(b"ab\0cdefg")
    typed = RecordDecoder(fmt, {"a8": "u8[4]", "x64a": "x64[2]", "chars": "char[8]"})
    args = typed.decode(payload)[3]
    assert args["chars"] == "ab"
    assert args["x64a"] == (0, 2 ** 64 - 1) and typed.hex_fields == {"x64a"}
    assert typed.decode_many(payload, [0])[0] == typed.decode(payload)


def test_decode_string_array_with_a_fault() -> None:
    fmt = load("uprobe_strarr")
    dec = RecordDecoder(fmt, {"sa": "string[2]"})
    assert dec.decode(build(fmt, {"sa": [b"abc\0", None]}))[3]["sa"] == ("abc", FAULT)


def test_decode_char_arrays() -> None:
    fmt = load("sched_sched_switch")
    dec = RecordDecoder(fmt)
    payload = build(fmt, {"prev_comm": b"bash", "prev_pid": 10, "prev_state": -1,
                          "next_comm": b"x" * 16, "next_pid": 0, "next_prio": -120})
    args = dec.decode(payload)[3]
    assert args["prev_comm"] == "bash"
    assert args["next_comm"] == "x" * 16  # full width, no NUL
    assert (args["prev_state"], args["next_prio"]) == (-1, -120)


def test_flexible_arrays_run_to_the_record_end() -> None:
    fmt = load("ftrace_print")
    dec = RecordDecoder(fmt)
    payload = build(fmt, {"ip": 0xFFFFFFFF81000000}) + b"hello\n\0\0"
    assert dec.decode(payload, 0, len(payload))[3] == {"ip": 0xFFFFFFFF81000000,
                                                       "buf": "hello\n"}
    text = GOOD.format(extra="\tfield:int n;\toffset:8;\tsize:4;\tsigned:1;\n"
                             "\tfield:u32 vals[];\toffset:12;\tsize:0;\tsigned:0;")
    fmt2 = parse_format(text)
    rec = build(fmt2, {"n": 3}) + struct.pack("=3I", 1, 2, 3)
    assert RecordDecoder(fmt2).decode(rec, 0, len(rec))[3] == {"n": 3, "vals": (1, 2, 3)}


def test_data_loc_arrays_and_opaque_types() -> None:
    fmt = load("dma_dma_map_sg")
    dec = RecordDecoder(fmt)
    payload = build(fmt, {"device": b"0000:00:03.0\0",
                          "phys_addrs": struct.pack("=2Q", 0x1000, 0x2000),
                          "dma_addrs": b"", "lengths": struct.pack("=3I", 4096, 512, 8),
                          "full_nents": 2, "truncated": 1, "dir": 2})
    args = dec.decode(payload, 0, len(payload))[3]
    assert args["device"] == "0000:00:03.0"
    assert args["phys_addrs"] == (0x1000, 0x2000)
    assert args["dma_addrs"] == ()  # empty, not a fault: only strings fault
    assert args["lengths"] == (4096, 512, 8)
    assert (args["full_nents"], args["truncated"], args["dir"]) == (2, 1, 2)
    ipi = load("ipi_ipi_send_cpumask")
    got = RecordDecoder(ipi).decode(build(ipi, {"cpumask": b"\x03" + bytes(7)}))[3]
    assert got["cpumask"] == b"\x03" + bytes(7)


def test_rel_loc_counts_from_the_end_of_the_field() -> None:
    text = GOOD.format(extra="\tfield:__rel_loc char[] name;\toffset:8;\tsize:4;\tsigned:0;\n"
                             "\tfield:int x;\toffset:12;\tsize:4;\tsigned:1;")
    fmt = parse_format(text)
    assert fmt.field("name").is_rel_loc and fmt.field("name").is_string
    loc = (3 << 16) | (16 - 12)  # data at 16, relative to the end of the u32 (12)
    payload = struct.pack("=HBBiIi", 7, 0, 0, 1, loc, -2) + b"hi\0"
    assert RecordDecoder(fmt).decode(payload, 0, len(payload))[3] == {"name": "hi", "x": -2}


def test_odd_sized_scalars() -> None:
    text = GOOD.format(extra="\tfield:u8 a[3];\toffset:8;\tsize:3;\tsigned:0;\n"
                             "\tfield:__int128 big;\toffset:11;\tsize:16;\tsigned:1;")
    fmt = parse_format(text)
    assert fmt.field("big").kind == "int"
    payload = build(fmt, {"a": [1, 2, 3], "big": -(2 ** 100)})
    assert RecordDecoder(fmt).decode(payload)[3] == {"a": (1, 2, 3), "big": -(2 ** 100)}


def test_types_must_name_real_args_and_real_types() -> None:
    fmt = load("uprobe_ints")
    with pytest.raises(DecodeError, match="does not have"):
        RecordDecoder(fmt, {"nope": "u32"})
    with pytest.raises(DecodeError, match="unknown fetch type"):
        RecordDecoder(fmt, {"s8v": "float"})
    dec = RecordDecoder(fmt, {"dflt": "symbol", "u32v": "b4@2/32"})
    assert dec.symbol_fields == {"dflt"}


def test_fault_marker() -> None:
    assert repr(FAULT) == "<fault>"
    assert not FAULT
    assert Fault() is FAULT
    assert pickle.loads(pickle.dumps(FAULT)) is FAULT
    assert FAULT != "" and FAULT is not None


def test_decode_many_matches_decode_for_every_recorded_format() -> None:
    for path in ALL_FORMATS:
        fmt = parse_format(path.read_text())
        payload = build(fmt, {}, pid=7, tail=64)
        dec = RecordDecoder(fmt)
        assert dec.decode_many(payload + payload, [0, len(payload)]) == [
            dec.decode(payload + payload, 0), dec.decode(payload + payload, len(payload))], path


# --------------------------------------------------------------------------
# common_flags


@pytest.mark.parametrize("flags, pc, text", [
    (0, None, "..."),
    (0, 0, "....."),
    (TraceFlag.IRQS_OFF | TraceFlag.HARDIRQ, None, "d.h"),
    (TraceFlag.IRQS_OFF | TraceFlag.BH_OFF, None, "D.."),
    (TraceFlag.BH_OFF | TraceFlag.SOFTIRQ, None, "b.s"),
    (TraceFlag.HARDIRQ | TraceFlag.SOFTIRQ, None, "..H"),
    (TraceFlag.NMI, None, "..z"),
    (TraceFlag.NMI | TraceFlag.HARDIRQ, None, "..Z"),
    (TraceFlag.NEED_RESCHED, None, ".n."),
    (TraceFlag.NEED_RESCHED | TraceFlag.PREEMPT_RESCHED, None, ".N."),
    (TraceFlag.PREEMPT_RESCHED, None, ".p."),
    (TraceFlag.NEED_RESCHED_LAZY, None, ".l."),
    (TraceFlag.NEED_RESCHED_LAZY | TraceFlag.PREEMPT_RESCHED, None, ".L."),
    (TraceFlag.NEED_RESCHED | TraceFlag.NEED_RESCHED_LAZY, None, ".b."),
    (TraceFlag.NEED_RESCHED | TraceFlag.NEED_RESCHED_LAZY | TraceFlag.PREEMPT_RESCHED,
     None, ".B."),
    (TraceFlag.IRQS_OFF | TraceFlag.NEED_RESCHED | TraceFlag.SOFTIRQ, 0x21, "dns12"),
    (0, 0x0F, "...f."),
    (0, 0x30, "....3"),
])
def test_flags_text(flags: int, pc: int | None, text: str) -> None:
    assert flags_text(flags, pc) == text


def test_flag_predicates() -> None:
    assert TraceFlag.IRQS_OFF == 0x01 and TraceFlag.NEED_RESCHED == 0x04
    assert TraceFlag.HARDIRQ == 0x08 and TraceFlag.SOFTIRQ == 0x10 and TraceFlag.NMI == 0x40
    assert irqs_off(0x01) and not irqs_off(0x80)
    assert in_irq(0x08) and not in_irq(0x10)
    assert in_softirq(0x10) and not in_softirq(0x08)
    assert in_nmi(0x40) and not in_nmi(0x08)
    assert need_resched(0x04) and need_resched(0x20) and need_resched(0x02)
    assert not need_resched(0x01 | 0x08 | 0x10 | 0x40 | 0x80)


# --------------------------------------------------------------------------
# a real page of uprobe events (tests/data/pages/uprobe, see record_pages.py)


def test_real_uprobe_page_values() -> None:
    d = DATA / "pages" / "uprobe"
    meta = json.loads((d / "meta.json").read_text())
    entry = parse_format((d / "target.format").read_text(), meta["system"])
    ret = parse_format((d / "target_ret.format").read_text(), meta["system"])
    types = {"n": "s32", "n8": "s8", "nx": "x64", "s": "string", "us": "ustring",
             "ch": "char", "chars": "char[3]", "x": "x64", "xs": "s64", "arr": "u8[4]",
             "sarr": "s8[4]", "imm": "string"}
    decoders = {entry.id: RecordDecoder(entry, types), ret.id: RecordDecoder(ret, {"rv": "s64"})}
    page = (d / "page.bin").read_bytes()
    _hdr, recs = PageDecoder.from_header_page((d / "header_page").read_text()).records(page)
    events = [(common_type(page, s), decoders[common_type(page, s)].decode(page, s, n))
              for _ts, s, n in recs]
    assert [t for t, _ in events] == [entry.id, ret.id] * len(meta["calls"])
    assert {e[2] for _, e in events} == {meta["pid"]}
    chars = ["hel", "w\u00f6", "bad", "abc", ""]  # the first 3 bytes, as UTF-8 up to a NUL
    for call, c3, (_, (_f, _pc, _pid, a)), (_, (_f2, _pc2, _pid2, r)) in zip(
            meta["calls"], chars, events[0::2], events[1::2], strict=True):
        n, s, x = call["n"], call["s"], call["x"]
        assert (a["n"], a["n8"], a["nx"]) == (n, n, n % 2 ** 64)
        assert (a["x"], a["xs"]) == (x % 2 ** 64, x)
        assert a["arr"] == tuple(meta["arr"])
        assert a["sarr"] == tuple(v - 256 if v > 127 else v for v in meta["arr"])
        assert a["comm"] == meta["comm"]
        # uprobes fetch immediate strings with the user-copy routine: always a fault
        assert a["imm"] is FAULT
        assert a["chars"] == c3
        if s is None:
            # string fetches fault; fixed-size fetches that fault are stored as 0
            assert (a["s"], a["us"], a["ch"]) == (FAULT, FAULT, "\0")
        else:
            assert (a["s"], a["us"], a["ch"]) == (s, s, s[0])
        assert r["rv"] == n + (s is not None) + meta["arr"][0] + x


def test_narrow_c_types_in_wide_fields_decode_by_the_c_type() -> None:
    """Syscall tracepoints store each argument as an unsigned long but declare
    it by its C type (``field:int dfd; offset:16; size:8; signed:0;``):
    the low bytes are read with the C type's signedness."""
    fmt = load("syscalls_sys_enter_openat")
    dec = RecordDecoder(fmt)
    rec = struct.pack("=HBBiiiQQQQ", fmt.id, 1, 2, 4242, 257, 0, 0xFFFFFF9C, 0x7FFD0010,
                      0x80000, 0o644)
    flags, pc, pid, args = dec.decode(rec)
    assert (flags, pc, pid) == (1, 2, 4242)
    assert args == {"__syscall_nr": 257, "dfd": -100, "filename": 0x7FFD0010,
                    "flags": 0x80000, "mode": 0o644}
    assert dec.plain          # still one struct unpack per record
    assert dec.rows(rec, [0]) == [(1, 2, 4242, 257, -100, 0x7FFD0010, 0x80000, 0o644)]
    # an int whose upper bytes are set reads as its 32 bits, as the C code sees it
    rec2 = rec[:16] + struct.pack("=Q", 0xDEAD_0000_0000_0005) + rec[24:]
    assert dec.decode(rec2)[3]["dfd"] == 5


@pytest.mark.parametrize(("ctype", "want"), [
    ("int", (4, True)), ("unsigned int", (4, False)), ("umode_t", (2, False)),
    ("const u16", (2, False)), ("s32", (4, True)), ("__u8", (1, False)),
    ("pid_t", (4, True)), ("long", (8, True)), ("size_t", (8, False)),
    ("char", None), ("const char *", None), ("struct foo", None),
])
def test_declared_int(ctype: str, want: tuple[int, bool] | None) -> None:
    assert declared_int(ctype) == want

"""Probe specs and probe values: parsing, validation, and the one tracefs line per probe."""

from __future__ import annotations

import pytest

from kprobes.errors import SpecError
from kprobes.probes.model import (
    MAX_ARGS,
    MAX_NAME,
    FetchArg,
    KProbe,
    KRetProbe,
    Tracepoint,
    UProbe,
    URetProbe,
)
from kprobes.probes.spec import parse_arg, parse_spec

# --------------------------------------------------------------- definitions


@pytest.mark.parametrize(("spec", "line"), [
    ("p:do_sys_openat2", "p:g/e do_sys_openat2"),
    ("p:do_sys_openat2+4 dfd=%di:s32", "p:g/e do_sys_openat2+4 dfd=%di:s32"),
    ("p:ext4:ext4_file_open", "p:g/e ext4:ext4_file_open"),
    ("p:0xffffffff81000000", "p:g/e 0xffffffff81000000"),
    ("r:vfs_read $retval:s64", "r:g/e vfs_read retval=$retval:s64"),
    ("r4096:vfs_read", "r4096:g/e vfs_read"),
    ("r1:ext4:ext4_file_open", "r1:g/e ext4:ext4_file_open"),
    ("p:f +0(+8(%di)):string c=$comm", "p:g/e f arg1=+0(+8(%di)):string c=$comm"),
    ("u:/bin/bash:0x4f0 line=+0(%ax):string", "p:g/e /bin/bash:0x4f0 line=+0(%ax):string"),
    ("ur:/bin/bash:0x10 $retval", "r:g/e /bin/bash:0x10 retval=$retval"),
])
def test_one_definition_line_per_probe(spec: str, line: str) -> None:
    d = parse_spec(spec).definition("g", "e")
    assert d == line
    assert "\n" not in d


def test_extra_args_come_after_the_probes_own() -> None:
    p = KProbe("f", args=(FetchArg("a", "%di"),))
    assert p.definition("g", "e", extra_args=(FetchArg("__comm", "$comm", "string"),)) \
        == "p:g/e f a=%di __comm=$comm:string"


def test_resolved_location_replaces_the_symbol() -> None:
    p = parse_spec("u:/bin/true:main")
    assert isinstance(p, UProbe) and p.symbol == "main"
    with pytest.raises(SpecError, match="resolved"):
        p.location()
    assert p.definition("g", "e", "/bin/true:0x1234") == "p:g/e /bin/true:0x1234"


@pytest.mark.parametrize(("probe", "name"), [
    (KProbe("do_sys_openat2"), "p_do_sys_openat2"),
    (KProbe("schedule", 5), "p_schedule_5"),
    (KProbe(None, address=0xFFFF1000), "p_ffff1000"),
    (KRetProbe("vfs_read"), "r_vfs_read"),
    (UProbe(path="/usr/lib/libc.so.6", symbol="malloc"), "p_libc_so_6_malloc"),
    (URetProbe(path="/bin/bash", offset=0x10), "r_bash_0x10"),
    (Tracepoint(group="sched", event="sched_switch"), "sched_switch"),
])
def test_default_names(probe, name: str) -> None:
    assert probe.default_name() == name


def test_kinds_match_the_dynevents_table() -> None:
    assert [p.kind for p in (parse_spec("p:f"), parse_spec("r:f"), parse_spec("u:/x:0x1"),
                             parse_spec("ur:/x:0x1"), parse_spec("t:a:b"))] \
        == ["kprobe", "kretprobe", "uprobe", "uretprobe", "tracepoint"]
    assert not parse_spec("t:a:b").dynamic


def test_tracepoint_location_and_filter() -> None:
    p = parse_spec("t:syscalls:sys_enter_openat", filter="dfd == -100", name="op")
    assert isinstance(p, Tracepoint)
    assert (p.location(), p.filter, p.name) == ("syscalls:sys_enter_openat", "dfd == -100", "op")
    assert parse_spec("t:sched/sched_switch").location() == "sched:sched_switch"


# --------------------------------------------------------------- limits


def test_name_limit_is_63_characters() -> None:
    KProbe("f", name="x" * MAX_NAME)
    with pytest.raises(SpecError, match="63"):
        KProbe("f", name="x" * (MAX_NAME + 1))
    with pytest.raises(SpecError, match="63"):
        KProbe("f").definition("g", "e" * 64)


@pytest.mark.parametrize("bad", ["1abc", "a-b", "a b", ""])
def test_event_names_are_c_identifiers(bad: str) -> None:
    with pytest.raises(SpecError, match="C identifier"):
        KProbe("f").definition("g", bad)


def test_group_names_may_have_dashes() -> None:
    assert KProbe("f").definition("my-grp", "e") == "p:my-grp/e f"


def test_args_limit_is_128() -> None:
    args = tuple(FetchArg(f"a{i}", "%di") for i in range(MAX_ARGS))
    assert len(KProbe("f", args=args).args) == MAX_ARGS
    with pytest.raises(SpecError, match="128"):
        KProbe("f", args=(*args, FetchArg("one_more", "%si")))


@pytest.mark.parametrize(("spec", "ok"), [("r1:f", True), ("r4096:f", True),
                                          ("r4097:f", False), ("r0:f", False)])
def test_maxactive_range(spec: str, ok: bool) -> None:
    if ok:
        assert isinstance(parse_spec(spec), KRetProbe)
    else:
        with pytest.raises(SpecError, match="1..4096"):
            parse_spec(spec)
    with pytest.raises(SpecError, match="1..4096"):
        KRetProbe("f", maxactive=4097)


def test_same_argument_name_twice_is_refused() -> None:
    with pytest.raises(SpecError, match="given twice"):
        parse_spec("p:f a=%di a=%si")


@pytest.mark.parametrize("name", ["common_pid", "comm", "cpu", "common_anything"])
def test_reserved_argument_names(name: str) -> None:
    with pytest.raises(SpecError, match="reserved"):
        FetchArg(name, "%di")


@pytest.mark.parametrize("t", ["u8", "s64", "x32", "string", "ustring", "symstr", "b4@3/32",
                               "u32[4]", "%pd"])
def test_known_fetch_types(t: str) -> None:
    assert FetchArg("a", "%di", t).render() == f"a=%di:{t}"


@pytest.mark.parametrize("t", ["u7", "string[2]", "int"])
def test_unknown_fetch_types(t: str) -> None:
    with pytest.raises(SpecError, match="unknown fetch type"):
        FetchArg("a", "%di", t)


# --------------------------------------------------------------- the grammar


@pytest.mark.parametrize(("text", "name", "fetch", "type_"), [
    ("$retval:s64", "retval", "$retval", "s64"),
    ("$arg2", "arg2", "$arg2", None),
    ("%si:x64", "si", "%si", "x64"),
    ("path=+0(%si):ustring", "path", "+0(%si)", "ustring"),
    ("+8(%di)", "arg3", "+8(%di)", None),
    ("how->flags", "how_flags", "how->flags", None),
    ("$comm", "task_comm", "$comm", None),     # "comm" is the filter's task-name field
])
def test_parse_arg_names(text: str, name: str, fetch: str, type_: str | None) -> None:
    assert parse_arg(text, 3) == FetchArg(name, fetch, type_)


@pytest.mark.parametrize(("spec", "column", "message"), [
    ("x:f", 0, "unknown probe kind"),
    ("p", 0, "has no KIND:"),
    ("p:f bad=%di:u7", 4, "unknown fetch type"),
    ("r:f+4", 3, "function entry"),
    ("u:/bin/true", 2, "bad user probe point"),
    ("t:sched", 2, "bad tracepoint"),
    ("t:sched:sched_switch %di", 21, "no fetch arguments"),
    ("p:f\targ", 3, "control character"),
])
def test_errors_point_at_the_column(spec: str, column: int, message: str) -> None:
    with pytest.raises(SpecError, match=message) as e:
        parse_spec(spec)
    assert e.value.column == column
    assert e.value.caret() is not None


def test_empty_spec() -> None:
    with pytest.raises(SpecError, match="empty probe spec"):
        parse_spec("   ")

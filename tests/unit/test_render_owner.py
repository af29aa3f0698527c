"""Event rendering (text, JSON, summaries) and the owner-tagged names of sessions."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from kprobes.decode.flags import TraceFlag
from kprobes.decode.format import FAULT
from kprobes.kernel.tracefs import Tracefs
from kprobes.output.render import format_value, json_line, summary_json, summary_text, text_line
from kprobes.runtime import owner
from kprobes.runtime.event import Event
from kprobes.runtime.session import ProbeStats, Stats

# --------------------------------------------------------------- rendering


def _ev(args: dict, **kw) -> Event:
    return Event("p_open", 2_000_001_000, 3, 7, kw.pop("flags", 0), 1, args,
                 comm="a b", pid=5, **kw)


@pytest.mark.parametrize(("value", "hexed", "text"), [
    (-2, False, "-2"), (255, True, "0xff"), (True, False, "true"), ("x\"y", False, '"x\\"y"'),
    ((1, 2), True, "[0x1,0x2]"), (FAULT, False, "<fault>"), (b"\x01", False, "b'\\x01'"),
])
def test_format_value(value, hexed: bool, text: str) -> None:
    assert format_value(value, hexed) == text


def test_text_line_fields_and_hex_args() -> None:
    line = text_line(_ev({"fd": 3, "flags": 0x8000, "name": FAULT}), hex_args={"flags"})
    assert line == '     2.000001 [003] a b-5/7 p_open: fd=3 flags=0x8000 name=<fault>'
    assert text_line(_ev({})).endswith("p_open:")


def test_json_line_faults_data_and_context() -> None:
    ev = _ev({"fd": 3, "name": FAULT, "v": (1, FAULT)}, flags=TraceFlag.HARDIRQ)
    ev.data = {"entry_ts": 5}
    d = json.loads(json_line(ev))
    assert d["args"] == {"fd": 3, "name": None, "v": [1, None]}
    assert d["faults"] == ["name"]
    assert d["data"] == {"entry_ts": 5}
    assert (d["pid"], d["tid"], d["comm"], d["context"], d["cpu"]) == (5, 7, "a b", "irq", 3)


def test_json_line_data_that_is_not_json_becomes_its_repr() -> None:
    ev = _ev({})
    ev.data = object()
    assert json.loads(json_line(ev))["data"].startswith("<object object")
    assert "faults" not in json.loads(json_line(_ev({"a": 1})))


def test_summaries() -> None:
    stats = Stats(probes={"p_open": ProbeStats(events=9, hits=10, misses=1, errors=1,
                                               first_error="ZeroDivisionError: x",
                                               kernel_counted=True),
                          "sys_enter_openat": ProbeStats(events=4)},
                  lost=2, events=13)
    text = summary_text(stats).splitlines()
    assert text[1].split() == ["p_open", "9", "10", "1", "1"]
    assert text[2] == "  first handler error: ZeroDivisionError: x"
    assert text[3].split() == ["sys_enter_openat", "4", "-", "0", "0"]   # no kernel count
    assert text[-2] == "events delivered: 13, lost in ring buffer: 2"
    assert text[-1].startswith("hits (all): times the probe fired in the kernel, every process")
    d = json.loads(summary_json(stats, {"command_exit": 0}))["summary"]
    assert d["probes"]["p_open"] == {"events": 9, "hits_all": 10, "misses": 1, "errors": 1}
    assert d["probes"]["sys_enter_openat"]["hits_all"] is None
    assert (d["lost"], d["events"], d["command_exit"]) == (2, 13, 0)


# --------------------------------------------------------------- owner names


def _my_start() -> int:
    data = Path(f"/proc/{os.getpid()}/stat").read_bytes()
    return int(data[data.rindex(b")") + 2:].split()[19])


def test_new_name_shape_and_counter() -> None:
    a, b = owner.new_name(), owner.new_name()
    assert owner.parse_owner(a) == (os.getpid(), _my_start())
    assert a.startswith(owner.PREFIX) and a != b
    assert int(b.rsplit("_", 1)[1]) == int(a.rsplit("_", 1)[1]) + 1
    assert owner.owner_alive(a)


@pytest.mark.parametrize("name", ["kprobes_1_2", "kprobes_x_1_0", "kprobes_1_2_3_4",
                                  "myprobes_1_2_3", "kprobes"])
def test_other_shapes_are_not_ours(name: str) -> None:
    assert owner.parse_owner(name) is None
    assert owner.owner_alive(name)      # never touched


def test_recycled_pid_is_not_the_owner() -> None:
    me = os.getpid()
    assert owner.owner_alive(f"kprobes_{me}_{_my_start()}_0")
    assert not owner.owner_alive(f"kprobes_{me}_{_my_start() + 1}_0")
    assert not owner.owner_alive("kprobes_4194305_1_0")   # above PID_MAX_LIMIT: never alive


@pytest.fixture
def fake_tracefs(tmp_path: Path) -> tuple[Tracefs, dict[str, str]]:
    """A tracefs-shaped folder with instances and uprobe events of live, dead and foreign owners."""
    me = os.getpid()
    names = {"alive": f"kprobes_{me}_{_my_start()}_0", "dead": f"kprobes_{me}_{_my_start() + 1}_1",
             "gone": "kprobes_4194305_9_0", "foreign": "perf_tools"}
    for n in names.values():
        (tmp_path / "instances" / n).mkdir(parents=True)
    (tmp_path / "uprobe_events").write_text(
        "".join(f"p:{n}/ev /bin/true:0x10\n" for n in names.values()))
    return Tracefs(str(tmp_path)), names


def test_find_orphans_takes_only_dead_owners(fake_tracefs) -> None:
    tfs, names = fake_tracefs
    insts, evs = owner.find_orphans(tfs)
    assert sorted(insts) == sorted([names["dead"], names["gone"]])
    assert sorted(e.group for e in evs) == sorted([names["dead"], names["gone"]])
    assert {e.kind for e in evs} == {"uprobe"}

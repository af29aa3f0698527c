"""The library surface, without a kernel: what ``kprobes`` exports, one
decorator and one ``add_*`` per probe kind, and how a kretprobe's entry data
reaches its return handler."""

from __future__ import annotations

import pytest

import kprobes
from kprobes import (
    FAULT,
    Batch,
    Event,
    KProbe,
    KRetProbe,
    Pointer,
    ProbeHandle,
    Session,
    SpecError,
    Tracepoint,
    UProbe,
    URetProbe,
)


def test_public_names() -> None:
    assert {"ProbeHandle", "Batch", "Pointer", "FAULT"} <= set(kprobes.__all__)
    assert all(hasattr(kprobes, n) for n in kprobes.__all__)
    assert FAULT is kprobes.decode.format.FAULT and Batch.__name__ == "Batch"
    assert Pointer(5, {"flags": 1}).flags == 1


KINDS = {"kprobe": "p:do_sys_openat2", "kretprobe": "r:do_sys_openat2",
         "uprobe": "u:/bin/true:0x10", "uretprobe": "ur:/bin/true:0x10",
         "tracepoint": "t:syscalls:sys_enter_openat", "jprobe": None}


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_every_kind_has_a_decorator_and_an_add(kind: str) -> None:
    assert callable(getattr(Session, kind)) and callable(getattr(Session, f"add_{kind}"))


@pytest.mark.parametrize(("method", "spec", "cls"), [
    ("add_kprobe", "p:do_sys_openat2", KProbe),
    ("add_kretprobe", "r:do_sys_openat2", KRetProbe),
    ("add_uprobe", "u:/bin/true:0x10 a=%di:s64", UProbe),
    ("add_uretprobe", "ur:/bin/true:0x10", URetProbe),
    ("add_tracepoint", "t:syscalls:sys_enter_openat", Tracepoint),
])
def test_add_takes_its_kind_only(method: str, spec: str, cls: type) -> None:
    s = Session()
    h = getattr(s, method)(spec, lambda ev: None)
    assert isinstance(h, ProbeHandle) and type(h.probe) is cls and s.handles == [h]
    for other in KINDS.values():
        if other is not None and other != spec.split()[0]:
            with pytest.raises(SpecError, match=f"{method} needs"):
                getattr(s, method)(other, None)


def test_add_jprobe_binds_fields_through_pointers() -> None:
    s = Session()

    def on_open(ev: Event, dfd: int, how: int) -> None: ...
    h = s.add_jprobe("do_sys_openat2", on_open, args=("dfd=$arg1:s32", "how=$arg3:x64"),
                     fields=("how->flags",))
    assert [a.name for a in h.probe.args] == ["dfd", "how", "how_flags"]
    assert h.pointers == {"how": {"flags": "how_flags"}}
    assert h.bind == ("dfd", "how")


def _ev(tid: int, ts: int) -> Event:
    return Event("e", ts, 0, tid, 0, 0, {})


def test_kretprobe_entry_data_per_thread_innermost_first() -> None:
    """Entry data is matched per thread, innermost call first; a return
    whose entry was not seen gets None (not another call's data)."""
    s = Session()
    ret = s.add_kretprobe("r:do_sys_openat2", None, entry=lambda ev: ev.ts_ns)
    ent = next(h for h in s.handles if h.hidden)
    assert ent.name == f"{ret.name}_entry" and isinstance(ent.probe, KProbe)
    assert ret.on_event is not None and ent.handler is not None
    for tid, ts in ((1, 10), (2, 20), (1, 30)):      # thread 1 nests a call
        ent.handler(_ev(tid, ts))
    got = []
    for tid in (1, 2, 1, 1):
        ev = _ev(tid, 99)
        ret.on_event(ev)
        got.append(ev.data)
    assert got == [30, 20, 10, None]



def test_handlers_are_set_through_the_session() -> None:
    s = Session()
    h = s.add("t:syscalls:sys_enter_openat")

    def on(ev: Event, dfd: int) -> None: ...
    s.set_handler(h, on)
    assert h.handler is on and h.bind == ("dfd",)
    s.set_batch(h, len)
    assert h.batch is len
    with pytest.raises(kprobes.KprobesError, match="not added to this session"):
        Session().set_batch(h, len)

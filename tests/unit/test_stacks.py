"""Stack records: attached to the event they follow (crafted pages, recorded formats)."""

from __future__ import annotations

import os
import struct

from kprobes.decode.format import parse_format
from kprobes.runtime.stacks import StackSplitter, _kernel_addrs, _user_addrs

FORMATS = os.path.join(os.path.dirname(os.path.dirname(__file__)), "data", "formats")
EV, KS, US = 500, 4, 13            # an event's type id; kernel_stack, user_stack (recorded ids)


def _fmt(name: str):
    with open(os.path.join(FORMATS, f"ftrace_{name}.format")) as f:
        return parse_format(f.read(), "ftrace")


def test_recorded_formats_match_the_decoder() -> None:
    k, u = _fmt("kernel_stack"), _fmt("user_stack")
    assert (k.id, u.id) == (KS, US)
    assert (k.field("size").offset, k.field("size").size) == (8, 4)
    assert (k.field("caller").offset, u.field("caller").offset) == (16, 16)
    assert (u.field("tgid").offset, u.field("tgid").size, u.field("caller").size) == (8, 4, 64)


class Page:
    """A fake page: records placed one after another (payload offsets as the reader gives)."""

    def __init__(self) -> None:
        self.buf = bytearray(4096)
        self.recs: list[tuple[int, int, int]] = []
        self.off = 16

    def add(self, typ: int, pid: int, body: bytes = b"") -> Page:
        payload = struct.pack("=HBBi", typ, 0, 0, pid) + body
        payload += b"\0" * (-len(payload) % 8)
        self.buf[self.off:self.off + len(payload)] = payload
        self.recs.append((len(self.recs), self.off, len(payload)))
        self.off += len(payload) + 8
        return self

    def ev(self, pid: int, ret: int = 0) -> Page:
        return self.add(EV, pid, struct.pack("=Q", ret))

    def k(self, pid: int, *addrs: int) -> Page:
        return self.add(KS, pid, struct.pack(f"=i4x{len(addrs)}Q", len(addrs), *addrs))

    def u(self, pid: int, *addrs: int) -> Page:
        calls = (list(addrs) + [0] * 8)[:8]
        return self.add(US, pid, struct.pack("=I4x8Q", pid, *calls))

    def seg(self, cpu: int = 0) -> tuple[int, bytes, list[tuple[int, int, int]]]:
        self.page = bytes(self.buf)
        return cpu, self.page, self.recs


def _stacks(sp: StackSplitter, out, stk) -> list[tuple]:
    res = []
    for _cpu, page, recs in out:
        for _ts, start, _ln in recs:
            refs = stk.get((id(page), start))
            res.append((struct.unpack_from("=i", page, start + 4)[0], sp.kernel_addrs(refs),
                        sp.user_addrs(refs, None, page, start)))
    return res


def test_stacks_attach_to_the_event_before_them() -> None:
    sp = StackSplitter(KS, US)
    pg = Page().ev(7).k(7, 0xffffffff81000010, 0xffffffff81000020).u(7, 0x401166, 0x4011cb)
    pg.ev(8).k(8, 0xffffffff81000030).u(8, 0x401200)
    out, stk = sp.split([pg.seg()])
    assert [len(s[2]) for s in out] == [2]             # stack records are not events
    assert _stacks(sp, out, stk) == [
        (7, (0xffffffff81000010, 0xffffffff81000020), (7, (0x401166, 0x4011cb))),
        (8, (0xffffffff81000030,), (8, (0x401200,)))]


def test_an_event_whose_stacks_go_to_the_next_page_is_held_for_them() -> None:
    sp = StackSplitter(KS, US)
    out, stk = sp.split([Page().ev(7).k(7, 0xffffffff81000010).seg()])
    assert sum(len(s[2]) for s in out) == 0             # held: its user stack is still to come
    out, stk = sp.split([Page().u(7, 0x401166).ev(9).k(9, 0xffffffff81000040).u(9, 1).seg()])
    got = _stacks(sp, out, stk)
    assert got == [(7, (0xffffffff81000010,), (7, (0x401166,))),
                   (9, (0xffffffff81000040,), (9, (1,)))]
    out, _ = sp.split([])
    assert out == []


def test_a_held_event_is_delivered_next_cycle_even_without_stacks() -> None:
    sp = StackSplitter(KS, None)
    out, _ = sp.split([Page().ev(7).seg()])
    assert sum(len(s[2]) for s in out) == 0
    out, stk = sp.split([])
    assert _stacks(sp, out, stk) == [(7, None, None)]


def test_an_interrupting_event_does_not_steal_the_stacks() -> None:
    sp = StackSplitter(KS, US)
    pg = Page().ev(7).ev(0).k(0, 0xffffffff81000100).u(0).k(7, 0xffffffff81000200).u(7, 0x401000)
    out, stk = sp.split([pg.seg()])
    assert _stacks(sp, out, stk) == [(7, (0xffffffff81000200,), (7, (0x401000,))),
                                     (0, (0xffffffff81000100,), (0, ()))]


def test_uprobe_entry_return_address_is_inserted_as_second_frame() -> None:
    sp = StackSplitter(None, US)
    h = object()
    sp.ret_off[id(h)] = 8                                # the event's __ret0 field
    pg = Page().ev(7, ret=0x4011a8).u(7, 0x401166, 0x4011cb, 0x401260)
    _cpu, page, recs = pg.seg()
    out, stk = sp.split([(0, page, recs)])
    start = out[0][2][0][1]
    refs = stk[(id(page), start)]
    assert sp.user_addrs(refs, h, page, start) == (7, (0x401166, 0x4011a8, 0x4011cb, 0x401260))
    # the kernel already had it (e.g. a probe past the prologue): not doubled
    pg = Page().ev(7, ret=0x4011a8).u(7, 0x401166, 0x4011a8, 0x4011cb)
    _cpu, page, recs = pg.seg()
    out, stk = sp.split([(0, page, recs)])
    start = out[0][2][0][1]
    assert sp.user_addrs(stk[(id(page), start)], h, page, start)[1] == (0x401166, 0x4011a8,
                                                                         0x4011cb)


def test_record_decoders_stop_at_the_record_and_at_zero() -> None:
    pg = Page().k(1, 1, 2, 3).u(1, 5, 6)
    _c, page, recs = pg.seg()
    assert _kernel_addrs((page, recs[0][1], recs[0][2])) == (1, 2, 3)
    assert _user_addrs((page, recs[1][1], recs[1][2])) == (1, (5, 6))

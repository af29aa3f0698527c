"""Sub-buffer page decoding: crafted pages with every record type, malformed
pages, and a real page of ``syscalls/sys_enter_getppid`` recorded on the host."""

from __future__ import annotations

import json
import random
import struct
from pathlib import Path

import pytest

from kprobes.decode import PageDecoder, PageHeader, RecordDecoder, fix_abs_ts, parse_format
from kprobes.decode.record import common_type
from kprobes.errors import DecodeError

DATA = Path(__file__).resolve().parent.parent / "data"
PAGES = DATA / "pages"

PAGE_TS = 1_000_000_000


# --------------------------------------------------------------------------
# building records (host byte order, like the kernel writes them)


def hdr(type_len: int, delta: int) -> bytes:
    assert 0 <= type_len < 32 and 0 <= delta < 1 << 27
    return struct.pack("=I", type_len | (delta << 5))


def data(delta: int, payload: bytes) -> bytes:
    """A small data record: type_len = payload words (1..28)."""
    assert len(payload) % 4 == 0 and 4 <= len(payload) <= 112
    return hdr(len(payload) // 4, delta) + payload


def long_data(delta: int, payload: bytes) -> bytes:
    """type_len 0: array[0] = payload length + 4, payload at +8."""
    assert len(payload) % 4 == 0
    return hdr(0, delta) + struct.pack("=I", len(payload) + 4) + payload


def extend(delta: int) -> bytes:
    return hdr(30, delta & ((1 << 27) - 1)) + struct.pack("=I", delta >> 27)


def stamp(ts: int) -> bytes:
    ts &= (1 << 59) - 1
    return hdr(31, ts & ((1 << 27) - 1)) + struct.pack("=I", ts >> 27)


def padding(delta: int, total: int) -> bytes:
    """A discarded event of ``total`` bytes (array[0] = total - 4)."""
    return hdr(29, delta) + struct.pack("=I", total - 4) + bytes(total - 8)


def page(records: bytes, ts: int = PAGE_TS, flags: int = 0, lost: int | None = None,
         size: int = 4096, data_len: int | None = None) -> bytes:
    n = len(records) if data_len is None else data_len
    body = records + (b"" if lost is None else struct.pack("=Q", lost))
    out = struct.pack("=QQ", ts, n | flags) + body
    assert len(out) <= size
    return out + bytes(size - len(out))


DEC = PageDecoder()


def payloads(pg: bytes, recs: list[tuple[int, int, int]]) -> list[bytes]:
    return [pg[s:s + n] for _ts, s, n in recs]


# --------------------------------------------------------------------------
# record types


def test_every_small_type_len() -> None:
    recs = b""
    expect = []
    pos, ts = 16, PAGE_TS
    for tl in range(1, 29):
        payload = bytes([tl]) * (tl * 4)
        recs += data(tl, payload)
        ts += tl
        expect.append((ts, pos + 4, tl * 4))
        pos += 4 + tl * 4
    pg = page(recs)
    h, got = DEC.records(pg)
    assert h == PageHeader(PAGE_TS, len(recs), False, 0)
    assert got == expect
    assert payloads(pg, got) == [bytes([tl]) * (tl * 4) for tl in range(1, 29)]


def test_long_record_type_len_0() -> None:
    big = bytes(range(200)) + bytes(4)
    pg = page(data(5, b"abcd") + long_data(7, big) + data(1, b"efgh"))
    _h, got = DEC.records(pg)
    assert got == [(PAGE_TS + 5, 20, 4), (PAGE_TS + 12, 16 + 8 + 8, len(big)),
                   (PAGE_TS + 13, 16 + 8 + 8 + len(big) + 4, 4)]
    assert payloads(pg, got)[1] == big


def test_time_extend_adds_the_high_part() -> None:
    far = (5 << 27) + 12345  # needs the extend's array[0]
    pg = page(extend(far) + data(0, b"1234") + data(3, b"5678"))
    _h, got = DEC.records(pg)
    assert [ts for ts, _s, _n in got] == [PAGE_TS + far, PAGE_TS + far + 3]
    assert payloads(pg, got) == [b"1234", b"5678"]


def test_absolute_time_stamp_replaces_the_time() -> None:
    t = 123_456_789_012_345
    pg = page(data(10, b"aaaa") + stamp(t) + data(0, b"bbbb") + data(4, b"cccc"))
    _h, got = DEC.records(pg)
    assert [ts for ts, _s, _n in got] == [PAGE_TS + 10, t, t + 4]


def test_absolute_time_stamp_takes_its_top_bits_from_the_time_so_far() -> None:
    top = 0b10101 << 59
    low = 42
    pg = page(stamp(low) + data(1, b"xxxx"), ts=top | 7)
    _h, got = DEC.records(pg)
    assert got[0][0] == (top | 42) + 1
    # the 59-bit part wrapped since the page time: carry into the top bits
    assert fix_abs_ts(5, top | ((1 << 59) - 10)) == top + (1 << 59) + 5
    assert fix_abs_ts(5, 1 << 40) == 5  # a boot-time clock has no top bits


def test_padding_with_delta_is_skipped_and_keeps_its_time() -> None:
    # a discarded event keeps its delta (the writer counted it) ...
    pg = page(data(2, b"aaaa") + padding(100, 24) + data(3, b"bbbb"))
    _h, got = DEC.records(pg)
    assert got == [(PAGE_TS + 2, 20, 4), (PAGE_TS + 105, 16 + 8 + 24 + 4, 4)]
    # ... except delta 1, which the kernel forces on padding that had none
    pg = page(data(2, b"aaaa") + padding(1, 12) + data(3, b"bbbb"))
    assert [ts for ts, _s, _n in DEC.records(pg)[1]] == [PAGE_TS + 2, PAGE_TS + 5]


def test_padding_to_the_end_of_the_page() -> None:
    recs = data(1, b"aaaa")
    recs += padding(1, 4080 - len(recs))
    _h, got = DEC.records(page(recs))
    assert got == [(PAGE_TS + 1, 20, 4)]


def test_null_padding_ends_the_page() -> None:
    pg = page(data(1, b"aaaa") + hdr(29, 0) + b"\xff" * 40)
    h, got = DEC.records(pg)
    assert h.data_len == 52 and got == [(PAGE_TS + 1, 20, 4)]


def test_empty_page() -> None:
    h, got = DEC.records(page(b""))
    assert h == PageHeader(PAGE_TS, 0, False, 0) and got == []


def test_lost_events_with_and_without_a_stored_count() -> None:
    recs = data(1, b"aaaa")
    h = DEC.header(page(recs, flags=1 << 31))
    assert (h.missed, h.lost, h.data_len) == (True, None, 8)
    h = DEC.header(page(recs, flags=(1 << 31) | (1 << 30), lost=12345))
    assert (h.missed, h.lost, h.data_len) == (True, 12345, 8)
    h, got = DEC.records(page(recs, flags=(1 << 31) | (1 << 30), lost=7))
    assert h.lost == 7 and got == [(PAGE_TS + 1, 20, 4)]  # the count is not a record


def test_mixed_page_in_order() -> None:
    recs = (data(0, b"A" * 8) + extend(1 << 28) + data(0, b"B" * 4) + padding(9, 16)
            + long_data(2, b"C" * 120) + stamp(PAGE_TS * 3) + data(1, b"D" * 12))
    pg = page(recs)
    _h, got = DEC.records(pg)
    assert payloads(pg, got) == [b"A" * 8, b"B" * 4, b"C" * 120, b"D" * 12]
    assert [ts for ts, _s, _n in got] == [PAGE_TS, PAGE_TS + (1 << 28),
                                          PAGE_TS + (1 << 28) + 11, PAGE_TS * 3 + 1]


# --------------------------------------------------------------------------
# malformed pages


@pytest.mark.parametrize("pg, message", [
    (page(data(1, b"aaaa"), data_len=4096), "exceeds the sub-buffer"),
    (page(data(1, b"aaaa") + data(1, b"bbbb"), data_len=12), "runs past the page data"),
    (page(hdr(0, 1) + struct.pack("=I", 2) + b"xxxx"), "bad length 2"),
    (page(hdr(0, 1) + struct.pack("=I", 6) + b"xxxx"), "bad length 6"),
    (page(hdr(0, 1) + struct.pack("=I", 400) + b"xxxx"), "runs past the page data"),
    (page(data(1, b"aaaa") + hdr(30, 1)), "cut off"),
    (page(data(1, b"aaaa") + hdr(31, 1)), "cut off"),
    (page(data(1, b"aaaa") + hdr(0, 1)), "cut off"),
    (page(data(1, b"aaaa") + hdr(29, 5)), "cut off"),
    (page(hdr(29, 5) + struct.pack("=I", 3)), "bad length 3"),
    (page(data(1, b"aaaa"), data_len=6), "not a multiple of 4"),
    (page(data(1, b"aaaa"), flags=1 << 30, size=24), "lost-event count"),
    (page(data(1, b"aaaa"))[:20], "its data runs to 24"),
    (b"\0" * 10, "has no header"),
])
def test_malformed_pages(pg: bytes, message: str) -> None:
    with pytest.raises(DecodeError, match=message):
        DEC.records(pg)


def test_random_pages_never_hang_and_stay_in_bounds() -> None:
    rnd = random.Random(1234)
    ok = bad = 0
    for _ in range(3000):
        n = rnd.randrange(0, 1020) * 4
        words = bytes(rnd.getrandbits(8) for _ in range(n))
        if rnd.random() < 0.5:  # mostly-plausible headers: small type_len and lengths
            arr = bytearray(words)
            for i in range(0, n, 4):
                arr[i] = (arr[i] & 0xE0) | rnd.choice([1, 2, 3, 0, 29, 30, 31, 28])
            words = bytes(arr)
        pg = page(words)
        try:
            h, recs = DEC.records(pg)
        except DecodeError as e:
            with pytest.raises(DecodeError) as counted:
                DEC.count(pg)
            assert str(counted.value) == str(e)
            bad += 1
            continue
        assert DEC.count(pg) == (h, len(recs))
        ok += 1
        for _ts, s, ln in recs:
            assert 16 <= s and s + ln <= 16 + h.data_len
    assert ok and bad


def test_runs_of_same_size_records_match_the_per_record_loop(monkeypatch: pytest.MonkeyPatch
                                                             ) -> None:
    """Pages of long same-size runs (the fast path) broken by time extends, padding,
    other sizes and absolute stamps: the same records, times and errors as record by record."""
    import kprobes.decode.ringbuf as rb
    rnd = random.Random(99)
    pages = []
    for _ in range(400):
        recs = b""
        while True:
            pick = rnd.random()
            if pick < 0.7:
                words = rnd.choice([1, 3, 7, 28])
                part = b"".join(data(rnd.randrange(0, 1 << 27), bytes([rnd.getrandbits(8)])
                                     * 4 * words) for _ in range(rnd.randrange(1, 40)))
            elif pick < 0.8:
                part = extend(rnd.randrange(1 << 27, 1 << 40))
            elif pick < 0.9:
                part = padding(rnd.randrange(0, 50), 4 * rnd.randrange(2, 10))
            elif pick < 0.95:
                part = long_data(rnd.randrange(0, 100), b"L" * 4 * rnd.randrange(1, 40))
            else:
                part = stamp(rnd.randrange(PAGE_TS, PAGE_TS * 10))
            if len(recs) + len(part) > 4096 - 16:
                break
            recs += part
        cut = rnd.random() < 0.1                # a data length that cuts the last record
        pages.append(page(recs, data_len=len(recs) - 4 if cut and len(recs) > 8 else None))

    def decode(pg: bytes) -> object:
        try:
            return DEC.records(pg)
        except DecodeError as e:
            return str(e)
    def count(pg: bytes) -> object:
        try:
            return DEC.count(pg)
        except DecodeError as e:
            return str(e)
    fast = [decode(pg) for pg in pages]
    counted = [count(pg) for pg in pages]
    # never a run: one record at a time (records), counted one by one (count)
    monkeypatch.setattr(rb, "_uniform_prefix", lambda page, words, base, nwords, ts: ([], 0, ts))
    monkeypatch.setattr(rb, "_same_run", lambda *a: 0)
    slow = [decode(pg) for pg in pages]
    assert fast == slow
    assert counted == [(r[0], len(r[1])) if isinstance(r, tuple) else r for r in slow]
    assert [count(pg) for pg in pages] == counted
    lazy = [DEC.lazy(pg)[1] for pg in pages if isinstance(count(pg), tuple)]
    assert [list(r) for r in lazy] == [r[1] for r in slow if isinstance(r, tuple)]
    assert sum(len(r[1]) for r in fast if isinstance(r, tuple)) > 20000
    monkeypatch.undo()
    fresh = [DEC.lazy(pg)[1] for pg in pages if isinstance(count(pg), tuple)]
    assert [(r.ts_list(), list(r.starts())) for r in fresh] == \
        [([x[0] for x in r[1]], [x[1] for x in r[1]]) for r in slow if isinstance(r, tuple)]
    assert any(r.stride is not None for r in fresh)


# --------------------------------------------------------------------------
# header_page


def test_from_header_page_recorded() -> None:
    dec = PageDecoder.from_header_page((DATA / "formats" / "header_page").read_text())
    assert (dec.commit_size, dec.page_size, dec.data_offset) == (8, 4096, 16)
    dec = PageDecoder.from_header_page((DATA / "formats" / "header_page").read_text(),
                                       page_size=8192)
    assert dec.page_size == 8192


def test_32_bit_commit() -> None:
    text = ("\tfield: u64 timestamp;\toffset:0;\tsize:8;\tsigned:0;\n"
            "\tfield: local_t commit;\toffset:8;\tsize:4;\tsigned:1;\n"
            "\tfield: int overwrite;\toffset:8;\tsize:1;\tsigned:1;\n"
            "\tfield: char data;\toffset:12;\tsize:4084;\tsigned:1;\n")
    dec = PageDecoder.from_header_page(text)
    assert (dec.commit_size, dec.page_size, dec.data_offset) == (4, 4096, 12)
    recs = data(3, b"abcd")
    pg = struct.pack("=QI", 77, len(recs) | (1 << 31) | (1 << 30)) + recs + struct.pack("=I", 9)
    h, got = dec.records(pg)
    assert h == PageHeader(77, 8, True, 9) and got == [(80, 16, 4)]


@pytest.mark.parametrize("text, message", [
    ("\tfield: u64 timestamp;\toffset:0;\tsize:8;\tsigned:0;\n", "no 'commit'"),
    ("\tfield: u64 timestamp;\toffset:0;\tsize:8;\tsigned:0;\n"
     "\tfield: local_t commit;\toffset:8;\tsize:8;\tsigned:1;\n"
     "\tfield: char data;\toffset:24;\tsize:4072;\tsigned:1;\n", "data at 24"),
    ("\tfield: u64 timestamp;\toffset:0;\tsize:4;\tsigned:0;\n"
     "\tfield: local_t commit;\toffset:8;\tsize:8;\tsigned:1;\n"
     "\tfield: char data;\toffset:16;\tsize:4080;\tsigned:1;\n", "unexpected header_page"),
    ("\tfield: u64 timestamp;\toffset:0;\tsize:8;\tsigned:0;\n"
     "\tfield: local_t commit;\toffset:8;\tsize:2;\tsigned:1;\n"
     "\tfield: char data;\toffset:10;\tsize:4086;\tsigned:1;\n", "commit field size 2"),
    ("\tfield: nonsense\n", "malformed field line"),
])
def test_malformed_header_page(text: str, message: str) -> None:
    with pytest.raises(DecodeError, match=message):
        PageDecoder.from_header_page(text)


# --------------------------------------------------------------------------
# real pages (tests/data/pages, recorded by record_pages.py)


def test_real_getppid_page() -> None:
    d = PAGES / "getppid"
    meta = json.loads((d / "meta.json").read_text())
    fmt = parse_format((d / "sys_enter_getppid.format").read_text(), meta["system"])
    dec = RecordDecoder(fmt)
    pg = (d / "page.bin").read_bytes()
    pdec = PageDecoder.from_header_page((d / "header_page").read_text())
    assert len(pg) == pdec.page_size
    h, recs = pdec.records(pg)
    assert not h.missed and h.lost == 0
    mine = []
    for ts, start, ln in recs:
        if common_type(pg, start) != fmt.id:
            continue
        _flags, _pc, pid, args = dec.decode(pg, start, ln)
        if pid == meta["pid"]:
            mine.append((ts, args["__syscall_nr"]))
    assert len(mine) == meta["calls"] == 100
    assert {nr for _ts, nr in mine} == {110}  # x86-64 getppid
    stamps = [ts for ts, _nr in mine]
    assert all(a < b for a, b in zip(stamps, stamps[1:], strict=False))
    assert stamps[0] >= h.timestamp
    assert dec.decode_many(pg, [s for _t, s, _n in recs]) == [
        dec.decode(pg, s) for _t, s, _n in recs]


def test_real_pages_timestamps_chain_exactly() -> None:
    """The uprobe page was read from the same CPU buffer right after the getppid
    page; the kernel stamps it with the time of the last event consumed, so the
    sum of 100 deltas must land on it to the nanosecond."""
    g = (PAGES / "getppid" / "page.bin").read_bytes()
    u = (PAGES / "uprobe" / "page.bin").read_bytes()
    assert DEC.records(g)[1][-1][0] == DEC.header(u).timestamp


# --------------------------------------------------------------------------
# the uniform-run fast path gives exactly what the record-by-record walk gives


def _walked(pg: bytes, monkeypatch: pytest.MonkeyPatch):
    from kprobes.decode import ringbuf
    with monkeypatch.context() as m:
        m.setattr(ringbuf, "_uniform_prefix", lambda page, words, base, nwords, ts: ([], 0, ts))
        try:
            return DEC.records(pg)
        except DecodeError as e:
            return str(e)


def _fast(pg: bytes):
    try:
        return DEC.records(pg)
    except DecodeError as e:
        return str(e)


@pytest.mark.parametrize("tail", [
    b"",                                                   # one run to the end of the data
    hdr(29, 0),                                            # the page's padding tail
    extend(1 << 28) + data(3, b"Z" * 12),                  # a time extend, then the same size
    data(2, b"Y" * 8) + data(2, b"X" * 12),                # another size, then the same
    long_data(1, b"W" * 12),                               # the long form of the same size
])
def test_uniform_run_matches_the_walk(tail: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    run = b"".join(data(7 + i, struct.pack("=Iq", i, -i)) for i in range(40))
    pg = page(run + tail)
    got = _fast(pg)
    assert not isinstance(got, str) and len(got[1]) >= 40
    assert got == _walked(pg, monkeypatch)


def test_uniform_run_matches_the_walk_on_real_and_random_pages(
        monkeypatch: pytest.MonkeyPatch) -> None:
    pages = [(PAGES / d / "page.bin").read_bytes() for d in ("getppid", "uprobe")]
    rnd = random.Random(99)
    for _ in range(300):    # runs cut by every kind of record, and cut pages
        size = rnd.choice([4, 8, 12, 16])
        recs = b"".join(data(rnd.randrange(1 << 27), bytes(rnd.getrandbits(8) for _ in range(size)))
                        for _ in range(rnd.randrange(0, 60)))
        recs += rnd.choice([b"", extend(5), stamp(PAGE_TS * 2), padding(3, 8), hdr(29, 0),
                            hdr(0, 1), data(1, b"q" * 4)])
        recs += b"".join(data(1, b"r" * size) for _ in range(rnd.randrange(0, 5)))
        pages.append(page(recs, data_len=max(0, len(recs) - 4 * rnd.choice([0, 0, 1, 2]))))
    for pg in pages:
        assert _fast(pg) == _walked(pg, monkeypatch)


def test_lazy_records_give_times_and_starts_without_tuples() -> None:
    """A page of one run gives its times and payload starts from the page words
    (no per-record tuple is made); every page gives the same as its records."""
    pages = [(PAGES / d / "page.bin").read_bytes() for d in ("getppid", "uprobe")]
    run = b"".join(data(7 + i, struct.pack("=Iq", i, -i)) for i in range(40))
    for tail in (b"", hdr(29, 0), padding(3, 8), extend(1 << 28), extend(5) + data(3, b"Z" * 12),
                 data(2, b"Y" * 8), long_data(1, b"W" * 12)):
        pages.append(page(run + tail))
    pages.append(page(data(5, b"a" * 4)))                  # one record
    pages.append(page(extend(9) + run))                    # a run that does not start the page
    uniform = 0
    for pg in pages:
        _h, want = DEC.records(pg)
        _h, recs = DEC.lazy(pg)
        if recs.stride is not None:
            uniform += 1
            assert len({ln for _t, _s, ln in want}) == 1
            assert recs._list is None
        assert recs.ts_list() == [r[0] for r in want]
        assert list(recs.starts()) == [r[1] for r in want]
        assert recs.last_ts() == want[-1][0]
        if recs.stride is not None:
            assert recs._list is None                      # still no tuples
            assert recs.stride == want[1][1] - want[0][1] if len(want) > 1 else True
    # the real getppid page, the run alone and with trailing padding / extends
    assert uniform == 6

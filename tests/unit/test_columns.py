"""Column-wise decoding from strided page views gives exactly the values of
record-by-record decoding, for every recorded format that has a layout."""

from __future__ import annotations

import random
from pathlib import Path

from kprobes.decode.columns import segment_columns, uniform_stride
from kprobes.decode.format import parse_format
from kprobes.decode.record import RecordDecoder

FORMATS = Path(__file__).resolve().parent.parent / "data" / "formats"


def test_uniform_stride() -> None:
    assert uniform_stride([16, 36, 56]) == 20
    assert uniform_stride([16]) is not None
    assert uniform_stride([]) is None
    assert uniform_stride([16, 36, 64]) is None        # a gap: not one stride
    assert uniform_stride([16, 40, 56]) is None        # same span, uneven gaps


STR_ROOM = 12     # bytes after a record's fixed part for its strings


def _payload(dec: RecordDecoder, rnd: random.Random, size: int, text: bytes) -> bytes:
    """A payload of random fixed fields whose ``__data_loc`` strings are ``text``
    (at most STR_ROOM - 1 bytes, NUL-terminated here) after the fixed part."""
    import struct
    body = bytearray(rnd.getrandbits(8) for _ in range(size + STR_ROOM))
    for j, base in dec.loc_strings:
        off = dec.layout[j][0]                                       # type: ignore[index]
        body[off:off + 4] = struct.pack("=I", (len(text) + 1) << 16 | (size - base))
        body[size:size + len(text) + 1] = text + b"\0"
    return bytes(body)


def test_columns_match_rows_for_every_recorded_format() -> None:
    rnd = random.Random(7)
    seen = with_strings = 0
    for path in sorted(FORMATS.glob("*.format")):
        dec = RecordDecoder(parse_format(path.read_text(), "x"))
        if dec.layout is None:
            continue
        seen += 1
        with_strings += bool(dec.loc_strings)
        size = dec._min_len                                 # noqa: SLF001
        plen = size + (STR_ROOM if dec.loc_strings else 0)
        stride = (plen + 4 + 3) // 4 * 4                     # header + payload, 4-aligned
        for n in (1, 2, 37):
            texts = [rnd.choice([b"loops", b"sh", b"\xffx", b""]).ljust(5, b"!") for _ in range(n)]
            page = bytes(16) + b"".join(bytes(4) + _payload(dec, rnd, size, t)[:stride - 4]
                                        .ljust(stride - 4, b"\0") for t in texts) + bytes(8)
            recs = [(i, 20 + i * stride, plen) for i in range(n)]
            cols = segment_columns(dec.layout, [(0, page, recs)], strings=dec.loc_strings)
            rows = dec.rows(page, [s for _t, s, _l in recs])
            assert cols == [list(c) for c in zip(*rows, strict=True)], path.name
        # records not at one stride: no columns (the caller decodes row by row)
        page = bytes(16 + stride * 3 + 16)
        assert segment_columns(dec.layout, [(0, page, [(0, 20, size), (1, 20 + stride + 4, size),
                                                         (2, 20 + 2 * stride + 4, size)])]) is None
    assert seen >= 3 and with_strings >= 2


def test_pages_of_one_run_join_into_one_column_per_field() -> None:
    """Lazily read pages whose records are each one run at one stride (the usual
    pages at a high rate) give their columns from the runs joined end to end: the
    same values as record by record, also for a page filled to its last byte, with
    the common fields as arrays."""
    import struct
    from array import array

    from kprobes.decode.ringbuf import PageDecoder
    rnd = random.Random(11)
    dec_pages = PageDecoder()
    seen = 0
    for path in sorted(FORMATS.glob("*.format")):
        dec = RecordDecoder(parse_format(path.read_text(), "x"))
        if dec.layout is None:
            continue
        fixed = dec._min_len                                  # noqa: SLF001
        size = (fixed + (STR_ROOM if dec.loc_strings else 0) + 3) // 4 * 4
        if size // 4 > 28:
            continue
        seen += 1
        segs = []
        for cpu, n in ((0, 5), (1, 40), (0, 4080 // (size + 4))):
            body = b"".join(struct.pack("=I", size // 4 | 3 << 5)
                            + _payload(dec, rnd, fixed, rnd.choice([b"ab", b"cd"]))[:size]
                            .ljust(size, b"\0") for _ in range(n))
            page = struct.pack("=QQ", 1000 * cpu, len(body)) + body   # ends where its data ends
            _h, recs = dec_pages.lazy(page)
            assert recs.stride == size + 4
            segs.append((cpu, page, recs))
        cols = segment_columns(dec.layout, segs, arrays=3, strings=dec.loc_strings)
        rows = []
        for _cpu, page, recs in segs:
            rows += dec.rows(page, list(recs.starts()))
        assert cols is not None
        assert [type(c) for c in cols[:3]] == [array] * 3
        assert [list(c) for c in cols] == [list(c) for c in zip(*rows, strict=True)], path.name
    assert seen >= 3


def test_strings_faults_and_strings_at_different_places() -> None:
    """An empty ``__data_loc`` string (a failed fetch) is ``FAULT`` in the column
    as in ``decode``; strings at different places in different records (paths of
    different lengths) give no columns: the caller decodes record by record."""
    import struct

    from kprobes import FAULT
    dec = RecordDecoder(parse_format((FORMATS / "sched_sched_process_exec.format").read_text(),
                                     "sched"))
    (j, base), = dec.loc_strings
    off = dec.layout[j][0]                                           # type: ignore[index]
    size = dec._min_len                                              # noqa: SLF001
    stride = (size + STR_ROOM + 4 + 3) // 4 * 4
    rnd = random.Random(3)

    def page_of(payloads: list[bytes]) -> tuple[bytes, list[tuple[int, int, int]]]:
        page = bytes(16) + b"".join(bytes(4) + p.ljust(stride - 4, b"\0") for p in payloads)
        return page, [(i, 20 + i * stride, stride - 4) for i in range(len(payloads))]

    empty = bytearray(_payload(dec, rnd, size, b"x"))
    empty[off:off + 4] = struct.pack("=I", 0)                       # length 0: no string
    page, recs = page_of([bytes(empty)] * 3)
    cols = segment_columns(dec.layout, [(0, page, recs)], strings=dec.loc_strings)
    assert cols is not None and cols[j] == [FAULT] * 3
    assert [r[j] for r in dec.rows(page, [s for _t, s, _l in recs])] == [FAULT] * 3
    page, recs = page_of([_payload(dec, rnd, size, t) for t in (b"/bin/sh", b"/x", b"/bin/sh")])
    assert segment_columns(dec.layout, [(0, page, recs)], strings=dec.loc_strings) is None
    assert [r[j] for r in dec.rows(page, [s for _t, s, _l in recs])] == ["/bin/sh", "/x", "/bin/sh"]

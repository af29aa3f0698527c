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


def test_columns_match_rows_for_every_recorded_format() -> None:
    rnd = random.Random(7)
    seen = 0
    for path in sorted(FORMATS.glob("*.format")):
        dec = RecordDecoder(parse_format(path.read_text(), "x"))
        if dec.layout is None:
            continue
        seen += 1
        size = dec._min_len                                 # noqa: SLF001
        stride = (size + 4 + 3) // 4 * 4                     # header + payload, 4-aligned
        for n in (1, 2, 37):
            page = bytes(rnd.getrandbits(8) for _ in range(16 + stride * n + 8))
            recs = [(i, 20 + i * stride, size) for i in range(n)]
            cols = segment_columns(dec.layout, [(0, page, recs)])
            rows = dec.rows(page, [s for _t, s, _l in recs])
            assert cols == [list(c) for c in zip(*rows, strict=True)], path.name
        # records not at one stride: no columns (the caller decodes row by row)
        page = bytes(16 + stride * 3 + 16)
        assert segment_columns(dec.layout, [(0, page, [(0, 20, size), (1, 20 + stride + 4, size),
                                                         (2, 20 + 2 * stride + 4, size)])]) is None
    assert seen >= 3


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
        size = (dec._min_len + 3) // 4 * 4                   # noqa: SLF001
        if size // 4 > 28:
            continue
        seen += 1
        segs = []
        for cpu, n in ((0, 5), (1, 40), (0, 4080 // (size + 4))):
            body = b"".join(struct.pack("=I", size // 4 | 3 << 5)
                            + bytes(rnd.getrandbits(8) for _ in range(size)) for _ in range(n))
            page = struct.pack("=QQ", 1000 * cpu, len(body)) + body   # ends where its data ends
            _h, recs = dec_pages.lazy(page)
            assert recs.stride == size + 4
            segs.append((cpu, page, recs))
        cols = segment_columns(dec.layout, segs, arrays=3)
        rows = []
        for _cpu, page, recs in segs:
            rows += dec.rows(page, list(recs.starts()))
        assert cols is not None
        assert [type(c) for c in cols[:3]] == [array] * 3
        assert [list(c) for c in cols] == [list(c) for c in zip(*rows, strict=True)], path.name
    assert seen >= 3

"""Ring-buffer sub-buffer pages, as read from ``per_cpu/cpuN/trace_pipe_raw``.

Each read of ``trace_pipe_raw`` returns one sub-buffer ("page", 4096 bytes
unless ``buffer_subbuf_size_kb`` says otherwise) in the kernel's byte order
(``struct buffer_data_page`` in ``kernel/trace/ring_buffer.c``)::

    u64      timestamp       time of the first event (ns, trace clock)
    local_t  commit          data length; bit 31: events were lost before
                             this page; bit 30: their count is stored
                             right after the data (an unsigned long)
    char     data[]          records, 4-byte aligned

``events/header_page`` gives the width of ``commit`` (8 on 64-bit kernels)
and the data size; :meth:`PageDecoder.from_header_page` reads it.

Every record starts with a u32: ``type_len`` (bits 0-4) and ``time_delta``
(bits 5-31, ns since the previous record)::

    type_len 1..28   data, payload of type_len*4 bytes at +4
    type_len 0       data, array[0] at +4 = payload length + 4, payload at +8
    29 padding       time_delta 0: nothing more on this page; otherwise a
                     discarded event of array[0] + 4 bytes
    30 time extend   8 bytes; adds (array[0] << 27) + time_delta
    31 time stamp    8 bytes; absolute time (array[0] << 27) | time_delta, 59 bits;
                     the top 5 bits come from the time so far (rb_fix_abs_ts)

Timestamps follow the kernel's own page check (``rb_read_data_buffer``):
padding adds its delta unless the delta is 1 (the value the kernel forces on
padding that had none), so the time of a discarded event is not lost.

Lost events: the page flags only tell about events overwritten before this
page (``options/overwrite`` = 1). Events dropped because the buffer was full
(``overwrite`` = 0) are only counted in ``per_cpu/cpuN/stats``.

Speed: the reader counts a page (:meth:`PageDecoder.lazy`) and splits it
only when a consumer reads records. A page whose records are one run of one
size from its start (the usual page at a high rate: one event back to back)
is never split into per-record tuples: :class:`Records` gives its times from
the header words (one strided slice and ``itertools.accumulate``) and its
records' places as a ``range``, and batch columns are strided slices of the
page (:mod:`kprobes.decode.columns`). Neither makes a tracked Python object per
record, so the garbage collector is not woken per few hundred events: at
1M events/s, ``trace --json`` spent ~35% of its CPU making and collecting the
tuples. :meth:`PageDecoder.records` views the data as native u32 words
(``memoryview.cast('I')``, records are 4-byte aligned). A leading run of
data records of one size (the usual page: one event back to back) is split
with strided slices and ``itertools.accumulate``, no per-record Python code
(~2.5x faster than the walk, measured on a loaded host); the rest is walked
in one loop with no per-record slicing or struct calls. Measured on the project's
host (Python 3.11, 2-vCPU Firecracker VM, best of 5 x 2000 pages): a full
4 KB page of 255 records with 12-byte payloads takes ~50 us, i.e. about
5.0 million records/s; with ``RecordDecoder.decode_many`` on top, a page of
``sys_enter_getppid`` events goes from bytes to dicts at ~1.2 million
events/s.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator, Sequence
from itertools import accumulate, repeat
from operator import rshift

from kprobes.decode.format import Field, parse_field_line
from kprobes.errors import DecodeError
from kprobes.values import Frozen, _set

TYPE_CHECKING = False   # typing's, without importing typing at run time
if TYPE_CHECKING:
    from typing import Literal, overload
else:
    def overload(f):    # the last (real) definition replaces the overloads at run time
        return f

__all__ = [
    "PageHeader",
    "PageDecoder",
    "Records",
    "ts_of",
    "starts_of",
    "last_ts",
    "RINGBUF_TYPE_DATA_TYPE_LEN_MAX",
    "RINGBUF_TYPE_PADDING",
    "RINGBUF_TYPE_TIME_EXTEND",
    "RINGBUF_TYPE_TIME_STAMP",
    "RB_MISSED_EVENTS",
    "RB_MISSED_STORED",
    "TS_SHIFT",
    "fix_abs_ts",
]

RINGBUF_TYPE_DATA_TYPE_LEN_MAX = 28
RINGBUF_TYPE_PADDING = 29
RINGBUF_TYPE_TIME_EXTEND = 30
RINGBUF_TYPE_TIME_STAMP = 31

RB_MISSED_EVENTS = 1 << 31
RB_MISSED_STORED = 1 << 30
_RB_MISSED_FLAGS = RB_MISSED_EVENTS | RB_MISSED_STORED

TS_SHIFT = 27
_TS_MSB = 0xF8 << 56


def fix_abs_ts(abs_ts: int, prev_ts: int) -> int:
    """Complete a 59-bit absolute timestamp with the top bits of ``prev_ts``.

    The kernel keeps only 59 bits in a TIME_STAMP record; the 5 most
    significant bits come from the time so far, with a carry if the low part
    wrapped (``rb_fix_abs_ts``). Clocks that count from boot never set them.
    """
    if prev_ts & _TS_MSB:
        abs_ts |= prev_ts & _TS_MSB
        if abs_ts < prev_ts:
            abs_ts += 1 << 59
    return abs_ts


class PageHeader(Frozen):
    """``timestamp``: ns of the page's first event. ``data_len``: bytes of
    records. ``missed``: events were lost before this page. ``lost``: how
    many (0 when none were missed, None when the kernel had no room to say).
    """

    __slots__ = _fields = ("timestamp", "data_len", "missed", "lost")
    timestamp: int
    data_len: int
    missed: bool
    lost: int | None

    def __init__(self, timestamp: int, data_len: int, missed: bool, lost: int | None) -> None:
        _set(self, "timestamp", timestamp)
        _set(self, "data_len", data_len)
        _set(self, "missed", missed)
        _set(self, "lost", lost)


class PageDecoder:
    """Split ``trace_pipe_raw`` pages into records.

    >>> dec = PageDecoder()                         # 64-bit kernel, 4 KB pages
    >>> hdr, recs = dec.records(page)               # doctest: +SKIP
    >>> recs[0]                                     # doctest: +SKIP
    (82911048123, 20, 12)                           # (ts_ns, payload_start, payload_len)

    ``payload_start`` is an offset into ``page``; ``payload_len`` for small
    records is ``type_len * 4`` and may include alignment padding past the
    event's real size.
    """

    __slots__ = ("commit_size", "page_size", "data_offset", "_hdr")

    def __init__(self, commit_size: int = 8, page_size: int = 4096) -> None:
        if commit_size not in (4, 8):
            raise DecodeError(f"unsupported page commit field size {commit_size}")
        self.commit_size = commit_size
        self.data_offset = 8 + commit_size
        if page_size <= self.data_offset or page_size % 4:
            raise DecodeError(f"bad sub-buffer size {page_size}")
        self.page_size = page_size
        self._hdr = struct.Struct("=QQ" if commit_size == 8 else "=QI")

    def __repr__(self) -> str:
        return f"PageDecoder(commit_size={self.commit_size}, page_size={self.page_size})"

    @classmethod
    def from_header_page(cls, text: str, page_size: int | None = None) -> PageDecoder:
        """Build from the text of ``events/header_page``.

        The page size is the ``data`` field's offset plus size, unless
        ``page_size`` is given (an instance's ``buffer_subbuf_size_kb`` can
        differ from what the global header says).
        """
        fields: dict[str, Field] = {}
        for line in text.splitlines():
            if line.strip().startswith("field:"):
                f = parse_field_line(line, is_common=False)
                fields.setdefault(f.name, f)
        try:
            ts, commit, data = fields["timestamp"], fields["commit"], fields["data"]
        except KeyError as e:
            raise DecodeError(f"header_page has no {e.args[0]!r} field") from None
        if ts.offset != 0 or ts.size != 8 or commit.offset != 8:
            raise DecodeError("unexpected header_page layout: timestamp at "
                              f"{ts.offset}/{ts.size}, commit at {commit.offset}")
        if data.offset != 8 + commit.size:
            raise DecodeError(f"unexpected header_page layout: data at {data.offset} "
                              f"with a {commit.size}-byte commit")
        return cls(commit.size, page_size if page_size is not None else data.offset + data.size)

    def header(self, page: bytes | bytearray | memoryview) -> PageHeader:
        """The page header; DecodeError if the page is shorter than it says."""
        try:
            ts, commit = self._hdr.unpack_from(page, 0)
        except struct.error:
            raise DecodeError(f"page of {len(page)} bytes has no header") from None
        data_len = commit & ~_RB_MISSED_FLAGS
        if data_len > self.page_size - self.data_offset:
            raise DecodeError(f"page data length {data_len:#x} exceeds the sub-buffer "
                              f"({self.page_size - self.data_offset})")
        end = self.data_offset + data_len
        if len(page) < end:
            raise DecodeError(f"page is {len(page)} bytes but its data runs to {end}")
        missed = bool(commit & RB_MISSED_EVENTS)
        lost: int | None
        if commit & RB_MISSED_STORED:
            cs = self.commit_size
            if len(page) < end + cs:
                raise DecodeError("page says the lost-event count follows the data, "
                                  "but the page ends there")
            lost = int.from_bytes(page[end:end + cs], _BYTEORDER)
        else:
            lost = None if missed else 0
        return PageHeader(ts, data_len, missed, lost)

    def records(self, page: bytes | bytearray | memoryview,
                ) -> tuple[PageHeader, list[tuple[int, int, int]]]:
        """The header and the data records ``(ts_ns, payload_start, payload_len)``.

        Raises :class:`DecodeError` on a record that runs past the data,
        an unaligned data length that cuts a record, or a malformed length.
        """
        hdr = self.header(page)
        if hdr.data_len & 3:
            raise DecodeError(f"page data length {hdr.data_len} is not a multiple of 4")
        base = self.data_offset
        nwords = hdr.data_len >> 2
        words = memoryview(page)[base:base + (nwords << 2)].cast("I")
        out, i, ts = _uniform_prefix(page, words, base, nwords, hdr.timestamp)
        append = out.append
        try:
            while i < nwords:
                w = words[i]
                tl = w & 31
                if 0 < tl <= 28:
                    ts += w >> 5
                    append((ts, base + 4 * i + 4, tl << 2))
                    i += tl + 1
                    continue
                if tl == 0:
                    ln = words[i + 1]  # payload + 4, 4-aligned
                    if ln < 4 or ln & 3:
                        raise DecodeError(f"record at {base + 4 * i}: bad length {ln}")
                    ts += w >> 5
                    append((ts, base + 4 * i + 8, ln - 4))
                    i += 1 + (ln >> 2)
                elif tl == RINGBUF_TYPE_PADDING:
                    delta = w >> 5
                    if not delta:
                        break  # rest of the page is empty
                    ln = words[i + 1]
                    if ln & 3:
                        raise DecodeError(f"padding at {base + 4 * i}: bad length {ln}")
                    if delta != 1:
                        ts += delta
                    i += 1 + (ln >> 2)
                elif tl == RINGBUF_TYPE_TIME_EXTEND:
                    ts += (words[i + 1] << TS_SHIFT) + (w >> 5)
                    i += 2
                else:  # RINGBUF_TYPE_TIME_STAMP
                    ts = fix_abs_ts((words[i + 1] << TS_SHIFT) | (w >> 5), ts)
                    i += 2
        except IndexError:
            raise DecodeError(f"record at {base + 4 * i} is cut off by the end of the "
                              f"page data ({base + hdr.data_len})") from None
        finally:
            words.release()
        if i > nwords:
            raise DecodeError(f"last record runs past the page data by {4 * (i - nwords)} bytes")
        return hdr, out


    def count(self, page: bytes | bytearray | memoryview) -> tuple[PageHeader, int]:
        """The header and the number of data records, checked as :meth:`records`
        checks them, without making a Python object per record: runs of same-size
        records are counted with C-level slices.

        >>> import struct
        >>> rec = struct.pack("=I", 3 | 7 << 5) + bytes(12)        # type_len 3, delta 7
        >>> PageDecoder().count(struct.pack("=QQ", 5, 16 * 40) + rec * 40)[1]
        40
        """
        hdr, n, _tl = self._count(page)
        return hdr, n

    def _count(self, page: bytes | bytearray | memoryview) -> tuple[PageHeader, int, int]:
        """:meth:`count`, and the ``type_len`` of the page's records if they are all
        one run of one size from the start of the data (else 0)."""
        hdr = self.header(page)
        if hdr.data_len & 3:
            raise DecodeError(f"page data length {hdr.data_len} is not a multiple of 4")
        base = self.data_offset
        nwords = hdr.data_len >> 2
        words = memoryview(page)[base:base + (nwords << 2)].cast("I")
        n = i = 0
        fast = _BYTEORDER == "little"
        uniform = run0 = 0
        try:
            while i < nwords:
                w = words[i]
                tl = w & 31
                if 0 < tl <= RINGBUF_TYPE_DATA_TYPE_LEN_MAX:
                    k = _same_run(page, base, i, nwords, tl) if fast else 0
                    if i == 0 and k:
                        uniform, run0 = tl, k   # holds if no data record follows the run
                    if k < 8:
                        fast = False        # mixed sizes on this page: one record at a time
                    k = k or 1              # a record cut by the end: stepped over, then refused
                    n += k
                    i += k * (tl + 1)
                elif tl == 0:
                    ln = words[i + 1]
                    if ln < 4 or ln & 3:
                        raise DecodeError(f"record at {base + 4 * i}: bad length {ln}")
                    n += 1
                    i += 1 + (ln >> 2)
                elif tl == RINGBUF_TYPE_PADDING:
                    if not w >> 5:
                        break
                    ln = words[i + 1]
                    if ln & 3:
                        raise DecodeError(f"padding at {base + 4 * i}: bad length {ln}")
                    i += 1 + (ln >> 2)
                else:                           # time extend, time stamp: 8 bytes
                    words[i + 1]
                    i += 2
        except IndexError:
            raise DecodeError(f"record at {base + 4 * i} is cut off by the end of the "
                              f"page data ({base + hdr.data_len})") from None
        finally:
            words.release()
        if i > nwords:
            raise DecodeError(f"last record runs past the page data by {4 * (i - nwords)} bytes")
        if n != run0:
            uniform = 0             # other data records follow the first run
        return hdr, n, uniform

    def lazy(self, page: bytes) -> tuple[PageHeader, Records]:
        """The header and the records as a :class:`Records` sequence: counted now,
        split into tuples only when first iterated or indexed."""
        hdr, n, tl = self._count(page)
        return hdr, Records(self, page, n, tl, hdr.timestamp)


class Records(Sequence[tuple[int, int, int]]):
    """One page's records ``(ts_ns, payload_start, payload_len)``, split on first use.

    ``len()`` is known from :meth:`PageDecoder.count`; a consumer that only counts
    events (a count aggregation, ``trace -q``) never makes the per-record tuples.
    A page whose records are one run of one size (the usual page at a high rate)
    also gives its timestamps (:meth:`ts_list`) and where its records are
    (:attr:`stride`, :meth:`starts`) without them: columns are read from the page
    at that stride (:mod:`kprobes.decode.columns`).

    >>> import struct
    >>> rec = struct.pack("=I", 1 | 7 << 5) + bytes(4)
    >>> hdr, recs = PageDecoder().lazy(struct.pack("=QQ", 5, 16) + rec * 2)
    >>> len(recs), list(recs)
    (2, [(12, 20, 4), (19, 28, 4)])
    >>> hdr, recs = PageDecoder().lazy(struct.pack("=QQ", 5, 8 * 9) + rec * 9)
    >>> recs.stride, recs.starts()[:2], recs.ts_list()[:3]
    (8, range(20, 36, 8), [12, 19, 26])
    """

    __slots__ = ("_dec", "_page", "_n", "_list", "_tl", "_ts0")

    def __init__(self, dec: PageDecoder, page: bytes, n: int, tl: int = 0,
                 ts0: int = 0) -> None:
        self._dec, self._page, self._n = dec, page, n
        self._list: list[tuple[int, int, int]] | None = None
        self._tl, self._ts0 = tl, ts0

    def _get(self) -> list[tuple[int, int, int]]:
        if self._list is None:
            self._list = self._dec.records(self._page)[1]
        return self._list

    @property
    def stride(self) -> int | None:
        """Bytes from one record to the next if they are one run, else None."""
        return 4 * (self._tl + 1) if self._tl else None

    def starts(self) -> Sequence[int]:
        """Where each record's payload starts in the page."""
        if self._tl:
            start, step = self._dec.data_offset + 4, 4 * (self._tl + 1)
            return range(start, start + step * self._n, step)
        return [r[1] for r in self._get()]

    def ts_list(self) -> list[int]:
        """The records' timestamps (ns, trace clock)."""
        if self._list is None and self._tl:
            base, step = self._dec.data_offset, self._tl + 1
            words = memoryview(self._page)[base:base + 4 * step * self._n].cast("I")
            deltas = map(rshift, words[::step].tolist(), repeat(5))
            words.release()
            ts = list(accumulate(deltas, initial=self._ts0))
            del ts[0]
            return ts
        return [r[0] for r in self._get()]

    def last_ts(self) -> int:
        """The last record's timestamp."""
        if self._list is None and self._tl:
            return self.ts_list()[-1]
        return self._get()[-1][0]

    def __len__(self) -> int:
        return self._n

    def __bool__(self) -> bool:
        return self._n > 0

    def __iter__(self) -> Iterator[tuple[int, int, int]]:
        return iter(self._get())

    @overload
    def __getitem__(self, i: int) -> tuple[int, int, int]: ...
    @overload
    def __getitem__(self, i: slice) -> list[tuple[int, int, int]]: ...  # noqa: F811

    def __getitem__(  # noqa: F811
            self, i: int | slice) -> tuple[int, int, int] | list[tuple[int, int, int]]:
        return self._get()[i]

    def __repr__(self) -> str:
        return f"Records({self._n})"


def ts_of(recs: Sequence[tuple[int, int, int]]) -> list[int]:
    """The timestamps of a page's records (a :class:`Records` or a list of tuples)."""
    if type(recs) is Records:
        return recs.ts_list()
    return [r[0] for r in recs]


def starts_of(recs: Sequence[tuple[int, int, int]]) -> Sequence[int]:
    """Where a page's records' payloads start (a :class:`Records` or a list of tuples)."""
    if type(recs) is Records:
        return recs.starts()
    return [r[1] for r in recs]


def last_ts(recs: Sequence[tuple[int, int, int]]) -> int:
    """The timestamp of a page's last record."""
    if type(recs) is Records:
        return recs.last_ts()
    return recs[-1][0]


_BYTEORDER: Literal["little", "big"] = "little" if struct.pack("=H", 1) == b"\x01\x00" else "big"
_LOW5 = bytes(b & 31 for b in range(256))


def _uniform_prefix(page: bytes | bytearray | memoryview, words: memoryview, base: int,
                    nwords: int, ts: int) -> tuple[list[tuple[int, int, int]], int, int]:
    """The leading run of small data records of one size (the usual page: one
    event, back to back) decoded with C-level slices and no per-record Python
    code: ``(records, next word index, time so far)``. The record loop of
    :meth:`PageDecoder.records` takes the rest of the page from there.

    Exact: the header at word 0 says ``type_len``; if the header at word
    ``k * (type_len + 1)`` says the same for every k before the first one that
    does not, then by induction these are exactly the records a walk finds.
    """
    if _BYTEORDER != "little" or nwords < 8:
        return [], 0, ts
    tl = words[0] & 31
    if not 0 < tl <= RINGBUF_TYPE_DATA_TYPE_LEN_MAX:
        return [], 0, ts
    step = tl + 1
    fit = nwords // step                          # whole records within the data
    # the low byte of each would-be header (little-endian), masked to type_len
    lows = bytes(memoryview(page)[base:base + 4 * step * fit:4 * step]).translate(_LOW5)
    n = fit - len(lows.lstrip(lows[:1]))
    if n < 2:
        return [], 0, ts
    acc = list(accumulate(map(rshift, words[:step * n:step].tolist(), repeat(5)), initial=ts))
    del acc[0]
    start = base + 4
    out = list(zip(acc, range(start, start + 4 * step * n, 4 * step), repeat(tl << 2, n), strict=True))
    return out, step * n, acc[-1]


_TL_BYTES = [bytes((t,)) for t in range(32)]


def _same_run(page: bytes | bytearray | memoryview, base: int, i: int, nwords: int,
              tl: int) -> int:
    """How many whole data records of ``tl`` words follow each other from word ``i``
    (little-endian: a strided slice of the header bytes, no per-record bytecode)."""
    step = tl + 1
    end = i + (nwords - i) // step * step          # whole records only
    lows = bytes(memoryview(page)[base + 4 * i:base + 4 * end:4 * step]).translate(_LOW5)
    return len(lows) - len(lows.lstrip(_TL_BYTES[tl]))

"""Parse the text of a tracefs ``hist`` file (hist triggers) into tables.

One ``hist`` file lists every hist trigger of the event, each as::

    # event histogram
    #
    # trigger info: hist:keys=mode.log2:vals=hitcount,mode:sort=hitcount:size=2048 [active]
    #

    { mode: ~ 2^3  } hitcount:          4  mode:         26
    { common_pid: python          [       142] } hitcount:       1023

    Totals:
        Hits: 1003
        Entries: 11
        Dropped: 0

Key values are kept as the kernel printed them (:func:`key_value` turns one
into a number, a string, a ``(comm, pid)`` pair, a bucket or a stack).
A ``stacktrace`` key spans lines, one frame per line (``sym+off/size [mod]``,
or a bare address), and the row's values follow the closing brace::

    { common_pid: cat             [       154], stacktrace:
             do_sys_openat2+0x5/0x170
             __x64_sys_openat+0x6a/0xa0
    } hitcount:          3

The frames are kept joined with newlines (:func:`key_value` with
``"stacktrace"`` splits them; :func:`frame_name` keeps a frame's function).

>>> t = parse_hist('# trigger info: hist:keys=x:vals=hitcount [active]\\n'
...                '{ x:          7 } hitcount:          3\\n'
...                'Totals:\\n    Hits: 3\\n    Entries: 1\\n    Dropped: 0\\n')[0]
>>> [(key_value(k["x"]), v) for k, v in t.rows], t.hits, t.dropped
([(7, {'hitcount': 3})], 3, 0)
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from ..errors import DecodeError
from ..values import Frozen, Value, _set

TYPE_CHECKING = False   # typing's, without importing typing at run time
if TYPE_CHECKING:
    from typing import Any

__all__ = ["HistTable", "parse_hist", "split_keys", "key_value", "frame_name", "Log2Key",
           "RangeKey"]

_ROW = re.compile(r"^\{ (?P<keys>.*) \}(?P<vals>(?:\s+[A-Za-z_][A-Za-z0-9_.]*:\s+-?\d+)+)\s*$")
_VAL = re.compile(r"([A-Za-z_][A-Za-z0-9_.]*):\s+(-?\d+)")
_SEP = re.compile(r"(?:^|, )([A-Za-z_][A-Za-z0-9_]*): ")
_EXECNAME = re.compile(r"^(?P<comm>.*?)\s*\[\s*(?P<pid>\d+)\]$")
_LOG2 = re.compile(r"^~ 2\^(\d+)$")
_RANGE = re.compile(r"^~ (\d+)-(\d+)$")
# the last line of a multi-line (stacktrace) row: " }" or ", more: keys }", then the values
_END = re.compile(r"^(?P<keys>[^{]*?)\s*\}(?P<vals>(?:\s+[A-Za-z_][A-Za-z0-9_.]*:\s+-?\d+)+)\s*$")


class HistTable(Value):
    """One trigger's histogram: ``rows`` are ``(keys, vals)`` with keys as printed."""

    __slots__ = _fields = ("trigger", "rows", "hits", "entries", "dropped")

    def __init__(self, trigger: str,
                 rows: list[tuple[dict[str, str], dict[str, int]]] | None = None,
                 hits: int = 0, entries: int = 0, dropped: int = 0) -> None:
        self.trigger = trigger
        self.rows = [] if rows is None else rows
        self.hits = hits
        self.entries = entries
        self.dropped = dropped


class Log2Key(Frozen):
    """A ``.log2`` key: bucket ``2^k``."""

    __slots__ = _fields = ("k",)
    k: int

    def __init__(self, k: int) -> None:
        _set(self, "k", k)


class RangeKey(Frozen):
    """A ``.buckets=N`` key: ``start <= v <= end``."""

    __slots__ = _fields = ("start", "end")
    start: int
    end: int

    def __init__(self, start: int, end: int) -> None:
        _set(self, "start", start)
        _set(self, "end", end)


def split_keys(text: str, names: Sequence[Sequence[str]] | None = None) -> dict[str, str]:
    """``"a: 1, b: x"`` -> ``{"a": "1", "b": "x"}``.

    ``names``: for each key in order, the names the kernel may print for it
    (e.g. ``("cpu", "common_cpu")``); a ``, NAME: `` inside a string value is
    then not taken for a separator.
    """
    seps = [m for m in _SEP.finditer(text)]
    if names is not None:
        chosen = []
        i = 0
        for m in seps:
            if i < len(names) and m.group(1) in names[i] and (i > 0 or m.start() == 0):
                chosen.append(m)
                i += 1
        seps = chosen
    out: dict[str, str] = {}
    for j, m in enumerate(seps):
        end = seps[j + 1].start() if j + 1 < len(seps) else len(text)
        out[m.group(1)] = text[m.end():end].rstrip()
    return out


def key_value(raw: str, kind: str = "int", signed_bits: int = 0) -> Any:
    """One printed key as a value.

    ``kind``: ``int`` (``signed_bits`` > 0: a signed field, printed sign-extended as a u64),
    ``str``, ``execname`` (-> ``(comm, pid)``), ``log2`` (-> :class:`Log2Key`),
    ``range`` (-> :class:`RangeKey`), ``stacktrace`` (-> the frames as printed, innermost
    first). A key that is not of the kind raises :class:`~kprobes.errors.DecodeError`.

    >>> key_value("18446744073709551614", "int", 64), key_value("python   [  142]", "execname")
    (-2, ('python', 142))
    >>> key_value("~ 2^10", "log2"), key_value("~ 800-899", "range")
    (Log2Key(k=10), RangeKey(start=800, end=899))
    >>> key_value("         do_sys_openat2+0x5/0x170\\n         0xffffffffc03cc0c8", "stacktrace")
    ('do_sys_openat2+0x5/0x170', '0xffffffffc03cc0c8')
    """
    try:
        return _key_value(raw, kind, signed_bits)
    except ValueError as e:       # int() of a non-number, or of over 4,300 digits
        raise DecodeError(f"hist file: bad {kind} key {raw[:80]!r}: {e}") from None


def _key_value(raw: str, kind: str, signed_bits: int) -> Any:
    s = raw.strip()
    if kind == "str":
        return raw.rstrip()
    if kind == "stacktrace":
        return tuple(f.strip() for f in raw.splitlines() if f.strip())
    if kind == "execname":
        m = _EXECNAME.match(s)
        if not m:
            raise ValueError(f"not an execname key: {raw!r}")
        return m.group("comm"), int(m.group("pid"))
    if kind == "log2":
        m = _LOG2.match(s)
        if not m:
            raise ValueError(f"not a log2 key: {raw!r}")
        return Log2Key(int(m.group(1)))
    if kind == "range":
        m = _RANGE.match(s)
        if not m:
            raise ValueError(f"not a bucket key: {raw!r}")
        return RangeKey(int(m.group(1)), int(m.group(2)))
    v = int(s, 0)
    # the kernel prints keys as u64: a signed field arrives sign-extended to 64 bits
    if signed_bits and v >= 1 << 63:
        v -= 1 << 64
    return v


def frame_name(printed: str) -> str:
    """A printed kernel frame's function (``sym+0x5/0x170 [mod]`` -> ``sym``); an
    address the kernel could not name stays as printed, with its module.

    >>> frame_name("do_sys_openat2+0x5/0x170"), frame_name("xfs_lookup+0x4a/0x100 [xfs]")
    ('do_sys_openat2', 'xfs_lookup')
    >>> frame_name("0xffffffffc03cc0c8")
    '0xffffffffc03cc0c8'
    """
    s = printed.strip()
    if s.startswith("0x"):
        return s
    return s.split("+", 1)[0].split(" ", 1)[0]


def parse_hist(text: str, names: Sequence[Sequence[str]] | None = None) -> list[HistTable]:
    """Every trigger's table in a ``hist`` file's text."""
    tables: list[HistTable] = []
    cur: HistTable | None = None
    block: list[str] | None = None          # the lines of a multi-line (stacktrace) row
    for line in text.splitlines():
        if block is not None:
            m = _END.match(line)
            if m is None and not line.startswith(("#", "Totals:")):
                block.append(line)
                continue
            if m is not None and cur is not None:
                # frames joined by newlines; keys after the stack (", k: v") follow them
                more = m.group("keys").strip()
                keys = "\n".join(block) + ("\n" + more if more else "")
                vals = {k: _int(v, line) for k, v in _VAL.findall(m.group("vals"))}
                cur.rows.append((split_keys(keys, names), vals))
                block = None
                continue
            block = None            # a row cut short: the line is read as any other
        if line.startswith("# trigger info:"):
            cur = HistTable(line[len("# trigger info:"):].strip())
            tables.append(cur)
            continue
        if cur is None or not line or line.startswith("#"):
            continue
        m = _ROW.match(line)
        if m:
            vals = {k: _int(v, line) for k, v in _VAL.findall(m.group("vals"))}
            cur.rows.append((split_keys(m.group("keys"), names), vals))
            continue
        if line.startswith("{ ") and line.endswith(":"):
            block = [line[2:] + " "]        # "stacktrace: " then a frame per line
            continue
        s = line.strip()
        for label, attr in (("Hits:", "hits"), ("Entries:", "entries"), ("Dropped:", "dropped")):
            if s.startswith(label):
                setattr(cur, attr, _int(s[len(label):], line))
    return tables


def _int(text: str, line: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise DecodeError(f"hist file: not a number in {line[:120]!r}") from None

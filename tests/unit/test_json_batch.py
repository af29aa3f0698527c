"""The per-batch JSON and text encoders of ``kprobes trace`` against the
per-event ones (``json_line``, ``text_line``), on crafted batches: one task on
one CPU, one task on two CPUs, several tasks, string args with hostile bytes,
hex arguments, and a fault (slow path)."""

from __future__ import annotations

import json
from array import array

import pytest

from kprobes.cli.trace_out import CHUNK, Sink, json_batch, text_batch
from kprobes.decode.format import FAULT
from kprobes.output.render import json_line, text_line
from kprobes.runtime.event import Event


class FakeBatch:
    def __init__(self, probe: str, rows: list[tuple]) -> None:
        self.probe = probe
        self.rows = rows
        ts, cpu, tid, pid, comm, flags, pc, args = zip(*rows, strict=True)
        self.ts, self.cpu = array("Q", ts), array("H", cpu)
        self.tid, self.pid = array("i", tid), array("i", pid)
        self.comm, self.trace_flags, self.preempt_count = list(comm), array("B", flags), array("B", pc)
        self.args = {k: [a[k] for a in args] for k in args[0]}

    def __len__(self) -> int:
        return len(self.rows)

    def events(self) -> list[Event]:
        return [Event(self.probe, ts, cpu, tid, fl, pc, dict(a), comm=comm, pid=pid)
                for ts, cpu, tid, pid, comm, fl, pc, a in self.rows]

    row_events = events      # a real Batch builds these from its columns (test_batch.py)


class Collect:
    def __init__(self) -> None:
        self.parts: list[str] = []

    def write(self, s: str) -> None:
        self.parts.append(s)

    def flush(self) -> None:
        pass


def _encode(batches: list[FakeBatch], hexes: dict[str, set[str]] | None = None) -> str:
    """JSON lines, or text lines if ``hexes`` (probe -> its args printed in hex)."""
    sink = Sink.__new__(Sink)
    sink.error, sink.f, sink.on_error, sink.name = None, Collect(), None, "test"
    enc = json_batch(sink) if hexes is None else text_batch(sink, hexes)
    for b in batches:
        enc(b)
    return "".join(sink.f.parts)


def _rows(n: int, cpus=(0,), tids=(7,), comm="gen", args=lambda i: {"nr": 110},
          vary: bool = True) -> list[tuple]:
    """``vary``: context and preempt_count change from row to row (else one task
    in one context: the usual batch)."""
    return [(1000 + i, cpus[i % len(cpus)], tids[i % len(tids)], 5, comm if isinstance(comm, str)
             else comm[i % len(comm)], 0x08 if vary and i % 3 == 0 else 0, i % 2 if vary else 1,
             args(i))
            for i in range(n)]


ROWS = [
    _rows(5),
    _rows(6, cpus=(0, 1)),
    _rows(7, cpus=(0, 1), tids=(7, 8), comm=("a", "b\x1b")),
    _rows(4, args=lambda i: {"path": f"/x/\x1b[2J\udcff{i % 2}", "fd": -i}),
    _rows(3, args=lambda i: {}),
    _rows(3, args=lambda i: {"s": FAULT if i == 1 else "ok", "n": i}),   # event by event
    _rows(3, args=lambda i: {"arr": (1, 2), "b": True}),
    _rows(5, vary=False),                                      # one line head for all
    _rows(6, cpus=(0, 1), vary=False),                         # one head per CPU
    _rows(CHUNK * 2 + 5, cpus=(1,) * 300 + (0,) * 300, vary=False,   # several chunks,
          args=lambda i: {"nr": 110, "x": i // 300}),         # a CPU and arg per chunk
    _rows(CHUNK + 3, tids=(7,) * CHUNK + (8,), vary=False),   # a second task at the end
    _rows(4, args=lambda i: {"fd": -2 - i, "nr": 1 << 40}),   # negative and wide: hex too
    [(t + 64_266_730_686_499_000, *r) for t, *r in _rows(4, vary=False)],  # rounding at .5 us
]


@pytest.mark.parametrize("rows", ROWS)
def test_same_text_as_json_line(rows: list[tuple]) -> None:
    b = FakeBatch("p_x", rows)
    got = _encode([b])
    assert got == "".join(json_line(ev) + "\n" for ev in b.events())
    for ln in got.splitlines():
        json.loads(ln)
    got.encode("utf-8")          # no lone surrogates: valid UTF-8


@pytest.mark.parametrize("hexed", [set(), {"nr", "fd"}])
@pytest.mark.parametrize("rows", ROWS)
def test_same_text_as_text_line(rows: list[tuple], hexed: set[str]) -> None:
    """``kprobes trace`` without ``--json``: the lines of ``text_line``, hex where
    the probe's argument types say so, with no argument ("probe:"), with a
    timestamp's rounding to the microsecond as the float format does it."""
    b = FakeBatch("p_x", rows)
    got = _encode([b], {"p_x": hexed})
    assert got == "".join(text_line(ev, hexed) + "\n" for ev in b.events())
    assert all(ln.isprintable() for ln in got.splitlines())   # escapes as text_line does


def test_caches_across_batches() -> None:
    b1, b2 = FakeBatch("p_x", _rows(3, cpus=(0, 1))), FakeBatch("p_y", _rows(2, tids=(9,)))
    assert _encode([b1, b2, b1]) == "".join(json_line(ev) + "\n"
                                            for b in (b1, b2, b1) for ev in b.events())

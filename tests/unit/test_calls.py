"""CallPairer: entries and returns of a function paired per thread across read cycles,
in timestamp order even when CPUs' events arrive out of order between cycles."""

from __future__ import annotations

from types import SimpleNamespace

from kprobes.runtime.calls import CallPairer, Calls


def _batch(ts, tids, args, cpu=0):
    n = len(ts)
    return SimpleNamespace(ts=ts, tid=tids, args=args, pid=[100] * n, comm=["w"] * n,
                           cpu=[cpu] * n, __len__=lambda: n)


def test_an_entry_read_early_waits_for_the_returns_before_it():
    """Cycle 1 reads CPU 0 early (entry at 10) and CPU 1 late (the next call's entry at
    30, whose thread migrated); cycle 2 brings CPU 0's return at 20, then the second
    return at 40. Held past the first cycle's watermark, the entry at 30 is not taken
    by the return at 20: each return gets its own entry."""
    got: list[Calls] = []
    upto = [20]
    p = CallPairer(got.append, complete=lambda: upto[0])
    p.entries(_batch([10], [7], {"a": [1]}))
    p.entries(_batch([30], [7], {"a": [2]}, cpu=1))
    p.flush()
    assert got == []                                  # nothing returned yet
    upto[0] = None                                    # the end: everything is read
    p.returns(_batch([20, 40], [7, 7], {"ret": [10, 20]}))
    p.flush()
    (c,) = got
    assert (c.ts, c.entry_ts, c.args, c.unmatched) == (
        [20, 40], [10, 30], {"a": [1, 2], "ret": [10, 20]}, 0)
    assert (c.tid, c.pid, c.comm, c.cpu) == ([7, 7], [100, 100], ["w", "w"], [0, 0])


def test_returns_without_entries_are_counted_and_handler_errors_reported():
    errors: list[Exception] = []

    def boom(c: Calls) -> None:
        raise ValueError(f"{len(c)} {c.unmatched}")
    p = CallPairer(boom, on_error=errors.append)
    p.returns(_batch([5], [3], {"ret": [0]}))
    p.flush()
    assert p.unmatched == 1 and [str(e) for e in errors] == ["0 1"]

"""A library consumer for bench/throughput.py: trace SPEC while CMD runs.

    python bench/consumer.py event|fields|batch|idle SPEC -- CMD ARGS...

``event``: a per-event handler counting events; ``fields``: a per-event handler
reading each event's ``tid``, ``comm`` and ``args`` (what a handler that prints
does, without the printing); ``batch``: a batch handler
counting rows (``len(batch)``) and reading the ``ts`` column; ``idle``: the
probe is armed in the session's instance but nobody reads it (the workload's
cost of recording alone). CMD is forked first, exec'd once the probes are armed,
and traced by pid. Prints one JSON line on stdout: delivered, lost, armed
(CLOCK_MONOTONIC ns), handler_time.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any


def main() -> int:
    mode, spec = sys.argv[1], sys.argv[2]
    argv = sys.argv[sys.argv.index("--") + 1:]
    buffer_kb = int(os.environ.get("KPROBES_BENCH_BUFFER_KB", "0")) or None
    from kprobes import Session

    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(w)
        os.read(r, 1)
        os.execvp(argv[0], argv)
    os.close(r)
    count = 0
    status: list[int] = []

    def exited() -> bool:
        if not status:
            p, st = os.waitpid(pid, os.WNOHANG)
            if p:
                status.append(st)
        return bool(status)

    with Session(pid=pid, buffer_kb=buffer_kb) as s:
        if mode == "event":
            def on_event(ev: object) -> None:
                nonlocal count
                count += 1
            s.add(spec, on_event)
        elif mode == "fields":
            seen: set[object] = set()

            def on_fields(ev: Any) -> None:
                nonlocal count
                count += 1
                seen.add((ev.tid, ev.comm, len(ev.args)))
            s.add(spec, on_fields)
        elif mode == "batch":
            def on_batch(b: object) -> None:
                nonlocal count
                count += len(b)         # type: ignore[arg-type]
                b.ts                    # type: ignore[attr-defined] # noqa: B018
            s.add_batch(spec, on_batch)
        else:
            s.add(spec)
        s.start()
        armed = time.monotonic_ns()
        os.write(w, b"g")
        os.close(w)
        if mode == "idle":
            while not exited():
                time.sleep(0.01)
            st = s._inst.cpu_stats   # noqa: SLF001 - bench: read what the kernel recorded
            recorded = sum(st(c).entries for c in range(s._reader.ncpus))  # noqa: SLF001
            stats = s.stats()
            count = recorded
        else:
            stats = s.run(until=exited)
    print(json.dumps({"delivered": count if mode != "idle" else count,
                      "events": stats.events, "lost": stats.lost, "armed": armed,
                      "handler_time": s.handler_time}))
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""kprobe on schedule(): a pre-handler and a post-handler, as in the kernel's
samples/kprobes/kprobe_example.c.

The pre-handler runs before the probed instruction, the post-handler right
after it (kprobes places a second probe on the next instruction boundary,
decoded from the kernel's own code). At the end it prints how often schedule()
ran, counted by the kernel (kprobe_profile), during the run.

    sudo python3 examples/kprobe_schedule.py --duration 2
"""

import argparse
import sys
import time

from kprobes import KprobesError, Session


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration", type=float, default=5.0, metavar="SECONDS")
    ap.add_argument("--symbol", default="schedule")
    args = ap.parse_args()
    out = sys.stdout

    def pre(ev):
        out.write(f"<{args.symbol}> pre_handler: current task on CPU#{ev.cpu}: {ev.comm} "
                  f"(before scheduling), preempt_count = {ev.preempt_count}\n")

    def post(ev):
        out.write(f"<{args.symbol}> post_handler: current task on CPU#{ev.cpu}: {ev.comm} "
                  f"(after scheduling), preempt_count = {ev.preempt_count}\n")

    try:
        with Session() as s:
            h = s.add_kprobe(f"p:{args.symbol}", pre, post)
            s.start()
            t0 = time.monotonic()
            stats = s.run(duration=args.duration)
            ms = int((time.monotonic() - t0) * 1000)
            hits = stats.probes[h.name].hits
        print(f"Scheduling times is {hits} during of {ms} milliseconds.")
    except KprobesError as e:
        print(f"error: {e}" + (f"\nhint: {e.hint}" if e.hint else ""), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

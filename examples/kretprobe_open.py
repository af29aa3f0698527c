#!/usr/bin/env python3
"""kretprobe on the kernel's open path with maxactive=1: print failed opens,
then how many calls the kernel could not probe for lack of a free instance
(samples/kprobes/kretprobe_example.c, with an entry handler whose per-call data
- the path and the entry time - reaches the return handler of the same call).

    sudo python3 examples/kretprobe_open.py --duration 5
"""

import argparse
import errno
import sys

from kprobes import KprobesError, Session


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration", type=float, default=5.0, metavar="SECONDS")
    ap.add_argument("--symbol", default="do_sys_openat2")
    ap.add_argument("--maxactive", type=int, default=1)
    args = ap.parse_args()
    out = sys.stdout

    def entry(ev):
        return ev.filename, ev.ts_ns          # per-call data

    try:
        with Session() as s:
            @s.kretprobe(args.symbol, maxactive=args.maxactive, entry=entry,
                         entry_args=("filename=+0($arg2):ustring",))
            def on_return(ev):
                if ev.retval < 0:
                    name = errno.errorcode.get(-ev.retval, "?")
                    if ev.data is None:         # no entry seen for this call
                        out.write(f"process '{ev.comm}' open(?) returns {ev.retval} "
                                  f"({name}); its entry was missed\n")
                        return
                    path, t0 = ev.data
                    out.write(f"process '{ev.comm}' open('{path}') returns {ev.retval} "
                              f"({name}) after {ev.ts_ns - t0} ns\n")
            stats = s.run(duration=args.duration)
            probe = stats.probes[s.handles[0].name]
        print(f"Missed {probe.misses} {args.symbol} probe instances.")
    except KprobesError as e:
        print(f"error: {e}" + (f"\nhint: {e.hint}" if e.hint else ""), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

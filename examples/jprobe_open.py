#!/usr/bin/env python3
"""jprobe on the kernel's open path: the handler receives the function's own
arguments by name, as jprobes did (samples/kprobes/jprobe_example.c).

    sudo python3 examples/jprobe_open.py --duration 5

Prints: process 'COMM' call open('PATH', FLAGS, MODE)
"""

import argparse
import sys

from kprobes import KprobesError, Session

# do_sys_openat2(int dfd, const char __user *filename, struct open_how *how)
# struct open_how { u64 flags; u64 mode; u64 resolve; }
OPEN_ARGS = ("dfd=$arg1:s32", "filename=+0($arg2):ustring",
             "flags=+0($arg3):x64", "mode=+8($arg3):x64")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration", type=float, default=5.0, metavar="SECONDS")
    ap.add_argument("--symbol", default="do_sys_openat2")
    args = ap.parse_args()
    out = sys.stdout
    try:
        with Session() as s:
            @s.jprobe(args.symbol, args=OPEN_ARGS)
            def on_open(ev, dfd, filename, flags, mode):
                out.write(f"process '{ev.comm}' call open('{filename}', {flags:#o}, "
                          f"{mode:#o})\n")
            stats = s.run(duration=args.duration)
        print(f"{stats.events} opens traced, {stats.lost} lost", file=sys.stderr)
    except KprobesError as e:
        print(f"error: {e}" + (f"\nhint: {e.hint}" if e.hint else ""), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

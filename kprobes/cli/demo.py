"""``kprobes demo``: the three classic kprobe demonstrations, briefly, with a workload.

On a kernel without kprobes it boots a Debian kernel under QEMU (``kprobes vm``)
and runs itself there, saying so.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

from ..errors import KprobesError

__all__ = ["register", "run", "EXAMPLES"]

EXAMPLES = ("kprobe_schedule.py", "jprobe_open.py", "kretprobe_open.py")

# Two processes opening a missing file in a tight loop: failed opens for the
# kretprobe, concurrency on both CPUs so that maxactive=1 misses some calls.
_OPENER = """
import os
while True:
    try:
        os.open("/nonexistent/kprobes-demo", os.O_RDONLY)
    except OSError:
        pass
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo", help="run the kprobe, jprobe and kretprobe demonstrations",
        description="Runs examples/kprobe_schedule.py, jprobe_open.py and kretprobe_open.py "
                    "for a few seconds each with a workload of two processes opening a "
                    "missing file. Without kprobes on this kernel, boots Debian's 6.1 kernel "
                    "in a QEMU VM (software emulation: ~15 s to boot) and runs there.")
    p.add_argument("--duration", type=float, default=2.0, metavar="SECONDS",
                   help="per demonstration (default 2)")
    p.add_argument("--lines", type=int, default=6, metavar="N",
                   help="show the first N event lines of each demonstration (default 6)")
    p.add_argument("--kernel", default="6.1", help="kernel for the VM when one is needed")
    p.add_argument("--no-vm", action="store_true", help="never boot a VM")
    p.set_defaults(func=run)


def examples_dir() -> str:
    here = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    path = os.path.join(here, "examples")
    if not os.path.isdir(path):
        raise KprobesError("the examples folder is not installed with this copy of kprobes",
                           hint="run from a checkout of the kprobes repository")
    return path


def run(args: argparse.Namespace) -> int:
    from ..kernel.tracefs import Tracefs
    tfs = Tracefs.open()
    if not tfs.has("kprobe_events"):
        if args.no_vm:
            raise KprobesError("this kernel has no kprobes (CONFIG_KPROBE_EVENTS is off)",
                               hint="drop --no-vm to run the demo in a QEMU VM")
        return _in_vm(args)
    exdir = examples_dir()
    rc = 0
    for name in EXAMPLES:
        rc |= _one(os.path.join(exdir, name), args)
    return rc


def _in_vm(args: argparse.Namespace) -> int:
    from ..vm import fetch_kernel, run_in_vm
    kernel = fetch_kernel(args.kernel)
    print(f"This kernel ({os.uname().release}) has no kprobes (CONFIG_KPROBE_EVENTS is off): "
          f"running the demo in a QEMU VM booting Debian's {kernel.version} "
          "(software emulation, ~15 s to boot).", flush=True)
    argv = [sys.executable, "-m", "kprobes", "demo", "--no-vm",
            "--duration", str(args.duration), "--lines", str(args.lines)]
    root = os.path.dirname(examples_dir())
    return run_in_vm(kernel, argv, cwd=root)


def _one(path: str, args: argparse.Namespace) -> int:
    name = os.path.basename(path)
    print(f"\n=== {name} (--duration {args.duration:g}) ===", flush=True)
    workers = [subprocess.Popen([sys.executable, "-c", _OPENER]) for _ in range(2)]
    try:
        proc = subprocess.Popen([sys.executable, path, "--duration", str(args.duration)],
                                stdout=subprocess.PIPE, text=True)
        shown = total = 0
        last: list[str] = []
        assert proc.stdout is not None
        for line in proc.stdout:
            total += 1
            if shown < args.lines:
                print(line, end="", flush=True)
                shown += 1
            else:
                last = (last + [line])[-2:]
        rc = proc.wait()
    finally:
        for w in workers:
            w.kill()
            w.wait()
    hidden = total - shown - len(last)
    if hidden > 0:
        print(f"... ({hidden} more lines)")
    for line in last:
        print(line, end="")
    return rc

"""The bcc-style tools against bcc's and bpftrace's, in the Debian 6.1 guest.

    .venv/bin/python bench/tools.py [--only funccount,...] [--no-bcc] [--calls N]

Runs itself in the 6.1 guest (``kprobes vm``, TCG emulation: absolute times
are ~10x a real machine's) and measures, in one run:

  start-up   command start to probes armed, per tool: kprobes' funccount,
             funclatency, stackcount (``vfs_read``), opensnoop, execsnoop;
             bpftrace one-liners (or its ``.bt`` tool) doing the same; bcc's
             ``*-bpfcc`` tool. "Armed" is the first line each prints once its
             probes are attached (kprobes: ``Tracing...`` / the column header;
             bpftrace: a ``BEGIN`` printf, which runs after attaching; bcc:
             ``Tracing...`` / the header, unbuffered). kprobes and bpftrace: the
             median of 3 interleaved runs, after one unmeasured warm-up of each;
             bcc: one run (it takes 15-155 s to start under emulation).
  cost       ns per traced call: ``loops sys N`` (``bench/loops.c``, getppid) alone,
             then under ``funccount __x64_sys_getppid`` of kprobes (kernel backend:
             a hist trigger), bpftrace (``@[func] = count()``) and bcc; the
             counts are checked against N. And ns per traced failed ``open()``
             (``loops open N PATH``) under opensnoop: kprobes', bpftrace's
             ``opensnoop.bt`` and bcc's, each printing every open (its output
             read and the lines naming PATH counted: each must print N).

bcc finds no kernel headers in the guest (the cached kernel's modules folder
has no ``build``/``source`` links): the bench makes a folder with both links
in its writable scratch folder and points ``BCC_KERNEL_SOURCE`` at it.
Prints ratios kprobes / peer.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
PY = sys.executable
KPROBES = [PY, "-m", "kprobes"]
PROBE = "vfs_read"
BEGIN = 'BEGIN { printf("ready\\n"); } '

#: tool -> (kprobes argv, kprobes marker, bpftrace program or .bt path, bcc argv, bcc marker)
TOOLS: dict[str, tuple[list[str], str, str, list[str], str]] = {
    "funccount": (["funccount", PROBE], "Tracing",
                  f"kprobe:{PROBE} {{ @[func] = count(); }}",
                  ["funccount-bpfcc", PROBE], "Tracing"),
    "funclatency": (["funclatency", PROBE], "Tracing",
                    f"kprobe:{PROBE} {{ @s[tid] = nsecs; }} kretprobe:{PROBE} /@s[tid]/ "
                    "{ @ns = hist(nsecs - @s[tid]); delete(@s[tid]); }",
                    ["funclatency-bpfcc", PROBE], "Tracing"),
    "stackcount": (["stackcount", "-K", PROBE], "Tracing",
                   f"kprobe:{PROBE} {{ @[kstack] = count(); }}",
                   ["stackcount-bpfcc", "-K", PROBE], "Tracing"),
    "opensnoop": (["opensnoop"], "PID", "/usr/sbin/opensnoop.bt", ["opensnoop-bpfcc"], "PID"),
    "execsnoop": (["execsnoop"], "PCOMM", "/usr/sbin/execsnoop.bt", ["execsnoop-bpfcc"], "PCOMM"),
}


def _armed(argv: list[str], marker: str, env: dict[str, str], timeout: float = 900
           ) -> tuple[float, subprocess.Popen]:
    """Start ``argv``; seconds until a line containing ``marker`` (``None`` marker: the
    first line not saying "Attaching"); the still running process."""
    t0 = time.monotonic()
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                         env=env, cwd=ROOT, start_new_session=True)
    assert p.stdout is not None
    seen = []
    deadline = t0 + timeout
    for line in p.stdout:
        seen.append(line)
        if marker in line if marker else not line.startswith("Attaching"):
            return time.monotonic() - t0, p
        if time.monotonic() > deadline:
            break
    _stop(p)
    raise RuntimeError(f"{argv[:3]} never printed {marker!r}: {''.join(seen)[-2000:]}")


def _stop(p: subprocess.Popen, timeout: float = 120) -> str:
    """SIGINT (what Ctrl-C sends), the rest of its output."""
    if p.poll() is None:
        p.send_signal(signal.SIGINT)
    try:
        out = p.communicate(timeout=timeout)[0]
    except subprocess.TimeoutExpired:
        p.kill()
        out = p.communicate()[0]
    return out or ""


def _variants(tool: str, bcc: bool) -> dict[str, tuple[list[str], str]]:
    ours, mark, bt, bcc_argv, bcc_mark = TOOLS[tool]
    v = {"kprobes": ([*KPROBES, *ours], mark)}
    if shutil.which("bpftrace"):
        v["bpftrace"] = (["bpftrace", bt], "") if bt.endswith(".bt") else \
            (["bpftrace", "-e", BEGIN + bt], "ready")
    if bcc and shutil.which(bcc_argv[0]):
        v["bcc"] = (bcc_argv, bcc_mark)
    return v


def header_tree(scratch: str, rel: str = "6.1.0-57-amd64") -> str:
    """Debian's split headers (``linux-headers-V`` + ``-common``) merged into one
    tree of symlinks under ``scratch``, for bcc's ``BCC_KERNEL_SOURCE`` (it takes
    one folder; the cached kernel's modules folder has no ``build``/``source``)."""
    kdir = os.path.join(scratch, f"kheaders-{rel}")
    if not os.path.isdir(os.path.join(kdir, "include", "linux")):
        common = re.sub(r"-[a-z0-9]+$", "-common", rel)
        os.makedirs(kdir, exist_ok=True)
        for src in (f"/usr/src/linux-headers-{common}", f"/usr/src/linux-headers-{rel}"):
            subprocess.run(["cp", "-rsf", f"{src}/.", kdir], check=True)
    return kdir


def bcc_env(scratch: str) -> dict[str, str]:
    """The environment bcc needs in the guest: headers via BCC_KERNEL_SOURCE."""
    kdir = header_tree(scratch, os.uname().release)
    return dict(os.environ, BCC_KERNEL_SOURCE=kdir, PYTHONUNBUFFERED="1", PYTHONPATH=ROOT)


def startup(tools: list[str], env: dict[str, str], bcc: bool, rounds: int = 3
            ) -> dict[str, dict[str, float]]:
    """Seconds to armed per tool and tracer: kprobes and bpftrace the median of
    ``rounds`` interleaved runs after one unmeasured run each (the first run in a
    boot warms the caches); bcc one run (it takes 15-45 s under emulation)."""
    res: dict[str, dict[str, float]] = {}
    for tool in tools:
        variants = _variants(tool, bcc)
        for who, (argv, mark) in variants.items():
            if who != "bcc":
                _stop(_armed(argv, mark, env)[1])
        times: dict[str, list[float]] = {who: [] for who in variants}
        for r in range(rounds):
            for who, (argv, mark) in variants.items():
                if who == "bcc" and r:
                    continue
                t, p = _armed(argv, mark, env)
                _stop(p)
                times[who].append(t)
                print(f"  {tool} {who}: {t:.2f} s", file=sys.stderr, flush=True)
        res[tool] = {who: statistics.median(ts) for who, ts in times.items()}
    return res


def _loops(loops: str, n: int) -> int:
    r = subprocess.run([loops, "sys", str(n)], capture_output=True, text=True, check=True)
    m = re.search(r"loop_ns=(\d+)", r.stdout + r.stderr)
    assert m, r.stdout + r.stderr
    return int(m[1])


def cost(loops: str, n: int, env: dict[str, str], bcc: bool, rounds: int = 3
         ) -> dict[str, float]:
    """ns per traced call over the untraced loop, median of ``rounds`` interleaved rounds
    (the untraced loop: the fastest of 3 runs before each round)."""
    import statistics
    fn = "__x64_sys_getppid"
    variants = {"kprobes": ([*KPROBES, "funccount", fn], "Tracing"),
                "bpftrace": (["bpftrace", "-e", BEGIN + f"kprobe:{fn} {{ @[func] = count(); }}"],
                             "ready")}
    if bcc and shutil.which("funccount-bpfcc"):
        variants["bcc"] = (["funccount-bpfcc", fn], "Tracing")
    got: dict[str, list[float]] = {who: [] for who in variants}
    bases = []
    for r in range(rounds):
        base = min(_loops(loops, n) for _ in range(3))
        bases.append(base / n)
        for who, (argv, mark) in variants.items():
            _t, p = _armed(argv, mark, env)
            loop_ns = _loops(loops, n)
            text = _stop(p)
            counts = [int(x) for x in re.findall(rf"{fn}\]?:?\s+(\d+)", text)]
            if not counts or max(counts) < n:
                print(f"  warning: {who} counted {counts} (expected >= {n}; exit status "
                      f"{p.returncode}): {text[-500:]!r}", file=sys.stderr)
            got[who].append((loop_ns - base) / n)
            print(f"  cost {who} round {r + 1}: {got[who][-1]:.0f} ns/call", file=sys.stderr,
                  flush=True)
    out = {who: statistics.median(v) for who, v in got.items()}
    out["untraced"] = statistics.median(bases)
    return out


def _drain(p: subprocess.Popen, path: str, seen: list[int]) -> None:
    """Read ``p``'s output to its end, counting the lines that name ``path`` in ``seen[0]``."""
    assert p.stdout is not None
    for line in p.stdout:
        if path in line:
            seen[0] += 1


def cost_snoop(loops: str, n: int, env: dict[str, str], bcc: bool, rounds: int = 3
               ) -> dict[str, float]:
    """ns per traced failed open() over the untraced loop under each opensnoop (every
    open printed, the output read by a thread), median of ``rounds`` interleaved rounds."""
    import threading
    import uuid
    path = f"/nonexistent/kpbench-{uuid.uuid4().hex[:8]}"
    variants = _variants("opensnoop", bcc)
    got: dict[str, list[float]] = {who: [] for who in variants}
    bases = []

    def loop() -> int:
        r = subprocess.run([loops, "open", str(n), path], capture_output=True, text=True,
                           check=True)
        m = re.search(r"loop_ns=(\d+)", r.stderr)
        assert m, r.stderr
        return int(m[1])
    for r in range(rounds):
        base = min(loop() for _ in range(3))
        bases.append(base / n)
        for who, (argv, mark) in variants.items():
            _t, p = _armed(argv, mark, env)
            seen = [0]
            reader = threading.Thread(target=_drain, args=(p, path, seen))
            reader.start()
            loop_ns = loop()
            deadline = time.monotonic() + 60     # the tool prints what it still holds
            while seen[0] < n and time.monotonic() < deadline:
                time.sleep(0.1)
            p.send_signal(signal.SIGINT)
            reader.join(timeout=300)
            p.wait(timeout=60)
            if seen[0] < n:
                print(f"  warning: {who} printed {seen[0]} of {n} opens", file=sys.stderr)
            got[who].append((loop_ns - base) / n)
            print(f"  opensnoop cost {who} round {r + 1}: {got[who][-1]:.0f} ns/call, "
                  f"printed {seen[0]}/{n}", file=sys.stderr, flush=True)
    out = {who: statistics.median(v) for who, v in got.items()}
    out["untraced"] = statistics.median(bases)
    return out


def in_vm(a: argparse.Namespace) -> None:
    scratch = a.scratch or tempfile.mkdtemp(prefix="kptools")
    env = bcc_env(scratch)
    loops = os.path.join(tempfile.mkdtemp(prefix="kptools"), "loops")
    subprocess.run(["gcc", "-O2", "-o", loops, os.path.join(HERE, "loops.c")], check=True)
    tools = a.only.split(",") if a.only else list(TOOLS)
    c = cost(loops, a.calls, env, not a.no_bcc) \
        if not a.no_cost and "funccount" in tools else {}
    o = cost_snoop(loops, a.opens, env, not a.no_bcc) \
        if not a.no_cost and "opensnoop" in tools else {}
    res = startup(tools, env, not a.no_bcc) if not a.no_startup else {}
    print(f"\n### Tools' start-up in the {os.uname().release} guest (TCG): kprobes and bpftrace "
          "the median of 3 interleaved runs, bcc one run\n")
    print("| tool | kprobes | bpftrace | bcc | kprobes / bpftrace | kprobes / bcc |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for tool, r in res.items():
        k = r["kprobes"]
        cells = [f"{r[w]:.2f} s" if w in r else "-" for w in ("kprobes", "bpftrace", "bcc")]
        ratios = [f"{k / r[w]:.2f}x" if w in r else "-" for w in ("bpftrace", "bcc")]
        print(f"| {tool} | " + " | ".join(cells + ratios) + " |")
    if c:
        print(f"\n### funccount: cost per traced getppid() ({a.calls:,} calls), ns over "
              f"the untraced {c['untraced']:.0f} ns, median of 3 interleaved rounds\n")
        print("| tool | ns per call | kprobes / tool |\n| --- | ---: | ---: |")
        for who in ("kprobes", "bpftrace", "bcc"):
            if who in c:
                print(f"| {who} | {c[who]:.0f} | {c['kprobes'] / c[who]:.2f}x |")
    if o:
        print(f"\n### opensnoop: cost per traced failed open() ({a.opens:,} opens, every one "
              f"printed), ns over the untraced {o['untraced']:.0f} ns, median of 3 "
              "interleaved rounds\n")
        print("| tool | ns per open | kprobes / tool |\n| --- | ---: | ---: |")
        for who in ("kprobes", "bpftrace", "bcc"):
            if who in o:
                print(f"| {who} | {o[who]:.0f} | {o['kprobes'] / o[who]:.2f}x |")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", metavar="TOOL,...", help=f"of {','.join(TOOLS)} (the costs: of "
                    "funccount and opensnoop, if listed)")
    ap.add_argument("--no-bcc", action="store_true", help="leave bcc out (it is slow to start)")
    ap.add_argument("--no-cost", action="store_true", help="start-up only")
    ap.add_argument("--no-startup", action="store_true", help="cost only")
    ap.add_argument("--calls", type=int, default=200_000, help="traced calls for the cost")
    ap.add_argument("--opens", type=int, default=20_000, help="traced opens for opensnoop's cost")
    ap.add_argument("--scratch", metavar="DIR", help="writable folder (the VM's --rwdir)")
    ap.add_argument("--9p", dest="nine_p", action="store_true",
                    help="run kprobes and its Python from the host's root as the guest sees "
                         "it (uncached 9p), not from a copy on the guest's tmpfs (vm --local)")
    ap.add_argument("--in-vm", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.in_vm:
        in_vm(a)
        return 0
    scratch = a.scratch or tempfile.mkdtemp(prefix="kptools-vm")
    if not a.no_bcc:
        header_tree(scratch)     # here: thousands of symlinks are slow to make in the guest
    subprocess.run([PY, "-m", "compileall", "-q", os.path.join(ROOT, "kprobes")], check=True)
    cmd = [*KPROBES, "vm", "--kernel", "6.1", "--cpus", "2", "--memory", "4G", "--timeout",
           "3600", *([] if a.nine_p else ["--local"]), "--rwdir", scratch,
           "--env", f"PYTHONPATH={ROOT}", "--cwd", ROOT, "--",
           # --local: the script from the copy (the guest starts in its work folder), so
           # that ROOT, the tools' PYTHONPATH and cwd, is the copy and not the 9p root
           PY, os.path.relpath(os.path.abspath(__file__), ROOT) if not a.nine_p
           else os.path.abspath(__file__), "--in-vm", "--scratch", scratch,
           "--calls", str(a.calls), "--opens", str(a.opens)] + (["--only", a.only] if a.only else []) + \
        (["--no-bcc"] if a.no_bcc else []) + (["--no-cost"] if a.no_cost else []) + \
        (["--no-startup"] if a.no_startup else [])
    return subprocess.run(cmd, cwd=ROOT, env=dict(os.environ, PYTHONPATH=ROOT)).returncode


if __name__ == "__main__":
    sys.exit(main())

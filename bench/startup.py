"""Start-up of a kernel probe: symbol pre-flight, ``kprobes info``, ``kprobes trace 'p:SYM'``.

    .venv/bin/python bench/startup.py [--sym do_sys_openat2] [-n 9] [--vm]

On this host (no kprobes), medians of N runs:

  preflight   in-process: load the kallsyms lookup, resolve SYM (ambiguity
              included), read the kprobe blacklist, check probeability: what
              ``Session.start`` does per kernel probe before BTF and creation;
              next to the old way (parse all of /proc/kallsyms, then resolve)
  info        ``kprobes info SYM``, whole process (warm BTF index and kallsyms copy)
  trace       ``kprobes trace 'p:SYM' -q -c true``, command start to the moment the
              definition is written to ``kprobe_events`` (the write is intercepted,
              because this kernel has none: the session then undoes what it made)
  python      ``python -c pass``, for scale

``--vm`` runs itself in the Debian 6.1 guest (``kprobes vm``) and measures,
interleaved after one unmeasured run of each, command start to the traced command running (``bench/loops.c``
prints its CLOCK_MONOTONIC start): ``kprobes trace 'p:SYM' -q -c CMD``,
bpftrace ``kprobe:SYM`` with ``-c CMD``, and a plain shell write of the
definition plus ``enable`` before CMD (what perf-tools' ``kprobe`` does);
it prints ratios (TCG emulation: absolute times are ~10x the host's).
"""

from __future__ import annotations

# the --child-trace process is measured from its start: it imports only what
# the ``kprobes`` command's own script does; the rest is imported where used
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
PY = sys.executable


def _kprobes_cmd() -> list[str]:
    """The ``kprobes`` command next to this interpreter (what a user runs; ``python -m``
    would add runpy's imports), else ``python -m kprobes``."""
    exe = os.path.join(os.path.dirname(PY), "kprobes")
    return [exe] if os.access(exe, os.X_OK) else [PY, "-m", "kprobes"]


KPROBES = _kprobes_cmd()


class _Written(BaseException):
    """Raised at the kprobe_events write: unwinds the session (it undoes its work)."""


def child_trace(sym: str) -> int:
    """``kprobes trace 'p:SYM' -q -c true`` up to the definition's write; prints the time."""
    import re  # noqa: F401 - the ``kprobes`` script imports it

    from kprobes.kernel import dynevents

    dynevents.supported = lambda tfs, kind: True   # this host has no kprobe_events

    def define(tfs, kind, line, **kw):
        print(f"written_ns={time.monotonic_ns()} line={line!r}", flush=True)
        raise _Written

    dynevents.define = define
    from kprobes.cli.main import main
    try:
        main(["trace", f"p:{sym}", "-q", "-c", "true"])
    except _Written:
        return 0
    return 1


#: warm means compiled: an installed package has its .pyc files; the ``kprobes``
#: script imports this checkout
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
ENV["PYTHONPATH"] = ROOT


def _cpu() -> float:
    import resource
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def _median_run(argv: list[str], n: int) -> tuple[float, float]:
    """Median wall time and median CPU time (user+sys) of ``argv``."""
    import statistics
    import subprocess
    times, cpus = [], []
    for _ in range(n):
        c, t = _cpu(), time.perf_counter()
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                       cwd=ROOT, env=ENV)
        times.append(time.perf_counter() - t)
        cpus.append(_cpu() - c)
    return statistics.median(times), statistics.median(cpus)


def _preflight(sym: str, old: bool) -> tuple[float, float]:
    from kprobes.kernel.blacklist import load_blacklist
    from kprobes.kernel.kallsyms import KernelSymbols
    from kprobes.kernel.probeable import probeable
    from kprobes.kernel.symlookup import KallsymsLookup
    t, c = time.perf_counter(), time.process_time()
    ks = KernelSymbols.load() if old else KallsymsLookup.load()
    s, off = ks.locate(sym)
    probeable(s, off, kallsyms=ks, blacklist=load_blacklist(), tracefs_root="/sys/kernel/tracing")
    return time.perf_counter() - t, time.process_time() - c


def _medians(pairs: list[tuple[float, float]]) -> tuple[float, float]:
    import statistics
    return statistics.median(p[0] for p in pairs), statistics.median(p[1] for p in pairs)


def _compile() -> None:
    import subprocess
    subprocess.run([PY, "-m", "compileall", "-q", os.path.join(ROOT, "kprobes")], check=True,
                   env=ENV)


def host(sym: str, n: int) -> None:
    import statistics
    import subprocess
    _compile()
    new, new_cpu = _medians([_preflight(sym, False) for _ in range(n)])
    old, old_cpu = _medians([_preflight(sym, True) for _ in range(max(n // 3, 1))])
    with open("/proc/kallsyms", "rb") as f:
        lines = f.read().count(b"\n")
    _median_run([*KPROBES, "info", sym], 1)     # warm: BTF index, kallsyms copy
    info, info_cpu = _median_run([*KPROBES, "info", sym], n)
    starts, cpus = [], []
    for _ in range(n):
        c, t0 = _cpu(), time.monotonic_ns()
        r = subprocess.run([PY, os.path.abspath(__file__), "--child-trace", sym], cwd=ROOT,
                           capture_output=True, text=True, env=ENV)
        cpus.append(_cpu() - c)
        if "written_ns=" not in r.stdout:
            raise RuntimeError(f"trace child did not reach the write: {r.stdout}{r.stderr}")
        starts.append((int(r.stdout.split("written_ns=")[1].split()[0]) - t0) / 1e9)
    py, py_cpu = _median_run([PY, "-c", "pass"], n)
    print(f"### Start-up on this host ({os.uname().release}, load {os.getloadavg()[0]:.1f}), "
          f"median of {n}\n")
    print("| what | wall | CPU (user+sys) |\n| --- | ---: | ---: |")
    print(f"| symbol pre-flight, {lines:,} kallsyms lines (resolve + blacklist + ambiguity) "
          f"| {new * 1e3:.1f} ms | {new_cpu * 1e3:.1f} ms |")
    print(f"| same, the old way (parse all of kallsyms) | {old * 1e3:.0f} ms "
          f"({old / new:.0f}x) | {old_cpu * 1e3:.0f} ms |")
    print(f"| `kprobes info {sym}`, whole process | {info:.3f} s | {info_cpu:.3f} s |")
    print(f"| `kprobes trace 'p:{sym}' -q -c true`, start to definition written "
          f"| {statistics.median(starts):.3f} s | {statistics.median(cpus):.3f} s |")
    print(f"| `python -c pass` | {py:.3f} s | {py_cpu:.3f} s |")


# -- in the guest ----------------------------------------------------------------
def _start(argv: list[str], env: dict | None = None) -> float:
    """Command start to the workload's main() (its start_ns line on stderr), in seconds."""
    import subprocess
    t0 = time.monotonic_ns()
    r = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT, env=env)
    if r.returncode:
        raise RuntimeError(f"{argv[:4]} exited {r.returncode}: {r.stderr[-1500:]}")
    for ln in r.stderr.splitlines():
        if ln.startswith("start_ns="):
            return (int(ln.split()[0].split("=")[1]) - t0) / 1e9
    raise RuntimeError(f"no start_ns from {argv[:4]}: {r.stderr[-1500:]}")


def in_vm(sym: str, n: int) -> None:
    import shutil
    import statistics
    import subprocess
    import tempfile
    tmp = tempfile.mkdtemp(prefix="kpstart")
    loops = os.path.join(tmp, "loops")
    subprocess.run(["gcc", "-O2", "-o", loops, os.path.join(HERE, "loops.c")], check=True)
    cmd = f"{loops} sys 1"
    tr = "/sys/kernel/tracing"
    plain = (f"echo 'p:kpstart/e {sym}' >> {tr}/kprobe_events && "
             f"echo 1 > {tr}/events/kpstart/e/enable && {cmd}; "
             f"echo 0 > {tr}/events/kpstart/e/enable; echo '-:kpstart/e' >> {tr}/kprobe_events")
    from kprobes.vm.local import GUEST_TOP
    kp, kenv = KPROBES, dict(os.environ, PYTHONPATH=ROOT)  # the script imports this checkout
    where = ("a copy on the guest's tmpfs (kprobes vm --local)" if ROOT.startswith(GUEST_TOP)
             else "the host's root over 9p (uncached)")
    variants = {
        "kprobes": [*kp, "trace", f"p:{sym}", "-q", "-c", cmd],
        "bpftrace": ["bpftrace", "-e", f"kprobe:{sym} {{ @ = count(); }}", "-c", cmd],
        "plain write": ["sh", "-c", plain],
    }
    if shutil.which("bpftrace") is None:
        del variants["bpftrace"]
    res: dict[str, list[float]] = {k: [] for k in variants}
    for k, argv in variants.items():   # unmeasured: the first run in a boot pays for
        _start(argv, kenv if k == "kprobes" else None)   # caches every later run finds warm
    for i in range(n):
        for k, argv in variants.items():
            res[k].append(_start(argv, kenv if k == "kprobes" else None))
            print(f"  {k} run {i + 1}: {res[k][-1]:.2f} s", file=sys.stderr, flush=True)
    med = {k: statistics.median(v) for k, v in res.items()}
    print(f"\n### Start-up of 'p:{sym}' in the {os.uname().release} guest (TCG), median of {n};"
          f" kprobes and its Python from {where}\n")
    print("| tool | command start to CMD running | kprobes / tool |\n| --- | ---: | ---: |")
    for k, v in med.items():
        print(f"| {k} | {v:.2f} s | {med['kprobes'] / v:.2f}x |")


def main() -> int:
    if sys.argv[1:2] == ["--child-trace"]:
        return child_trace(sys.argv[2])
    import argparse
    import subprocess
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sym", default="do_sys_openat2", help="kernel function to probe")
    ap.add_argument("-n", type=int, default=9, help="runs per measurement (median)")
    ap.add_argument("--vm", action="store_true", help="kprobes vs bpftrace in the 6.1 guest")
    ap.add_argument("--in-vm", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--9p", dest="nine_p", action="store_true",
                    help="--vm: run kprobes and its Python from the host's root as the guest "
                         "sees it (uncached 9p), not from a copy on the guest's tmpfs")
    ap.add_argument("--child-trace", metavar="SYM", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.vm:
        _compile()     # the guest sees this checkout read-only: compile here
        cmd = [*KPROBES, "vm", "--kernel", "6.1", "--memory", "2G", "--timeout", "1800",
               *([] if a.nine_p else ["--local"]), "--",
               # --local: the script from the copy (the guest starts in its work folder),
               # so that ROOT, the kprobes runs' PYTHONPATH and cwd, is the copy, not 9p
               PY, os.path.relpath(os.path.abspath(__file__), ROOT) if not a.nine_p
               else os.path.abspath(__file__), "--in-vm", "--sym", a.sym, "-n", str(a.n)]
        return subprocess.run(cmd, cwd=ROOT).returncode
    if a.in_vm:
        in_vm(a.sym, a.n)
        return 0
    host(a.sym, a.n)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Hostile surroundings on this machine's kernel, each with its expected outcome.

| case | expected outcome |
| --- | --- |
| another root process rmdirs our instance mid-run | the kernel refuses (EBUSY: our ring-buffer files are open); the session counts exactly |
| another root process deletes our event group mid-run | the kernel refuses (EBUSY: enabled); the session counts exactly |
| our event disabled / its filter replaced behind our back | run() ends within ~1 s with one KprobesError naming the event; nothing left |
| ``kprobes clean`` while a live session runs | it removes nothing of the live session, which counts exactly |
| 32 sessions at once on the same tracepoint | each counts its own workload exactly |
| the tracer SIGSTOPped ~2 s under load, then continued | loss counted: delivered + lost = produced, exactly |
| not root | one ``error:`` line naming root, exit 1, no traceback |
| tracefs not mounted and mount refused (no CAP_SYS_ADMIN) | one ``error:`` line, exit 1 |
| read-only tracefs | one ``error:`` line with the kernel's reason, exit 1, nothing created |
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import threading

import pytest

from kprobes import Session
from kprobes.errors import KprobesError
from kprobes.probes.spec import parse_spec

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _blocked(workload: str, *args: str) -> subprocess.Popen:
    return subprocess.Popen([workload, "-w", *args], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)


def _go(p: subprocess.Popen) -> None:
    p.stdin.write("g")
    p.stdin.close()


def _counting_run(workload: str, n: int, during) -> tuple[int, Session]:
    """A uprobe session on the workload; ``during(session)`` runs once the
    workload was released. Returns (events delivered, the closed session)."""
    p = _blocked(workload, "calls", str(n))
    seen = 0

    def on(ev):
        nonlocal seen
        seen += 1
    try:
        with Session() as s:
            s.add(f"u:{workload}:target_func", on)
            s.start()
            _go(p)
            during(s)
            s.run(until=lambda: p.poll() is not None)
    finally:
        p.kill()
        p.wait()
    return seen, s


def test_instance_removed_by_another_process_is_refused(tracefs, workload):
    results = []

    def during(s):
        try:
            os.rmdir(s._inst.path)          # noqa: SLF001 - what another root process would do
            results.append("removed")
        except OSError as e:
            results.append(e.errno)
    seen, _s = _counting_run(workload, 2000, during)
    assert results == [errno.EBUSY]
    assert seen == 2000


def test_event_group_deleted_by_another_process_is_refused(tracefs, workload):
    results = []

    def during(s):
        fd = os.open(tracefs.path("uprobe_events"), os.O_WRONLY | os.O_APPEND)
        try:
            os.write(fd, f"-:{s.name}/\n".encode())
            results.append("deleted")
        except OSError as e:
            results.append(e.errno)
        finally:
            os.close(fd)
    seen, _s = _counting_run(workload, 2000, during)
    assert results == [errno.EBUSY]
    assert seen == 2000


@pytest.mark.parametrize("what", ["enable", "filter"])
def test_event_changed_behind_our_back_ends_the_run(tracefs, workload, what):
    """Disabled, or its filter replaced: the run ends with one error naming the
    event, instead of silently missing events."""
    p = _blocked(workload, "wait")
    try:
        with Session(pid=p.pid) as s:
            s.add(parse_spec("t:syscalls:sys_enter_getppid", filter="common_pid > 0"))
            s.start()
            h = s.handles[0]
            rel = f"events/{h.group}/{h.event}/{what}"
            value = "0" if what == "enable" else "common_pid == 1"
            threading.Timer(0.3, lambda: s._inst.write(rel, value)).start()  # noqa: SLF001
            with pytest.raises(KprobesError) as ei:
                s.run(duration=30)
        assert f"{h.group}/{h.event}" in str(ei.value)
        assert ("disabled" if what == "enable" else "filter") in str(ei.value)
        assert "\n" not in str(ei.value)
        assert not os.path.exists(s._inst.path)                   # noqa: SLF001
    finally:
        p.kill()
        p.wait()


def test_clean_leaves_a_live_session_alone(tracefs, workload):
    out = []

    def during(s):
        r = subprocess.run([sys.executable, "-m", "kprobes", "clean"], capture_output=True,
                           text=True, timeout=60)
        out.append((r.returncode, r.stdout + r.stderr, os.path.isdir(s._inst.path),  # noqa: SLF001
                    s.name in tracefs.read("uprobe_events")))
    seen, _s = _counting_run(workload, 3000, during)
    rc, text, inst_there, event_there = out[0]
    assert rc == 0, text
    assert inst_there and event_there
    assert seen == 3000


def test_two_cleaners_at_once_both_succeed(tracefs, workload):
    """Orphans of SIGKILLed tracers, two `kprobes clean` at once: what one removes
    the other finds gone, as asked, so both exit 0 and nothing is left."""
    from kprobes.kernel import dynevents
    from kprobes.runtime import owner
    dead = []
    for _ in range(4):
        t = subprocess.Popen([sys.executable, "-m", "kprobes", "trace", "--armed",
                              f"u:{workload}:target_func", f"u:{workload}:static_helper",
                              "t:syscalls:sys_enter_getppid"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        assert t.stderr is not None
        assert t.stderr.readline().startswith("armed "), t.stderr.read()
        t.kill()
        t.wait()
        t.stderr.close()
        dead.append(f"{owner.PREFIX}{t.pid}_")
    cleaners = [subprocess.Popen([sys.executable, "-m", "kprobes", "clean"],
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
                for _ in range(2)]
    for c in cleaners:
        out, _ = c.communicate(timeout=120)
        assert c.returncode == 0, out
    assert not [i for i in tracefs.instances() if i.startswith(tuple(dead))]
    assert not [e for e in dynevents.list_defined(tracefs) if e.group.startswith(tuple(dead))]


def _counter(counts: list[int], i: int):
    def on(ev):
        counts[i] += 1
    return on


def test_32_sessions_at_once_each_count_exactly(tracefs, workload):
    n = 500
    procs = [_blocked(workload, "getppid", str(n + i)) for i in range(32)]
    counts = [0] * 32
    sessions: list[Session] = []
    try:
        for i, p in enumerate(procs):
            s = Session(pid=p.pid)
            sessions.append(s)

            s.add("t:syscalls:sys_enter_getppid", _counter(counts, i))
            s.start()
        names = {s._inst.name for s in sessions}                    # noqa: SLF001
        assert len(names) == 32 and names <= set(tracefs.instances())
        for p in procs:
            _go(p)
        while any(p.poll() is None for p in procs):
            for s in sessions:
                s.poll(0.01)
        for s in sessions:
            s.drain()
            assert s.lost() == 0
    finally:
        for s in sessions:
            s.close()
        for p in procs:
            p.kill()
            p.wait()
    assert counts == [n + i for i in range(32)]


def test_sigstopped_tracer_counts_its_loss(tracefs, workload):
    """Stopped for 2 s while the workload runs: the ring buffer (64 KB per CPU)
    overflows; the summary's lost + delivered is exactly what was produced."""
    n = 3_000_000
    cli = subprocess.Popen([sys.executable, "-m", "kprobes", "trace", "--json", "-q",
                            "--buffer-kb", "64", "--armed", "t:syscalls:sys_enter_getppid",
                            "-c", f"{workload} getppid {n}"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for ln in cli.stderr:
        if ln.startswith("armed"):
            break
    os.kill(cli.pid, signal.SIGSTOP)
    try:
        threading.Event().wait(2)        # the stop itself is the test: 2 s of not reading
    finally:
        os.kill(cli.pid, signal.SIGCONT)
    out, err = cli.communicate(timeout=300)
    assert cli.returncode == 0, err
    summary = json.loads(out.splitlines()[-1])["summary"]
    assert summary["lost"] > 0
    assert summary["events"] + summary["lost"] == n


def _cli(prefix: list[str], *args: str) -> subprocess.CompletedProcess:
    """Run the CLI behind ``prefix`` (which execs it: same pid, kept in ``.args``)."""
    env = dict(os.environ, PYTHONPATH=ROOT)
    p = subprocess.Popen([*prefix, sys.executable, "-m", "kprobes", *args],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    out, err = p.communicate(timeout=120)
    return subprocess.CompletedProcess(p.pid, p.returncode, out, err)


def _one_error(r: subprocess.CompletedProcess) -> str:
    assert r.returncode == 1, (r.returncode, r.stdout, r.stderr)
    assert "Traceback" not in r.stderr, r.stderr
    errs = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
    assert len(errs) == 1, r.stderr
    return errs[0]


def test_not_root(tracefs, workload):
    if not shutil.which("setpriv"):
        pytest.skip("no setpriv")
    line = _one_error(_cli(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"],
                           "trace", "t:syscalls:sys_enter_getppid", "-d", "1"))
    assert "root" in line or "permission" in line.lower(), line


_NO_TRACEFS = ("umount /sys/kernel/tracing 2>/dev/null; umount /sys/kernel/debug 2>/dev/null; "
               "mountpoint -q /sys/kernel/tracing && exit 9; "
               "exec setpriv --inh-caps=-sys_admin --bounding-set=-sys_admin -- \"$@\"")


def test_tracefs_not_mounted_and_not_mountable(tracefs):
    r = _cli(["unshare", "-m", "--propagation", "private", "sh", "-c", _NO_TRACEFS, "sh"],
             "trace", "t:syscalls:sys_enter_getppid", "-d", "1")
    line = _one_error(r)
    assert "tracefs" in line, line


def test_read_only_tracefs(tracefs):
    ro = ("mount --bind /sys/kernel/tracing /sys/kernel/tracing && "
          "mount -o remount,bind,ro /sys/kernel/tracing && exec \"$@\"")
    r = _cli(["unshare", "-m", "--propagation", "private", "sh", "-c", ro, "sh"],
             "trace", "t:syscalls:sys_enter_getppid", "-d", "1")
    line = _one_error(r)
    assert "Read-only file system" in line, line
    assert [i for i in tracefs.instances() if i.startswith(f"kprobes_{r.args}_")] == []

"""exitsnoop: trace process exits with their age and exit status, as bcc's ``exitsnoop``.

Kernel side: ``sched:sched_process_exit`` (one per exiting thread). The
tracepoint has no exit status, so it comes from what led to the exit:

* ``syscalls:sys_enter_exit_group`` / ``sys_enter_exit``: ``error_code``
  (``exit(N)``, a return from ``main``) -> ``code N``;
* ``signal:signal_deliver`` of a signal whose action is the default
  (``sa_handler == SIG_DFL``) and whose default is to terminate -> ``signal
  N (NAME)``. Such a signal is turned into SIGKILL when it is sent (the
  kernel's ``complete_signal`` shortcut), so the number shown is the one
  ``signal:signal_generate`` saw sent to that task last.

Limits: an exit with neither (a kernel-forced exit such as an oops) shows
``?``; a core dump is not reported as such. AGE and PPID come from
``sched:sched_process_fork`` for processes born while tracing, else from
``/proc/PID/stat`` while the process is still there (a zombie until reaped),
else ``?``.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time

from kprobes import Event, Session

from .common import Column, Rows, ppid_of, tool

__all__ = ["NAME", "FATAL", "exit_text", "register", "run", "main"]

NAME = "exitsnoop"
DESCRIPTION = "Trace all process termination (exit, fatal signal)"
EXAMPLES = """examples:
    kprobes exitsnoop                # trace all process termination
    kprobes exitsnoop -x             # trace only fails, exclude exit(0)
    kprobes exitsnoop -t             # include timestamps (local time)
    kprobes exitsnoop --utc          # include timestamps (UTC)
    kprobes exitsnoop -p 181         # only trace PID 181
    kprobes exitsnoop --label=exit   # label each output line with 'exit'
    kprobes exitsnoop --per-thread   # trace per thread termination
    kprobes exitsnoop --json -c './test.sh'   # JSON rows, only this command's tree
"""

_NOT_FATAL = {signal.SIGCHLD, signal.SIGCONT, signal.SIGSTOP, signal.SIGTSTP, signal.SIGTTIN,
              signal.SIGTTOU, signal.SIGURG, signal.SIGWINCH}
#: signals whose default action terminates the process
FATAL = frozenset(range(1, 65)) - {int(s) for s in _NOT_FATAL} - {32, 33}


def signame(sig: int) -> str:
    """A signal's name as bcc prints it.

    >>> signame(9), signame(40)
    ('KILL', 'RT6')
    """
    try:
        return signal.Signals(sig).name.removeprefix("SIG")
    except ValueError:
        return f"RT{sig - 34}" if 34 <= sig <= 64 else "unknown"


def exit_text(code: int | None, sig: int | None) -> str:
    """bcc's EXIT_CODE column.

    >>> exit_text(0, None), exit_text(3, None), exit_text(None, 15), exit_text(None, None)
    ('0', 'code 3', 'signal 15 (TERM)', '?')
    """
    if sig:
        return f"signal {sig} ({signame(sig)})"
    if code is None:
        return "?"
    return "0" if code == 0 else f"code {code}"


def options(p: argparse.ArgumentParser) -> None:
    p.add_argument("-t", "--timestamp", action="store_true",
                   help="include timestamp (local time default)")
    p.add_argument("--utc", action="store_true", help="include timestamp in UTC (-t implied)")
    p.add_argument("-p", "--pid", type=int, help="trace this PID only")
    p.add_argument("--label", help="label each line")
    p.add_argument("-x", "--failed", action="store_true", help="trace only fails, exclude exit(0)")
    p.add_argument("--per-thread", action="store_true",
                   help="trace per thread exit instead of per process exit")


def columns(args: argparse.Namespace) -> list[Column]:
    cols: list[Column] = []
    if args.timestamp or args.utc:
        cols.append(("TIME-" + ("UTC" if args.utc else time.strftime("%Z")), -13))
    if args.label is not None:
        cols.append(("LABEL", -6))
    return cols + [("PCOMM", -16), ("PID", -7), ("PPID", -7), ("TID", -7), ("AGE(s)", -7),
                   ("EXIT_CODE", 0)]


def _start_mono_ns(pid: int) -> int | None:
    """A live (or zombie) process's start, on the monotonic clock."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
        ticks = int(stat[stat.rindex(b")") + 2:].split()[19])
    except (OSError, ValueError, IndexError):
        return None
    boot_minus_mono = time.clock_gettime_ns(time.CLOCK_BOOTTIME) - time.monotonic_ns()
    return ticks * 10**9 // os.sysconf("SC_CLK_TCK") - boot_minus_mono


def setup(s: Session, args: argparse.Namespace, rows: Rows) -> None:
    status: dict[int, tuple[int | None, int | None]] = {}   # tgid or tid -> (code, signal)
    born: dict[int, tuple[int, int]] = {}                  # tid -> (parent, fork ts)
    group_dead = s.supports("sched:sched_process_exit:group_dead")

    def on_fork(ev: Event) -> None:
        born[ev.args["child_pid"]] = (ev.args["parent_pid"], ev.ts_ns)

    generated: dict[int, int] = {}                         # target tid -> last signal sent

    def remember(tid: int) -> None:
        """Parent and start of a process seen before its fork was (still in /proc)."""
        if tid not in born:
            start, ppid = _start_mono_ns(tid), ppid_of(tid)
            if start is not None and ppid is not None:
                born[tid] = (ppid, start)

    def on_exit_group(ev: Event) -> None:
        status.setdefault(ev.pid, (ev.args["error_code"] & 0xFF, None))
        remember(ev.tid)

    def on_exit_thread(ev: Event) -> None:
        status.setdefault(-ev.tid, (ev.args["error_code"] & 0xFF, None))

    def on_generate(ev: Event) -> None:
        if ev.args["result"] == 0:
            generated[ev.args["pid"]] = ev.args["sig"]

    def on_signal(ev: Event) -> None:
        sig = ev.args["sig"]
        if ev.args["sa_handler"] == 0 and sig in FATAL:
            # a fatal signal to a task with the default action is turned into
            # SIGKILL when it is sent (complete_signal): take the one sent
            sent = generated.pop(ev.tid, None) or generated.pop(ev.pid, None)
            status.setdefault(ev.pid, (None, sent if sig == 9 and sent in FATAL else sig))
            remember(ev.tid)

    def on_process_exit(ev: Event) -> None:
        tid = ev.args["pid"]
        pid = ev.pid
        code, sig = status.get(pid) or status.get(-tid) or (None, None)
        status.pop(-tid, None)
        last = ev.args["group_dead"] if group_dead else tid == pid
        if last:
            status.pop(pid, None)
        if not args.per_thread and not last:
            born.pop(tid, None)
            return
        parent, t_fork = born.pop(tid, (None, None))
        if args.pid and pid != args.pid:
            return
        if args.failed and code == 0 and not sig:
            return
        ppid = ppid_of(pid) or parent
        start = t_fork if t_fork is not None else _start_mono_ns(pid)
        age = round((ev.ts_ns - start) / 1e9, 2) if start is not None else None
        lead: list[object] = []
        if args.timestamp or args.utc:
            lead.append(time.strftime("%H:%M:%S", time.gmtime() if args.utc else time.localtime()))
        if args.label is not None:
            lead.append(args.label)
        text = [*lead, ev.args["comm"], pid, ppid if ppid is not None else "?", tid,
                f"{age:.2f}" if age is not None else "?", exit_text(code, sig)]
        rows.emit(*lead, ev.args["comm"], pid, ppid, tid, age, code, text=text, signal=sig,
                  signal_name=signame(sig) if sig else None)

    s.add("t:sched:sched_process_fork", on_fork)
    s.add("t:syscalls:sys_enter_exit_group", on_exit_group)
    s.add("t:syscalls:sys_enter_exit", on_exit_thread)
    s.add("t:signal:signal_generate", on_generate)
    s.add("t:signal:signal_deliver", on_signal)
    s.add("t:sched:sched_process_exit", on_process_exit)


register, run, main = tool(__name__)

if __name__ == "__main__":
    sys.exit(main())

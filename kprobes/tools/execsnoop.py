"""execsnoop: trace new processes (execve), as bcc's ``execsnoop``.

Kernel side: ``sched:sched_process_exec`` for successful execs (the program
run, its pid) and ``syscalls:sys_exit_execve`` for the result, paired per
thread with the call's entry. The arguments:

* with kprobes: a kprobe on the syscall's function (``__x64_sys_execve``)
  fetches ``argv[0..max-args]`` as user strings in the kernel, at the call;
* without (``syscalls:sys_enter_execve`` only has the pointers): the
  exec'd process's ``/proc/PID/cmdline`` when the event is read (the
  program's path if it is already gone), and for a failed exec the strings
  read from the caller's memory (``/proc/PID/mem``) at those pointers.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time

from kprobes import FAULT, Event, KprobesError, Session

from .common import Column, Pending, Rows, ppid_of, tool, uid_of

__all__ = ["NAME", "register", "run", "main"]

NAME = "execsnoop"
DESCRIPTION = "Trace exec() syscalls"
EXAMPLES = """examples:
    kprobes execsnoop           # trace all exec() syscalls
    kprobes execsnoop -x        # include failed exec()s
    kprobes execsnoop -T        # include time (HH:MM:SS)
    kprobes execsnoop -P 181    # only trace new processes whose parent PID is 181
    kprobes execsnoop -U        # include UID
    kprobes execsnoop -u 1000   # only trace UID 1000
    kprobes execsnoop -t        # include timestamps
    kprobes execsnoop -q        # add "quotemarks" around arguments
    kprobes execsnoop -n main   # only print command lines containing "main"
    kprobes execsnoop -l tpkg   # only print command where arguments contains "tpkg"
    kprobes execsnoop --json -c 'make -j2'   # JSON rows, only this command's tree
"""

#: x86-64 ``struct pt_regs``: offsets of the syscall's first two arguments
_REGS_DI, _REGS_SI = 112, 104
_SYSCALL_FN = "__x64_sys_execve"


def options(p: argparse.ArgumentParser) -> None:
    p.add_argument("-T", "--time", action="store_true", help="include time column on output (HH:MM:SS)")
    p.add_argument("-t", "--timestamp", action="store_true", help="include timestamp on output")
    p.add_argument("-x", "--fails", action="store_true", help="include failed exec()s")
    p.add_argument("-u", "--uid", type=int, help="trace this UID only")
    p.add_argument("-q", "--quote", action="store_true",
                   help='Add quotemarks (") around arguments.')
    p.add_argument("-n", "--name", help="only print commands matching this name (regex)")
    p.add_argument("-l", "--line", help="only print commands where arg contains this line (regex)")
    p.add_argument("-U", "--print-uid", action="store_true", help="print UID column")
    p.add_argument("--max-args", type=int, default=20,
                   help="maximum number of arguments parsed and displayed, defaults to 20")
    p.add_argument("-P", "--ppid", type=int, help="trace this parent PID only")


def columns(args: argparse.Namespace) -> list[Column]:
    cols: list[Column] = []
    if args.time:
        cols.append(("TIME", -8))
    if args.timestamp:
        cols.append(("TIME(s)", -8))
    if args.print_uid:
        cols.append(("UID", -6))
    return cols + [("PCOMM", -16), ("PID", -7), ("PPID", -7), ("RET", 3), ("ARGS", 0)]


def _regex(opt: str, text: str | None) -> re.Pattern[str] | None:
    if text is None:
        return None
    try:
        return re.compile(text)
    except re.error as e:
        raise KprobesError(f"{opt} {text!r}: not a regular expression ({e})",
                           hint="e.g. -n 'ba?sh'") from None


def read_user_strings(pid: int, filename: int, argv: int, limit: int) -> list[str] | None:
    """``argv`` (else ``[filename]``) of a live process's execve call, read from
    its memory at the syscall's pointers; None if they cannot be read."""
    try:
        fd = os.open(f"/proc/{pid}/mem", os.O_RDONLY)
    except OSError:
        return None
    try:
        def cstr(addr: int) -> str | None:
            try:
                data = os.pread(fd, 4096, addr)
            except (OSError, OverflowError):
                return None
            return data.split(b"\0", 1)[0].decode(errors="replace")
        out: list[str] = []
        for i in range(limit + 1):
            try:
                ptr = int.from_bytes(os.pread(fd, 8, argv + 8 * i), "little") if argv else 0
            except (OSError, OverflowError):
                ptr = 0
            s = cstr(ptr) if ptr else None
            if s is None:
                break
            out.append(s)
        if not out:
            name = cstr(filename) if filename else None
            return [name] if name else None
        return out
    finally:
        os.close(fd)


def _cmdline(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            data = f.read()
    except OSError:
        return None
    return [a.decode(errors="replace") for a in data.split(b"\0")[:-1]] or None


def setup(s: Session, args: argparse.Namespace, rows: Rows) -> None:
    if args.max_args < 1 or args.max_args > 120:
        raise KprobesError(f"--max-args {args.max_args}: must be 1..120",
                           hint="the kernel takes at most 128 fetch args per probe")
    name_re, line_re = _regex("-n", args.name), _regex("-l", args.line)
    t0 = time.monotonic_ns()
    pending = Pending()         # tid -> [argv or None, filename, pid]
    forks: dict[int, int] = {}  # child -> parent, for processes already gone
    in_kernel = s.supports("kprobe")
    limit = args.max_args

    def quote(a: str) -> str:
        return '"' + a.replace('"', '\\"') + '"' if args.quote else a

    def on_enter_kprobe(ev: Event) -> None:
        argv: list[str] = []
        for i in range(limit + 1):
            a = ev.args[f"a{i}"]
            if a is FAULT or a == "":
                break
            argv.append(a)
        pending.put(ev.tid, [argv, ev.args["filename"] or None, ev.pid])

    def on_enter_tp(ev: Event) -> None:
        pending.put(ev.tid, [None, None, ev.pid, ev.args["filename"], ev.args["argv"]])

    def on_exec(ev: Event) -> None:
        st = pending.take(ev.args["old_pid"]) or [None, None, ev.args["pid"]]
        st[1] = ev.args["filename"]
        if st[0] is None:
            st[0] = _cmdline(ev.args["pid"])
        pending.put(ev.args["pid"], st)

    def on_fork(ev: Event) -> None:
        forks[ev.args["child_pid"]] = ev.args["parent_pid"]

    def on_exit(ev: Event) -> None:
        st = pending.take(ev.tid)
        ret = ev.args["ret"]
        if st is None or (ret < 0 and not args.fails):
            return
        argv, filename, pid = st[0], st[1], ev.pid
        if ret < 0 and argv is None and len(st) > 3:
            argv = read_user_strings(ev.tid, st[3], st[4], limit)
        if not argv:
            argv = [filename] if filename else []
        comm = os.path.basename(filename)[:15] if ret == 0 and filename else ev.comm
        if name_re and not name_re.search(comm):
            return
        more = len(argv) > limit
        text: str | None = " ".join(quote(a) for a in argv[:limit]).replace("\n", "\\n") + \
            (" ..." if more else "") if argv else None      # None: gone before it was read
        if line_re and not line_re.search(text or ""):
            return
        ppid = ppid_of(pid) or forks.get(pid)
        if args.ppid is not None and ppid != args.ppid:
            return
        uid = uid_of(pid) if args.uid is not None or args.print_uid else None
        if args.uid is not None and uid != args.uid:
            return
        lead: list[object] = []
        if args.time:
            lead.append(time.strftime("%H:%M:%S"))
        if args.timestamp:
            lead.append(round((ev.ts_ns - t0) / 1e9, 3))
        if args.print_uid:
            lead.append(uid if uid is not None else "?")
        vals = [*lead, comm, pid, ppid, ret, text]
        shown = list(vals)
        if args.timestamp:
            shown[1 if args.time else 0] = f"{(ev.ts_ns - t0) / 1e9:.3f}"
        shown[-3] = ppid if ppid is not None else "?"
        shown[-1] = text if text is not None else "?"
        rows.emit(*vals, text=shown, argv=argv[:limit], args_truncated=more)

    if in_kernel:
        fetch = [f"filename=+0(+{_REGS_DI}(%di)):ustring"] + [
            f"a{i}=+0(+u{8 * i}(+{_REGS_SI}(%di))):ustring" for i in range(limit + 1)]
        s.add(f"p:{_SYSCALL_FN} " + " ".join(fetch), on_enter_kprobe)
    else:
        s.add("t:syscalls:sys_enter_execve", on_enter_tp)
    s.add("t:sched:sched_process_fork", on_fork)
    s.add("t:sched:sched_process_exec", on_exec)
    s.add("t:syscalls:sys_exit_execve", on_exit)


register, run, main = tool(__name__)

if __name__ == "__main__":
    sys.exit(main())

"""tcplife: TCP sessions with their duration and bytes, as bcc's ``tcplife``.

Kernel side: ``sock:inet_sock_set_state`` (addresses, ports, state changes;
a session is printed when its socket reaches ``TCP_CLOSE``), and where the
kernel has them (6.3+) ``sock:sock_send_length`` / ``sock:sock_recv_length``
for the bytes each socket's owner sent and received (bcc reads
``bytes_acked`` / ``bytes_received`` from the socket instead: the same for
a session that ends normally). Without those two tracepoints TX_KB and
RX_KB show ``-`` (JSON ``null``).

The state changes often happen in softirqs, in whatever task is running:
the PID and COMM are those of the process that connected, sent, received
or closed (as bcc's, which takes them at SYN_SENT and LAST_ACK), and
``-p`` / ``-c`` are applied to them here rather than by the kernel.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import sys
import time

from kprobes import Event, Session, parse_spec

from .common import Column, Rows, tool

TYPE_CHECKING = False   # typing's, without importing typing at run time
if TYPE_CHECKING:
    from typing import Any

__all__ = ["NAME", "register", "run", "main"]

NAME = "tcplife"
DESCRIPTION = "Trace the lifespan of TCP sessions and summarize"
EXAMPLES = """examples:
    kprobes tcplife           # trace all TCP connect()s
    kprobes tcplife -t        # include time column (HH:MM:SS)
    kprobes tcplife -w        # wider columns (fit IPv6)
    kprobes tcplife -stT      # csv output, with times & timestamps
    kprobes tcplife -p 181    # only trace PID 181
    kprobes tcplife -L 80     # only trace local port 80
    kprobes tcplife -L 80,81  # only trace local ports 80 and 81
    kprobes tcplife -D 80     # only trace remote port 80
    kprobes tcplife -4        # only trace IPv4 family
    kprobes tcplife -6        # only trace IPv6 family
    kprobes tcplife --json -c 'curl -s http://example.com'   # JSON rows, only this command
"""

PID_FILTER = False
TCP_ESTABLISHED, TCP_SYN_SENT, TCP_FIN_WAIT1, TCP_CLOSE, TCP_LAST_ACK = 1, 2, 4, 7, 9
AF_INET, AF_INET6, IPPROTO_TCP = 2, 10, 6


def _ports(text: str) -> set[int]:
    from kprobes import KprobesError
    try:
        ports = {int(x) for x in text.split(",") if x.strip()}
    except ValueError:
        ports = set()
    if not ports or not all(0 < p < 65536 for p in ports):
        raise KprobesError(f"{text!r}: expected ports 1-65535, comma-separated",
                           hint="e.g. -L 80,443")
    return ports


def options(p: argparse.ArgumentParser) -> None:
    p.add_argument("-T", "--time", action="store_true", help="include time column on output "
                   "(HH:MM:SS)")
    p.add_argument("-t", "--timestamp", action="store_true", help="include timestamp on output "
                   "(seconds)")
    p.add_argument("-w", "--wide", action="store_true", help="wide column output (fits IPv6 "
                   "addresses)")
    p.add_argument("-s", "--csv", action="store_true", help="comma separated values output")
    p.add_argument("-p", "--pid", type=int, help="trace this PID only")
    p.add_argument("-L", "--localport", help="comma-separated list of local ports to trace.")
    p.add_argument("-D", "--remoteport", help="comma-separated list of remote ports to trace.")
    g = p.add_mutually_exclusive_group()
    g.add_argument("-4", "--ipv4", action="store_true", help="trace IPv4 family only")
    g.add_argument("-6", "--ipv6", action="store_true", help="trace IPv6 family only")


def columns(args: argparse.Namespace) -> list[Column]:
    a = 39 if args.wide else 15
    cols: list[Column] = []
    if args.time:
        cols.append(("TIME", -8))
    if args.timestamp:
        cols.append(("TIME(s)", -9))
    cols += [("PID", -7 if args.wide else -5), ("COMM", -12 if args.wide else -10),
             ("LADDR", -a), ("LPORT", 5), ("RADDR", -a), ("RPORT", 5), ("TX_KB", 5),
             ("RX_KB", 5), ("MS", 0)]
    if args.csv:
        cols = [(c, 0) for c, _ in cols]
    return cols


def _addr(ev: Event, which: str) -> str:
    if ev.args["family"] == AF_INET6:
        return str(ipaddress.IPv6Address(bytes(ev.args[f"{which}_v6"])))
    return str(ipaddress.IPv4Address(bytes(ev.args[which])))


class _Sock:
    __slots__ = ("birth", "pid", "comm", "tx", "rx")

    def __init__(self, birth: int) -> None:
        self.birth = birth
        self.pid: int | None = None
        self.comm = ""
        self.tx = self.rx = 0


def setup(s: Session, args: argparse.Namespace, rows: Rows) -> None:
    lports = _ports(args.localport) if args.localport else None
    rports = _ports(args.remoteport) if args.remoteport else None
    fam = AF_INET if args.ipv4 else AF_INET6 if args.ipv6 else None
    socks: dict[int, _Sock] = {}
    tree: set[int] | None = None
    target = getattr(args, "target_pid", None)
    if target:
        tree = {target}
        s.add("t:sched:sched_process_fork", lambda ev: tree.add(ev.args["child_pid"])
              if ev.args["parent_pid"] in tree else None)
    t0: list[float] = []
    have_len = os.path.exists(os.path.join(s.tracefs.root, "events/sock/sock_send_length"))

    def owner(st: _Sock, ev: Event) -> None:
        st.pid, st.comm = ev.pid, ev.comm

    def on_state(ev: Event) -> None:
        a = ev.args
        sk, new = a["skaddr"], a["newstate"]
        st = socks.get(sk)
        if st is None and new < TCP_FIN_WAIT1:
            st = socks[sk] = _Sock(ev.ts_ns)
        if st is None:
            return
        if new in (TCP_SYN_SENT, TCP_LAST_ACK, TCP_FIN_WAIT1) and ev.pid:
            owner(st, ev)
        if new != TCP_CLOSE:
            return
        del socks[sk]
        if a["oldstate"] == TCP_SYN_SENT and st.pid is None:
            return
        if fam is not None and a["family"] != fam:
            return
        if lports and a["sport"] not in lports or rports and a["dport"] not in rports:
            return
        if tree is not None and st.pid not in tree:
            return
        if args.pid and st.pid != args.pid:
            return
        ms = round((ev.ts_ns - st.birth) / 1e6, 2)
        lead: list[Any] = []
        if args.time:
            lead.append(time.strftime("%H:%M:%S"))
        if args.timestamp:
            if not t0:
                t0.append(ev.ts_ns)
            lead.append(round((ev.ts_ns - t0[0]) / 1e9, 6))
        tx = st.tx // 1024 if have_len else None
        rx = st.rx // 1024 if have_len else None
        vals = [*lead, st.pid if st.pid is not None else 0, st.comm or "?",
                _addr(ev, "saddr"), a["sport"], _addr(ev, "daddr"), a["dport"], tx, rx, ms]
        text = [("-" if v is None else v) for v in vals]
        text[-1] = f"{ms:.2f}"
        if args.csv:
            rows.out.write(",".join(map(str, text)) + "\n")
            rows.count += 1
            return
        rows.emit(*vals, text=text, tx_bytes=st.tx if have_len else None,
                  rx_bytes=st.rx if have_len else None)

    s.add(parse_spec("t:sock:inet_sock_set_state", filter=f"protocol == {IPPROTO_TCP}"),
          on_state)
    if not have_len:
        return

    def counter(attr: str) -> Any:
        def on(ev: Event) -> None:
            st = socks.get(ev.args["sk"])
            if st is not None:
                setattr(st, attr, getattr(st, attr) + ev.args["ret"])
                owner(st, ev)
        return on
    for what, attr in (("send", "tx"), ("recv", "rx")):
        s.add(parse_spec(f"t:sock:sock_{what}_length",
                         filter=f"protocol == {IPPROTO_TCP} && ret > 0"), counter(attr))


register, run, main = tool(__name__)

if __name__ == "__main__":
    sys.exit(main())

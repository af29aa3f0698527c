"""Checks of syscount, runqlat, biolatency and tcplife against the self-counting
workloads of ``aggwork.py``, shared by the host tests (user backend) and the
guest tests (kernel backend): each returns what it measured, for comparisons
with bpftrace in the guest."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

WORK = str(Path(__file__).with_name("aggwork.py"))


def work(kind: str, n: int, *extra: str) -> str:
    """The workload as a -c command (the venv's python itself: no shims that fork;
    -S: it needs nothing from site-packages, and starts faster without)."""
    return " ".join([sys.executable, "-S", WORK, kind, str(n), *extra])


def cli(*args: str, module: bool = False, timeout: float = 600) -> subprocess.CompletedProcess:
    """``kprobes ARGS`` (or ``python -m kprobes.tools.TOOL ARGS`` with ``module``)."""
    head = ["-m", f"kprobes.tools.{args[0]}", *args[1:]] if module else ["-m", "kprobes", *args]
    r = subprocess.run([sys.executable, *head], capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, r.stderr
    return r


def lines(out: str) -> list[dict]:
    return [json.loads(ln) for ln in out.splitlines() if ln.startswith("{")]


def agg_rows(out: str) -> list[dict]:
    """The rows of the one aggregation line (the summary line after it is checked)."""
    objs = lines(out)
    assert len(objs) == 2 and "summary" in objs[1], out
    return objs[0]["rows"]


def syscount_rmdir(backend: str, n: int, every: bool = True) -> int:
    """``syscount -x``, ``-e``, ``-L``, ``-P`` and the text form on n failed rmdir().
    ``every=False`` (the guest, where each command costs seconds) leaves out the
    variants that differ from the others only on the user side: ``-e EPERM``
    (the filter of ``-e ENOENT``, another value) and the text form."""
    rows = agg_rows(cli("syscount", "-x", "--json", "--backend", backend,
                        "-c", work("rmdir", n)).stdout)
    by = {r["key"]["syscall"]: r["count"] for r in rows}
    assert by["rmdir"] == n, rows
    rows = agg_rows(cli("syscount", "-e", "ENOENT", "--json", "--backend", backend,
                        "-c", work("rmdir", n), module=True).stdout)
    assert {r["key"]["syscall"]: r["count"] for r in rows}["rmdir"] == n
    if every:
        rows = agg_rows(cli("syscount", "-e", "EPERM", "--json", "--backend", backend,
                            "-c", work("rmdir", n)).stdout)
        assert "rmdir" not in {r["key"]["syscall"] for r in rows}
    rows = agg_rows(cli("syscount", "-L", "-x", "--json", "--backend", backend,
                        "-c", work("rmdir", n)).stdout)
    lat = next(r for r in rows if r["key"]["syscall"] == "rmdir")
    assert lat["count"] == n and sum(b["count"] for b in lat["buckets"]) == n, lat
    assert lat["sum"] >= 0
    rows = agg_rows(cli("syscount", "-P", "-x", "--json", "--backend", backend,
                        "-c", work("rmdir", n)).stdout)
    assert set(rows[0]["key"]) == {"pid", "comm"}
    assert any(r["key"]["comm"] == "python" and r["count"] >= n for r in rows), rows
    if every:
        text = cli("syscount", "-x", "--backend", backend, "-c", work("rmdir", n)).stdout
        table = text.strip().splitlines()
        assert table[0].split() == ["SYSCALL", "COUNT"]
        assert ["rmdir", str(n)] in [ln.split() for ln in table[1:]], text
    return by["rmdir"]


def runqlat_sleeps(backend: str, n: int, exact: bool = True) -> int:
    """``runqlat -c`` on n sleeps counts n more wakeups than on none (the one more of
    both: the command's start, released by kprobes). ``exact=False`` (the guest, whose
    9p root makes every file read a wakeup): at least n, and the text form (all user
    side: ``-m``) is left out."""
    base = agg_rows(cli("runqlat", "--json", "--backend", backend, "-c",
                        work("sleep", 0)).stdout) if exact else []
    rows = agg_rows(cli("runqlat", "--json", "--backend", backend, "-c",
                        work("sleep", n)).stdout)
    assert len(rows) == 1 and rows[0]["key"] == {}
    total = rows[0]["count"]
    if exact:
        assert total - sum(r["count"] for r in base) == n, (base, rows)
    else:
        assert total >= n, rows
    assert sum(b["count"] for b in rows[0]["buckets"]) == total
    per = agg_rows(cli("runqlat", "-L", "--json", "--backend", backend, "-c",
                       work("sleep", n), module=True).stdout)
    assert len(per) == 1 and set(per[0]["key"]) == {"tid"}, per
    assert per[0]["count"] == total if exact else per[0]["count"] >= n, (per, total)
    if exact:
        text = cli("runqlat", "-m", "-c", work("sleep", n)).stdout      # ms: the user side
        assert "msecs" in text and "distribution" in text, text
    return total


def biolatency_reads(backend: str, n: int, dev: str, every: bool = True) -> int:
    """``biolatency -D`` on n direct reads of ``dev`` (a device only the test uses).
    ``every=False`` (the guest) leaves out the text form (rendered on the user side)."""
    name = Path(dev).name
    rows = agg_rows(cli("biolatency", "-D", "--json", "--backend", backend, "-c",
                        work("dread", n, dev)).stdout)
    mine = [r for r in rows if r["key"] == {"disk": name}]
    assert len(mine) == 1 and mine[0]["count"] == n, rows
    assert sum(b["count"] for b in mine[0]["buckets"]) == n
    rows = agg_rows(cli("biolatency", "-D", "-F", "--json", "--backend", backend, "-c",
                        work("dread", n, dev), module=True).stdout)
    mine = [r for r in rows if r["key"]["disk"] == name]
    assert len(mine) == 1 and mine[0]["key"]["flags"] in ("R", "RS"), rows   # O_DIRECT: sync
    assert mine[0]["count"] == n
    if every:
        text = cli("biolatency", "-D", "--backend", backend, "-c", work("dread", n, dev)).stdout
        assert f"disk = {name}" in text and "usecs" in text, text
    return n


def tcplife_sessions(n: int, have_bytes: bool) -> list[dict]:
    """``tcplife --json -c`` on n loopback sessions: 2n rows (both ends), exact bytes."""
    r = cli("tcplife", "--json", "-c", work("tcp", n))
    port = int(next(ln for ln in r.stdout.splitlines() if not ln.startswith("{")))
    rows = lines(r.stdout)
    assert len(rows) == 2 * n, rows
    assert set(rows[0]) >= {"pid", "comm", "laddr", "lport", "raddr", "rport", "tx_kb",
                            "rx_kb", "ms"}
    clients = sorted((x for x in rows if x["rport"] == port), key=lambda x: x["tx_bytes"]
                     if have_bytes else x["lport"])
    servers = [x for x in rows if x["lport"] == port]
    assert len(clients) == n and len(servers) == n
    assert {x["laddr"] for x in rows} == {"127.0.0.1"} and {x["comm"] for x in rows} == \
        {"python"}
    assert len({x["pid"] for x in rows}) == 1
    if have_bytes:
        assert [(x["tx_bytes"], x["rx_bytes"]) for x in clients] == \
            [(3000 * (i + 1), 5000) for i in range(n)]
        assert sorted((x["tx_bytes"], x["rx_bytes"]) for x in servers) == \
            [(5000, 3000 * (i + 1)) for i in range(n)]
        assert [x["tx_kb"] for x in clients] == [3000 * (i + 1) // 1024 for i in range(n)]
    else:
        assert {x["tx_kb"] for x in rows} == {None}
    text = cli("tcplife", "-c", work("tcp", 1)).stdout.splitlines()
    assert text[0].split() == ["PID", "COMM", "LADDR", "LPORT", "RADDR", "RPORT", "TX_KB",
                               "RX_KB", "MS"]
    return rows

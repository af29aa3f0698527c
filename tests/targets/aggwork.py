"""Workloads that count themselves, for the syscount/runqlat/biolatency/tcplife tests
(host and guest): ``python aggwork.py KIND N [ARG]``.

- ``rmdir N``: N rmdir() of a missing path in /tmp (N failed syscalls, ENOENT)
- ``sleep N``: N sleeps of 2 ms (N wakeups of this thread)
- ``dread N DEV``: N 4 KiB O_DIRECT reads of DEV at distinct offsets (N block requests)
- ``tcp N``: N loopback TCP sessions; session i sends 3000*(i+1) bytes, gets 5000 back
"""

import os
import sys
import time

# Started with python -S (no site) and importing only what its kind needs: under
# emulation every module costs tens of milliseconds, and the tools' tests run this
# script several times per test (tempfile alone imports random, hashlib and shutil).

#: in a writable file system: on a read-only one (the guest's root) rmdir fails with EROFS
MISSING = os.path.join(os.environ.get("TMPDIR") or "/tmp", "nonexistent-kprobes-aggwork")


def rmdir(n: int) -> None:
    for _ in range(n):
        try:
            os.rmdir(MISSING)
        except OSError:
            pass


def sleep(n: int) -> None:
    for _ in range(n):
        time.sleep(0.002)


def dread(n: int, dev: str) -> None:
    import mmap
    fd = os.open(dev, os.O_RDONLY | os.O_DIRECT)
    buf = mmap.mmap(-1, 4096)
    for i in range(n):
        os.preadv(fd, [buf], i * 65536)
    os.close(fd)


def tcp(n: int) -> None:
    import socket
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(16)
    port = srv.getsockname()[1]
    for i in range(n):
        c = socket.create_connection(("127.0.0.1", port))
        a, _ = srv.accept()
        c.sendall(b"x" * (3000 * (i + 1)))
        got = 0
        while got < 3000 * (i + 1):
            got += len(a.recv(65536))
        a.sendall(b"y" * 5000)
        got = 0
        while got < 5000:
            got += len(c.recv(65536))
        c.close()
        a.close()
    srv.close()
    settled(port)
    # one write: the pipe is shared with the tracer, and print() writes twice when unbuffered
    os.write(1, f"{port}\n".encode())


def settled(port: int) -> None:
    """Wait until every socket on ``port`` has closed (gone, or in TIME_WAIT): the last
    state changes may run in a softirq after close() returns."""
    hexport = f":{port:04X} "
    while True:
        with open("/proc/net/tcp") as f:
            busy = [ln for ln in f if hexport in ln and ln.split()[3] != "06"]
        if not busy:
            return
        time.sleep(0.001)


if __name__ == "__main__":
    kind, n = sys.argv[1], int(sys.argv[2])
    if kind == "dread":
        dread(n, sys.argv[3])
    else:
        {"rmdir": rmdir, "sleep": sleep, "tcp": tcp}[kind](n)

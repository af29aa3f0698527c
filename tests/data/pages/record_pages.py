#!/usr/bin/env python3
"""Record real ``trace_pipe_raw`` pages for the decoder tests (needs root + tracefs).

    sudo python3 tests/data/pages/record_pages.py

Writes two folders beside this file, each with ``page.bin`` (one sub-buffer
as read from ``per_cpu/cpuN/trace_pipe_raw``), the ``format`` files of the
events in it (read in the same boot, so the IDs match), ``header_page`` and
``meta.json`` with what the workload did:

* ``getppid/``: ``syscalls/sys_enter_getppid`` while this process calls
  ``os.getppid()`` 100 times pinned to CPU 0.
* ``uprobe/``: an entry and a return uprobe on ``kp_target`` in
  ``target.c`` (built here with gcc -O0) with s32/s8/x64/string/ustring/
  char/char[3]/u8[4]/s8[4]/$comm/immediate args, called with known values,
  the last time with a NULL string (fetch fault).

Everything created (instance, uprobe events, temp dir) is removed in
``finally``; the instance and event group use the project's owner naming
(``kprobes_<pid>_<starttime>``) so that ``kprobes clean`` would find them if
this script were killed.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
TRACEFS = Path("/sys/kernel/tracing")
CPU = 0
CALLS = 100

TARGET_C = r"""
#include <stddef.h>
#include <stdint.h>

__attribute__((noinline)) long kp_target(long n, const char *s, int64_t x, const uint8_t *arr)
{
	__asm__ volatile("" ::: "memory");
	return n + (s != NULL) + arr[0] + (long)x;
}

int main(void)
{
	static const uint8_t arr[4] = {1, 2, 250, 255};
	static const char *strs[] = {"hello", "w\xc3\xb6rld", "bad\xff\xfe!", "abc"};
	long r = 0;
	for (int i = 0; i < 4; i++)
		r += kp_target(-5 - i, strs[i], (int64_t)0x1122334455667788LL + i, arr);
	r += kp_target(7, NULL, -1, arr);	/* the string fetches fault */
	return (int)(r & 1);
}
"""
STRS = ["hello", "w\u00f6rld", "bad\udcff\udcfe!", "abc"]  # as decoded (utf-8, surrogateescape)
PROBE_ARGS = ("n=%di:s32 n8=%di:s8 nx=%di:x64 s=+0(%si):string us=+0(%si):ustring "
              "ch=+0(%si):char chars=+0(%si):char[3] x=%dx:x64 xs=%dx:s64 "
              "arr=+0(%cx):u8[4] sarr=+0(%cx):s8[4] comm=$comm imm=\\\"imm\"")
RET_ARGS = "rv=%ax:s64"


def owner_name() -> str:
    with open(f"/proc/{os.getpid()}/stat") as f:
        start = f.read().rsplit(")", 1)[1].split()[19]  # field 22
    return f"kprobes_{os.getpid()}_{start}"


def write(path: Path, text: str, append: bool = False) -> None:
    flags = os.O_WRONLY | (os.O_APPEND if append else os.O_TRUNC)
    fd = os.open(path, flags)
    try:
        os.write(fd, text.encode())
    except OSError as e:
        log = (TRACEFS / "error_log").read_text().strip().splitlines()[-3:]
        raise RuntimeError(f"writing {text!r} to {path}: {e}\n" + "\n".join(log)) from e
    finally:
        os.close(fd)


def read_page(inst: Path, cpu: int, size: int) -> bytes:
    fd = os.open(inst / f"per_cpu/cpu{cpu}/trace_pipe_raw", os.O_RDONLY | os.O_NONBLOCK)
    try:
        return os.read(fd, size)
    except OSError as e:
        if e.errno == errno.EAGAIN:
            raise RuntimeError(f"no data on cpu{cpu}") from None
        raise
    finally:
        os.close(fd)


def page_size(inst: Path) -> int:
    p = inst / "buffer_subbuf_size_kb"
    return int(p.read_text()) * 1024 if p.exists() else 4096


def save(dest: Path, page: bytes, formats: dict[str, Path], meta: dict) -> None:
    dest.mkdir(exist_ok=True)
    (dest / "page.bin").write_bytes(page)
    shutil.copyfile(TRACEFS / "events/header_page", dest / "header_page")
    for name, src in formats.items():
        shutil.copyfile(src, dest / name)
    (dest / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    print(f"wrote {dest} ({len(page)} bytes)")


def record_getppid(inst: Path) -> None:
    ev = "syscalls/sys_enter_getppid"
    os.sched_setaffinity(0, {CPU})
    write(inst / f"events/{ev}/enable", "1")
    try:
        for _ in range(CALLS):
            os.getppid()
    finally:
        write(inst / f"events/{ev}/enable", "0")
    page = read_page(inst, CPU, page_size(inst))
    save(HERE / "getppid", page, {"sys_enter_getppid.format": TRACEFS / f"events/{ev}/format"},
         {"pid": os.getpid(), "calls": CALLS, "cpu": CPU, "system": "syscalls",
          "formats": ["sys_enter_getppid.format"]})


def file_offset(binary: Path, symbol: str) -> int:
    nm = subprocess.run(["nm", str(binary)], check=True, capture_output=True, text=True).stdout
    addr = next(int(a, 16) for a, _t, s in (ln.split() for ln in nm.splitlines()
                                            if len(ln.split()) == 3) if s == symbol)
    hdrs = subprocess.run(["readelf", "-lW", str(binary)], check=True, capture_output=True,
                          text=True).stdout
    for ln in hdrs.splitlines():
        parts = ln.split()
        if parts[:1] == ["LOAD"]:
            off, vaddr, filesz = int(parts[1], 16), int(parts[2], 16), int(parts[4], 16)
            if vaddr <= addr < vaddr + filesz:
                return addr - vaddr + off
    raise RuntimeError(f"{symbol} at {addr:#x} is in no LOAD segment")


def record_uprobe(inst: Path, group: str, tmp: Path) -> None:
    src = tmp / "target.c"
    src.write_text(TARGET_C)
    binary = tmp / "kp_target"
    subprocess.run(["gcc", "-O0", "-o", str(binary), str(src)], check=True)
    off = file_offset(binary, "kp_target")
    uev = TRACEFS / "uprobe_events"
    write(uev, f"p:{group}/target {binary}:{off:#x} {PROBE_ARGS}", append=True)
    write(uev, f"r:{group}/target_ret {binary}:{off:#x} {RET_ARGS}", append=True)
    enables = [inst / f"events/{group}/{e}/enable" for e in ("target", "target_ret")]
    try:
        for e in enables:
            write(e, "1")
        proc = subprocess.Popen([str(binary)], preexec_fn=lambda: os.sched_setaffinity(0, {CPU}))
        proc.wait()
    finally:
        for e in enables:
            write(e, "0")
    page = read_page(inst, CPU, page_size(inst))
    calls = [{"n": -5 - i, "s": STRS[i], "x": 0x1122334455667788 + i} for i in range(4)]
    calls.append({"n": 7, "s": None, "x": -1})
    save(HERE / "uprobe", page,
         {"target.format": TRACEFS / f"events/{group}/target/format",
          "target_ret.format": TRACEFS / f"events/{group}/target_ret/format"},
         {"pid": proc.pid, "comm": "kp_target", "cpu": CPU, "system": group,
          "formats": ["target.format", "target_ret.format"],
          "probe": f"p:GROUP/target kp_target:{off:#x} {PROBE_ARGS}",
          "ret_probe": f"r:GROUP/target_ret kp_target:{off:#x} {RET_ARGS}",
          "arr": [1, 2, 250, 255], "calls": calls})
    (HERE / "uprobe" / "target.c").write_text(TARGET_C.lstrip())


def main() -> int:
    if not (TRACEFS / "uprobe_events").exists():
        print(f"{TRACEFS} is not mounted (or not root)", file=sys.stderr)
        return 1
    name = owner_name()
    inst = TRACEFS / "instances" / name
    tmp = Path(tempfile.mkdtemp(prefix="kprobes-rec-"))
    inst.mkdir()
    try:
        record_getppid(inst)
        record_uprobe(inst, name, tmp)
    finally:
        for _ in range(50):  # rmdir is EBUSY while the kernel still holds a reader
            try:
                inst.rmdir()
                break
            except OSError as e:
                if e.errno != errno.EBUSY:
                    raise
                time.sleep(0.1)
        if f"{name}/" in (TRACEFS / "uprobe_events").read_text():
            write(TRACEFS / "uprobe_events", f"-:{name}/", append=True)
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Host: user and kernel stacks on uprobes and tracepoints, counted stacks, symbolization
(PIE, shared library, stripped binary with a build-id debug file)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
from conftest import run_cli

from kprobes.errors import KprobesError, NotSupported
from kprobes.kernel.elf import vaddr_to_offset
from kprobes.runtime.session import Session
from kprobes.runtime.stackcount import folded, stack_text
from kprobes.symbolize import UserSymbolizer
from kprobes.symbolize.elfsyms import build_id_path, load_symtab

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGETS = os.path.join(HERE, "targets")
CHAIN = ["leaf", "mid", "top", "main"]
N = 50


def _gcc(out: str, *args: str) -> str:
    subprocess.run(["gcc", "-O1", "-g", "-fno-omit-frame-pointer", *args, "-o", out], check=True)
    return out


@pytest.fixture(scope="module")
def bins(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    if not shutil.which("gcc"):
        pytest.skip("needs gcc")
    d = str(tmp_path_factory.mktemp("stacks"))
    src = os.path.join(TARGETS, "stackchain.c")
    out = {"exe": _gcc(f"{d}/chain", "-no-pie", src),
           "pie": _gcc(f"{d}/chain_pie", "-fPIE", "-pie", src),
           "lib": _gcc(f"{d}/libchain.so", "-fPIC", "-shared", os.path.join(TARGETS, "libchain.c"))}
    out["uselib"] = _gcc(f"{d}/chain_lib", "-DCHAIN_LIB", src, f"-L{d}", "-lchain",
                         f"-Wl,-rpath,{d}")
    # a stripped copy whose symbols are only in a debug file found by build-id
    stripped = f"{d}/chain_stripped"
    shutil.copy(out["exe"], stripped)
    bid = load_symtab(out["exe"]).build_id
    assert bid, "gcc on this host should write a build-id note"
    dbg = build_id_path(bid, f"{d}/debug")
    os.makedirs(os.path.dirname(dbg))
    subprocess.run(["objcopy", "--only-keep-debug", out["exe"], dbg], check=True)
    subprocess.run(["strip", "-s", stripped], check=True)
    out["stripped"], out["debug_root"] = stripped, f"{d}/debug"
    return out


def _run_traced(binary: str, spec: str, n: int = N, stack: str = "user",
                **kw: object) -> list[object]:
    """Trace ``spec`` while ``binary -w n`` runs (started first, armed, then let go;
    it exits once its n events are in)."""
    evs: list[object] = []
    p = subprocess.Popen([binary, "-w", str(n)], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        with Session(pid=p.pid) as s:
            s.add(spec, lambda ev: evs.append((ev.ustack, ev.kstack, ev.ustack_addrs)),
                  stack=stack)
            s.start()
            p.stdin.write(b"g")
            p.stdin.flush()
            s.run(until=lambda: len(evs) >= n, duration=60)
            p.stdin.close()
            p.wait()
            s.run(duration=0.05)
    finally:
        p.kill()
        p.wait()
    return evs


def _names(frames: list[object]) -> list[str | None]:
    return [f.symbol for f in frames]


def test_uprobe_user_stack_is_the_exact_chain(tracefs: object, bins: dict[str, str]) -> None:
    evs = _run_traced(bins["exe"], f"u:{bins['exe']}:leaf")
    assert len(evs) == N
    for ustack, kstack, _raw in evs:
        assert kstack is None
        assert _names(ustack)[:4] == CHAIN, [str(f) for f in ustack]
        assert all(f.module == bins["exe"] for f in ustack[:4])
        assert ustack[0].offset == 0


def test_pie_and_shared_library_resolve_by_name(tracefs: object, bins: dict[str, str]) -> None:
    evs = _run_traced(bins["pie"], f"u:{bins['pie']}:mid", n=5)
    assert len(evs) == 5
    for ustack, _k, raw in evs:
        assert raw[0] > 0x500000000000       # really loaded at a randomized PIE base
        assert _names(ustack)[:3] == ["mid", "top", "main"]
    evs = _run_traced(bins["uselib"], f"u:{bins['lib']}:lib_leaf", n=5)
    assert len(evs) == 5
    for ustack, _k, _raw in evs:
        assert _names(ustack)[:5] == ["lib_leaf", *CHAIN]
        assert ustack[0].module == bins["lib"] and ustack[1].module == bins["uselib"]


def test_stripped_binary_resolves_through_build_id_debug_file(
        tracefs: object, bins: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    exe = bins["stripped"]
    off = vaddr_to_offset(bins["exe"], load_symtab(bins["exe"]).starts[
        load_symtab(bins["exe"]).names.index("leaf")])
    monkeypatch.setenv("KPROBES_DEBUG_ROOT", bins["debug_root"])
    evs = _run_traced(exe, f"u:{exe}:0x{off:x}", n=3)
    assert len(evs) == 3
    for ustack, _k, _raw in evs:      # a probe by file offset: no entry fix-up, mid is skipped
        assert _names(ustack)[:3] == ["leaf", "top", "main"]
        assert ustack[0].module == exe
    raw = evs[0][2]
    # without the debug root: no names, but never a wrong one
    plain = UserSymbolizer(debug_root="/nonexistent").frames(0, raw, hint=(exe, off))
    assert [f.symbol for f in plain[:3]] == [None, None, None]
    assert str(plain[0]) == f"0x{raw[0]:x} [{exe}]"
    frames = UserSymbolizer(debug_root=bins["debug_root"]).frames(0, raw, hint=(exe, off))
    # entry at a raw offset: the caller's frame (mid) is not linked yet, so it is skipped
    assert _names(frames)[:3] == ["leaf", "top", "main"]
    assert load_symtab(exe, bins["debug_root"]).sources[0].endswith(".debug")


def test_cli_stacks_folded_counts_the_chain(tracefs: object, bins: dict[str, str]) -> None:
    exe = bins["exe"]
    p = subprocess.Popen([exe, "-w", str(N)], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL)
    cli = subprocess.Popen([sys.executable, "-m", "kprobes", "stacks", f"u:{exe}:leaf", "--user",
                            "--folded", "-p", str(p.pid)], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
    try:
        assert "Counting user stacks" in cli.stderr.readline()
        p.stdin.write(b"g")
        p.stdin.flush()
        assert p.stdout is None
        p.stdin.close()       # it exits when done: the run ends with it
        out, err = cli.communicate(timeout=60)
    finally:
        p.kill()
        cli.kill()
        p.wait()
    lines = [ln for ln in out.splitlines() if ln]
    assert len(lines) == 1, out + err
    frames, count = lines[0].rsplit(" ", 1)
    assert "main;top;mid;leaf" in frames and frames.endswith("main;top;mid;leaf")
    assert int(count) == N


def test_cli_trace_stack_kernel_shows_the_syscall_path(tracefs: object) -> None:
    r = run_cli("trace", "t:sched:sched_process_fork", "--stack", "kernel", "-c",
                "sh -c 'ls / >/dev/null; true'")
    assert r.returncode == 0, r.stderr
    frames = [ln.strip() for ln in r.stdout.splitlines() if ln.startswith("\t")]
    names = [f.split("+")[0] for f in frames]
    assert "do_syscall_64" in names, r.stdout
    assert any(n.startswith(("__x64_sys_", "__do_sys_")) for n in names), r.stdout
    assert "kernel_clone" in names


def test_cli_trace_json_stacks(tracefs: object, bins: dict[str, str]) -> None:
    import json
    r = run_cli("trace", f"u:{bins['exe']}:leaf", "--stack", "both", "--json", "-c",
                f"{bins['exe']} 3")
    assert r.returncode == 0, r.stderr
    evs = [json.loads(ln) for ln in r.stdout.splitlines() if '"probe"' in ln]
    assert len(evs) == 3
    for ev in evs:
        assert [s.split("+")[0] for s in ev["ustack"][:4]] == CHAIN
        assert ev["ustack"][0] == f"leaf+0x0 [{bins['exe']}]"
        assert ev["kstack"] and all(isinstance(s, str) for s in ev["kstack"])


def test_library_stacks_to_folded_and_svg(tracefs: object, bins: dict[str, str],
                                          tmp_path: object) -> None:
    p = subprocess.Popen([bins["exe"], "-w", "7"], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL)
    try:
        with Session(pid=p.pid) as s:
            counts = s.stacks(f"u:{bins['exe']}:leaf", kind="user")
            s.start()
            p.stdin.write(b"g")
            p.stdin.flush()
            s.run(until=lambda: counts.events >= 7, duration=60)
            p.stdin.close()
            p.wait()
            s.run(duration=0.05)
    finally:
        p.kill()
        p.wait()
    rows = counts.read()
    assert len(rows) == 1 and rows[0].count == 7 and list(rows[0].key["ustack"][:4]) == CHAIN
    assert counts.backend == "user" and "no hist triggers" in counts.backend_reason
    js = json.loads(json.dumps(counts.to_json()))
    assert js["aggregation"] == "count" and js["backend"] == "user" and js["total"] == 7
    assert js["rows"][0]["key"]["ustack"][:4] == CHAIN and js["rows"][0]["count"] == 7
    assert counts.to_folded().endswith("main;top;mid;leaf 7")
    svg = counts.to_svg(str(tmp_path / "u.svg"))
    assert os.path.exists(tmp_path / "u.svg") and 'data-name="leaf"' in svg


def test_minidebuginfo_section_gives_the_local_functions(bins: dict[str, str],
                                                         tmp_path: object) -> None:
    """A stripped binary with a .gnu_debugdata section (an xz-compressed ELF holding
    .symtab, as Fedora ships them) resolves by name with no debug file around."""
    import lzma
    mini = str(tmp_path / "mini.debug")
    subprocess.run(["objcopy", "--only-keep-debug", bins["exe"], mini], check=True)
    with open(mini, "rb") as f, open(mini + ".xz", "wb") as g:
        g.write(lzma.compress(f.read()))
    exe = str(tmp_path / "chain_mini")
    shutil.copy(bins["exe"], exe)
    subprocess.run(["strip", "-s", exe], check=True)
    subprocess.run(["objcopy", "--add-section", f".gnu_debugdata={mini}.xz", exe], check=True)
    st = load_symtab(exe, "/nonexistent")
    assert ".gnu_debugdata" in st.sources and ".symtab" not in st.sources
    ref = load_symtab(bins["exe"])
    for name in CHAIN:
        addr = ref.starts[ref.names.index(name)]
        assert st.lookup(addr + 1) == (name, 1)


def test_library_stacks_per_process_and_clear(tracefs: object, bins: dict[str, str]) -> None:
    """per_process=True: one row per process, keyed by its pid and comm; clear()
    starts over."""
    p = subprocess.Popen([bins["exe"], "-w", "5"], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL)
    try:
        with Session(pid=p.pid) as s:
            counts = s.stacks(f"u:{bins['exe']}:leaf", kind="user", per_process=True)
            s.start()
            p.stdin.write(b"g")
            p.stdin.flush()
            s.run(until=lambda: counts.events >= 5, duration=60)
            rows = counts.read()
            counts.clear()
            after = counts.read()
            p.stdin.close()
            p.wait()
    finally:
        p.kill()
        p.wait()
    assert [(r.key["pid"], r.key["comm"], r.count) for r in rows] == [
        (p.pid, os.path.basename(bins["exe"])[:15], 5)]
    assert list(rows[0].key) == ["pid", "comm", "ustack"] and after == []
    assert stack_text(rows).endswith(f"    {os.path.basename(bins['exe'])[:15]} [{p.pid}]\n    5")
    assert folded(rows).startswith(f"{os.path.basename(bins['exe'])[:15]}-{p.pid};")


def test_stacks_kernel_backend_refused_here(tracefs: object, bins: dict[str, str]) -> None:
    """No hist triggers on this host: backend="kernel" is one NotSupported naming
    them, before anything is created; user stacks are never the kernel's."""
    with Session() as s:
        with pytest.raises(NotSupported, match="hist triggers"):
            s.stacks("t:syscalls:sys_enter_getppid", kind="kernel", backend="kernel")
        assert not s.handles
    with Session() as s:
        with pytest.raises(KprobesError, match="hist triggers"):
            s.stacks(f"u:{bins['exe']}:leaf", kind="user", backend="kernel")

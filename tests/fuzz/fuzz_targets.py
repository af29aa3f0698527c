"""Fuzz targets: one per parser of input we do not control.

Each target is a hypothesis strategy (seeded from the recorded real files in
tests/data, mutated) and a function that feeds one input to the parser and
uses what it returns. A target passes an input if it returns, or raises an
exception of the documented :class:`~kprobes.errors.KprobesError` tree.
"""

from __future__ import annotations

import itertools
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from hypothesis import strategies as st

HERE = Path(__file__).resolve().parent
DATA = HERE.parent / "data"
sys.path.insert(0, str(HERE.parent / "unit"))

__all__ = ["TARGETS", "Target"]


@dataclass(frozen=True)
class Target:
    name: str
    strategy: st.SearchStrategy
    run: Callable[[object], None]


# -- mutation of seeds --------------------------------------------------------

def _mutate_bytes(seed: bytes, edits: list[tuple[int, int, int]], cut: int | None) -> bytes:
    b = bytearray(seed)
    for op, pos, val in edits:
        if not b:
            b.append(val)
            continue
        pos %= len(b)
        if op == 0:                          # overwrite a byte
            b[pos] = val
        elif op == 1:                        # insert
            b.insert(pos, val)
        elif op == 2:                        # delete
            del b[pos]
        elif op == 3:                        # 32-bit word: an interesting value
            word = (0, 1, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, 4096, val)[val % 7]
            b[pos:pos + 4] = word.to_bytes(4, "little")
        else:                                # duplicate a chunk
            b[pos:pos] = b[pos:pos + val]
    if cut is not None and b:
        del b[cut % len(b):]
    return bytes(b)


def mutated_bytes(seeds: list[bytes]) -> st.SearchStrategy[bytes]:
    edits = st.lists(st.tuples(st.integers(0, 4), st.integers(0, 1 << 24), st.integers(0, 255)),
                     max_size=12)
    return st.one_of(
        st.builds(_mutate_bytes, st.sampled_from(seeds), edits, st.none() | st.integers(0, 1 << 24)),
        st.binary(max_size=512))


_TOKENS = ["\n", " ", "\t", ";", ":", "[", "]", "(", ")", "0", "-1", "4294967296", "0x",
           "field:", "offset:", "size:", "signed:", "__data_loc ", "__rel_loc ", "char ", "[]",
           "unsigned ", "*", "ID: ", "format:", "print fmt:", "name: ", "\x00", "é", "\udcff",
           "$", "%", "+", "@", "=", "u8", "string", "ustring", "x64", "s32", "b3@4/32", "T ",
           "t ", "[mod]", "ffffffff81000000", "0xffffffff81000000-0xffffffff81000010"]


def _mutate_text(seed: str, edits: list[tuple[int, int, int]], cut: int | None) -> str:
    lines = seed.splitlines(keepends=True) or [""]
    s = seed
    for op, pos, val in edits:
        if op == 0:                          # insert a token
            p = pos % (len(s) + 1)
            s = s[:p] + _TOKENS[val % len(_TOKENS)] + s[p:]
        elif op == 1 and s:                  # delete a span
            p = pos % len(s)
            s = s[:p] + s[p + val % 16:]
        elif op == 2:                        # duplicate or drop a line
            lines = s.splitlines(keepends=True) or [""]
            i = pos % len(lines)
            lines[i:i + 1] = [lines[i]] * (val % 3)
            s = "".join(lines)
        elif op == 3 and s:                  # replace a digit run's digit
            p = pos % len(s)
            if s[p].isdigit():
                s = s[:p] + str(val % 10) * (1 + val % 5) + s[p + 1:]
        elif s:                              # replace a char
            p = pos % len(s)
            s = s[:p] + chr(val) + s[p + 1:]
    if cut is not None and s:
        s = s[:cut % (len(s) + 1)]
    return s


def mutated_text(seeds: list[str]) -> st.SearchStrategy[str]:
    edits = st.lists(st.tuples(st.integers(0, 4), st.integers(0, 1 << 20), st.integers(0, 300)),
                     max_size=10)
    return st.one_of(
        st.builds(_mutate_text, st.sampled_from(seeds), edits, st.none() | st.integers(0, 1 << 20)),
        st.text(max_size=200))


def _read(*parts: str) -> str:
    return (DATA.joinpath(*parts)).read_text()


# -- spec grammar -------------------------------------------------------------

def _spec_seeds() -> list[str]:
    return ["p:do_sys_openat2 filename how->flags how->mode",
            "r1:do_sys_openat2 $retval", "p:do_sys_openat2 dfd=%di:s32 path=+0(%si):ustring",
            "u:/bin/bash:readline", "ur:/bin/bash:readline line=+0(%ax):string",
            "t:syscalls:sys_enter_openat", "p:0xffffffff81000000", "r10:ext4:ext4_sync_fs",
            "p:schedule+5 a=@jiffies:u64 b=$stack3 c=\\42 d=+8(+0(%di)):b3@4/32",
            "p:f x=$arg1:u8[4] y=$comm z=%ax:symbol w=$retval:x16",
            "u:/bin/true:0x1000 a=+0(%sp):u64"]


def run_spec(spec: object) -> None:
    from kprobes.probes.spec import parse_spec
    assert isinstance(spec, str)
    p = parse_spec(spec)
    p.default_name()
    if p.dynamic:
        from kprobes.kernel.tracefs import check_line
        check_line(p.definition("g", "e"))      # what would be written: one line


# -- filters (not parsed by us: the path up to and including the kernel write) --

_FILTER_SEEDS = ["common_pid == 42", "pid != 1 && (comm ~ \"bash*\" || ret < 0)",
                 "__syscall_nr == 110", "flags & 1", "((a>1))||b<=2", "x == \"\\\"\"", "0"]


class _FilterSink:
    """A real tracefs instance (root on the host) whose getppid tracepoint
    takes the filters; elsewhere only our own checks run."""

    inst = None

    @classmethod
    def get(cls):
        if cls.inst is None and os.geteuid() == 0:
            import atexit

            from kprobes.kernel.tracefs import Tracefs
            from kprobes.runtime import owner
            try:
                tfs = Tracefs.open()
            except Exception:  # noqa: BLE001 - no tracefs: checks only
                return None
            inst = tfs.instance(owner.new_name())
            inst.create()
            atexit.register(inst.remove)
            cls.inst = inst
        return cls.inst


def run_filter(expr: object) -> None:
    from kprobes.kernel.tracefs import check_line
    assert isinstance(expr, str)
    inst = _FilterSink.get()
    if inst is None:
        check_line(expr, "filter")
        return
    inst.set_filter("syscalls", "sys_enter_getppid", expr)
    inst.clear_filter("syscalls", "sys_enter_getppid")


# -- tracefs format files ------------------------------------------------------

def _format_seeds() -> list[str]:
    return [p.read_text() for p in sorted((DATA / "formats").glob("*.format"))]


def run_format(text: object) -> None:
    from kprobes.decode.format import parse_format
    from kprobes.decode.record import RecordDecoder
    assert isinstance(text, str)
    fmt = parse_format(text, "fuzz")
    dec = RecordDecoder(fmt, {})
    payload = bytes(range(256)) * 2
    for off in (0, 8, 100):
        try:
            dec.decode(payload, off, len(payload) - off)
        except Exception as e:
            from kprobes.errors import KprobesError
            if not isinstance(e, KprobesError):
                raise


# -- ring-buffer pages + record decoding --------------------------------------

def _page_seeds() -> list[bytes]:
    return [(DATA / "pages" / d / "page.bin").read_bytes() for d in ("getppid", "uprobe")]


def run_page(page: object) -> None:
    from kprobes.decode.format import parse_format
    from kprobes.decode.record import RecordDecoder
    from kprobes.decode.ringbuf import PageDecoder
    assert isinstance(page, bytes)
    pd = PageDecoder.from_header_page(_read("pages", "getppid", "header_page"))
    _hdr, recs = pd.records(page)
    decs = [RecordDecoder(parse_format(_read("pages", d, f), "x"), {})
            for d, f in (("getppid", "sys_enter_getppid.format"), ("uprobe", "target.format"))]
    from kprobes.errors import KprobesError
    for _ts, start, length in recs[:64]:
        for dec in decs:
            try:
                dec.decode(page, start, length)
            except KprobesError:
                pass


# -- BTF blobs -----------------------------------------------------------------

def _btf_seeds() -> list[bytes]:
    from test_btf_crafted import every_kind
    b, _ = every_kind()
    return [b.build(), b.build(big_endian=True)]


def run_btf(blob: object) -> None:
    from kprobes.btf import BTF
    from kprobes.errors import KprobesError
    assert isinstance(blob, bytes)
    btf = BTF.from_bytes(blob)
    for t in itertools.islice(btf.iter_types(), 64):
        for op in (btf.type_name, btf.sizeof, btf.is_user_pointer, btf.resolve):
            try:
                op(t)
            except KprobesError:
                pass
        if t.kind == "func" and t.name:
            try:
                btf.func_proto(t.name)
            except KprobesError:
                pass


# -- ELF files -----------------------------------------------------------------

def _elf_seeds() -> list[bytes]:
    return [Path("/bin/true").read_bytes()]


_elf_n = itertools.count()


def run_elf(blob: object) -> None:
    from kprobes.errors import KprobesError
    from kprobes.kernel import elf
    assert isinstance(blob, bytes)
    d = "/dev/shm" if os.path.isdir("/dev/shm") else "/tmp"
    path = f"{d}/kprobes-fuzz-{os.getpid()}-{next(_elf_n)}"
    with open(path, "wb") as f:
        f.write(blob)
    try:
        syms = elf.read_symbols(path)
        for s in syms[:32]:
            if s.is_function:
                try:
                    elf.resolve_uprobe(path, s.name)
                except KprobesError:
                    pass
        for fn in ("build_id", "read_build_id"):
            if hasattr(elf, fn):
                getattr(elf, fn)(path)
    finally:
        os.unlink(path)


# -- kallsyms text -------------------------------------------------------------

def _kallsyms_seeds() -> list[str]:
    return [_read("kallsyms", "kallsyms-6.12-excerpt.txt"), _read("kallsyms", "host-6.18-excerpt.txt"),
            _read("kallsyms", "blacklist-6.12-excerpt.txt")]


def run_kallsyms(text: object) -> None:
    from kprobes.errors import KprobesError
    from kprobes.kernel.blacklist import Blacklist
    from kprobes.kernel.kallsyms import KernelSymbols
    from kprobes.kernel.symlookup import KallsymsLookup
    assert isinstance(text, str)
    for table in (KernelSymbols.parse(text), KallsymsLookup.parse(text)):
        for name in ("do_int3", "schedule", "x", "mod:fn", "do_int3+4"):
            try:
                for sym in table.lookup(name):
                    table.size(sym)
                    table.function_at(sym.addr)
            except KprobesError:
                pass
        table.suggest("schedul")
    list(itertools.islice(KernelSymbols.parse(text).iter_functions("*"), 100))
    bl = Blacklist.parse(text)
    bl.contains(0xffffffff8a4409c0)


# -- hist-file text (hist triggers, read back by the kernel aggregation backend) --

def _hist_seeds() -> list[str]:
    return [p.read_text() for p in sorted((DATA / "hist").glob("*.hist"))]


# the key names the aggregation backend passes (runtime/aggregate.py KernelAgg._read)
_HIST_NAMES = (None, [("__comm",)], [("common_pid",)], [("cpu", "common_cpu"), ("common_pid",)],
               [("mode",)], [("path",), ("mode",)], [("common_pid",), ("lat",)])


def run_hist(text: object) -> None:
    from kprobes.agg.histfile import key_value, parse_hist
    from kprobes.errors import KprobesError
    assert isinstance(text, str)
    for names in _HIST_NAMES:
        for t in parse_hist(text, names):
            assert isinstance(t.hits, int) and isinstance(t.dropped, int)
            for keys, vals in t.rows:
                assert all(isinstance(v, int) for v in vals.values())
                for raw in keys.values():
                    for kind, bits in (("int", 0), ("int", 32), ("str", 0), ("execname", 0),
                                       ("log2", 0), ("range", 0)):
                        try:
                            key_value(raw, kind, bits)
                        except KprobesError:
                            pass


def _targets() -> dict[str, Target]:
    return {t.name: t for t in (
        Target("spec", mutated_text(_spec_seeds()), run_spec),
        Target("filter", mutated_text(_FILTER_SEEDS), run_filter),
        Target("format", mutated_text(_format_seeds()), run_format),
        Target("ringbuf", mutated_bytes(_page_seeds()), run_page),
        Target("btf", mutated_bytes(_btf_seeds()), run_btf),
        Target("elf", mutated_bytes(_elf_seeds()), run_elf),
        Target("kallsyms", mutated_text(_kallsyms_seeds()), run_kallsyms),
        Target("hist", mutated_text(_hist_seeds()), run_hist),
    )}


TARGETS = _targets()

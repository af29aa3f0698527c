"""Symbolization without a kernel: kallsyms text, crafted symbol tables (the modules'
``>>>`` examples run in test_doctests)."""

from __future__ import annotations

from array import array

from kprobes.symbolize import Frame, KernelSymbolizer
from kprobes.symbolize.elfsyms import ElfSymtab, build_id_path

KALLSYMS = (b"ffffffff81000000 T _stext\n"
            b"ffffffff81000100 T do_work\n"
            b"ffffffff81000100 t do_work_alias\n"
            b"ffffffff81000200 t helper\n"
            b"ffffffff81000300 D some_data\n"
            b"ffffffffc0001000 t mod_fn\t[ext4]\n"
            b"ffffffffc0001100 t mod_last\t[ext4]\n"
            b"ffffffffc0100000 t other_fn\t[xfs]\n")


def test_kernel_frames_and_return_addresses() -> None:
    ks = KernelSymbolizer(text=KALLSYMS)
    f = ks.frame(0xffffffff81000104)
    assert (f.symbol, f.offset, f.module) == ("do_work", 4, None)
    # a return address right after a call at the end of helper's predecessor
    f = ks.frames([0xffffffff81000104, 0xffffffff81000200])[1]
    assert (f.symbol, f.offset, f.addr) == ("do_work", 0x100, 0xffffffff81000200)
    assert ks.frame(0xffffffffc0001010) == Frame(0xffffffffc0001010, "mod_fn", 0x10, "ext4")


def test_kernel_unresolvable_is_never_a_wrong_name() -> None:
    ks = KernelSymbolizer(text=KALLSYMS)
    assert ks.frame(0xffffffff80000000).symbol is None          # below the first symbol
    assert ks.frame(0xffffffffc00f0000).symbol is None          # far past a module's last one
    assert ks.frame(0xffffffffc0200000).symbol is None          # past the last symbol
    assert str(ks.frame(0xffffffffc0200000)) == "0xffffffffc0200000"
    hidden = KernelSymbolizer(text=KALLSYMS.replace(b"ffffffff", b"00000000")
                              .replace(b"00000000c", b"000000000"))
    assert hidden.frame(0x104).symbol is None


def test_elf_lookup_by_size_and_sizeless_symbols() -> None:
    st = ElfSymtab("/x", loads=((0x400000, 0x2000, 0, 0x2000),),
                   starts=array("Q", [0x401000, 0x401100, 0x401200]),
                   sizes=array("Q", [0x20, 0, 0x10]), names=["f", "asm_label", "g"])
    assert st.lookup(0x401010) == ("f", 0x10)
    assert st.lookup(0x401050) is None              # past f's size: a gap, not f
    assert st.lookup(0x4011f0) == ("asm_label", 0xf0)   # no size: up to the next symbol
    assert st.lookup(0x401210) is None
    assert st.lookup(0x400fff) is None
    assert st.vaddr_of_offset(0x1010) == 0x401010 and st.vaddr_of_offset(0x3000) is None


def test_build_id_path() -> None:
    assert build_id_path("abcdef12", "/dbg") == "/dbg/.build-id/ab/cdef12.debug"

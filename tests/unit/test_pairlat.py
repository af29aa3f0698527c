"""Pieces of Session.latency_between and the aggregation tools that need no kernel:
synthetic-event field types from recorded formats, kernel keys, bcc's histogram text."""

from __future__ import annotations

from pathlib import Path

from kprobes.agg.model import Bucket
from kprobes.agg.render import log2_hist_text
from kprobes.decode.format import parse_format
from kprobes.runtime.agg_kernel import _kernel_keys
from kprobes.runtime.pairlat import _kexpr, _synth_type

FORMATS = Path(__file__).parent.parent / "data" / "formats"


def _fmt(name: str, group: str):
    return parse_format((FORMATS / f"{name}.format").read_text(), group)


def test_synthetic_fields_match_the_end_events_types():
    sw = _fmt("sched_sched_switch", "sched")
    blk = _fmt("block_block_rq_complete", "block")
    # named types the kernel knows stay named (it compares names first: s32 != pid_t)
    assert _synth_type(sw, "next_pid") == "pid_t next_pid"
    assert _synth_type(blk, "dev") == "u32 dev"             # dev_t: by size and sign
    assert _synth_type(blk, "rwbs").startswith("char rwbs[")


def test_a_key_named_pid_is_the_events_field_where_it_has_one():
    assert _kexpr("pid", {"pid", "prio"}) == "pid"          # sched_wakeup's woken task
    assert _kexpr("pid", {"next_pid"}) == "common_pid"      # else the current task
    assert _kexpr("sector", {"sector"}) == "sector"


def test_pid_and_comm_share_one_kernel_key():
    keys = _kernel_keys(("pid", "comm"), None, False)
    assert [k.expr for k in keys] == ["", "common_pid.execname"]


def test_bcc_log2_histogram_text_fills_empty_buckets():
    text = log2_hist_text([Bucket(9, 17, 3), Bucket(33, 65, 1)], "usecs", width=6)
    assert text.splitlines() == [
        "     usecs               : count     distribution",
        "         0 -> 1          : 0        |      |",
        "         2 -> 2          : 0        |      |",
        "         3 -> 4          : 0        |      |",
        "         5 -> 8          : 0        |      |",
        "         9 -> 16         : 3        |******|",
        "        17 -> 32         : 0        |      |",
        "        33 -> 64         : 1        |**    |",
    ]

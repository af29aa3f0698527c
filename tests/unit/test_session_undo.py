"""The undo order of a Session, checked on a temporary tracefs-shaped tree.

A small stand-in for the kernel's side of tracefs (:class:`FakeTracefs`)
keeps the files a Session reads and writes in a temporary directory: a
definition written to ``uprobe_events`` makes its ``events/G/E`` folder
(and the instance's switches), ``mkdir instances/NAME`` fills the instance,
and every step is written to a journal. The tests check that what was done
is undone in exactly the reverse order: after a normal run, and when any
one step fails midway (the tree is then as it was before). Real behaviour
stays tested for real in tests/host.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest

from kprobes import Session, parse_spec
from kprobes.errors import KernelRefused
from kprobes.kernel.tracefs import Instance, Tracefs
from kprobes.runtime import reader as reader_mod

FORMATS = Path(__file__).resolve().parent.parent / "data" / "formats"
COMMON = """\
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
\tfield:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;
\tfield:unsigned char common_preempt_count;\toffset:3;\tsize:1;\tsigned:0;
\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;

"""
INSTANCE_FILES = ("tracing_on", "trace_clock", "options/overwrite", "options/record-tgid",
                  "buffer_percent", "set_event_notrace_pid", "set_event_pid",
                  "options/event-fork", "per_cpu/cpu0/trace_pipe_raw")
STATS = "entries: 0\noverrun: 0\ncommit overrun: 0\ndropped events: 0\nread events: 0\n"


class Failed(KernelRefused):
    pass


class FakeTracefs(Tracefs):
    """tracefs in a temporary directory, with the kernel's reactions to our writes."""

    def __init__(self, root: str) -> None:
        super().__init__(root)
        self.journal: list[str] = []
        self.fail_at: int | None = None     # refuse the step with this index, once
        self._next_id = 5000

    def step(self, what: str) -> None:
        if self.fail_at == len(self.journal):
            self.fail_at = None
            raise Failed(f"injected failure at {what}", errno=22, file="", command=what)
        self.journal.append(what)

    def _mkfile(self, rel: str, text: str = "") -> None:
        p = self.path(rel)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        with open(p, "w") as f:
            f.write(text)

    def write(self, rel: str, line: str, **kw) -> None:  # type: ignore[override]
        if rel == "uprobe_events":
            if line.startswith("-:"):
                self.step(f"delete {line[2:]}")
                for base in ["", *(f"instances/{i}/" for i in self.instances())]:
                    shutil.rmtree(self.path(f"{base}events/{line[2:]}"))
                    group = self.path(f"{base}events/{line[2:].split('/')[0]}")
                    if not os.listdir(group):        # the last event takes its group along
                        os.rmdir(group)
                return
            m = re.match(r"[pr]:(\S+)/(\S+) \S+ (.*)", line)
            assert m, line
            group, event, args = m.groups()
            self.step(f"define {group}/{event}")
            self._define(group, event, args.split())
            return
        m = re.match(r"instances/[^/]+/events/(.+)/(enable|filter)$", rel)
        if m:
            self.step(f"{m.group(2)} {m.group(1)} = {line}")
        super().write(rel, line, **kw)

    def _define(self, group: str, event: str, args: list[str]) -> None:
        fields, off = ["\tfield:unsigned long __probe_ip;\toffset:8;\tsize:8;\tsigned:0;"], 16
        for a in args:
            name, _, fetch = a.partition("=")
            if fetch.endswith(":string"):
                fields.append(f"\tfield:__data_loc char[] {name};\toffset:{off};\tsize:4;"
                              "\tsigned:1;")
                off += 4
            else:
                fields.append(f"\tfield:u64 {name};\toffset:{off};\tsize:8;\tsigned:0;")
                off += 8
        self._next_id += 1
        fmt = (f"name: {event}\nID: {self._next_id}\nformat:\n{COMMON}" + "\n".join(fields)
               + '\n\nprint fmt: ""\n')
        self._mkfile(f"events/{group}/{event}/format", fmt)
        self._mkfile(f"events/{group}/{event}/id", f"{self._next_id}\n")
        for inst in self.instances():
            self._event_switches(f"instances/{inst}", f"{group}/{event}")

    def _event_switches(self, inst_rel: str, ge: str) -> None:
        self._mkfile(f"{inst_rel}/events/{ge}/enable", "0\n")
        self._mkfile(f"{inst_rel}/events/{ge}/filter", "none\n")

    def instance(self, name: str) -> Instance:
        return FakeInstance(self, name)


class FakeInstance(Instance):
    tfs: FakeTracefs

    def create(self) -> None:
        self.tfs.step(f"mkdir {self.name}")
        super().create()
        for f in INSTANCE_FILES:
            self.tfs._mkfile(f"{self.rel}/{f}")
        self.tfs._mkfile(f"{self.rel}/per_cpu/cpu0/stats", STATS)
        events = self.tfs.path("events")
        for g in os.listdir(events):
            if os.path.isdir(os.path.join(events, g)):
                for e in os.listdir(os.path.join(events, g)):
                    self.tfs._event_switches(self.rel, f"{g}/{e}")

    def remove(self) -> None:
        self.tfs.step(f"rmdir {self.name}")
        shutil.rmtree(self.path)


@pytest.fixture
def tree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeTracefs:
    tfs = FakeTracefs(str(tmp_path))
    for d in ("instances", "per_cpu/cpu0"):
        os.makedirs(tmp_path / d)
    tfs._mkfile("events/header_page", (FORMATS / "header_page").read_text())
    tfs._mkfile("uprobe_events")
    for name in ("sys_enter_getppid", "sys_enter_openat"):
        text = (FORMATS / f"syscalls_{name}.format").read_text()
        tfs._mkfile(f"events/syscalls/{name}/format", text)
        tfs._mkfile(f"events/syscalls/{name}/id", re.search(r"ID: (\d+)", text).group(1))

    real_open, real_close = reader_mod.Reader.open, reader_mod.Reader.close

    def open_(self: reader_mod.Reader) -> None:
        tfs.step("open ring buffers")
        real_open(self)

    def close(self: reader_mod.Reader) -> None:
        if self.fds:                 # a reader that opened nothing has nothing to undo
            tfs.journal.append("close ring buffers")
        real_close(self)
    monkeypatch.setattr(reader_mod.Reader, "open", open_)
    monkeypatch.setattr(reader_mod.Reader, "close", close)
    return tfs


def _session(tfs: FakeTracefs) -> Session:
    s = Session(tracefs=tfs.root, clock="")
    s._tfs = tfs                     # the stand-in kernel
    s.add(parse_spec("t:syscalls:sys_enter_getppid", filter="common_pid == 1"))
    s.add_uprobe("u:/bin/true:0x10 a=%di:s64")
    s.add_tracepoint("t:syscalls:sys_enter_openat")
    return s


UNDO = {"mkdir": "rmdir", "define": "delete", "open": "close"}


def _undo_of(step: str) -> str:
    verb, _, rest = step.partition(" ")
    if verb in ("enable", "filter"):
        return f"{verb} {rest.split(' = ')[0]} = 0"
    return f"{UNDO[verb]} {rest}"


def _check_reverse(journal: list[str], n_done: int) -> None:
    done, undone = journal[:n_done], journal[n_done:]
    assert undone == [_undo_of(s) for s in reversed(done)]


def _tree_is_clean(tfs: FakeTracefs) -> bool:
    left = tfs.instances() + sorted(set(os.listdir(tfs.path("events")))
                                    - {"header_page", "syscalls"})
    assert not left
    return True


def test_everything_is_undone_in_reverse(tree: FakeTracefs) -> None:
    s = _session(tree)
    s.start()
    done = list(tree.journal)
    name = s.name
    grp = f"{name}/"
    assert done[0] == f"mkdir {name}"
    assert done[1] == "filter syscalls/sys_enter_getppid = common_pid == 1"
    assert done[2].startswith(f"define {grp}")
    assert done[3:] == [
        "enable syscalls/sys_enter_getppid = 1",
        f"enable {done[2][len('define '):]} = 1",
        "enable syscalls/sys_enter_openat = 1",
        "open ring buffers"]
    s.close()
    _check_reverse(tree.journal, len(done))
    assert _tree_is_clean(tree)
    assert s.cleanup_problems == []


def _do_steps(tfs: FakeTracefs) -> list[str]:
    s = _session(tfs)
    s.start()
    steps = list(tfs.journal)
    s.close()
    tfs.journal.clear()
    return steps


def test_a_failure_midway_undoes_what_was_done_in_reverse(tree: FakeTracefs) -> None:
    steps = _do_steps(tree)
    assert len(steps) == 7
    for k, step in enumerate(steps):
        s = _session(tree)
        tree.fail_at = k
        with pytest.raises(Failed):
            s.start()
        journal = list(tree.journal)
        assert len(journal) == 2 * k, (step, journal)
        _check_reverse(journal, k)
        assert _tree_is_clean(tree), step
        tree.journal.clear()

"""The probe-spec grammar of the command line (perf-tools/bcc style).

One spec is one shell argument: a probe point followed by fetch arguments::

    p:SYM[+OFF] | p:MOD:SYM[+OFF] | p:0xADDR        kernel entry probe
    r[N]:SYM | r[N]:MOD:SYM                         kernel return probe, maxactive N
    u:PATH:SYM[+OFF] | u:PATH:0xOFF                 user probe (0xOFF = file offset)
    ur:PATH:SYM                                     user return probe
    t:GROUP:EVENT                                   tracepoint

    ARGS: NAME=FETCH[:TYPE] ... or bare FETCH[:TYPE] ($retval -> retval, $arg2 -> arg2)

>>> parse_spec("p:do_sys_openat2 dfd=%di:s32").location()
'do_sys_openat2'
>>> parse_spec("r5:vfs_read $retval:s64").definition("g", "e")
'r5:g/e vfs_read retval=$retval:s64'
>>> parse_spec("u:/bin/bash:readline line=+0(%ax):string").symbol
'readline'
"""

from __future__ import annotations

import re

from ..errors import SpecError
from ..kernel.tracefs import check_line
from .btfargs import arg_name, is_btf_expr
from .model import (
    MAX_MAXACTIVE,
    FetchArg,
    KProbe,
    KRetProbe,
    Probe,
    Tracepoint,
    UProbe,
    URetProbe,
)

TYPE_CHECKING = False   # typing's, without importing typing at run time
if TYPE_CHECKING:
    from typing import Any

__all__ = ["parse_spec", "parse_args", "parse_arg", "SPEC_HELP"]

SPEC_HELP = f"""\
probe specs (one shell argument each, quote them):
  p:SYM[+OFF] [ARGS]        kernel function entry (or p:MOD:SYM, p:0xADDR)
  r[N]:SYM [ARGS]           kernel function return, N = maxactive (1..{MAX_MAXACTIVE})
  u:PATH:SYM[+OFF] [ARGS]   user function entry (u:PATH:0xOFF = file offset)
  ur:PATH:SYM [ARGS]        user function return
  t:GROUP:EVENT             tracepoint (its fields arrive by name)
ARGS are NAME=FETCH[:TYPE] (or FETCH[:TYPE]): %di %si $arg1 $retval $comm @sym
+8(%di) +0(%si):string ... ; TYPE is u8..u64 s8..s64 x8..x64 string ustring char
symbol b<W>@<O>/<S> or TYPE[N]. For kernel functions FETCH may also name
parameters and fields, resolved from BTF: filename how->flags
file->f_path.dentry->d_name.name $retval (bare ones are named how_flags ...).
examples:
  kprobes trace 'p:do_sys_openat2 filename how->flags how->mode'
  kprobes trace 'r:do_sys_openat2 $retval' --filter 'retval < 0'
  kprobes trace 'p:do_sys_openat2 dfd=%di:s32 path=+0(%si):ustring'
  kprobes trace 'r1:do_sys_openat2 ret=$retval:s64' --filter 'ret < 0'
  kprobes trace 'u:/bin/bash:readline' 'ur:/bin/bash:readline line=+0($retval):ustring'
  kprobes trace t:syscalls:sys_enter_openat -c 'cat /etc/hostname'
"""

_SYM = r"[A-Za-z_.][A-Za-z0-9_.$]*"
_NUM = r"(?:0[xX][0-9a-fA-F]+|\d+)"
_KLOC = re.compile(rf"(?:(?P<mod>[A-Za-z_][A-Za-z0-9_]*):)?(?P<sym>{_SYM})(?:\+(?P<off>{_NUM}))?\Z")
_ADDR = re.compile(r"0[xX](?P<addr>[0-9a-fA-F]+)\Z")


def _int(s: str) -> int:
    """A number as the kernel's ``kstrtoul(s, 0)`` reads it: ``0x`` hex, a
    leading ``0`` octal (``+010`` is 8), else decimal."""
    try:
        if len(s) > 1 and s[0] == "0" and s[1] not in "xX":
            return int(s, 8)
        return int(s, 0)
    except ValueError:
        raise SpecError(f"{s!r} is not a number",
                        hint="decimal, 0x hex or 0-prefixed octal, e.g. +0x10 or +16") from None


def parse_arg(text: str, index: int, *, spec: str = "", column: int = 0) -> FetchArg:
    """Parse ``NAME=FETCH[:TYPE]`` or ``FETCH[:TYPE]`` (named after the fetch)."""
    name = None
    body = text
    m = re.match(r"([A-Za-z_][A-Za-z0-9_]*)=(.*)\Z", text)
    if m:
        name, body = m.group(1), m.group(2)
    fetch, typ = body, None
    # the type follows the last ':' unless that ':' is inside a dereference
    if ":" in body:
        head, _, tail = body.rpartition(":")
        if ")" not in tail and tail:
            fetch, typ = head, tail
    if not fetch:
        raise SpecError(f"empty fetch argument in {text!r}", spec=spec or text,
                        column=column + len(text))
    if name is None:
        vm = re.match(r"\$(retval|comm|arg\d+|stack\d*)\Z", fetch)
        if vm:      # "comm" is the filter's own field (the task's name): $comm -> task_comm
            name = "task_comm" if vm.group(1) == "comm" else vm.group(1)
        elif re.match(r"%[a-z0-9]+\Z", fetch):
            name = fetch[1:]
        elif is_btf_expr(fetch):
            name = arg_name(fetch)
        else:
            name = f"arg{index}"
    try:
        return FetchArg(name, fetch, typ)
    except SpecError as e:
        raise SpecError(e.message, spec=spec or text, column=column, hint=e.hint) from None


def parse_args(tokens: list[tuple[str, int]], spec: str) -> tuple[FetchArg, ...]:
    return tuple(parse_arg(tok, i + 1, spec=spec, column=col) for i, (tok, col) in enumerate(tokens))


def _tokens(spec: str) -> list[tuple[str, int]]:
    return [(m.group(), m.start()) for m in re.finditer(r"\S+", spec)]


def parse_spec(spec: str, *, name: str | None = None, filter: str | None = None) -> Probe:
    """Parse one command-line probe spec into a :class:`Probe` value."""
    check_line(spec, "probe spec", hint="a spec is one line: no newlines or tabs")
    toks = _tokens(spec)
    if not toks:
        raise SpecError("empty probe spec", spec=spec, column=0, hint="see: kprobes trace --help")
    head, hcol = toks[0]
    args = parse_args(toks[1:], spec)
    kind, sep, rest = head.partition(":")
    if not sep or not rest:
        raise SpecError(f"probe spec {head!r} has no KIND:", spec=spec, column=hcol,
                        hint="start with p:, r:, u:, ur: or t: (e.g. p:do_sys_openat2)")
    rcol = hcol + len(kind) + 1
    common: dict[str, Any] = {"name": name, "args": args, "filter": filter}
    mr = re.match(r"r(\d*)\Z", kind)
    if kind == "p" or mr:
        ma = _ADDR.match(rest)
        if ma:
            addr = int(ma.group("addr"), 16)
            if kind == "p":
                return KProbe(None, address=addr, **common)
            return KRetProbe(None, address=addr, maxactive=_maxactive(mr, spec, hcol), **common)
        mk = _KLOC.match(rest)
        if not mk:
            raise SpecError(f"bad kernel probe point {rest!r}", spec=spec, column=rcol,
                            hint="expected SYM, SYM+OFF, MOD:SYM or 0xADDR")
        off = _int(mk.group("off")) if mk.group("off") else 0
        if kind == "p":
            return KProbe(mk.group("sym"), off, module=mk.group("mod"), **common)
        if off:
            raise SpecError("a return probe must be at a function entry (no +OFF)", spec=spec,
                            column=rcol + rest.index("+"), hint=f"use r:{mk.group('sym')}")
        return KRetProbe(mk.group("sym"), module=mk.group("mod"),
                         maxactive=_maxactive(mr, spec, hcol), **common)
    if kind in ("u", "ur"):
        path, sep2, where = rest.rpartition(":")
        if not sep2 or not path or not where:
            raise SpecError(f"bad user probe point {rest!r}", spec=spec, column=rcol,
                            hint="expected u:PATH:SYMBOL[+OFF] or u:PATH:0xFILEOFFSET")
        cls = UProbe if kind == "u" else URetProbe
        ma = _ADDR.match(where)
        if ma:
            return cls(path=path, offset=int(ma.group("addr"), 16), **common)
        ms = re.match(rf"(?P<sym>{_SYM})(?:\+(?P<off>{_NUM}))?\Z", where)
        if not ms:
            raise SpecError(f"bad symbol {where!r}", spec=spec, column=rcol + len(path) + 1)
        off = _int(ms.group("off")) if ms.group("off") else 0
        if kind == "ur" and off:
            raise SpecError("a return probe must be at a function entry (no +OFF)", spec=spec,
                            column=rcol + len(path) + 1 + where.index("+"))
        return cls(path=path, symbol=ms.group("sym"), offset=off, **common)
    if kind == "t":
        grp, sep2, ev = rest.partition(":")
        if not sep2:
            grp, sep2, ev = rest.partition("/")
        if not sep2 or not grp or not ev:
            raise SpecError(f"bad tracepoint {rest!r}", spec=spec, column=rcol,
                            hint="expected t:GROUP:EVENT, e.g. t:syscalls:sys_enter_openat")
        if args:
            raise SpecError("tracepoints take no fetch arguments", spec=spec, column=toks[1][1],
                            hint="their fields arrive by name; use --filter to select")
        return Tracepoint(group=grp, event=ev, name=name, filter=filter)
    raise SpecError(f"unknown probe kind {kind!r}", spec=spec, column=hcol,
                    hint="kinds: p (kprobe), r[N] (kretprobe), u (uprobe), ur (uretprobe), "
                         "t (tracepoint)")


def _maxactive(m: re.Match[str] | None, spec: str, col: int) -> int | None:
    if m is None or not m.group(1):
        return None
    n = int(m.group(1))
    if not 1 <= n <= MAX_MAXACTIVE:
        raise SpecError(f"maxactive {n} out of range 1..{MAX_MAXACTIVE}", spec=spec,
                        column=col + 1)
    return n

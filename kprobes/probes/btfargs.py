"""Arguments by name: turn BTF expressions in kernel probe args into plain fetch args.

A kernel probe arg whose fetch is a C expression (``filename``,
``how->flags``, ``file->f_path.dentry->d_name.name``, ``$retval``) is
compiled against the function's BTF prototype into register/offset syntax
that every kernel with kprobe events accepts (6.1 cannot resolve names).

>>> is_btf_expr("how->flags"), is_btf_expr("+0(%si)"), is_btf_expr("$retval")
(True, False, True)
>>> arg_name("file->f_path.dentry->d_name.name")
'file_f_path_dentry_d_name_name'
"""

from __future__ import annotations

import re

from ..errors import BTFError, SpecError
from ..values import Value, replace
from .model import FetchArg, KProbe, KRetProbe, Probe

TYPE_CHECKING = False   # typing's, without importing typing at run time
if TYPE_CHECKING:
    from typing import Any

__all__ = ["is_btf_expr", "arg_name", "BtfResolution", "resolve_btf_args", "Pointer",
           "handler_fetches"]

_EXPR = re.compile(r"(\$retval|[A-Za-z_]\w*)((->|\.)[A-Za-z_]\w*|\[\d+\])*\Z")


def is_btf_expr(fetch: str) -> bool:
    """A C expression over parameters/fields (not kernel fetch syntax)."""
    return bool(_EXPR.match(fetch)) and fetch != "$comm"


def arg_name(expr: str) -> str:
    name = re.sub(r"->|\.|\[", "_", expr.lstrip("$")).replace("]", "")
    return name[:63]


class Pointer(int):
    """A pointer argument (its address) whose requested fields arrived decoded.

    >>> p = Pointer(0xffff8880, {"flags": 0o100, "mode": 0o644})
    >>> hex(p), p.flags, oct(p.mode)
    ('0xffff8880', 64, '0o644')
    """

    fields: dict[str, Any]

    def __new__(cls, value: int, fields: dict[str, Any]) -> Pointer:
        self = super().__new__(cls, value or 0)
        self.fields = fields
        return self

    def __getattr__(self, name: str) -> Any:
        try:
            return self.fields[name]
        except KeyError:
            raise AttributeError(f"field {name!r} was not fetched; fetched: "
                                 f"{', '.join(self.fields) or 'none'}") from None

    def __repr__(self) -> str:
        inner = ", ".join(f"{k}={v!r}" for k, v in self.fields.items())
        return f"Pointer({int(self):#x}{', ' if inner else ''}{inner})"


class BtfResolution(Value):
    """What BTF added to a probe: the rewritten probe and display helpers."""

    __slots__ = _fields = ("probe", "enums", "ctypes", "pointers")

    def __init__(self, probe: Probe, enums: dict[str, dict[int, str]] | None = None,
                 ctypes: dict[str, str] | None = None,
                 pointers: dict[str, dict[str, str]] | None = None) -> None:
        self.probe = probe
        self.enums = {} if enums is None else enums            # arg -> value names
        self.ctypes = {} if ctypes is None else ctypes         # arg -> C type
        self.pointers = {} if pointers is None else pointers   # param -> field -> arg


def handler_fetches(names: list[str], fields: tuple[str, ...] = ()) -> tuple[FetchArg, ...]:
    """Fetch args for handler parameters (``dfd``) and requested fields (``how->flags``)."""
    out = [FetchArg(n, n) for n in names]
    out += [FetchArg(arg_name(f), f) for f in fields]
    return tuple(out)


def resolve_btf_args(probe: Probe, btf_for: Any, *, arch: str = "x86_64") -> BtfResolution:
    """Compile every BTF-expression arg of a kernel probe; other args pass through.

    ``btf_for(module)`` returns the BTF to use (vmlinux or a module's split BTF).
    A ``$retval`` of a return probe without an explicit type gets the type of
    the function's return value. Raises BTFError (unknown names, listing what
    exists) or SpecError (malformed expressions).
    """
    if not isinstance(probe, (KProbe, KRetProbe)) or probe.symbol is None:
        return BtfResolution(probe)
    todo = [a for a in probe.args if is_btf_expr(a.fetch)
            and (a.fetch != "$retval" or a.type is None)]
    if not todo:
        return BtfResolution(probe)   # no BTF needed: not even imported
    from ..btf import compile_fetch
    if isinstance(probe, KProbe) and probe.offset:
        raise SpecError(f"argument names ({todo[0].fetch}) need a function entry, not "
                        f"{probe.location()}", hint="use $argN/registers at an offset")
    try:
        btf = btf_for(probe.module)
        sig = btf.func_proto(probe.symbol)
    except BTFError:
        if all(a.fetch == "$retval" for a in todo):   # no BTF: keep the kernel's default
            return BtfResolution(replace(probe, args=tuple(
                FetchArg(a.name, a.fetch, a.type or "s64") for a in probe.args)))
        raise
    res = BtfResolution(probe)
    args: list[FetchArg] = []
    for a in probe.args:
        if a not in todo:
            args.append(a)
            continue
        plan = compile_fetch(btf, sig, a.fetch, arch=arch, retval=probe.is_return)
        typ = a.type or plan.type
        # ':x64' on a char * asks for the raw pointer, not the string
        raw = a.type in ("x64", "x32") and plan.is_string
        fetch = _unstring(plan.fetcharg) if raw else plan.fetcharg
        args.append(FetchArg(a.name, fetch, typ))
        res.ctypes[a.name] = plan.ctype
        if plan.enum:
            res.enums[a.name] = dict(plan.enum)
    res.probe = replace(probe, args=tuple(args))
    return res


def _unstring(fetcharg: str) -> str:
    """``+0(X)`` fetched as a string means "the string at X": the raw pointer is X."""
    m = re.match(r"\+u?0\((.*)\)\Z", fetcharg)
    return m.group(1) if m else fetcharg

"""Probes as plain values: described here, created in the kernel by a Session.

Nothing in this module touches the kernel. A probe knows how to render its
tracefs definition line once the session has chosen its group/event name and
resolved its location (a kernel symbol stays symbolic; a user symbol becomes a
file offset).

>>> p = KProbe("do_sys_openat2", args=(FetchArg("dfd", "%di", "s32"),))
>>> p.definition("grp", "ev")
'p:grp/ev do_sys_openat2 dfd=%di:s32'
>>> KRetProbe("vfs_read", maxactive=4, args=(FetchArg("ret", "$retval", "s64"),)).definition("g", "e")
'r4:g/e vfs_read ret=$retval:s64'
"""

from __future__ import annotations

import re

from ..errors import SpecError
from ..values import Frozen, _set, replace

__all__ = [
    "FetchArg", "Probe", "KProbe", "KRetProbe", "UProbe", "URetProbe", "Tracepoint",
    "FETCH_TYPES", "check_name", "check_fetch", "MAX_NAME", "MAX_ARGS", "MAX_MAXACTIVE",
]

MAX_NAME = 63          # MAX_EVENT_NAME_LEN - 1
MAX_ARGS = 128         # MAX_TRACE_ARGS
MAX_MAXACTIVE = 4096   # KRETPROBE_MAXACTIVE_MAX

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_GROUP = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*\Z")
_BASE_TYPES = {f"{p}{w}" for p in "usx" for w in (8, 16, 32, 64)} | {
    "char", "string", "ustring", "symbol", "symstr", "%pd", "%pD"}
FETCH_TYPES = frozenset(_BASE_TYPES)
_BITFIELD = re.compile(r"b\d+@\d+/\d+\Z")
_ARRAY = re.compile(r"(?P<base>[a-z0-9%]+)\[(?P<n>\d+)\]\Z")
# Characters that may appear in a fetch argument: registers, $vars, @symbols,
# +OFF(...) dereferences, \IMM, BTF field access (-> and .).
_FETCH_CHARS = re.compile(r"[A-Za-z0-9_%$@+\-().\\>\[\]'\"#]+\Z")
# Names the kernel reserves for the common fields of every event.
_RESERVED = {"common_type", "common_flags", "common_preempt_count", "common_pid",
             "common_tgid", "common_cpu", "cpu", "comm", "COMM", "CPU", "STACKTRACE"}


def check_name(name: str, what: str = "event name", *, group: bool = False) -> None:
    """Validate a name as the kernel does (C identifier, at most 63 chars)."""
    pattern = _GROUP if group else _IDENT
    if not name or not pattern.match(name):
        raise SpecError(f"invalid {what} {name!r}: must be a C identifier"
                        + (" (dashes allowed)" if group else ""),
                        spec=name, column=0, hint="use letters, digits and _ ; not starting with a digit")
    if len(name) > MAX_NAME:
        raise SpecError(f"{what} {name[:20]}... is {len(name)} characters; the kernel allows {MAX_NAME}",
                        spec=name, column=MAX_NAME)


def check_type(t: str) -> None:
    if t in FETCH_TYPES or _BITFIELD.match(t):
        return
    m = _ARRAY.match(t)
    if m and m.group("base") in FETCH_TYPES and m.group("base") not in ("string", "ustring"):
        return
    raise SpecError(f"unknown fetch type {t!r}", spec=t, column=0,
                    hint="types: u8..u64 s8..s64 x8..x64 char string ustring symbol symstr "
                         "b<width>@<offset>/<size> TYPE[N]")


def check_fetch(fetch: str) -> None:
    if not fetch or not _FETCH_CHARS.match(fetch):
        bad = next((i for i, c in enumerate(fetch) if not _FETCH_CHARS.match(c)), 0)
        raise SpecError(f"invalid fetch argument {fetch!r}", spec=fetch, column=bad,
                        hint="fetch args look like %di, $arg1, $retval, $comm, @sym, +8(%si), +0(+8(%di))")


class FetchArg(Frozen):
    """One named value fetched at the probe: ``NAME=FETCH[:TYPE]``."""

    __slots__ = _fields = ("name", "fetch", "type")
    name: str
    fetch: str
    type: str | None

    def __init__(self, name: str, fetch: str, type: str | None = None) -> None:
        _set(self, "name", name)
        _set(self, "fetch", fetch)
        _set(self, "type", type)
        self.__post_init__()

    def __post_init__(self) -> None:
        check_name(self.name, "argument name")
        if self.name in _RESERVED or self.name.startswith("common_"):
            raise SpecError(f"argument name {self.name!r} is reserved by the kernel",
                            spec=self.name, column=0, hint="choose another name")
        check_fetch(self.fetch)
        if self.type is not None:
            check_type(self.type)

    def render(self) -> str:
        return f"{self.name}={self.fetch}" + (f":{self.type}" if self.type else "")


class Probe(Frozen):
    """Common part of every probe: an optional name, fetched args and a filter
    (keyword-only in every kind)."""

    __slots__ = ("name", "args", "filter")
    _fields: tuple[str, ...] = __slots__
    name: str | None
    args: tuple[FetchArg, ...]
    filter: str | None

    kind = "probe"          # table key in kprobes.kernel.dynevents
    letter = "p"
    is_return = False
    dynamic = True          # False for tracepoints (nothing to define)

    def _common(self, name: str | None, args: tuple[FetchArg, ...] | list[FetchArg],
                filter: str | None) -> None:
        _set(self, "name", name)
        _set(self, "args", tuple(args))
        _set(self, "filter", filter)

    def __post_init__(self) -> None:
        if self.name is not None:
            check_name(self.name)
        if len(self.args) > MAX_ARGS:
            raise SpecError(f"{len(self.args)} arguments; the kernel allows {MAX_ARGS}")
        seen: set[str] = set()
        for a in self.args:
            if a.name in seen:
                raise SpecError(f"argument {a.name!r} given twice", spec=a.name, column=0)
            seen.add(a.name)

    # The location as it will be written, possibly after resolution by the session.
    def location(self) -> str:
        raise NotImplementedError

    def default_name(self) -> str:
        raise NotImplementedError

    def prefix(self) -> str:
        return self.letter

    def definition(self, group: str, event: str, location: str | None = None,
                   extra_args: tuple[FetchArg, ...] = ()) -> str:
        """The one tracefs line that creates this probe as GROUP/EVENT."""
        check_name(group, "group name", group=True)
        check_name(event)
        loc = location if location is not None else self.location()
        parts = [f"{self.prefix()}:{group}/{event}", loc]
        parts += [a.render() for a in (*self.args, *extra_args)]
        return " ".join(parts)

    def with_args(self, *args: FetchArg) -> Probe:
        return replace(self, args=(*self.args, *args))


def _check_symbol(sym: str) -> None:
    if not re.match(r"[A-Za-z_.][A-Za-z0-9_.$]*\Z", sym):
        raise SpecError(f"invalid symbol name {sym!r}", spec=sym, column=0)


class KProbe(Probe):
    """A kernel probe at ``[MOD:]SYMBOL[+offset]`` or an absolute address."""

    __slots__ = ("symbol", "offset", "address", "module")
    _fields = (*Probe._fields, *__slots__)
    symbol: str | None
    offset: int
    address: int | None
    module: str | None

    def __init__(self, symbol: str | None = None, offset: int = 0, *,
                 name: str | None = None, args: tuple[FetchArg, ...] = (),
                 filter: str | None = None, address: int | None = None,
                 module: str | None = None) -> None:
        self._common(name, args, filter)
        _set(self, "symbol", symbol)
        _set(self, "offset", offset)
        _set(self, "address", address)
        _set(self, "module", module)
        self.__post_init__()

    kind = "kprobe"
    letter = "p"

    def __post_init__(self) -> None:
        super().__post_init__()
        if (self.symbol is None) == (self.address is None):
            raise SpecError("a kprobe needs exactly one of a symbol or an address")
        if self.symbol is not None:
            _check_symbol(self.symbol)
        if self.module is not None:
            check_name(self.module, "module name")
        if self.offset < 0:
            raise SpecError(f"negative offset {self.offset}")

    def location(self) -> str:
        if self.address is not None:
            return f"0x{self.address:x}"
        mod = f"{self.module}:" if self.module else ""
        off = f"+{self.offset}" if self.offset else ""
        return f"{mod}{self.symbol}{off}"

    def default_name(self) -> str:
        if self.address is not None:
            return f"p_{self.address:x}"
        return f"p_{self.symbol}" + (f"_{self.offset}" if self.offset else "")


class KRetProbe(Probe):
    """A kernel return probe on a function; ``maxactive`` instances may be in flight."""

    __slots__ = ("symbol", "maxactive", "module", "address")
    _fields = (*Probe._fields, *__slots__)
    symbol: str | None
    maxactive: int | None
    module: str | None
    address: int | None

    def __init__(self, symbol: str | None = None, *, name: str | None = None,
                 args: tuple[FetchArg, ...] = (), filter: str | None = None,
                 maxactive: int | None = None, module: str | None = None,
                 address: int | None = None) -> None:
        self._common(name, args, filter)
        _set(self, "symbol", symbol)
        _set(self, "maxactive", maxactive)
        _set(self, "module", module)
        _set(self, "address", address)
        self.__post_init__()

    kind = "kretprobe"
    letter = "r"
    is_return = True

    def __post_init__(self) -> None:
        super().__post_init__()
        if (self.symbol is None) == (self.address is None):
            raise SpecError("a kretprobe needs exactly one of a symbol or an address")
        if self.symbol is not None:
            _check_symbol(self.symbol)
        if self.maxactive is not None and not 1 <= self.maxactive <= MAX_MAXACTIVE:
            raise SpecError(f"maxactive {self.maxactive} out of range 1..{MAX_MAXACTIVE}",
                            hint="leave it out for the kernel default max(10, 2*ncpus)")

    def prefix(self) -> str:
        return f"r{self.maxactive}" if self.maxactive else "r"

    def location(self) -> str:
        if self.address is not None:
            return f"0x{self.address:x}"
        mod = f"{self.module}:" if self.module else ""
        return f"{mod}{self.symbol}"

    def default_name(self) -> str:
        return f"r_{self.symbol}" if self.symbol else f"r_{self.address:x}"


class UProbe(Probe):
    """A user-space probe in ``path`` at ``symbol[+offset]`` or at a file offset."""

    __slots__ = ("path", "symbol", "offset")
    _fields = (*Probe._fields, *__slots__)
    path: str
    symbol: str | None
    offset: int

    def __init__(self, path: str = "", symbol: str | None = None, offset: int = 0, *,
                 name: str | None = None, args: tuple[FetchArg, ...] = (),
                 filter: str | None = None) -> None:
        self._common(name, args, filter)
        _set(self, "path", path)
        _set(self, "symbol", symbol)
        _set(self, "offset", offset)
        self.__post_init__()

    kind = "uprobe"
    letter = "p"

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.path:
            raise SpecError("a uprobe needs a binary path")
        if " " in self.path:
            raise SpecError(f"path {self.path!r} contains a space, which tracefs cannot take",
                            spec=self.path, column=self.path.index(" "))
        if self.symbol is not None:
            _check_symbol(self.symbol)
        if self.offset < 0:
            raise SpecError(f"negative offset {self.offset}")

    def location(self) -> str:
        if self.symbol is not None:
            raise SpecError("uprobe symbol must be resolved to a file offset first")
        return f"{self.path}:0x{self.offset:x}"

    def default_name(self) -> str:
        base = re.sub(r"[^A-Za-z0-9_]", "_", self.path.rsplit("/", 1)[-1])
        what = self.symbol or f"0x{self.offset:x}"
        return f"{self.letter}_{base}_{what}"


class URetProbe(UProbe):
    """A user-space return probe (no maxactive: uprobes have none)."""

    __slots__ = ()

    kind = "uretprobe"
    letter = "r"
    is_return = True

    def default_name(self) -> str:
        return "r" + super().default_name()[1:]


class Tracepoint(Probe):
    """A static tracepoint ``group:event`` (nothing to define; enabled by name)."""

    __slots__ = ("group", "event")
    _fields = (*Probe._fields, *__slots__)
    group: str
    event: str

    def __init__(self, group: str = "", event: str = "", *, name: str | None = None,
                 args: tuple[FetchArg, ...] = (), filter: str | None = None) -> None:
        self._common(name, args, filter)
        _set(self, "group", group)
        _set(self, "event", event)
        self.__post_init__()

    kind = "tracepoint"
    letter = "t"
    dynamic = False

    def __post_init__(self) -> None:
        super().__post_init__()
        check_name(self.group, "tracepoint group", group=True)
        check_name(self.event, "tracepoint event")
        if self.args:
            raise SpecError("tracepoints carry their own fields; fetch args are not allowed",
                            hint="the event's fields arrive by name in ev.args")

    def location(self) -> str:
        return f"{self.group}:{self.event}"

    def default_name(self) -> str:
        return self.event

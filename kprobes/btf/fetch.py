"""Field paths -> kprobe fetch args, with offsets computed from BTF.

Kernels before ~6.6 cannot resolve ``how->flags`` in a probe definition;
:func:`compile_fetch` turns such a path into the raw fetch-arg syntax of
``Documentation/trace/kprobetrace.rst`` (registers, ``+OFFS(...)``
dereferences, ``:TYPE``), which every kernel with kprobe events accepts.

Rules (x86-64; arm64 is the same with ``%x0..%x7``):

* Parameters take the argument registers in order (``%di %si %dx %cx %r8
  %r9``); a struct/union of at most 16 bytes passed by value takes one or two;
  the rest are on the stack: ``$stack1`` is the first stack argument at
  function entry (``$stack0`` is the return address; arm64 has none, so its
  first stack argument is ``$stack0``).  Larger structs by value are read
  from the stack copy (x86-64) or through the hidden pointer (arm64).
* ``$retval`` (return probes only) is ``%ax`` (arm64 ``%x0``).  Parameters
  are refused in return probes: their registers are clobbered by then.
* ``->`` dereferences a pointer, ``.`` selects a member of a struct/union
  (members of anonymous struct/union members are found as in C), ``[N]``
  indexes an array (or a pointer).
* Leaves: integers -> ``s8..s64``/``u8..u64`` by signedness; enums -> the
  same plus a value -> name map for display; bitfields (and fields of structs
  held in registers) -> ``b<W>@<O>/<SIZE>``; ``char *`` -> the string it
  points to (also ``unsigned char *``, as in ``qstr.name``, but not typedefs such as
  ``u8 *``, which are byte buffers); ``char[N]`` -> ``string``; other arrays of integers ->
  ``TYPE[N]``; other pointers -> ``x64``.
* User memory: a pointer whose pointee carries the ``user`` type tag
  (``__user``) is dereferenced with ``+u`` and its string read with
  ``ustring``; memory reached through user memory stays user memory.
  Without the tag (GCC-built kernels emit no type tags) we use plain
  ``+OFFS`` and ``string``: on x86-64 the kernel reads addresses below
  ``TASK_SIZE`` with the user-copy routines anyway
  (``CONFIG_ARCH_HAS_NON_OVERLAPPING_ADDRESS_SPACE``), so an untagged
  ``const char *filename`` of a syscall path still reads right.  On arm64
  untagged user pointers read as faults (empty strings): name them with an
  explicit ``ustring`` there.

>>> from kprobes.btf import BTF
>>> from kprobes.btf.build import Builder
>>> b = Builder()
>>> u64 = b.typedef("__u64", b.int("long long unsigned int", 8))
>>> how = b.struct("open_how", 24, [("flags", u64, 0), ("mode", u64, 64), ("resolve", u64, 128)])
>>> i = b.int("int", 4, signed=True)
>>> fn = b.func("do_sys_openat2", b.func_proto(i, [("dfd", i), ("how", b.ptr(how))]))
>>> btf = BTF.from_bytes(b.build())
>>> sig = btf.func_proto("do_sys_openat2")
>>> str(compile_fetch(btf, sig, "how->mode"))
'+8(%si):u64'
"""

from __future__ import annotations

from kprobes.errors import BTFError, SpecError

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:  # pragma: no cover
    from kprobes.btf.reader import BTF
    from kprobes.btf.types import FuncSig, Type


__all__ = ["FetchPlan", "compile_fetch", "param_locations", "ARCHES", "member_path",
           "member_names"]

#: argument registers, return registers and the $stack index of the first stack argument
ARCHES: dict[str, dict] = {
    "x86_64": {"regs": ("%di", "%si", "%dx", "%cx", "%r8", "%r9"), "ret": ("%ax", "%dx"),
               "stack_first": 1, "big_struct": "stack"},
    "arm64": {"regs": tuple(f"%x{i}" for i in range(8)), "ret": ("%x0", "%x1"),
              "stack_first": 0, "big_struct": "pointer"},
}
_MAX_NESTING = 32
_ARCH_ALIASES = {"x86-64": "x86_64", "amd64": "x86_64", "x86": "x86_64", "aarch64": "arm64"}


class FetchPlan:
    """The compiled form of one expression.

    ``fetcharg`` is what goes before the colon, ``type`` after it; ``ctype``
    is the C spelling of the value's type, ``enum`` a value -> name map for
    enums (else None), ``is_string`` whether it is fetched as a string,
    ``is_user`` whether the final read is from user memory.  ``str(plan)`` is
    ``fetcharg:type``.
    """

    __slots__ = ("expr", "fetcharg", "type", "ctype", "enum", "is_string", "is_user")

    def __init__(self, expr: str, fetcharg: str, type: str, ctype: str,  # noqa: A002
                 enum: dict[int, str] | None = None, is_string: bool = False,
                 is_user: bool = False) -> None:
        self.expr = expr
        self.fetcharg = fetcharg
        self.type = type
        self.ctype = ctype
        self.enum = enum
        self.is_string = is_string
        self.is_user = is_user

    @property
    def arg(self) -> str:
        """``fetcharg:type``, ready for a probe definition."""
        return f"{self.fetcharg}:{self.type}"

    def __str__(self) -> str:
        return self.arg

    def __repr__(self) -> str:
        return (f"FetchPlan({self.expr!r}, fetcharg={self.fetcharg!r}, type={self.type!r}, "
                f"ctype={self.ctype!r}, is_string={self.is_string}, is_user={self.is_user})")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, FetchPlan):
            return NotImplemented
        return all(getattr(self, a) == getattr(other, a) for a in self.__slots__)

    __hash__ = None  # type: ignore[assignment]


# --------------------------------------------------------------- locations
class _Value:
    """A C value held in registers / stack slots; ``bitoff`` into their concatenation."""

    __slots__ = ("slots", "bitoff")

    def __init__(self, slots: tuple[str, ...], bitoff: int = 0) -> None:
        self.slots = slots
        self.bitoff = bitoff


class _Mem:
    """A C object in memory at (value of ``base``) + ``off`` bytes (+ ``bit`` bits)."""

    __slots__ = ("base", "off", "bit", "user")

    def __init__(self, base: str, off: int = 0, user: bool = False, bit: int = 0) -> None:
        self.base = base
        self.off = off
        self.user = user
        self.bit = bit


def _arch(arch: str) -> dict:
    a = _ARCH_ALIASES.get(arch, arch)
    if a not in ARCHES:
        raise BTFError(f"unknown architecture {arch!r}", hint="one of: " + ", ".join(ARCHES))
    return ARCHES[a]


def param_locations(btf: BTF, sig: FuncSig, arch: str = "x86_64") -> list[_Value | _Mem]:
    """Where each parameter is at function entry (see the module docstring).

    >>> from kprobes.btf import BTF
    >>> from kprobes.btf.build import Builder
    >>> b = Builder(); i = b.int("long", 8, signed=True)
    >>> f = b.func("f", b.func_proto(i, [(f"a{n}", i) for n in range(8)]))
    >>> btf = BTF.from_bytes(b.build())
    >>> [describe_location(l) for l in param_locations(btf, btf.func_proto("f"))]
    ['%di', '%si', '%dx', '%cx', '%r8', '%r9', '$stack1', '$stack2']
    """
    a = _arch(arch)
    regs = a["regs"]
    nreg = 0
    stack = a["stack_first"]
    out: list[_Value | _Mem] = []
    for p in sig.params:
        r = btf.resolve(p.type)
        composite = r.kind in ("struct", "union")
        size = btf.sizeof(r) if composite or r.kind == "int" else 8
        words = max(1, (size + 7) // 8)
        if composite and size > 16:
            if a["big_struct"] == "pointer" and nreg < len(regs):
                out.append(_Mem(regs[nreg]))
                nreg += 1
            else:
                out.append(_Mem("$stack", 8 * stack))
                stack += words
        elif nreg + words <= len(regs):
            out.append(_Value(tuple(regs[nreg:nreg + words])))
            nreg += words
        else:
            nreg = len(regs)  # a split aggregate goes wholly to the stack; later ones too
            out.append(_Value(tuple(f"$stack{stack + j}" for j in range(words))))
            stack += words
    return out


def describe_location(loc: _Value | _Mem) -> str:
    """Short text of a location: ``'%di'``, ``'%di+%si'``, ``'+16($stack)'``."""
    if isinstance(loc, _Value):
        return "+".join(loc.slots)
    return f"+{loc.off}({loc.base})"


# ----------------------------------------------------------------- members
def member_path(btf: BTF, t: Type, name: str, _depth: int = 0) -> tuple[int, int, int] | None:
    """``(bit_offset, type_id, bitfield_size)`` of member ``name`` of struct/union
    ``t``, looking into anonymous members as C does; None if absent."""
    if _depth > _MAX_NESTING:
        raise BTFError(f"{btf.path}: anonymous members nested too deep at type id {t.id}")
    for m in t.members or ():
        if m.name == name:
            return m.bit_offset, m.type_id, m.bitfield_size
    for m in t.members or ():
        if not m.name:
            inner = btf.resolve(m.type_id)
            if inner.kind in ("struct", "union"):
                got = member_path(btf, inner, name, _depth + 1)
                if got is not None:
                    return m.bit_offset + got[0], got[1], got[2]
    return None


def member_names(btf: BTF, t: Type, _depth: int = 0) -> list[str]:
    """Names reachable with ``.`` from struct/union ``t`` (anonymous members flattened)."""
    if _depth > _MAX_NESTING:
        raise BTFError(f"{btf.path}: anonymous members nested too deep at type id {t.id}")
    out: list[str] = []
    for m in t.members or ():
        if m.name:
            out.append(m.name)
        else:
            inner = btf.resolve(m.type_id)
            if inner.kind in ("struct", "union"):
                out.extend(member_names(btf, inner, _depth + 1))
    return out


# ----------------------------------------------------------------- parsing
def _tokens(expr: str) -> list[tuple[str, str, int]]:
    """(kind, text, column) tokens: 'name', 'arrow', 'dot', 'index'."""
    out: list[tuple[str, str, int]] = []
    i, n = 0, len(expr)
    while i < n:
        c = expr[i]
        if c.isspace():
            i += 1
        elif c.isalpha() or c in "_$":
            j = i + 1
            while j < n and (expr[j].isalnum() or expr[j] == "_"):
                j += 1
            out.append(("name", expr[i:j], i))
            i = j
        elif expr.startswith("->", i):
            out.append(("arrow", "->", i))
            i += 2
        elif c == ".":
            out.append(("dot", ".", i))
            i += 1
        elif c == "[":
            j = expr.find("]", i)
            if j < 0:
                raise SpecError("missing ']'", spec=expr, column=i)
            text = expr[i + 1:j].strip()
            try:
                val = int(text, 0)
            except ValueError:
                raise SpecError(f"array index must be a number, not {text!r}",
                                spec=expr, column=i + 1) from None
            if val < 0:
                raise SpecError("negative array index", spec=expr, column=i + 1)
            out.append(("index", str(val), i))
            i = j + 1
        else:
            raise SpecError(f"unexpected {c!r} in field expression", spec=expr, column=i,
                            hint="write NAME, NAME->FIELD, NAME.FIELD or NAME[N]")
    return out


def _int_type(t: Type, size: int) -> str:
    if size not in (1, 2, 4, 8):
        raise BTFError(f"{size}-byte integers cannot be fetched (1, 2, 4 or 8 bytes only)")
    signed = t.is_signed
    if t.kind in ("enum", "enum64") and not signed:
        signed = any(v.value < 0 for v in t.values or ())
    if t.kind == "int" and (t.encoding or 0) & 4:  # bool
        signed = False
    return f"{'s' if signed else 'u'}{size * 8}"


_CHAR_NAMES = frozenset({"char", "signed char", "unsigned char"})


def _is_char(btf: BTF, t: Type) -> bool:
    r = btf.strip_cv(t)
    if r.kind == "typedef":
        return False  # u8/__u8 buffers are bytes, not text
    return (r.kind == "int" and r.size == 1 and not (r.encoding or 0) & 4
            and (bool((r.encoding or 0) & 2) or r.name in _CHAR_NAMES))


# ----------------------------------------------------------------- compiler
def compile_fetch(btf: BTF, sig: FuncSig, expr: str, *, arch: str = "x86_64",
                  retval: bool = False) -> FetchPlan:
    """Compile ``expr`` (``'filename'``, ``'how->flags'``, ``'$retval'``,
    ``'file->f_path.dentry->d_name.name'``, ``'$arg2'``, ``'ctx.arr[2]'``) for a
    probe on ``sig``'s function.  ``retval=True`` means a return probe.

    Unknown parameter or member names raise :class:`BTFError` listing what
    exists; syntax errors raise :class:`SpecError` with the column.

    >>> from kprobes.btf import BTF
    >>> from kprobes.btf.build import Builder
    >>> b = Builder(); i = b.int("int", 4, signed=True)
    >>> s = b.ptr(b.const(b.int("char", 1, signed=True, char=True)))
    >>> f = b.func("f", b.func_proto(i, [("dfd", i), ("filename", s)]))
    >>> btf = BTF.from_bytes(b.build()); sig = btf.func_proto("f")
    >>> [str(compile_fetch(btf, sig, e)) for e in ("dfd", "filename")]
    ['%di:s32', '+0(%si):string']
    >>> str(compile_fetch(btf, sig, "$retval", retval=True))
    '%ax:s32'
    >>> compile_fetch(btf, sig, "flags")
    Traceback (most recent call last):
    ...
    kprobes.errors.BTFError: f has no parameter 'flags'; its parameters are: dfd, filename
    """
    a = _arch(arch)
    toks = _tokens(expr)
    if not toks or toks[0][0] != "name":
        raise SpecError("a field expression starts with a parameter name or $retval",
                        spec=expr, column=toks[0][2] if toks else 0)
    head = toks[0][1]
    loc: _Value | _Mem
    if head == "$retval":
        if not retval:
            raise BTFError("$retval is only available in a return probe",
                           hint=f"probe the return of {sig.name} (kretprobe)")
        cur = sig.ret
        if btf.resolve(cur).kind == "void":
            raise BTFError(f"{sig.name} returns void: there is no $retval")
        loc = _Value(a["ret"])
    else:
        if head.startswith("$arg") and head[4:].isdigit():
            n = int(head[4:])
            if not 1 <= n <= len(sig.params):
                raise BTFError(f"{sig.name} has {len(sig.params)} parameters: no {head}")
            idx = n - 1
        else:
            names = [p.name for p in sig.params]
            if head not in names:
                listing = ", ".join(n or "(unnamed)" for n in names) or "none"
                raise BTFError(f"{sig.name} has no parameter {head!r}; its parameters are: "
                               f"{listing}", hint="$retval in return probes")
            idx = names.index(head)
        if retval:
            raise BTFError(f"parameter {head!r} is not available in a return probe "
                           f"(its register is clobbered by the time {sig.name} returns)",
                           hint="record it in an entry probe, or use $retval")
        cur = sig.params[idx].type
        loc = param_locations(btf, sig, arch)[idx]
    path = head
    bitfield = 0
    user = False
    pos = 1
    while pos < len(toks):
        kind, text, col = toks[pos]
        pos += 1
        r = btf.resolve(cur)
        if kind == "name":
            raise SpecError(f"unexpected name {text!r}; use -> or . before a field name",
                            spec=expr, column=col)
        if kind == "index":
            n = int(text)
            if r.kind == "array":
                if r.nelems and n >= r.nelems:
                    raise BTFError(f"index {n} is out of range for {path} "
                                   f"({btf.type_name(cur)})")
                cur = btf.type(r.type_id or 0)
                loc = _advance(loc, n * btf.sizeof(cur) * 8)
            elif r.kind == "ptr":
                user = user or btf.is_user_pointer(r)
                target = btf.type(r.type_id or 0)
                loc = _Mem(_materialize(loc, path, btf.type_name(cur)),
                           n * btf.sizeof(target), user)
                cur = target
            else:
                raise BTFError(f"{path} is {btf.type_name(cur)}: only arrays and pointers "
                               "can be indexed")
            path += f"[{n}]"
            bitfield = 0
            continue
        if pos >= len(toks) or toks[pos][0] != "name":
            raise SpecError(f"a field name must follow {text!r}", spec=expr,
                            column=col + len(text))
        field, fcol = toks[pos][1], toks[pos][2]
        pos += 1
        if kind == "arrow":
            if r.kind != "ptr":
                hint = "use '.' for a member of a struct held by value" \
                    if r.kind in ("struct", "union") else None
                raise BTFError(f"{path} is {btf.type_name(cur)}, not a pointer: "
                               f"cannot use '->'", hint=hint)
            user = user or btf.is_user_pointer(r)
            loc = _Mem(_materialize(loc, path, btf.type_name(cur)), 0, user)
            cur = btf.type(r.type_id or 0)
            r = btf.resolve(cur)
        elif r.kind == "ptr" and btf.resolve(r.type_id or 0).kind in ("struct", "union"):
            raise BTFError(f"{path} is a pointer ({btf.type_name(cur)}): "
                           f"use '{path}->{field}'")
        if r.kind not in ("struct", "union"):
            raise BTFError(f"{path} is {btf.type_name(cur)}, not a struct or union: "
                           f"it has no member {field!r}")
        got = member_path(btf, r, field)
        if got is None:
            raise BTFError(f"{btf.type_name(r)} has no member {field!r} (at column {fcol} "
                           f"of {expr!r}); its members are: "
                           f"{', '.join(member_names(btf, r)) or 'none'}")
        bit_off, type_id, bitfield = got
        loc = _advance(loc, bit_off)
        cur = btf.type(type_id)
        path += ("->" if kind == "arrow" else ".") + field
    return _leaf(btf, expr, cur, loc, path, bitfield, user)


def _advance(loc: _Value | _Mem, bits: int) -> _Value | _Mem:
    if isinstance(loc, _Value):
        return _Value(loc.slots, loc.bitoff + bits)
    total = loc.off * 8 + loc.bit + bits
    return _Mem(loc.base, total // 8, loc.user, total % 8)


def _materialize(loc: _Value | _Mem, path: str, ctype: str) -> str:
    """A fetch arg whose value is the 8-byte pointer at ``loc``."""
    if isinstance(loc, _Value):
        if loc.bitoff % 64:
            raise BTFError(f"{path} ({ctype}) is not register-aligned inside a by-value "
                           "struct: cannot dereference it")
        return loc.slots[loc.bitoff // 64]
    if loc.bit:
        raise BTFError(f"{path} ({ctype}) is a bitfield: cannot dereference it")
    return f"+{'u' if loc.user else ''}{loc.off}({loc.base})"


def _leaf(btf: BTF, expr: str, cur: Type, loc: _Value | _Mem, path: str, bitfield: int,
          user: bool) -> FetchPlan:
    ctype = btf.type_name(cur)
    r = btf.resolve(cur)
    kind = r.kind
    if kind in ("struct", "union"):
        raise BTFError(f"{path} is {ctype}: pick a member: "
                       f"{', '.join(member_names(btf, r)) or '(none)'}")
    if kind in ("void", "func_proto", "fwd", "func"):
        raise BTFError(f"{path} is {ctype}: it has no value to fetch")
    u = "u" if isinstance(loc, _Mem) and loc.user else ""
    is_user = bool(u)
    enum = None
    if kind in ("enum", "enum64"):
        enum = {v.value: v.name for v in r.values or ()}
    if kind == "ptr" and _is_char(btf, btf.type(r.type_id or 0)):
        target_user = user or btf.is_user_pointer(r)
        return FetchPlan(expr, f"+0({_materialize(loc, path, ctype)})",
                         "ustring" if target_user else "string", ctype, None, True, target_user)
    if kind == "array":
        elem = btf.type(r.type_id or 0)
        if not isinstance(loc, _Mem) or loc.bit:
            raise BTFError(f"{path} ({ctype}) is an array held in registers: index it, "
                           f"e.g. {path}[0]")
        addr = f"+{u}{loc.off}({loc.base})"
        if _is_char(btf, elem):
            return FetchPlan(expr, addr, "ustring" if is_user else "string", ctype, None,
                             True, is_user)
        er = btf.resolve(elem)
        if not r.nelems:
            raise BTFError(f"{path} ({ctype}) is a flexible array: index it, e.g. {path}[0]")
        if er.kind == "ptr":
            etype = "x64"
        elif er.kind in ("int", "enum", "enum64") and er.size in (1, 2, 4, 8):
            etype = _int_type(er, er.size or 0)
        else:
            raise BTFError(f"{path} ({ctype}): only arrays of integers or pointers can be "
                           f"fetched whole; index it, e.g. {path}[0]")
        return FetchPlan(expr, addr, f"{etype}[{r.nelems}]", ctype, None, False, is_user)
    if kind == "ptr":
        size, ftype = 8, "x64"
    elif kind in ("int", "enum", "enum64"):
        size = r.size or 0
        ftype = _int_type(r, size)
    elif kind == "float":
        size = r.size or 0
        if size not in (4, 8):
            raise BTFError(f"{path} is {ctype}: {size}-byte floats cannot be fetched")
        ftype = f"x{size * 8}"
    else:
        raise BTFError(f"{path} is {ctype} ({kind}): cannot be fetched")
    width = bitfield or size * 8
    if isinstance(loc, _Value):
        slot, bit = divmod(loc.bitoff, 64)
        if slot >= len(loc.slots) or bit + width > 64:
            raise BTFError(f"{path} ({ctype}) straddles two registers: cannot fetch it")
        arg = loc.slots[slot]
        if bit == 0 and not bitfield:
            return FetchPlan(expr, arg, ftype, ctype, enum, False, False)
        return FetchPlan(expr, arg, f"b{width}@{bit}/64", ctype, enum, False, False)
    if not bitfield and loc.bit == 0:
        return FetchPlan(expr, f"+{u}{loc.off}({loc.base})", ftype, ctype, enum, False, is_user)
    # bitfield: the smallest container from the first byte that covers all bits
    bit = loc.bit
    for container in (8, 16, 32, 64):
        if bit + width <= container:
            break
    else:
        raise BTFError(f"{path} ({ctype}) is a bitfield wider than 64 bits with its offset")
    return FetchPlan(expr, f"+{u}{loc.off}({loc.base})", f"b{width}@{bit}/{container}", ctype,
                     enum, False, is_user)

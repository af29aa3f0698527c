"""Render BTF facts for ``kprobes info TARGET``: prototypes and type layouts.

``TARGET`` is a function (``vfs_read``, ``kprobe:vfs_read``, ``MOD:func`` for
a module's split BTF), or ``struct NAME`` / ``union NAME`` / ``enum NAME`` /
``typedef NAME``.  A bare name that is not a function falls back to a
struct, union, enum or typedef of that name.

>>> from kprobes.btf import BTF
>>> from kprobes.btf.build import Builder
>>> b = Builder(); u = b.int("unsigned int", 4)
>>> s = b.struct("flags", 4, [("a", u, 0, 1), ("b", u, 1, 3)])
>>> print(describe("struct flags", btf=BTF.from_bytes(b.build())))
struct flags {  /* size: 4, members: 2 */
  offset  size  type          member
     0:0     4  unsigned int  a:1
     0:1     4  unsigned int  b:3
};
"""

from __future__ import annotations

from kprobes.btf import BTF, compile_fetch
from kprobes.btf.fetch import ARCHES, describe_location, param_locations
from kprobes.btf.types import Type
from kprobes.errors import BTFError, KprobesError

__all__ = ["describe", "describe_function", "describe_type"]

_PROBE_PREFIXES = frozenset({"kprobe", "kretprobe", "fentry", "fexit", "p", "r", "f", "func",
                             "function"})
_TYPE_WORDS = ("struct", "union", "enum", "typedef")


def describe(target: str, btf: BTF | None = None, *, arch: str = "x86_64") -> str:
    """The prototype of a function or the layout of a type, as text.

    >>> print(describe("vfs_read"))                      # doctest: +SKIP
    ssize_t vfs_read(struct file *file, char *buf, size_t count, loff_t *pos)
      arg     where  fetch   type
      file    %di    x64     struct file *
      ...
    """
    target = target.strip()
    word, _, rest = target.partition(" ")
    if word in _TYPE_WORDS and rest.strip():
        btf = btf or BTF.for_kernel()
        return describe_type(btf, rest.strip(), word)
    name = target
    if ":" in target:
        prefix, _, name = target.partition(":")
        if prefix not in _PROBE_PREFIXES and btf is None:
            btf = BTF.for_kernel(prefix)
    btf = btf or BTF.for_kernel()
    if btf.find(name, "func"):
        return describe_function(btf, name, arch=arch)
    for kind in _TYPE_WORDS:
        if btf.find(name, kind):
            return describe_type(btf, name, kind)
    raise BTFError(f"no function, struct, union, enum or typedef named {name!r} in {btf.path}",
                   hint="functions that are always inlined have no BTF entry")


def describe_function(btf: BTF, name: str, *, arch: str = "x86_64") -> str:
    """Prototype plus, per parameter, where it is at entry and its fetch type."""
    sig = btf.func_proto(name)
    lines = [btf.declaration(sig.func, "") if sig.func is not None else name]
    rows: list[tuple[str, ...]] = [("arg", "where", "fetch", "type")]
    locs = param_locations(btf, sig, arch)
    for i, p in enumerate(sig.params):
        try:
            fetch = compile_fetch(btf, sig, f"$arg{i + 1}", arch=arch).type
        except KprobesError:
            fetch = "-"
        rows.append((p.name or f"$arg{i + 1}", describe_location(locs[i]), fetch,
                     _with_underlying(btf, p.type)))
    if btf.resolve(sig.ret).kind != "void":
        try:
            fetch = compile_fetch(btf, sig, "$retval", arch=arch, retval=True).type
        except KprobesError:
            fetch = "-"
        ret_reg = ARCHES.get(arch, ARCHES["x86_64"])["ret"][0]
        rows.append(("$retval", ret_reg, fetch, _with_underlying(btf, sig.ret)))
    if sig.variadic:
        rows.append(("...", "-", "-", "variadic"))
    lines.extend(_table(rows))
    return "\n".join(lines)


def _with_underlying(btf: BTF, t: Type) -> str:
    """``size_t (unsigned long)``: the spelling, plus what a typedef stands for."""
    name = btf.type_name(t)
    resolved = btf.resolve(t)
    under = btf.type_name(resolved)
    if under != name and btf.strip_cv(t).kind == "typedef":
        return f"{name} ({under})"
    return name


def _table(rows: list[tuple[str, ...]], right: tuple[int, ...] = ()) -> list[str]:
    widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]))]
    out = []
    for r in rows:
        cells = [r[c].rjust(widths[c]) if c in right else r[c].ljust(widths[c])
                 for c in range(len(r))]
        out.append(("  " + "  ".join(cells)).rstrip())
    return out


def describe_type(btf: BTF, name: str, kind: str) -> str:
    """Layout of ``struct``/``union`` NAME (pahole-like), values of an ``enum``,
    or what a ``typedef`` stands for."""
    found = btf.find(name, kind)
    if not found:
        raise BTFError(f"no {kind} {name!r} in {btf.path}")
    t = found[0]
    if t.kind in ("struct", "union"):
        return _describe_composite(btf, t)
    if t.kind in ("enum", "enum64"):
        sign = "signed" if t.is_signed else "unsigned"
        lines = [f"enum {t.name} {{  /* size: {t.size}, {sign}, values: {len(t.values or ())} */"]
        lines += [f"  {v.name} = {v.value}," for v in t.values or ()]
        return "\n".join(lines + ["};"])
    target = btf.type(t.type_id or 0)
    text = f"typedef {btf.declaration(target, t.name)};"
    resolved = btf.resolve(t)
    try:
        text += f"  /* size: {btf.sizeof(resolved)} */"
    except BTFError:
        pass
    if resolved.kind in ("struct", "union", "enum", "enum64") and resolved.name:
        text += "\n\n" + describe_type(btf, resolved.name, "enum" if resolved.kind ==
                                       "enum64" else resolved.kind)
    elif resolved.kind in ("struct", "union"):
        text += "\n\n" + _describe_composite(btf, resolved)
    return text


def _describe_composite(btf: BTF, t: Type) -> str:
    title = f"{t.kind} {t.name}" if t.name else f"{t.kind} {{...}}"
    rows: list[tuple[str, ...]] = [("offset", "size", "type", "member")]
    _member_rows(btf, t, 0, "", rows, 0)
    head = f"{title} {{  /* size: {t.size}, members: {len(t.members or ())} */"
    return "\n".join([head, *_table(rows, right=(0, 1)), "};"])


def _member_rows(btf: BTF, t: Type, base_bits: int, indent: str,
                 rows: list[tuple[str, ...]], depth: int) -> None:
    if depth > 32:
        raise BTFError(f"{btf.path}: anonymous members nested too deep at type id {t.id}")
    for m in t.members or ():
        bits = base_bits + m.bit_offset
        mt = btf.type(m.type_id)
        try:
            size = str(btf.sizeof(mt))
        except BTFError:
            size = "?"
        if m.bitfield_size:
            offset = f"{bits // 8}:{bits % 8}"
            label = f"{m.name}:{m.bitfield_size}"
        else:
            offset = str(bits // 8) if bits % 8 == 0 else f"{bits // 8}:{bits % 8}"
            label = m.name
        resolved = btf.resolve(mt)
        if not m.name and resolved.kind in ("struct", "union") and not resolved.name:
            rows.append((offset, size, f"{indent}{resolved.kind} {{", ""))
            _member_rows(btf, resolved, bits, indent + "  ", rows, depth + 1)
            rows.append(("", "", f"{indent}}}", ""))
            continue
        rows.append((offset, size, indent + btf.type_name(mt), label or "(anon)"))

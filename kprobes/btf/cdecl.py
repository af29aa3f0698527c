"""C spelling of BTF types (declarators inside out, like a C compiler reads them).

Type tags are spelled as the kernel's macros: tag ``user`` -> ``__user``,
``rcu`` -> ``__rcu``, ``percpu`` -> ``__percpu``; any other tag ``X`` ->
``__X`` unless it is not an identifier, then ``__attribute__((btf_type_tag("X")))``.

>>> from kprobes.btf import BTF
>>> from kprobes.btf.build import Builder
>>> b = Builder()
>>> c = b.int("char", 1, signed=True, char=True)
>>> up = b.ptr(b.type_tag("user", c))
>>> arr = b.array(b.ptr(c), b.int("int", 4), 4)
>>> btf = BTF.from_bytes(b.build())
>>> declaration(btf, btf.type(up), "buf"), declaration(btf, btf.type(arr), "argv")
('char __user *buf', 'char *argv[4]')
"""

from __future__ import annotations

from kprobes.errors import BTFError

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:  # pragma: no cover
    from kprobes.btf.types import BTF, Type


__all__ = ["declaration", "tag_spelling", "MAX_DEPTH"]

#: deepest declarator we build before calling the type graph cyclic
MAX_DEPTH = 64


def tag_spelling(tag: str) -> str:
    """How a ``btf_type_tag`` is written in C.

    >>> tag_spelling("user"), tag_spelling("address_space(1)")
    ('__user', '__attribute__((btf_type_tag("address_space(1)")))')
    """
    if tag.isidentifier():
        return "__" + tag
    return f'__attribute__((btf_type_tag("{tag}")))'


def _join(base: str, inner: str) -> str:
    if not inner:
        return base
    if inner[0] == "[" or (inner[0] == "(" and not inner.startswith("(*")):
        return base + inner
    return base + " " + inner


def _base_name(t: Type) -> str:
    k = t.kind
    if k in ("struct", "union"):
        return f"{k} {t.name}" if t.name else f"{k} {{...}}"
    if k in ("enum", "enum64"):
        return f"enum {t.name}" if t.name else "enum {...}"
    if k == "fwd":
        return f"{'union' if t.kind_flag else 'struct'} {t.name}"
    if k == "datasec":
        return f"SEC {t.name}"
    return t.name or "void"


def declaration(btf: BTF, t: Type, inner: str, depth: int = 0) -> str:
    """C declaration of ``inner`` (a name or partial declarator) having type ``t``.

    >>> from kprobes.btf import BTF
    >>> from kprobes.btf.build import Builder
    >>> b = Builder(); i = b.int("int", 4, signed=True)
    >>> pa = b.ptr(b.array(i, i, 3)); cp = b.const(b.ptr(i))
    >>> btf = BTF.from_bytes(b.build())
    >>> declaration(btf, btf.type(pa), "p"), declaration(btf, btf.type(cp), "")
    ('int (*p)[3]', 'int *const')
    """
    if depth > MAX_DEPTH:
        raise BTFError(f"{btf.path}: type id {t.id}: reference cycle or declarator nested "
                       f"deeper than {MAX_DEPTH}")
    k = t.kind
    nxt = depth + 1
    if k == "ptr":
        target = btf.type(t.type_id or 0)
        d = "*" + inner
        # look through qualifiers/tags for an array or function pointee
        look = target
        for _ in range(MAX_DEPTH):
            if look.kind not in ("const", "volatile", "restrict", "type_tag"):
                break
            look = btf.type(look.type_id or 0)
        if look.kind in ("array", "func_proto"):
            d = "(" + d + ")"
        return declaration(btf, target, d, nxt)
    if k in ("const", "volatile", "restrict", "type_tag"):
        word = tag_spelling(t.name) if k == "type_tag" else k
        target = btf.type(t.type_id or 0)
        if k != "type_tag" and btf.strip_cv(target).kind != "ptr":
            # qualifier on a non-pointer goes in front: 'const char'
            return _prefix(word, declaration(btf, target, inner, nxt))
        return declaration(btf, target, word + (" " + inner if inner else ""), nxt)
    if k == "array":
        return declaration(btf, btf.type(t.type_id or 0), f"{inner}[{t.nelems}]", nxt)
    if k == "func_proto":
        params = []
        for p in t.params or ():
            params.append(declaration(btf, btf.type(p.type_id), p.name, nxt))
        if t.variadic:
            params.append("...")
        return declaration(btf, btf.type(t.type_id or 0),
                           f"{inner}({', '.join(params) or 'void'})", nxt)
    if k == "func":
        return declaration(btf, btf.type(t.type_id or 0), inner or t.name, nxt)
    if k in ("var", "decl_tag"):
        return declaration(btf, btf.type(t.type_id or 0), inner, nxt)
    return _join(_base_name(t), inner)


def _prefix(word: str, decl: str) -> str:
    return f"{word} {decl}"

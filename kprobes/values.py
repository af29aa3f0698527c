"""The base of kprobes' small value classes (probe specs, format fields, rows...).

Each class lists its fields once in ``_fields`` (also its ``__slots__``, with any
derived attribute) and writes its own ``__init__``, which takes every field by
name; :class:`Value` gives it ``repr``, ``==``, copying and pickling from that
list, :class:`Frozen` also immutability and a hash, and :func:`replace` a changed
copy (``__init__`` runs again, with its checks).

Why not :mod:`dataclasses`: a dataclass is made at import time by generating
and ``exec``-ing the source of each of its methods, and the module imports
:mod:`inspect` (with ``ast``, ``dis``, ``tokenize``). For the ~25 value classes a
``kprobes`` command imports that cost 0.3-0.4 s of its start-up under the
emulated test kernels (0.6 s is the interpreter itself), about a sixth of a
tool's start; these classes cost nothing to make.

>>> class Point(Frozen):
...     __slots__ = _fields = ("x", "y")     # a subclass of a value: _fields: tuple[str, ...]
...     def __init__(self, x: int, y: int = 0) -> None:
...         _set(self, "x", x)
...         _set(self, "y", y)
>>> p = Point(1)
>>> p, p == Point(1, 0), replace(p, y=2)
(Point(x=1, y=0), True, Point(x=1, y=2))
>>> p.x = 3
Traceback (most recent call last):
AttributeError: cannot assign to field 'x' of a frozen Point
"""

from __future__ import annotations

TYPE_CHECKING = False   # typing's, without importing typing at run time
if TYPE_CHECKING:
    from typing import Any, TypeVar

    V = TypeVar("V", bound="Value")

__all__ = ["Value", "Frozen", "replace"]

#: set an attribute of a frozen value (in its ``__init__``)
_set = object.__setattr__


def _make(cls: type[Value], values: tuple[Any, ...]) -> Value:
    """Rebuild a value from its field values (pickle, copy)."""
    return cls(**dict(zip(cls._fields, values, strict=True)))


class Value:
    """Fields in ``_fields`` (declared as ``__slots__`` by the subclass): ``repr``,
    ``==`` (same class, equal fields), copy and pickle. Not hashable (mutable)."""

    __slots__ = ()
    _fields: tuple[str, ...] = ()

    def _astuple(self) -> tuple[Any, ...]:
        return tuple([getattr(self, f) for f in self._fields])

    def __repr__(self) -> str:
        body = ", ".join([f"{f}={getattr(self, f)!r}" for f in self._fields])
        return f"{type(self).__qualname__}({body})"

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        assert isinstance(other, Value)
        return self._astuple() == other._astuple()

    __hash__ = None       # type: ignore[assignment]   # mutable values are not hashable

    def __reduce__(self) -> tuple[Any, ...]:
        return _make, (type(self), self._astuple())


class Frozen(Value):
    """A :class:`Value` whose fields cannot be assigned after ``__init__`` (which sets
    them with ``object.__setattr__``); hashable when its fields are."""

    __slots__ = ()

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"cannot assign to field {name!r} of a frozen "
                             f"{type(self).__qualname__}")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"cannot delete field {name!r} of a frozen "
                             f"{type(self).__qualname__}")

    def __hash__(self) -> int:       # type: ignore[override]
        return hash((type(self), self._astuple()))


def replace(obj: V, **changes: Any) -> V:
    """A copy of ``obj`` with ``changes``; its ``__init__`` runs (every check again)."""
    kw = {f: getattr(obj, f) for f in obj._fields}
    kw.update(changes)
    return type(obj)(**kw)

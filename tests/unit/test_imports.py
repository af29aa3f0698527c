"""The import graph of kprobes/, read with ``ast`` (nothing is imported):
no cycle among the modules of one package, type-only and function-level
imports included, no cycle among packages, and imports point the way
docs/ARCHITECTURE.md says: cli -> runtime -> (probes, decode, agg, output) ->
(kernel, btf), everything may import ``kprobes.errors`` and ``kprobes.values``."""

from __future__ import annotations

import ast
import os
from collections.abc import Iterator

import pytest

ROOT = os.path.join(os.path.dirname(__file__), "..", "..", "kprobes")

#: a package may import its own modules and those of packages of lower rank.
#: Same rank: allowed while the package graph stays acyclic (checked below).
RANK = {
    "errors": 0, "values": 0,
    "kernel": 1, "btf": 1,
    "probes": 2, "decode": 2, "agg": 2, "output": 2, "vm": 2, "symbolize": 2,
    "runtime": 3,
    "cli": 4,
    "__init__": 5, "__main__": 5, "tools": 5,
}


def _modules() -> dict[str, str]:
    """Dotted module name -> file, for every .py under kprobes/."""
    out: dict[str, str] = {}
    for d, _dirs, files in os.walk(ROOT):
        rel = os.path.relpath(d, ROOT)
        parts = ["kprobes"] + ([] if rel == "." else rel.split(os.sep))
        for f in files:
            if f.endswith(".py"):
                name = parts if f == "__init__.py" else [*parts, f[:-3]]
                out[".".join(name)] = os.path.join(d, f)
    return out


MODULES = _modules()


def _imports(mod: str, path: str) -> Iterator[tuple[str, int]]:
    """(imported kprobes module, line) for every import statement in the file."""
    is_pkg = path.endswith("__init__.py")
    with open(path) as f:
        tree = ast.parse(f.read(), path)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name.split(".")[0] == "kprobes":
                    yield _known(a.name), node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = mod.split(".") if is_pkg else mod.split(".")[:-1]
                base = base[:len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "kprobes":
                continue
            for a in node.names:
                sub = f"{target}.{a.name}"
                yield (sub if sub in MODULES else _known(target)), node.lineno


def _known(name: str) -> str:
    while name not in MODULES and "." in name:
        name = name.rsplit(".", 1)[0]
    return name


def _package(mod: str) -> str:
    parts = mod.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _graph() -> dict[str, dict[str, int]]:
    g: dict[str, dict[str, int]] = {m: {} for m in MODULES}
    for m, path in MODULES.items():
        for target, line in _imports(m, path):
            if target != m:
                g[m].setdefault(target, line)
    return g


GRAPH = _graph()


def _cycle(nodes: set[str], edges: dict[str, set[str]]) -> list[str] | None:
    """One cycle among ``nodes`` (as a path that returns to its start), or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(n: str) -> list[str] | None:
        state[n] = 1
        stack.append(n)
        for t in sorted(edges.get(n, ())):
            if t not in nodes:
                continue
            if state.get(t) == 1:
                return stack[stack.index(t):] + [t]
            if t not in state:
                found = visit(t)
                if found:
                    return found
        stack.pop()
        state[n] = 2
        return None

    for n in sorted(nodes):
        if n not in state:
            found = visit(n)
            if found:
                return found
    return None


def test_graph_is_read() -> None:
    """The reader sees relative, absolute, function-level and type-only imports."""
    assert "kprobes.runtime.handle" in GRAPH["kprobes.runtime.reader"]
    assert "kprobes.decode.format" in GRAPH["kprobes.runtime.reader"]
    assert "kprobes.btf.cdecl" in GRAPH["kprobes.btf.reader"]        # inside a method
    assert "kprobes.btf.types" in GRAPH["kprobes.btf.cdecl"]          # under TYPE_CHECKING
    assert "kprobes.errors" in GRAPH["kprobes.kernel.tracefs"]


@pytest.mark.parametrize("package", sorted({_package(m) for m in MODULES
                                            if m.count(".") >= 2}))
def test_no_cycle_within_package(package: str) -> None:
    nodes = {m for m in MODULES if _package(m) == package}
    edges = {m: set(GRAPH[m]) for m in nodes}
    cycle = _cycle(nodes, edges)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or ())


def test_no_cycle_between_packages() -> None:
    edges: dict[str, set[str]] = {}
    for m, targets in GRAPH.items():
        for t in targets:
            if _package(t) != _package(m):
                edges.setdefault(_package(m), set()).add(_package(t))
    cycle = _cycle(set(edges) | {t for ts in edges.values() for t in ts}, edges)
    assert cycle is None, "packages import each other: " + " -> ".join(cycle or ())


def test_imports_point_down() -> None:
    wrong = []
    for m, targets in GRAPH.items():
        pm = _package(m)
        for t, line in targets.items():
            pt = _package(t)
            if pm == pt or pm not in RANK or pt not in RANK:
                continue
            if RANK[pt] > RANK[pm]:
                wrong.append(f"{MODULES[m]}:{line}: {m} imports {t} ({pm} is below {pt})")
    assert not wrong, "\n".join(wrong)


def test_every_package_has_a_rank() -> None:
    """A new package takes its place in the layers (RANK above and ARCHITECTURE.md)."""
    assert {_package(m) for m in MODULES} <= set(RANK)

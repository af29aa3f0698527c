"""The ``>>>`` examples in the docstrings of every kprobes module run (no root needed).

Examples that need a live kernel are marked ``# doctest: +SKIP`` in place.
"""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import kprobes


def _modules() -> list[str]:
    names = ["kprobes"]
    for info in pkgutil.walk_packages(kprobes.__path__, "kprobes."):
        if not info.name.endswith(".__main__"):  # importing it runs the command
            names.append(info.name)
    return sorted(names)


def _examples(name: str) -> list[doctest.DocTest]:
    module = importlib.import_module(name)
    tests = doctest.DocTestFinder(exclude_empty=True).find(module, name)
    return [t for t in tests if any(not ex.options.get(doctest.SKIP) for ex in t.examples)]


WITH_EXAMPLES = [n for n in _modules() if _examples(n)]


def test_modules_have_runnable_examples() -> None:
    # the collection itself must see the modules: a packaging mistake would
    # otherwise leave nothing to run and pass
    assert {"kprobes.probes.spec", "kprobes.kernel.kallsyms"} <= set(WITH_EXAMPLES)


@pytest.mark.parametrize("name", WITH_EXAMPLES)
def test_docstring_examples(name: str) -> None:
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    for test in _examples(name):
        runner.run(test)
    result = runner.summarize(verbose=False)
    assert result.attempted > 0
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples of {name} failed"

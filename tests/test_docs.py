"""The docstring examples run, so the documentation cannot rot: every library module with a ``>>>`` example."""

from __future__ import annotations

import doctest
import importlib
import re

import pytest
from conftest import REPO

PACKAGE = REPO / "mlclipsim"
FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE  # as setup.cfg's doctest_optionflags


def _modules_with_examples() -> list[str]:
    names = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if ">>>" in path.read_text():
            parts = path.relative_to(REPO).with_suffix("").parts
            names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


MODULES = _modules_with_examples()


def test_examples_are_found_and_none_is_skipped():
    assert {"mlclipsim.metrics.ml_clipsim_metric", "mlclipsim.metrics.ra_miqa_metric",
            "mlclipsim.metrics.functional.ml_clipsim"} <= set(MODULES)
    skipped = [str(path.relative_to(REPO)) for path in PACKAGE.rglob("*.py")
               if re.search(r"doctest:\s*\+SKIP", path.read_text())]
    assert not skipped, f"docstring examples must run (tiny inputs, offline weights), not be skipped: {skipped}"


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name):
    module = importlib.import_module(name)
    tests = [t for t in doctest.DocTestFinder().find(module, name) if t.examples]
    assert tests, f"{name} has '>>>' but no example doctest finds"
    runner = doctest.DocTestRunner(optionflags=FLAGS)
    for test in tests:
        runner.run(test)
    result = runner.summarize(verbose=False)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed in {name} (output above)"

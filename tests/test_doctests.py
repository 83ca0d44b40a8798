"""The docstring examples of the package run and print what they claim (``--doctest-modules`` style).

Collected here rather than with pytest's ``--doctest-modules``, which would also import every
``conftest.py`` as a module and clash on their shared name.
"""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import avatarme_edu

FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


def _count(name: str) -> int:
    return sum(len(t.examples) for t in doctest.DocTestFinder().find(importlib.import_module(name)))


# every module but the ``__main__`` ones, which run their command when imported
EXAMPLES = {m.name: _count(m.name) for m in pkgutil.walk_packages(avatarme_edu.__path__, "avatarme_edu.")
            if not m.name.endswith(".__main__")}
WITH_EXAMPLES = sorted(name for name, n in EXAMPLES.items() if n)


def test_the_package_has_examples_to_run():
    assert len(WITH_EXAMPLES) >= 4 and sum(EXAMPLES.values()) >= 8, EXAMPLES


@pytest.mark.parametrize("name", WITH_EXAMPLES)
def test_docstring_examples(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=FLAGS, report=False)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples in {name} failed (printed above)"

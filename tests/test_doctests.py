"""Run the docstring examples of every module in core, pipeline and lilm."""

import doctest
import importlib
import pkgutil

import pytest

PACKAGES = ("core", "pipeline", "lilm")


def _modules():
    for package_name in PACKAGES:
        package = importlib.import_module(package_name)
        for info in pkgutil.walk_packages(package.__path__, prefix=f"{package_name}."):
            if not info.name.endswith("__main__"):
                yield info.name


@pytest.mark.parametrize("module_name", sorted(_modules()))
def test_docstring_examples(module_name):
    result = doctest.testmod(importlib.import_module(module_name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0


def test_the_examples_exist():
    finder = doctest.DocTestFinder()
    examples = sum(len(t.examples) for name in _modules() for t in finder.find(importlib.import_module(name)))
    assert examples >= 20

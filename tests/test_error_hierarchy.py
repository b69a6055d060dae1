"""Every sleapflow error is defined in sleapflow/errors.py, so callers find the whole hierarchy
in one place and can catch (and front ends answer) by type."""

from __future__ import annotations

import ast
import importlib
import pkgutil
from pathlib import Path

import sleapflow
from sleapflow import errors

PACKAGE = Path(sleapflow.__file__).resolve().parent


def _all_subclasses(cls: type) -> set[type]:
    found: set[type] = set()
    for sub in cls.__subclasses__():
        found |= {sub, *_all_subclasses(sub)}
    return found


def test_every_sleapflow_error_subclass_is_defined_in_errors_py() -> None:
    for info in pkgutil.walk_packages(sleapflow.__path__, "sleapflow."):
        if info.name.endswith("__main__"):
            continue
        try:
            importlib.import_module(info.name)
        except ImportError:
            # An optional extra not installed here; the AST test below still covers the module.
            continue
    elsewhere = sorted(f"{c.__module__}.{c.__qualname__}" for c in _all_subclasses(errors.SleapflowError)
                       if c.__module__ != "sleapflow.errors")
    assert not elsewhere, elsewhere


def test_no_module_outside_errors_py_subclasses_an_error_of_the_hierarchy() -> None:
    """Also for modules this environment cannot import (optional extras)."""
    names = {n for n in errors.__all__ if isinstance(getattr(errors, n), type)}
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name == "errors.py" and path.parent == PACKAGE:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.ClassDef):
                continue
            bases = {b.id if isinstance(b, ast.Name) else b.attr for b in node.bases
                     if isinstance(b, ast.Name | ast.Attribute)}
            if bases & names:
                offenders.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno} {node.name}")
    assert not offenders, offenders


def test_the_hierarchy_is_flat_under_sleapflow_error() -> None:
    for name in errors.__all__:
        cls = getattr(errors, name)
        assert issubclass(cls, errors.SleapflowError), name
        assert cls.__doc__, f"{name} has no docstring"

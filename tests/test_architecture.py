"""The package's shape holds: the import layers (import-linter), no import cycles, a small top
level, no private names borrowed across modules, and a declared public API in every module."""

from __future__ import annotations

import ast
import importlib
import pkgutil
import subprocess
import sys
from pathlib import Path

import grimp
import pytest

import sleapflow

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "sleapflow"
MAX_TOP_LEVEL_MODULES = 10


def _modules() -> list[str]:
    return sorted(info.name for info in pkgutil.walk_packages(sleapflow.__path__, "sleapflow.")
                  if not info.name.endswith("__main__"))


def _source(module: str) -> Path:
    path = PACKAGE.joinpath(*module.split(".")[1:])
    return path / "__init__.py" if path.is_dir() else path.with_suffix(".py")


@pytest.mark.timeout(120)
def test_the_import_layers_contract_is_kept() -> None:
    lint_imports = Path(sys.executable).parent / "lint-imports"
    result = subprocess.run([str(lint_imports), "--config", str(ROOT / "pyproject.toml")],
                            capture_output=True, text=True, cwd=ROOT, timeout=110)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 kept, 0 broken" in result.stdout


def test_no_module_imports_itself_round_a_cycle() -> None:
    graph = grimp.build_graph("sleapflow")
    cycles = []
    for module in sorted(graph.modules):
        for imported in graph.find_modules_directly_imported_by(module):
            # A path back from what it imports to the module itself closes a cycle.
            back = graph.find_shortest_chain(importer=imported, imported=module)
            if back is not None:
                cycles.append(" -> ".join((module, *back)))
    assert not cycles, "\n".join(sorted(set(cycles)))


def test_the_top_level_stays_small() -> None:
    top = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert len(top) <= MAX_TOP_LEVEL_MODULES, top


def test_no_module_borrows_another_modules_private_names() -> None:
    borrowed = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("sleapflow"):
                borrowed += [f"{path.relative_to(ROOT)}:{node.lineno} {node.module}.{alias.name}"
                             for alias in node.names
                             if alias.name.startswith("_") and not alias.name.startswith("__")]
    assert not borrowed, "\n".join(borrowed)


def _defined_public_names(tree: ast.Module) -> set[str]:
    names = set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names |= {t.id for t in targets if isinstance(t, ast.Name) and t.id.isupper()}
    return {n for n in names if not n.startswith("_")}


@pytest.mark.parametrize("module", _modules())
def test_every_module_declares_its_public_names(module: str) -> None:
    """A tuple ``__all__`` naming what the module offers: every name in it exists, and every
    public function, class and constant the module defines is in it (or is renamed private)."""
    mod = importlib.import_module(module)
    exported = getattr(mod, "__all__", None)
    assert isinstance(exported, tuple), f"{module}.__all__ should be a tuple"
    assert len(set(exported)) == len(exported), f"{module}.__all__ repeats a name"
    missing = [name for name in exported if not hasattr(mod, name)]
    assert not missing, f"{module}.__all__ names what it does not have: {missing}"
    undeclared = _defined_public_names(ast.parse(_source(module).read_text())) - set(exported)
    assert not undeclared, f"{module} defines public names missing from __all__: {sorted(undeclared)}"


def test_the_root_api_is_visible_to_type_checkers() -> None:
    """Every lazily loaded root name is also imported under ``TYPE_CHECKING`` (what type
    checkers read), resolves at run time, and shows in ``dir(sleapflow)``."""
    tree = ast.parse(_source("sleapflow").read_text())
    checked = {alias.asname or alias.name
               for node in tree.body if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
               for imp in node.body if isinstance(imp, ast.ImportFrom) for alias in imp.names}
    eager = {alias.asname or alias.name for node in tree.body if isinstance(node, ast.ImportFrom)
             and node.module and node.module.startswith("sleapflow") for alias in node.names}
    assert set(sleapflow.__all__) == checked | eager
    for name in sleapflow.__all__:
        assert getattr(sleapflow, name) is not None
        assert name in dir(sleapflow)
    # The types a user receives are public.
    assert {"FramePrediction", "GraphSession", "GraphStats"} <= set(sleapflow.__all__)

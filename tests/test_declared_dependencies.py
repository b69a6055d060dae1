"""Every third-party import is declared in pyproject.toml, and core modules never need an extra.

A package that the developer's machine happens to have is invisible to a green test run on that
machine; these tests read the imports themselves, so a missing declaration fails everywhere.
"""

from __future__ import annotations

import ast
import importlib.metadata
import re
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCANNED = ("sleapflow", "tests", "benchmarks", "tools")

#: Modules that may import an extra's packages at module level, and the extra each belongs to.
#: Everything else reaches an extra only inside a function, after checking it is installed.
EXTRA_MODULES = {"sleapflow.serve.app": "serve"}

#: Distributions that provide a module under another name and may not be installed here (they
#: need a GPU); installed distributions are looked up in their own metadata instead.
UNINSTALLED_PROVIDERS = {"tensorrt": "tensorrt"}


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirement_name(requirement: str) -> str:
    match = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", requirement.strip())
    assert match, f"unreadable requirement {requirement!r}"
    return _normalise(match.group(0))


def _declared() -> tuple[set[str], dict[str, set[str]]]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    core = {_requirement_name(r) for r in project["dependencies"]}
    extras = {extra: {_requirement_name(r) for r in reqs}
              for extra, reqs in project.get("optional-dependencies", {}).items()}
    return core, extras


def _python_files() -> Iterator[Path]:
    for folder in SCANNED:
        yield from sorted((ROOT / folder).rglob("*.py"))


def _local_names() -> set[str]:
    """Helper modules the tests and benchmarks import from their own folders."""
    names = set()
    for folder in ("tests", "benchmarks", "tools"):
        for path in (ROOT / folder).rglob("*"):
            if path.suffix == ".py" or (path.is_dir() and "__pycache__" not in path.parts):
                names.add(path.stem)
    return names


def _is_type_checking(node: ast.stmt) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def _top_level_statements(body: list[ast.stmt]) -> Iterator[ast.stmt]:
    """The statements that run on import: the module body, and the bodies of its top-level
    ``try``/``if`` blocks (not ``if TYPE_CHECKING``, not functions or classes)."""
    for node in body:
        if _is_type_checking(node):
            continue
        yield node
        if isinstance(node, ast.Try):
            yield from _top_level_statements(node.body + node.orelse + node.finalbody)
            for handler in node.handlers:
                yield from _top_level_statements(handler.body)
        elif isinstance(node, ast.If):
            yield from _top_level_statements(node.body + node.orelse)


def _imported(nodes: Iterator[ast.AST]) -> Iterator[tuple[str, int]]:
    for node in nodes:
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name.split(".")[0], node.lineno
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module.split(".")[0], node.lineno


def _third_party(name: str, local: set[str]) -> bool:
    return name not in sys.stdlib_module_names and name != "sleapflow" and name not in local


def _providers() -> dict[str, set[str]]:
    providers = {module: {_normalise(d) for d in dists}
                 for module, dists in importlib.metadata.packages_distributions().items()}
    for module, dist in UNINSTALLED_PROVIDERS.items():
        providers.setdefault(module, {dist})
    return providers


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def test_every_third_party_import_is_declared() -> None:
    core, extras = _declared()
    runtime_extras = set().union(*(deps for extra, deps in extras.items() if extra != "test"))
    providers = _providers()
    local = _local_names()
    problems = []
    for path in _python_files():
        in_package = path.is_relative_to(ROOT / "sleapflow")
        allowed = core | runtime_extras if in_package else core | set().union(*extras.values())
        for module, line in _imported(ast.walk(ast.parse(path.read_text()))):
            if not _third_party(module, local):
                continue
            dists = providers.get(module)
            where = f"{path.relative_to(ROOT)}:{line}"
            if dists is None:
                problems.append(f"{where}: {module} is not installed here, so no declared "
                                "distribution provides it")
            elif not dists & allowed:
                test_only = in_package and dists & extras.get("test", set())
                problems.append(f"{where}: {module} comes from {', '.join(sorted(dists))}, which "
                                + ("is declared for the tests only" if test_only
                                   else "pyproject.toml does not declare"))
    assert not problems, "\n".join(problems)


def test_core_modules_import_no_extra_at_module_level() -> None:
    core, extras = _declared()
    only_in = {dist: extra for extra, deps in extras.items() for dist in deps - core}
    providers = _providers()
    local = _local_names()
    problems = []
    for path in sorted((ROOT / "sleapflow").rglob("*.py")):
        name = _module_name(path)
        statements = _top_level_statements(ast.parse(path.read_text()).body)
        for module, line in _imported(iter(statements)):
            if not _third_party(module, local):
                continue
            extras_needed = {only_in[d] for d in providers.get(module, set()) if d in only_in}
            if extras_needed and EXTRA_MODULES.get(name) not in extras_needed:
                problems.append(f"{path.relative_to(ROOT)}:{line}: imports {module} on import, "
                                f"which only the extra {'/'.join(sorted(extras_needed))} installs")
    assert not problems, "\n".join(problems)


_IMPORT_ALL_WITHOUT_EXTRAS = """
import importlib, importlib.abc, pkgutil, sys

blocked = set(sys.argv[1].split(","))
skip = set(sys.argv[2].split(","))


class Blocker(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in blocked:
            raise ModuleNotFoundError(f"No module named {name!r} (blocked)", name=name)
        return None


sys.meta_path.insert(0, Blocker())
import sleapflow

for info in pkgutil.walk_packages(sleapflow.__path__, "sleapflow."):
    if info.name not in skip:
        importlib.import_module(info.name)
print("imported")
"""


@pytest.mark.timeout(120)
def test_every_core_module_imports_without_the_extras() -> None:
    core, extras = _declared()
    extra_only = set().union(*extras.values()) - core
    core_modules = {m for m, dists in _providers().items() if dists & core}
    blocked = sorted({m for m, dists in _providers().items() if dists & extra_only} - core_modules)
    assert {"ray", "starlette", "uvicorn"} <= set(blocked)
    result = subprocess.run([sys.executable, "-c", _IMPORT_ALL_WITHOUT_EXTRAS, ",".join(blocked),
                             ",".join(EXTRA_MODULES)], capture_output=True, text=True, cwd=ROOT,
                            timeout=110)
    assert result.returncode == 0 and result.stdout.strip().endswith("imported"), result.stderr

"""Modules imported on first use, so a run that never touches torch never pays for importing it."""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

__all__ = ("LazyModule", "lazy_module")


class LazyModule:
    """Stands in for a module until an attribute is read, then imports it and forwards to it.

    Importing torch takes 1.3-1.7 s; modules whose functions use torch but which a torch-free
    run (ONNX Runtime on a warm export cache) also imports bind ``torch`` to one of these. Type
    hints stay strings (``from __future__ import annotations``), so only real use imports.
    """

    __slots__ = ("_module", "_name")

    def __init__(self, name: str) -> None:
        self._name = name
        self._module: ModuleType | None = None

    def __getattr__(self, attr: str) -> Any:
        module = self._module
        if module is None:
            module = self._module = importlib.import_module(self._name)
        return getattr(module, attr)

    def __repr__(self) -> str:
        state = "loaded" if self._module is not None else "not loaded yet"
        return f"<lazy module {self._name!r} ({state})>"


def lazy_module(name: str) -> Any:
    """A stand-in for ``import name`` that imports it on the first attribute read."""
    return LazyModule(name)

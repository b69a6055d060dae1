"""Modules imported on first use, so a run that never touches torch never pays for importing it."""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

__all__ = ("LazyModule", "import_sleap_io_media", "lazy_module")


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


def import_sleap_io_media() -> None:
    """Import sleap-io's video and .slp modules without importing aiohttp, when that is safe.

    sleap-io 0.9.5 imports aiohttp when its video module loads, only to warn if the installed
    version is old (its own docstring calls aiohttp a lazy import); that costs 0.15-0.3 s, a
    fifth of a warm-cache run, and only remote (http, cloud) media use aiohttp. While those
    modules import, ``sys.modules["aiohttp"]`` holds a stand-in carrying the installed
    version, so sleap-io's check still sees the real version number; the stand-in is removed
    right after, and the first real use (a remote input) imports aiohttp itself. Done only
    while this is the process's only thread, so no other code can meet the stand-in.
    """
    import sys
    import threading

    if ("sleap_io.io.video_reading" in sys.modules or "aiohttp" in sys.modules
            or threading.active_count() != 1):
        return
    from importlib import metadata

    try:
        version = metadata.version("aiohttp")
    except metadata.PackageNotFoundError:
        return
    stand_in = ModuleType("aiohttp")
    stand_in.__version__ = version  # type: ignore[attr-defined]
    sys.modules["aiohttp"] = stand_in
    try:
        importlib.import_module("sleap_io.io.video_reading")
        importlib.import_module("sleap_io.io.slp")
    finally:
        if sys.modules.get("aiohttp") is stand_in:
            del sys.modules["aiohttp"]

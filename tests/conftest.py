"""Shared fixtures: where the reference assets live; a per-session export cache."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

SHARED = (Path(__file__).resolve().parent.parent.parent / "shared").resolve()
ASSETS = SHARED / "assets"
REFERENCE = SHARED / "reference"

# Networks exported for ONNX Runtime go to a cache of this test session, never the user's cache;
# set at import so subprocesses started by tests (the CLI) inherit it. An explicit setting wins.
if "SLEAPFLOW_CACHE_DIR" not in os.environ:
    _CACHE = tempfile.TemporaryDirectory(prefix="sleapflow-test-cache-")
    os.environ["SLEAPFLOW_CACHE_DIR"] = _CACHE.name


@pytest.fixture(scope="session")
def assets() -> Path:
    return ASSETS


@pytest.fixture(scope="session")
def reference() -> Path:
    return REFERENCE


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return request.param

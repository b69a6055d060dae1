"""Shared fixtures: where the reference assets live."""

from __future__ import annotations

from pathlib import Path

import pytest

SHARED = (Path(__file__).resolve().parent.parent.parent / "shared").resolve()
ASSETS = SHARED / "assets"
REFERENCE = SHARED / "reference"


@pytest.fixture(scope="session")
def assets() -> Path:
    return ASSETS


@pytest.fixture(scope="session")
def reference() -> Path:
    return REFERENCE


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return request.param

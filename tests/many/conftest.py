"""The Ray cluster fixture: one local cluster for every test of this folder that needs it."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from ray_cluster import ray_cluster

HERE = Path(__file__).resolve().parent

#: The running cluster's stop, while one runs.
_STOP = contextlib.ExitStack()


@pytest.fixture(scope="package")
def cluster() -> Iterator[tuple[str, int]]:
    pytest.importorskip("ray", reason="the Ray extra is not installed (pip install 'sleapflow[ray]')")
    with _STOP:
        yield _STOP.enter_context(ray_cluster())


@pytest.hookimpl(trylast=True)  # after the item's own fixtures are torn down
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> None:
    """Stop the cluster once the run leaves this folder. Without an ``__init__.py`` here, pytest
    gives a "package" fixture the session's lifetime: the idle cluster's processes then ran beside
    every later test, and its stop (15 s) was charged to the suite's last test."""
    if nextitem is None or HERE not in nextitem.path.resolve().parents:
        _STOP.close()

"""The Ray cluster fixture: one local cluster for every test of this folder that needs it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from ray_cluster import ray_cluster


@pytest.fixture(scope="package")
def cluster() -> Iterator[tuple[str, int]]:
    pytest.importorskip("ray", reason="the Ray extra is not installed (pip install 'sleapflow[ray]')")
    with ray_cluster() as running:
        yield running

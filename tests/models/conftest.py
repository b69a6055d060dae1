"""Fixtures for the model tests: asset paths, reference frames and outputs, cached models."""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from sleapflow.models import LoadedModel, load_model

SHARED = Path(__file__).resolve().parents[3] / "shared"
CKPTS = SHARED / "assets" / "model_ckpts"
LEGACY = SHARED / "assets" / "legacy_models"
DATASETS = SHARED / "assets" / "datasets"
REFERENCE = SHARED / "reference"


@functools.cache
def _cached_model(path: str) -> LoadedModel:
    return load_model(path)


@functools.cache
def _labels_images(name: str) -> np.ndarray:
    import sleap_io as sio

    labels = sio.load_slp(str(DATASETS / name))
    return np.stack([lf.image for lf in labels])


@pytest.fixture(scope="session")
def ckpts() -> Path:
    return CKPTS


@pytest.fixture(scope="session")
def legacy_dir() -> Path:
    return LEGACY


@pytest.fixture(scope="session")
def model() -> Callable[[Path], LoadedModel]:
    """Load a model folder once per session (forward tests share them; modules are read-only)."""
    return lambda path: _cached_model(str(path))


@pytest.fixture(scope="session")
def frames() -> Callable[[str], torch.Tensor]:
    """All labeled frames of a dataset under assets/datasets as uint8 (B, C, H, W)."""
    return lambda name: torch.from_numpy(_labels_images(name)).permute(0, 3, 1, 2).contiguous()


@pytest.fixture(scope="session")
def ref() -> Callable[[str], dict[str, np.ndarray]]:
    """The arrays of ``reference/<case>.raw.npz``."""

    def load(case: str) -> dict[str, np.ndarray]:
        with np.load(REFERENCE / f"{case}.raw.npz") as z:
            return {k: z[k] for k in z.files}

    return load


def run(model: LoadedModel, x: torch.Tensor) -> dict[str, np.ndarray]:
    """Forward pass under inference mode, outputs as numpy."""
    with torch.inference_mode():
        return {k: v.numpy() for k, v in model.module(x).items()}


@pytest.fixture(scope="session")
def forward() -> Callable[[LoadedModel, torch.Tensor], dict[str, np.ndarray]]:
    return run

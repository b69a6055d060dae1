"""Forward-pass parity with sleap-nn 0.3.5's raw confidence maps in shared/reference."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from sleapflow.models import LoadedModel

# Float32 convolutions sum in an order that depends on the CPU's kernels and thread count: on
# an AVX-512 Xeon the maps differ from the reference machine's by up to ~2.4e-5 (1.9e-5 with one
# thread, 1.8e-5 with two), always in a few pixels near a peak. 1e-4 of a map that peaks at 1.0
# stays far below what could move a keypoint (the parity tolerance there is 0.05 px).
ATOL = 1e-4
ModelFn = Callable[[Path], LoadedModel]
FramesFn = Callable[[str], torch.Tensor]
RefFn = Callable[[str], dict[str, np.ndarray]]
ForwardFn = Callable[[LoadedModel, torch.Tensor], dict[str, np.ndarray]]


def _resize_u8(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    # torchvision's CPU uint8 resize path: antialiased bilinear directly on uint8.
    return F.interpolate(x, size=size, mode="bilinear", antialias=True, align_corners=False)


@pytest.mark.parametrize(
    ("case", "folder", "head"),
    [
        ("bottomup", "model_ckpts/minimal_instance_bottomup", "MultiInstanceConfmapsHead"),
        (
            "convnext_bottomup",
            "model_ckpts/minimal_instance_convnext_bottomup",
            "MultiInstanceConfmapsHead",
        ),
        (
            "legacy_bottomup",
            "legacy_models/minimal_instance.UNet.bottomup",
            "MultiInstanceConfmapsHead",
        ),
    ],
)
def test_full_frame_unscaled(
    case: str, folder: str, head: str, model: ModelFn, frames: FramesFn, ref: RefFn,
    forward: ForwardFn, ckpts: Path,
) -> None:
    """384×384 gray frame 0, no resize, already a multiple of every max_stride."""
    m = model(ckpts.parent / folder)
    x = frames("minimal_instance.pkg.slp")[:1].float() / 255
    out = forward(m, x)
    expected = ref(f"{case}__minimal_instance")["b0__pred_confmaps"]
    assert out[head].shape == expected.shape
    np.testing.assert_allclose(out[head], expected, rtol=0, atol=ATOL)


@pytest.mark.parametrize(
    ("case", "folder"),
    [
        ("single_instance", "model_ckpts/minimal_instance_single_instance"),
        ("legacy_single_instance", "legacy_models/minimal_robot.UNet.single_instance"),
    ],
)
def test_single_instance_scaled(
    case: str, folder: str, model: ModelFn, frames: FramesFn, ref: RefFn, forward: ForwardFn,
    ckpts: Path,
) -> None:
    """320×560 RGB frames (size matcher is a no-op), input scale 0.5 → 160×280, stride 4."""
    m = model(ckpts.parent / folder)
    assert m.config.preprocessing.scale == 0.5
    x = _resize_u8(frames("small_robot_minimal.slp"), (160, 280)).float() / 255
    out = forward(m, x)["SingleInstanceConfmapsHead"]
    expected = ref(f"{case}__small_robot_minimal")["b0__pred_confmaps"]
    np.testing.assert_allclose(out, expected, rtol=0, atol=ATOL)


def test_multiclass_bottomup_scaled(
    model: ModelFn, frames: FramesFn, ref: RefFn, forward: ForwardFn, ckpts: Path
) -> None:
    m = model(ckpts / "minimal_instance_multiclass_bottomup")
    x = _resize_u8(frames("minimal_instance.pkg.slp")[:1], (192, 192)).float() / 255
    out = forward(m, x)
    expected = ref("multiclass_bottomup__minimal_instance")["b0__pred_confmaps"]
    np.testing.assert_allclose(out["MultiInstanceConfmapsHead"], expected, rtol=0, atol=ATOL)
    cm = out["ClassMapsHead"]
    assert cm.shape == (1, 2, 96, 96) and cm.min() >= 0 and cm.max() <= 1  # sigmoid


@pytest.mark.parametrize(
    ("case", "folder"),
    [
        ("topdown", "model_ckpts/minimal_instance_centroid"),
        ("legacy_topdown", "legacy_models/minimal_instance.UNet.centroid"),
    ],
)
def test_centroid(
    case: str, folder: str, model: ModelFn, frames: FramesFn, ref: RefFn, forward: ForwardFn,
    ckpts: Path,
) -> None:
    m = model(ckpts.parent / folder)
    out = forward(m, frames("minimal_instance.pkg.slp")[:1].float() / 255)["CentroidConfmapsHead"]
    # The reference repeats the frame's centroid map once per detected instance.
    for per_instance in ref(f"{case}__minimal_instance")["b0__pred_centroid_confmaps"]:
        np.testing.assert_allclose(out[0], per_instance, rtol=0, atol=ATOL)


@pytest.mark.parametrize(
    ("case", "folder"),
    [
        ("topdown", "model_ckpts/minimal_instance_centered_instance"),
        ("centered_instance_only", "model_ckpts/minimal_instance_centered_instance"),
        ("legacy_topdown", "legacy_models/minimal_instance.UNet.centered_instance"),
        ("multiclass_topdown", "model_ckpts/minimal_instance_multiclass_centered_instance"),
    ],
)
def test_centered_instance_on_reference_crops(
    case: str, folder: str, model: ModelFn, ref: RefFn, forward: ForwardFn, ckpts: Path
) -> None:
    """Feed the exact crops sleap-nn cut (``instance_image``) and compare the crop confmaps."""
    m = model(ckpts.parent / folder)
    r = ref(f"{case}__minimal_instance")
    crops = torch.from_numpy(r["b0__instance_image"][:, 0].astype(np.float32)) / 255
    out = forward(m, crops)
    np.testing.assert_allclose(
        out["CenteredInstanceConfmapsHead"], r["b0__pred_confmaps"], rtol=0, atol=ATOL
    )
    if "ClassVectorsHead" in out:
        probs = out["ClassVectorsHead"]
        assert probs.shape == (len(crops), 2)
        np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-6)
        # Top-down identity: the assigned class's probability is the instance score.
        assigned = probs[np.arange(len(crops)), r["b0__pred_class_inds"].astype(int)]
        np.testing.assert_allclose(assigned, r["b0__instance_scores"], atol=1e-5)

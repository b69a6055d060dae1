"""Legacy SLEAP (.h5) models and the ConvNeXt backbone end to end vs sleap-nn."""

from __future__ import annotations

from pathlib import Path

import pytest

from parity import compare_labels, load_reference, run_pipeline

LEGACY = "legacy_models/"
ROBOT = "datasets/small_robot.mp4"
VIDEO = "datasets/centered_pair_small.mp4"
PKG = "datasets/minimal_instance.pkg.slp"

CASES = {
    "legacy_single_instance__small_robot_minimal": ("datasets/small_robot_minimal.slp",
                                                    [LEGACY + "minimal_robot.UNet.single_instance"]),
    "legacy_single_instance__small_robot": (ROBOT, [LEGACY + "minimal_robot.UNet.single_instance"]),
    "legacy_topdown__minimal_instance": (PKG, [LEGACY + "minimal_instance.UNet.centroid",
                                               LEGACY + "minimal_instance.UNet.centered_instance"]),
    "legacy_topdown__centered_pair_small": (VIDEO, [LEGACY + "minimal_instance.UNet.centered_instance",
                                                    LEGACY + "minimal_instance.UNet.centroid"]),
    "legacy_bottomup__minimal_instance": (PKG, [LEGACY + "minimal_instance.UNet.bottomup"]),
    "legacy_bottomup__centered_pair_small": (VIDEO, [LEGACY + "minimal_instance.UNet.bottomup"]),
    "convnext_bottomup__minimal_instance": (PKG, ["model_ckpts/minimal_instance_convnext_bottomup"]),
    "convnext_bottomup__centered_pair_small": (VIDEO, ["model_ckpts/minimal_instance_convnext_bottomup"]),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_matches_reference(case: str, assets: Path, reference: Path) -> None:
    data, models = CASES[case]
    # The clip variants run on their first 100 frames (the short inputs cover every frame).
    frames = "0-99" if data in (VIDEO, ROBOT) else None
    labels = run_pipeline(data_path=str(assets / data), frames=frames,
                          model_paths=tuple(str(assets / m) for m in models))
    report = compare_labels(labels, load_reference(reference, case),
                            frames=range(100) if frames else None)
    report.assert_ok()
    assert report.frames_ours == report.frames_ref

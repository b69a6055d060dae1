"""Top-down graphs (centroid → crop → centered instance and the single-model modes) vs sleap-nn."""

from __future__ import annotations

from pathlib import Path

import pytest

from sleapflow.cli.app import main

from parity import compare_labels, load_reference, run_pipeline

CKPT = "model_ckpts/minimal_instance_"
VIDEO = "datasets/centered_pair_small.mp4"
PKG = "datasets/minimal_instance.pkg.slp"

CASES = {
    "topdown__minimal_instance": (PKG, ["centroid", "centered_instance"], {}),
    "topdown__centered_pair_small": (VIDEO, ["centered_instance", "centroid"], {}),
    "opt_topdown_crop_96": (VIDEO, ["centroid", "centered_instance"], {"crop_size": 96}),
    "opt_topdown_max_instances_2": (VIDEO, ["centroid", "centered_instance"], {"max_instances": 2}),
    "opt_topdown_peak_0.5_no_refine": (VIDEO, ["centroid", "centered_instance"],
                                       {"peak_threshold": 0.5, "integral_refinement": None}),
    "opt_topdown_filter_oks_0.5": (VIDEO, ["centroid", "centered_instance"],
                                   {"filter_overlapping": True, "filter_overlapping_method": "oks",
                                    "filter_overlapping_threshold": 0.5}),
    "opt_topdown_no_empty_frames": (VIDEO, ["centroid", "centered_instance"],
                                    {"no_empty_frames": True, "peak_threshold": 0.6}),
    "centered_instance_only__minimal_instance": (PKG, ["centered_instance"], {}),
    "centroid_only__centered_pair_small": (VIDEO, ["centroid"], {}),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_matches_reference(case: str, assets: Path, reference: Path) -> None:
    data, models, options = CASES[case]
    # Option variants run on the first 100 frames to keep the suite fast; the main cases on all 300.
    # (the OKS filter case runs on all frames: the instance it removes is past frame 99)
    last = 99 if case.startswith(("opt_", "centroid_only")) and "filter" not in case else 299
    frames = f"0-{last}" if data == VIDEO else None
    labels = run_pipeline(data_path=str(assets / data), frames=frames,
                          model_paths=tuple(str(assets / f"{CKPT}{m}") for m in models), **options)
    report = compare_labels(labels, load_reference(reference, case),
                            frames=range(last + 1) if data == VIDEO else None)
    report.assert_ok()
    assert report.frames_ours == report.frames_ref


def test_centroid_only_on_video_emits_one_node_centroid_instances(assets: Path) -> None:
    labels = run_pipeline(data_path=str(assets / VIDEO), frames="0-9",
                          model_paths=(str(assets / f"{CKPT}centroid"),))
    assert [n.name for n in labels.skeletons[0].nodes] == ["centroid"]
    assert all(inst.numpy().shape == (1, 2) for lf in labels for inst in lf.instances)


def test_centroid_only_on_labels_copies_matched_ground_truth(assets: Path) -> None:
    import numpy as np
    import sleap_io as sio

    labels = run_pipeline(data_path=str(assets / PKG), model_paths=(str(assets / f"{CKPT}centroid"),))
    gt = sio.load_slp(str(assets / PKG))
    gt_points = [inst.numpy() for inst in gt[0].user_instances]
    assert len(labels[0].instances) == 2
    for inst in labels[0].instances:
        assert any(np.allclose(inst.numpy(), g, equal_nan=True) for g in gt_points)
    assert [n.name for n in labels.skeletons[0].nodes] == ["A", "B"]


def test_two_models_that_are_not_a_pair(assets: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["track", "-i", str(assets / VIDEO), "-m", str(assets / f"{CKPT}centroid"),
               "-m", str(assets / f"{CKPT}bottomup")])
    err = capsys.readouterr().err
    assert rc == 2
    line = next(ln for ln in err.splitlines() if ln.startswith("Error:"))
    assert "bottomup" in line and "centroid" in line and "expected" in line


def test_centered_instance_alone_on_video_needs_labels(assets: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["track", "-i", str(assets / VIDEO), "-m", str(assets / f"{CKPT}centered_instance")])
    assert rc == 2
    assert ".slp" in capsys.readouterr().err

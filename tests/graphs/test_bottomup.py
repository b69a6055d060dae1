"""Bottom-up graphs (PAF grouping, multi-class class maps) vs sleap-nn, and grouping edge cases."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from sleapflow.messages import FrameInfo, ModelInput, ModelOutput
from sleapflow.stages.bottomup import PafGrouping, PafPeaks
from sleapflow.stages.peaks import PeakSettings

from parity import compare_labels, load_reference, run_pipeline

CKPT = "model_ckpts/minimal_instance_"
VIDEO = "datasets/centered_pair_small.mp4"
PKG = "datasets/minimal_instance.pkg.slp"

CASES = {
    "bottomup__minimal_instance": (PKG, "bottomup", {}),
    "bottomup__centered_pair_small": (VIDEO, "bottomup", {}),
    "opt_bottomup_max_instances_1": (VIDEO, "bottomup", {"max_instances": 1}),
    "opt_bottomup_scale_0.75": (VIDEO, "bottomup", {"input_scale": 0.75}),
    "opt_bottomup_filter_iou_0.3": (VIDEO, "bottomup", {"filter_overlapping": True,
                                                        "filter_overlapping_method": "iou",
                                                        "filter_overlapping_threshold": 0.3}),
    "multiclass_bottomup__minimal_instance": (PKG, "multiclass_bottomup", {}),
    "multiclass_bottomup__centered_pair_small": (VIDEO, "multiclass_bottomup", {}),
    "multiclass_topdown__minimal_instance": (PKG, ("centroid", "multiclass_centered_instance"), {}),
    "multiclass_topdown__centered_pair_small": (VIDEO, ("centroid", "multiclass_centered_instance"), {}),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_matches_reference(case: str, assets: Path, reference: Path) -> None:
    data, models, options = CASES[case]
    models = (models,) if isinstance(models, str) else models
    last = 99 if case.startswith("opt_") else 299
    frames = f"0-{last}" if data == VIDEO else None
    labels = run_pipeline(data_path=str(assets / data), frames=frames,
                          model_paths=tuple(str(assets / f"{CKPT}{m}") for m in models), **options)
    ref = load_reference(reference, case)
    report = compare_labels(labels, ref, check_tracks=True,
                            frames=range(last + 1) if data == VIDEO else None)
    report.assert_ok()
    assert report.frames_ours == report.frames_ref
    assert sorted(t.name for t in labels.tracks) == sorted(t.name for t in ref.tracks)


def _grouping_output(cms: torch.Tensor, pafs: torch.Tensor, edges: list[tuple[int, int]]) -> list:
    n_frames = cms.shape[0]
    frames = tuple(FrameInfo(seq=i, video_id=0, frame_idx=i, height=64, width=64) for i in range(n_frames))
    model_input = ModelInput(seq=0, frames=frames, tensor=None, eff_scale=np.ones(n_frames))
    out = ModelOutput(seq=0, heads={"cms": cms, "pafs": pafs}, input=model_input)
    peaks = PafPeaks("cms", "pafs", 1, 1, edges, PeakSettings(0.2, "integral", 5), n_points=10,
                     max_edge_length_ratio=0.25, dist_penalty_weight=1.0)
    grouping = PafGrouping(edges, cms.shape[1], 1.0, min_line_scores=0.25, min_instance_peaks=0,
                           max_instances=None)
    return grouping(peaks(out))


def test_frame_without_peaks() -> None:
    preds = _grouping_output(torch.zeros(2, 3, 64, 64), torch.zeros(2, 4, 64, 64), [(0, 1), (1, 2)])
    assert len(preds) == 2
    assert all(np.isnan(p.points).all() for p in preds)


def test_hundreds_of_peaks_on_synthetic_maps() -> None:
    rng = np.random.default_rng(0)
    cms = torch.from_numpy(rng.random((1, 3, 96, 96), dtype=np.float32))  # noise: many local maxima
    pafs = torch.from_numpy(rng.normal(size=(1, 4, 96, 96)).astype(np.float32))
    preds = _grouping_output(cms, pafs, [(0, 1), (1, 2)])
    assert len(preds) == 1
    n_peaks = int(((cms > 0.2) & (cms == torch.nn.functional.max_pool2d(cms, 3, 1, 1))).sum())
    assert n_peaks > 300
    assert preds[0].points.shape[1:] == (3, 2)


def test_disconnected_skeleton_groups_the_rooted_part() -> None:
    cms = torch.zeros(1, 4, 64, 64)
    for node, (y, x) in enumerate([(10, 10), (10, 30), (40, 10), (40, 30)]):
        cms[0, node, y, x] = 1.0
    pafs = torch.zeros(1, 4, 64, 64)
    pafs[0, 0, 10, 10:31] = 1.0  # edge 0: node 0 → node 1 along +x
    pafs[0, 2, 40, 10:31] = 1.0  # edge 1: node 2 → node 3, not reachable from node 0
    preds = _grouping_output(cms, pafs, [(0, 1), (2, 3)])
    points = preds[0].points
    assert points.shape == (1, 4, 2)
    np.testing.assert_allclose(points[0, :2], [[10, 10], [30, 10]], atol=1e-4)
    assert np.isnan(points[0, 2:]).all()

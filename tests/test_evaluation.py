"""Evaluation: parity with sleap-nn 0.3.5's ``eval`` outputs, edge cases, saving and loading."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import sleap_io as sio

from sleapflow.errors import ConfigError, SleapflowError, VideoDecodeError
from sleapflow.evaluation import (
    Evaluator,
    compute_distance_match_score,
    compute_instance_area,
    compute_oks,
    find_frame_pairs,
    format_summary,
    load_metrics,
    match_frame_pairs,
    match_instances,
    run_evaluation,
    save_metrics,
)

# (ground truth, predictions) relative to ../shared, as listed in reference/manifest.json.
PARITY_CASES = {
    "eval_topdown_minimal": (
        "assets/datasets/minimal_instance.pkg.slp",
        "reference/topdown__minimal_instance.slp",
    ),
    "eval_bottomup_minimal": (
        "assets/datasets/minimal_instance.pkg.slp",
        "reference/bottomup__minimal_instance.slp",
    ),
    "eval_single_robot": (
        "assets/datasets/small_robot_minimal.slp",
        "reference/single_instance__small_robot_minimal.slp",
    ),
    "eval_flies24": ("assets/eval/flies24_gt.slp", "assets/eval/flies24_pred.slp"),
}
ATOL = 1e-6


def _assert_same(ours: Any, ref: Any, path: str = "") -> None:
    """Walk two metric trees: same keys (and order), types, shapes, dtypes and values."""
    if isinstance(ref, dict):
        assert isinstance(ours, dict), path
        assert list(ours) == list(ref), path
        for key in ref:
            _assert_same(ours[key], ref[key], f"{path}/{key}")
        return
    assert type(ours) is type(ref), f"{path}: {type(ours)} != {type(ref)}"
    if isinstance(ref, np.ndarray):
        assert ours.shape == ref.shape, path
        assert ours.dtype == ref.dtype, path
        if ref.dtype == bool:
            assert np.array_equal(ours, ref), path
        else:
            np.testing.assert_allclose(ours, ref, rtol=0, atol=ATOL, equal_nan=True, err_msg=path)
    elif isinstance(ref, list):
        assert ours == ref, path
    elif isinstance(ref, float) and math.isnan(ref):
        assert math.isnan(ours), path
    else:
        assert abs(ours - ref) <= ATOL, f"{path}: {ours} != {ref}"


def _assert_same_json(ours: Any, ref: Any, path: str = "") -> None:
    if isinstance(ref, dict):
        assert list(ours) == list(ref), path
        for key in ref:
            _assert_same_json(ours[key], ref[key], f"{path}/{key}")
    elif isinstance(ref, list):
        assert isinstance(ours, list) and len(ours) == len(ref), path
        for i, (a, b) in enumerate(zip(ours, ref)):
            _assert_same_json(a, b, f"{path}[{i}]")
    elif isinstance(ref, float):
        assert abs(ours - ref) <= ATOL, path
    else:
        assert ours == ref, path


@pytest.fixture(scope="module")
def parity_results(
    assets: Path, reference: Path, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, tuple[dict, Path]]:
    """Run every reference pair once, as ``sleap-nn eval`` does (CLI default match method)."""
    shared = assets.parent
    out = tmp_path_factory.mktemp("parity")
    results = {}
    for name, (gt, pr) in PARITY_CASES.items():
        metrics = run_evaluation(
            shared / gt, shared / pr, match_method="auto", save_metrics=out / f"{name}.npz"
        )
        results[name] = (metrics, out)
    return results


@pytest.mark.parametrize("name", list(PARITY_CASES))
def test_parity_with_reference_npz(
    name: str, reference: Path, parity_results: dict[str, tuple[dict, Path]]
) -> None:
    ref = np.load(reference / f"{name}.npz", allow_pickle=True)["metrics"].item()
    metrics, _ = parity_results[name]
    _assert_same(metrics, ref)


@pytest.mark.parametrize("name", list(PARITY_CASES))
def test_parity_saved_files(
    name: str, reference: Path, parity_results: dict[str, tuple[dict, Path]]
) -> None:
    _, out = parity_results[name]
    with np.load(out / f"{name}.npz", allow_pickle=True) as data:
        assert list(data.keys()) == ["metrics"]
    ref = np.load(reference / f"{name}.npz", allow_pickle=True)["metrics"].item()
    _assert_same(load_metrics(out / f"{name}.npz"), ref)
    ours_json = json.loads((out / f"{name}.json").read_text())
    ref_json = json.loads((reference / f"{name}.json").read_text())
    _assert_same_json(ours_json, ref_json)


def test_flies24_evaluates_well_under_a_second(assets: Path) -> None:
    gt = sio.load_slp(str(assets / "eval" / "flies24_gt.slp"))
    pr = sio.load_slp(str(assets / "eval" / "flies24_pred.slp"))
    start = time.perf_counter()
    metrics = Evaluator(gt, pr).evaluate()
    elapsed = time.perf_counter() - start
    assert metrics["distance_metrics"]["dists"].shape == (998, 24)
    assert elapsed < 1.0, f"flies24 evaluation took {elapsed:.3f}s"


# ------------------------------------------------------------------------------------------------
# Synthetic labels
# ------------------------------------------------------------------------------------------------

SKELETON = sio.Skeleton(["a", "b", "c"])

Frames = dict[int, list[tuple[list[list[float]], float | None]]]


def _labels(
    frames: Frames, skeleton: sio.Skeleton = SKELETON, video: str = "clip.mp4"
) -> sio.Labels:
    """Labels from ``{frame_idx: [(points, score or None for a user instance), ...]}``."""
    vid = sio.Video(filename=video, open_backend=False)
    lfs = []
    for idx, insts in frames.items():
        objs = []
        for pts, score in insts:
            arr = np.asarray(pts, dtype=np.float64)
            if score is None:
                objs.append(sio.Instance.from_numpy(arr, skeleton=skeleton))
            else:
                objs.append(sio.PredictedInstance.from_numpy(arr, skeleton=skeleton, score=score))
        lfs.append(sio.LabeledFrame(video=vid, frame_idx=idx, instances=objs))
    return sio.Labels(labeled_frames=lfs, videos=[vid], skeletons=[skeleton])


NAN = float("nan")
A = [[10.0, 10.0], [30.0, 10.0], [20.0, 30.0]]
B = [[100.0, 100.0], [120.0, 100.0], [110.0, 120.0]]


def _shift(pts: list[list[float]], d: float) -> list[list[float]]:
    return [[x + d, y] for x, y in pts]


def test_compute_oks_matches_formula_and_batches() -> None:
    gt = np.array([A, B])
    pr = np.array([_shift(A, 1.0), _shift(B, 2.0), B])
    oks = compute_oks(gt, pr)
    assert oks.shape == (2, 3)
    area = 20.0 * 20.0
    expected = np.exp(-(1.0**2) / ((2 * 0.025) ** 2 * 2 * (area + np.spacing(1))))
    assert oks[0, 0] == pytest.approx(expected, abs=1e-12)
    assert oks[1, 2] == pytest.approx(1.0)
    # A stack of frames gives the same numbers as frame by frame.
    stacked = compute_oks(np.stack([gt, gt[::-1]]), np.stack([pr, pr]))
    np.testing.assert_allclose(stacked[0], oks)
    np.testing.assert_allclose(stacked[1], compute_oks(gt[::-1], pr))
    paper = compute_oks(gt, pr, use_cocoeval=False)
    assert paper.shape == (2, 3) and np.all(paper <= 1.0)


def test_compute_oks_missing_nodes_without_warnings() -> None:
    gt = np.array([A, [[NAN, NAN]] * 3])  # second ground truth has nothing visible
    pr = np.array([[[10.0, 10.0], [NAN, NAN], [20.0, 30.0]]])
    oks = compute_oks(gt, pr)
    assert oks[0, 0] == pytest.approx(2 / 3)  # missing predicted node scores 0
    assert math.isnan(oks[1, 0])
    area = compute_instance_area(gt)
    assert area[0] == 400.0 and math.isnan(area[1])


def test_distance_score_for_zero_area_ground_truth() -> None:
    gt = np.array([[[10.0, 10.0], [NAN, NAN], [NAN, NAN]]])
    pr = np.array([[[13.0, 14.0], [50.0, 50.0], [NAN, NAN]], [[NAN, NAN]] * 3])
    score = compute_distance_match_score(gt, pr)
    np.testing.assert_allclose(score, [[1 - 5 / 50, 0.0]])
    # Through the evaluator: a single-node ground truth can still match (OKS would be ~0).
    ev = Evaluator(_labels({0: [(gt[0].tolist(), None)]}), _labels({0: [(pr[0].tolist(), 0.9)]}))
    assert len(ev.positive_pairs) == 1
    assert ev.mOKS()["mOKS"] == pytest.approx(0.9)


def test_greedy_matching_order_ties_and_threshold() -> None:
    gt = _labels({0: [(A, None), (A, None), (B, None)]})
    # The higher-scoring prediction is matched first; identical GT tie → lowest index.
    pr = _labels({0: [(_shift(A, 3.0), 0.2), (_shift(A, 1.0), 0.9), (_shift(B, 60.0), 0.5)]})
    pairs, fns = match_instances(gt[0], pr[0])
    assert [p[1].score for p in pairs] == pytest.approx([0.9, 0.2])
    assert pairs[0][0] is gt[0].instances[0] and pairs[1][0] is gt[0].instances[1]
    assert fns == [gt[0].instances[2]]  # far prediction has OKS 0: not > threshold 0
    pairs_hi, _ = match_instances(gt[0], pr[0], threshold=pairs[1][2])  # strict comparison
    assert len(pairs_hi) == 1
    pairs_all, fns_all = match_frame_pairs([(gt[0], pr[0])] * 2)
    assert len(pairs_all) == 4 and len(fns_all) == 2


def test_frames_only_in_one_file_are_ignored() -> None:
    gt = _labels({0: [(A, None)], 1: [(A, None)], 2: [(B, None)]})
    pr = _labels({1: [(_shift(A, 0.1), 0.9)], 2: [(_shift(B, 0.1), 0.8)], 3: [(A, 0.7)]})
    ev = Evaluator(gt, pr)
    assert [lf.frame_idx for lf, _ in ev.frame_pairs] == [1, 2]
    metrics = ev.evaluate()
    assert metrics["distance_metrics"]["frame_idxs"] == [1, 2]
    assert metrics["distance_metrics"]["video_paths"] == ["clip.mp4", "clip.mp4"]
    assert ev.false_negatives == []  # frame 0 has no prediction frame: not a miss
    assert metrics["voc_metrics"]["oks_voc.mAR"] == pytest.approx(1.0)


def test_all_missing_instances_are_never_matched() -> None:
    empty = [[NAN, NAN]] * 3
    gt = _labels({0: [(empty, None), (A, None)]})
    pr = _labels({0: [(empty, 0.9), (_shift(A, 1.0), 0.5)]})
    ev = Evaluator(gt, pr)
    metrics = ev.evaluate()
    assert len(ev.positive_pairs) == 1 and len(ev.false_negatives) == 1
    assert ev.false_negatives[0] is ev.frame_pairs[0][0].instances[0]
    assert metrics["visibility_metrics"]["tp"] == 3
    # Recall counts the all-missing ground truth as a miss.
    assert metrics["voc_metrics"]["oks_voc.recalls"][0] == pytest.approx(0.5)


def test_no_matches_gives_reference_empty_structure() -> None:
    gt = _labels({0: [(A, None)]})
    pr = _labels({0: [(B, 0.9)]})
    metrics = Evaluator(gt, pr).evaluate()
    assert all(v == 0 for v in metrics["voc_metrics"].values())
    assert len(metrics["voc_metrics"]) == 18
    assert math.isnan(metrics["mOKS"]["mOKS"])
    assert metrics["distance_metrics"]["dists"].shape == (0,)
    assert metrics["pck_metrics"]["pcks"].shape == (1, 0, 10)
    assert metrics["visibility_metrics"]["tp"] == 0
    assert math.isnan(metrics["visibility_metrics"]["precision"])


def test_user_labels_only_filters_copies_and_never_mutates() -> None:
    gt = _labels({0: [(A, None), (B, 0.3)], 1: [(B, 0.4)]})
    pr = _labels({0: [(_shift(A, 1.0), 0.9), (_shift(B, 1.0), 0.8)], 1: [(B, 0.9)]})
    ev = Evaluator(gt, pr)
    assert len(ev.frame_pairs) == 1  # frame 1 has only a predicted instance in the GT
    assert len(ev.positive_pairs) == 1
    assert len(gt[0].instances) == 2  # caller's labels untouched
    ev_all = Evaluator(gt, pr, user_labels_only=False)
    assert len(ev_all.frame_pairs) == 2 and len(ev_all.positive_pairs) == 3


def test_no_frame_pairs_is_a_clear_error() -> None:
    with pytest.raises(ConfigError, match="no frame of the ground truth matches"):
        Evaluator(_labels({0: [(A, None)]}), _labels({5: [(A, 0.9)]}))
    # Ground truth made only of predicted instances has no user-labelled frame to pair.
    with pytest.raises(SleapflowError, match="Empty Frame Pairs"):
        Evaluator(_labels({0: [(A, 0.5)]}), _labels({0: [(A, 0.9)]}))


def test_skeleton_mismatch_is_a_config_error() -> None:
    two = sio.Skeleton(["a", "b"])
    gt = _labels({0: [(A, None)]})
    pr = _labels({0: [(A[:2], 0.9)]}, skeleton=two)
    with pytest.raises(ConfigError, match="nodes"):
        Evaluator(gt, pr)


def test_empty_predictions_return_none_and_write_nothing(tmp_path: Path) -> None:
    gt_path = tmp_path / "gt.slp"
    _labels({0: [(A, None)]}).save(str(gt_path))
    no_frames = tmp_path / "none.slp"
    video = sio.Video(filename="clip.mp4", open_backend=False)
    sio.Labels(videos=[video], skeletons=[SKELETON]).save(str(no_frames))
    no_instances = tmp_path / "empty.slp"
    _labels({0: [], 1: []}).save(str(no_instances))
    for pred in (no_frames, no_instances):
        out = tmp_path / "out" / pred.stem
        assert run_evaluation(gt_path, pred, save_metrics=out) is None
        assert not (tmp_path / "out").exists()


def test_run_evaluation_rejects_unsupported_methods_and_missing_files(tmp_path: Path) -> None:
    for method in ("mask", "semantic"):
        with pytest.raises(ConfigError, match="not supported"):
            run_evaluation(tmp_path / "gt.slp", tmp_path / "pr.slp", match_method=method)
    with pytest.raises(ConfigError, match="Unknown match_method"):
        run_evaluation(tmp_path / "gt.slp", tmp_path / "pr.slp", match_method="iou")
    with pytest.raises(VideoDecodeError, match="does not exist"):
        run_evaluation(tmp_path / "gt.slp", tmp_path / "pr.slp")


def test_save_load_round_trip(tmp_path: Path) -> None:
    gt = _labels({0: [(A, None), ([[1.0, 1.0], [NAN, NAN], [5.0, 9.0]], None)]})
    pr = _labels({0: [(_shift(A, 1.0), 0.9), ([[1.0, 2.0], [3.0, 3.0], [NAN, NAN]], 0.5)]})
    metrics = Evaluator(gt, pr).evaluate()
    npz, js = save_metrics(metrics, tmp_path / "deep" / "metrics.val.0")
    assert npz == tmp_path / "deep" / "metrics.val.0.npz" and npz.exists()
    assert js == tmp_path / "deep" / "metrics.val.json" and js.exists()
    with np.load(npz, allow_pickle=True) as data:
        assert list(data.keys()) == ["metrics"]
    _assert_same(load_metrics(npz), metrics)
    text = js.read_text()
    assert "NaN" not in text
    loaded = json.loads(text)
    assert "pcks" not in loaded["pck_metrics"]
    dists = loaded["distance_metrics"]["dists"]
    assert any(v is None for row in dists for v in row)  # NaN distances became null
    assert isinstance(loaded["visibility_metrics"]["tp"], int)
    # A model folder: metrics.test.0.npz is missing, so test falls back to val.
    save_metrics(metrics, tmp_path / "model" / "metrics.val.0.npz")
    _assert_same(load_metrics(tmp_path / "model"), metrics)
    with pytest.raises(ConfigError, match="not found"):
        load_metrics(tmp_path / "nowhere")


# ------------------------------------------------------------------------------------------------
# Centroid mode
# ------------------------------------------------------------------------------------------------

CENTROID = sio.Skeleton(["centroid"])


def test_auto_selects_centroid_mode_for_single_node_predictions(tmp_path: Path) -> None:
    gt = _labels({0: [(A, None), (B, None), ([[NAN, NAN]] * 3, None)], 1: [(A, None)]})
    pr = _labels(
        {
            0: [([[20.0, 17.0]], 0.9), ([[400.0, 400.0]], 0.8)],  # a hit and a false positive
            1: [([[NAN, NAN]], 0.7)],  # no usable point: ignored, not a false positive
        },
        skeleton=CENTROID,
    )
    gt.save(str(tmp_path / "gt.slp"))
    pr.save(str(tmp_path / "pr.slp"))
    metrics = run_evaluation(tmp_path / "gt.slp", tmp_path / "pr.slp", match_method="auto")
    assert list(metrics) == ["detection_metrics", "distance_metrics"]
    det = metrics["detection_metrics"]
    # GT centroid of A is the mean of its nodes (20, 16.67); B and the all-missing GT are misses.
    assert (det["n_tp"], det["n_fp"], det["n_fn"]) == (1, 1, 3)
    assert det["precision"] == pytest.approx(0.5) and det["recall"] == pytest.approx(0.25)
    assert det["avg"] == pytest.approx(1 / 3)
    assert metrics["distance_metrics"]["dists"].shape == (1,)
    # With an anchor node the centroid is that node.
    anchored = run_evaluation(
        tmp_path / "gt.slp", tmp_path / "pr.slp", match_method="centroid", anchor_part="c"
    )
    assert anchored["detection_metrics"]["avg"] == pytest.approx(13.0)
    assert "Precision: 0.5000" in format_summary(metrics)


def test_centroid_annotations_are_ground_truth_in_centroid_mode() -> None:
    gt = _labels({0: []})
    gt[0].centroids = [sio.UserCentroid(x=50.0, y=50.0)]
    pr = _labels({0: [([[53.0, 54.0]], 0.9)]}, skeleton=CENTROID)
    ev = Evaluator(gt, pr, match_threshold=10.0, match_method="centroid")
    det = ev.evaluate()["detection_metrics"]
    assert (det["n_tp"], det["n_fp"], det["n_fn"]) == (1, 0, 0)
    assert det["avg"] == pytest.approx(5.0)
    with pytest.raises(ConfigError, match="oks"):
        ev.voc_metrics()


def test_format_summary_lists_the_headline_metrics(reference: Path) -> None:
    ref = np.load(reference / "eval_flies24.npz", allow_pickle=True)["metrics"].item()
    text = format_summary(ref)
    for line in (
        "mOKS: 0.7420",
        "mAP (OKS VOC): 0.4783",
        "mAR (OKS VOC): 0.5604",
        "Average Distance: 4.55 px",
        "dist.p50: 2.37 px",
        "dist.p95: 5.18 px",
        "dist.p99: 111.98 px",
        "mPCK: 0.6398",
        "PCK@5px: 0.7644",
        "PCK@10px: 0.8001",
        "Visibility Precision: 0.9984",
        "Visibility Recall: 0.9476",
    ):
        assert line in text


def test_find_frame_pairs_uses_last_duplicate_prediction_frame() -> None:
    gt = _labels({0: [(A, None)]})
    pr = _labels({0: [(A, 0.1)]})
    pr.append(sio.LabeledFrame(video=pr.videos[0], frame_idx=0, instances=[]))
    pairs = find_frame_pairs(gt, pr)
    assert len(pairs) == 1 and pairs[0][1].instances == []

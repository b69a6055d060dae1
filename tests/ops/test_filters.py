"""Overlap NMS, node-count / confidence filters and max_instances ordering (sleapflow.ops.filters)."""

from __future__ import annotations

import numpy as np
import pytest

from sleapflow.ops.filters import (
    confidence_keep,
    instance_bboxes,
    nms_overlapping,
    node_count_keep,
    order_for_max_instances,
)

NAN = np.nan


def _box_instance(x0: float, y0: float, x1: float, y1: float) -> list[list[float]]:
    # Two nodes at opposite corners span exactly this box.
    return [[x0, y0], [x1, y1]]


def test_bboxes_ignore_missing_nodes_and_empty_instance_is_zero_box() -> None:
    pts = np.array([[[1, 2], [NAN, NAN], [5, 0]], [[NAN, NAN]] * 3], dtype=np.float32)
    np.testing.assert_array_equal(instance_bboxes(pts), [[1, 0, 5, 2], [0, 0, 0, 0]])


def test_iou_nms_suppresses_strictly_above_threshold_in_score_order() -> None:
    pts = np.array(
        [
            _box_instance(0, 0, 10, 10),  # score 0.5
            _box_instance(0, 0, 10, 5),  # IoU with #0 = 0.5; score 0.9 -> kept first
            _box_instance(100, 100, 110, 110),  # disjoint
        ],
        dtype=np.float32,
    )
    scores = np.array([0.5, 0.9, 0.1], dtype=np.float32)
    # IoU exactly at the threshold is kept (`<=` keeps) ...
    assert nms_overlapping(pts, scores, threshold=0.5).tolist() == [1, 0, 2]
    # ... and strictly above it is suppressed.
    assert nms_overlapping(pts, scores, threshold=0.49).tolist() == [1, 2]


def test_nms_order_is_numpy_argsort_reversed_with_nan_first() -> None:
    far = [_box_instance(100 * i, 0, 100 * i + 5, 5) for i in range(4)]
    pts = np.array(far, dtype=np.float32)
    scores = np.array([0.5, NAN, 0.5, 0.7], dtype=np.float32)
    kept = nms_overlapping(pts, scores, threshold=0.5)
    assert kept.tolist() == np.argsort(scores)[::-1].tolist()
    assert kept[0] == 1  # NaN sorts last in argsort, so first once reversed


def test_nms_all_nan_instances_have_zero_iou() -> None:
    pts = np.array([[[NAN, NAN]] * 2, [[NAN, NAN]] * 2], dtype=np.float32)
    assert nms_overlapping(pts, np.array([1.0, 0.5], np.float32), threshold=0.0).tolist() == [0, 1]


def test_oks_nms_is_asymmetric_scale_from_kept_instance() -> None:
    # Kept (higher score) instance has a single visible node: scale undefined -> similarity 0,
    # so even an identical candidate survives.
    a = [[10.0, 10.0], [NAN, NAN]]
    b = [[10.0, 10.0], [20.0, 20.0]]
    pts = np.array([a, b], dtype=np.float32)
    assert nms_overlapping(pts, np.array([0.9, 0.1]), threshold=0.5, method="oks").tolist() == [0, 1]
    # The other way round the kept instance has a box, the jointly visible node coincides: OKS 1.
    assert nms_overlapping(pts, np.array([0.1, 0.9]), threshold=0.5, method="oks").tolist() == [1]


def test_oks_value_matches_formula() -> None:
    a = np.array([[0.0, 0.0], [10.0, 20.0], [5.0, 5.0]])
    b = np.array([[1.0, 0.0], [10.0, 22.0], [NAN, NAN]])
    area = 10.0 * 20.0
    d2 = np.array([1.0, 4.0])
    oks = float(np.mean(np.exp(-d2 / (2 * area * 0.1**2))))
    pts = np.stack([a, b])
    scores = np.array([1.0, 0.0])
    assert nms_overlapping(pts, scores, threshold=oks, method="oks").tolist() == [0, 1]
    assert nms_overlapping(pts, scores, threshold=np.nextafter(oks, 0), method="oks").tolist() == [0]


def test_nms_edge_cases() -> None:
    assert nms_overlapping(np.zeros((0, 3, 2)), np.zeros(0)).tolist() == []
    assert nms_overlapping(np.zeros((1, 3, 2)), np.ones(1)).tolist() == [0]
    with pytest.raises(ValueError, match="Unknown method"):
        nms_overlapping(np.zeros((2, 3, 2)), np.ones(2), method="bbox")  # type: ignore[arg-type]


def test_node_count_keep() -> None:
    pts = np.array(
        [
            [[0, 0], [1, 1], [2, 2], [3, 3]],
            [[0, 0], [NAN, NAN], [2, 2], [NAN, NAN]],
            [[0, 0], [NAN, NAN], [NAN, NAN], [NAN, NAN]],
        ],
        dtype=np.float32,
    )
    assert node_count_keep(pts).tolist() == [True, True, True]
    assert node_count_keep(pts, min_visible_nodes=2).tolist() == [True, True, False]
    assert node_count_keep(pts, min_visible_node_fraction=0.5).tolist() == [True, True, False]
    assert node_count_keep(pts, min_visible_node_fraction=0.51).tolist() == [True, False, False]
    both = node_count_keep(pts, min_visible_nodes=1, min_visible_node_fraction=0.75)
    assert both.tolist() == [True, False, False]
    assert node_count_keep(np.zeros((0, 4, 2))).tolist() == []


def test_confidence_keep() -> None:
    pts = np.array(
        [
            [[0, 0], [1, 1], [2, 2]],
            [[0, 0], [NAN, NAN], [2, 2]],
            [[NAN, NAN]] * 3,
            [[0, 0], [1, 1], [2, 2]],
        ],
        dtype=np.float32,
    )
    point_scores = np.array(
        [[0.9, 0.9, 0.9], [0.2, 1.0, NAN], [1.0, 1.0, 1.0], [NAN, NAN, NAN]], dtype=np.float32
    )
    scores = np.array([1.0, NAN, 5.0, 0.2], dtype=np.float32)
    # Instance score: NaN is kept (NaN < x is False).
    assert confidence_keep(scores, point_scores, pts, min_instance_score=0.5).tolist() == [
        True, True, True, False,
    ]
    # Mean over visible nodes with NaN scores dropped: [0.9, 0.2 (1.0 is on a missing node),
    # 0.0 (no visible node), 0.0 (no finite score)].
    assert confidence_keep(scores, point_scores, pts, min_mean_node_score=0.5).tolist() == [
        True, False, False, False,
    ]
    # Without point scores the mean-node test is skipped, as in the reference.
    assert confidence_keep(scores, None, pts, min_mean_node_score=0.5).all()
    assert confidence_keep(scores, point_scores, pts).all()


def test_confidence_compares_float32_scores_in_float32() -> None:
    # np.float32(0.7) < 0.7 in float64, but NumPy 2 compares a float32 score with a Python float
    # in float32, where they are equal; the reference keeps this instance.
    pts = np.zeros((1, 2, 2), np.float32)
    assert confidence_keep(np.array([0.7], np.float32), None, pts, min_instance_score=0.7)[0]
    assert not confidence_keep(np.array([0.7 - 1e-9]), None, pts, min_instance_score=0.7)[0]


def test_max_instances_track_mode_is_stable_descending_sort() -> None:
    scores = np.array([0.5, 0.9, 0.5, 0.7], dtype=np.float32)
    # No cap: assembly order.
    assert order_for_max_instances(scores, None).tolist() == [0, 1, 2, 3]
    # A cap always re-sorts (even when nothing is cut); ties keep their order.
    assert order_for_max_instances(scores, 10).tolist() == [1, 3, 0, 2]
    assert order_for_max_instances(scores, 3).tolist() == [1, 3, 0]
    assert order_for_max_instances(scores, 0).tolist() == []
    present = np.array([True, False, True, True])
    assert order_for_max_instances(scores, 2, present=present).tolist() == [3, 0]
    assert order_for_max_instances(scores, None, present=present).tolist() == [0, 2, 3]


def test_max_instances_predict_mode_is_argsort_reversed_only_when_cutting() -> None:
    scores = np.array([0.5, 0.9, 0.5, 0.7], dtype=np.float32)
    assert order_for_max_instances(scores, 4, mode="predict").tolist() == [0, 1, 2, 3]
    assert order_for_max_instances(scores, 0, mode="predict").tolist() == [0, 1, 2, 3]
    expected = np.argsort(scores)[::-1][:3].tolist()
    assert order_for_max_instances(scores, 3, mode="predict").tolist() == expected
    with pytest.raises(ValueError, match="mode"):
        order_for_max_instances(scores, 3, mode="other")  # type: ignore[arg-type]

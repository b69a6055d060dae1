"""Box NMS, pre-tracking cull and the streaming post-tracking clean-up."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sleapflow.errors import ConfigError
from sleapflow.tracking import (
    InstanceCuller,
    PostTrackingCleanup,
    SingleBreakConnector,
    TrackerConfig,
    nms_fast,
    pre_cull,
)


def box_pose(x0: float, y0: float, x1: float, y1: float) -> np.ndarray:
    """A two-node instance whose bounding box is (x0, y0, x1, y1)."""
    return np.array([[x0, y0], [x1, y1]], dtype=float)


# --- nms -------------------------------------------------------------------------------------

def test_nms_suppresses_overlap_relative_to_the_other_box() -> None:
    boxes = np.array([[0, 0, 9, 9], [0, 0, 4, 4], [50, 50, 59, 59]], dtype=float)
    scores = np.array([0.9, 0.5, 0.7])
    # The small box lies inside the big one: overlap / area(small) = 1 > 0.5.
    assert nms_fast(boxes, scores, 0.5) == [0, 2]
    # Asymmetric: with the small box first, overlap / area(big) = 25/100 = 0.25 <= 0.5: kept.
    assert sorted(nms_fast(boxes, np.array([0.5, 0.9, 0.7]), 0.5)) == [0, 1, 2]


def test_nms_target_count() -> None:
    boxes = np.array([[0, 0, 9, 9], [1, 1, 9, 9], [2, 2, 9, 9], [100, 100, 109, 109]], float)
    scores = np.array([0.9, 0.8, 0.7, 0.6])
    assert sorted(nms_fast(boxes, scores, 0.5)) == [0, 3]
    # Fewer boxes than the target: everything is kept.
    assert nms_fast(boxes[:2], scores[:2], 0.5, target_count=3) == [0, 1]
    # Below target after suppression: the best suppressed boxes are added back up to the target.
    assert nms_fast(boxes, scores, 0.5, target_count=3) == [0, 3, 1]
    # Kept 3, suppressed 2, target 5: both are added back (sleap-nn's count formula adds 0).
    five = np.concatenate([boxes, [[200, 200, 209, 209]]])
    assert nms_fast(five, np.append(scores, 0.5), 0.5, target_count=5) == [0, 3, 4, 1, 2]
    assert nms_fast(np.empty((0, 4)), np.empty(0), 0.5) == []


# --- pre-cull (SLEAP's intent) ---------------------------------------------------------------

def test_pre_cull_keeps_highest_scores_in_input_order() -> None:
    pts = np.stack([box_pose(i * 100, 0, i * 100 + 10, 10) for i in range(4)])
    scores = np.array([0.9, 0.5, 0.7, 0.2])
    assert pre_cull(pts, scores, 1).tolist() == [0]
    assert pre_cull(pts, scores, 3).tolist() == [0, 1, 2]
    assert pre_cull(pts, scores, 4).tolist() == [0, 1, 2, 3]
    assert pre_cull(pts[:0], scores[:0], 2).tolist() == []


def test_pre_cull_nms_then_scores() -> None:
    pts = np.stack([box_pose(0, 0, 10, 10), box_pose(1, 1, 10, 10), box_pose(100, 0, 110, 10),
                    box_pose(200, 0, 210, 10)])
    scores = np.array([0.9, 0.8, 0.3, 0.6])
    # NMS drops #1 (inside #0); three remain for a target of 2: the lowest (#2) goes.
    assert pre_cull(pts, scores, 2, iou_threshold=0.5).tolist() == [0, 3]


# --- post-tracking cull ----------------------------------------------------------------------

def test_culler_keeps_top_scores_and_removes_same_poses() -> None:
    a, b, c = box_pose(0, 0, 5, 5), box_pose(50, 0, 55, 5), box_pose(100, 0, 105, 5)
    points = np.stack([a, b, c, b.copy()])  # a user instance with the same pose as b
    scores = np.array([0.9, 0.1, 0.8, 1.0])
    is_predicted = np.array([True, True, True, False])
    keep = InstanceCuller(2)(points, scores, is_predicted)
    assert keep.tolist() == [True, False, True, False]
    # No more predicted instances than the target: untouched.
    assert InstanceCuller(3)(points, scores, is_predicted).all()


def test_culler_with_iou_marks_suppressed_first() -> None:
    points = np.stack([box_pose(0, 0, 10, 10), box_pose(1, 1, 10, 10), box_pose(50, 0, 60, 10)])
    keep = InstanceCuller(2, iou_threshold=0.5)(points, np.array([0.9, 0.95, 0.1]))
    assert keep.tolist() == [False, True, True]


# --- connect single breaks -------------------------------------------------------------------

def connect_single_breaks_batch(frames: list[list[object]]) -> list[list[object]]:
    """The reference algorithm over a whole list of frames (each a list of track keys)."""
    frames = [list(f) for f in frames]
    if not frames:
        return frames
    fix: dict = {}
    last_good = set(frames[0])
    for keys in frames:
        tracks = set(keys)
        if tracks & set(fix):
            for i, k in enumerate(keys):
                if k in fix and fix[k] not in tracks:
                    keys[i] = fix[k]
                    tracks = set(keys)
        extra, missing = tracks - last_good, last_good - tracks
        if len(extra) == 1 and len(missing) == 1:
            for i, k in enumerate(keys):
                if k in extra:
                    new = missing.pop()
                    fix[k] = new
                    keys[i] = new
                    break
        elif len(tracks) >= len(last_good):
            last_good = tracks
    return frames


def test_connector_repairs_a_single_break() -> None:
    connector = SingleBreakConnector()
    stream = [[0, 1], [0, 1], [0, 2], [0, 2], [2, 0], [0, 1, 3]]
    out = [connector(keys) for keys in stream]
    assert out == [[0, 1], [0, 1], [0, 1], [0, 1], [1, 0], [0, 1, 3]]
    assert connector.fix_map == {2: 1}


@settings(max_examples=100, deadline=None)
@given(st.lists(st.lists(st.sampled_from([0, 1, 2, 3, 4, None]), max_size=4), max_size=30))
def test_connector_streaming_equals_batch(frames: list[list[object]]) -> None:
    connector = SingleBreakConnector()
    assert [connector(keys) for keys in frames] == connect_single_breaks_batch(frames)
    assert connector.state_size <= 2 * 6


# --- composition -----------------------------------------------------------------------------

def test_cleanup_steps_follow_the_config() -> None:
    assert not PostTrackingCleanup(TrackerConfig()).enabled
    both = PostTrackingCleanup(TrackerConfig(tracking_clean_instance_count=2))
    assert both.culler is not None and both.connector is not None
    only_connect = PostTrackingCleanup(TrackerConfig(post_connect_single_breaks=True,
                                                     tracking_target_instance_count=2))
    assert only_connect.culler is None and only_connect.connector is not None
    with pytest.raises(ConfigError, match="--tracking_target_instance_count 3"):
        PostTrackingCleanup(TrackerConfig(post_connect_single_breaks=True, max_tracks=3))
    with pytest.raises(ConfigError, match="tracking_target_instance_count"):
        PostTrackingCleanup(TrackerConfig(post_connect_single_breaks=True))


def test_cleanup_culls_then_connects() -> None:
    cleanup = PostTrackingCleanup(TrackerConfig(tracking_clean_instance_count=2))
    a, b, c = box_pose(0, 0, 5, 5), box_pose(50, 0, 55, 5), box_pose(100, 0, 105, 5)
    flags = np.array([True, True, True])
    keep, keys = cleanup(np.stack([a, b]), np.array([0.9, 0.9]), flags[:2], ["t0", "t1"])
    assert keep.tolist() == [0, 1] and keys == ["t0", "t1"]
    # Three instances: the weakest is culled, and the new key replaces the lost one.
    keep, keys = cleanup(np.stack([a, b, c]), np.array([0.9, 0.2, 0.8]), flags, ["t0", "t1", "t5"])
    assert keep.tolist() == [0, 2] and keys == ["t0", "t1"]

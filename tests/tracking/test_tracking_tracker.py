"""Tracker behaviour: candidate quirks, output order and drop rules, caps, flow, bounded state."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sleapflow.tracking import UNASSIGNED, FrameTracks, Tracker, TrackerConfig

NAN = np.nan


def pose(x: float, y: float, n_nodes: int = 3, missing: int = 0) -> np.ndarray:
    """A small rigid pose at (x, y); the last ``missing`` nodes are NaN."""
    offsets = np.array([[0.0, 0.0], [10.0, 4.0], [4.0, 12.0], [14.0, 14.0]])[:n_nodes]
    pts = np.array([x, y]) + offsets
    if missing:
        pts[-missing:] = NAN
    return pts


def frame(*poses: np.ndarray) -> np.ndarray:
    return np.stack(poses) if poses else np.empty((0, 3, 2))


def ids(result: FrameTracks) -> list[int]:
    return result.track_ids.tolist()


# --- fixed window ----------------------------------------------------------------------------

def test_first_frame_spawns_tracks_in_input_order() -> None:
    tracker = Tracker()
    res = tracker.track(frame(pose(0, 0), pose(100, 100)), frame_idx=0)
    assert res.indices.tolist() == [0, 1] and ids(res) == [0, 1]
    assert res.tracking_scores.tolist() == [1.0, 1.0]


def test_identity_follows_motion_and_scores_are_similarities() -> None:
    tracker = Tracker()
    tracker.track(frame(pose(0, 0), pose(100, 100)), frame_idx=0)
    res = tracker.track(frame(pose(101, 99), pose(1, 1)), frame_idx=1)
    assert res.indices.tolist() == [0, 1] and ids(res) == [1, 0]
    assert np.all((res.tracking_scores > 0) & (res.tracking_scores < 1))


def test_extra_instance_spawns_new_track_and_ids_are_never_reused() -> None:
    tracker = Tracker(TrackerConfig(window_size=2))
    tracker.track(frame(pose(0, 0)), frame_idx=0)
    res = tracker.track(frame(pose(0, 0), pose(300, 300)), frame_idx=1)
    assert ids(res) == [0, 1] and res.tracking_scores[1] == 1.0
    # Track 1 leaves the window (2 processed frames) and comes back with a new id.
    tracker.track(frame(pose(0, 0)), frame_idx=2)
    tracker.track(frame(pose(0, 0)), frame_idx=3)
    res = tracker.track(frame(pose(0, 0), pose(300, 300)), frame_idx=4)
    assert ids(res) == [0, 2]


def test_empty_frames_use_window_slots_once_tracking_started() -> None:
    tracker = Tracker(TrackerConfig(window_size=3))
    tracker.track(frame(), frame_idx=0)  # before initialisation: nothing stored
    assert tracker.state().records == 0
    tracker.track(frame(pose(0, 0)), frame_idx=1)
    for i in range(2, 5):
        assert len(tracker.track(frame(), frame_idx=i)) == 0
    assert tracker.state().records == 3 and tracker.state().instances == 0
    # Every stored frame is empty: no column is left, so the animal gets a new id.
    assert ids(tracker.track(frame(pose(0, 0)), frame_idx=5)) == [1]


def test_first_frame_without_eligible_instances_leaves_tracker_uninitialised() -> None:
    tracker = Tracker(TrackerConfig(min_new_track_points=2))
    res = tracker.track(frame(pose(0, 0, missing=2)), frame_idx=0)  # 1 valid point
    assert len(res) == 0 and tracker.state().records == 0
    assert ids(tracker.track(frame(pose(0, 0)), frame_idx=1)) == [0]


def test_none_column_quirk() -> None:
    """An instance left without id is stored; None becomes a column, and an instance matched
    to it stays without id (dropped) when no other instance is left over."""
    tracker = Tracker(TrackerConfig(min_new_track_points=1))
    tracker.track(frame(pose(0, 0), pose(100, 0)), frame_idx=0)
    # A third instance with a single valid node cannot spawn: stored with id None.
    res = tracker.track(frame(pose(0, 0), pose(100, 0), pose(200, 200, missing=2)), frame_idx=1)
    assert ids(res) == [0, 1] and res.indices.tolist() == [0, 1]
    assert None in tracker._fixed.columns()  # type: ignore[union-attr]
    # Next frame: three columns (0, 1, None) for three instances; the one matched to None is
    # dropped from the output.
    res = tracker.track(frame(pose(0, 0), pose(100, 0), pose(200, 200)), frame_idx=2)
    assert res.indices.tolist() == [0, 1] and ids(res) == [0, 1]


def test_columns_follow_cpython_set_order() -> None:
    """Columns are list(set(ids)) as sleap-nn builds them: with ids 8 then 0 in the window,
    8 comes first (both hash to slot 0 of an 8-slot table), not sorted order."""
    tracker = Tracker()
    fixed = tracker._fixed
    assert fixed is not None
    fixed.next_id = 8
    tracker.track(frame(pose(0, 0)), frame_idx=0)  # id 8
    fixed.next_id = 0
    tracker.track(frame(pose(0, 0), pose(300, 300)), frame_idx=1)  # second instance: id 0
    assert fixed.columns() == [8, 0] == list({8, 0})


def test_unscorable_match_respawns_when_instance_qualifies() -> None:
    """sleap-nn 0.3.5: a pair matched through an infinite cost counts as unmatched; the
    instance starts a new track if it has more than min_new_track_points valid points,
    otherwise it keeps the match with tracking score -inf."""
    cfg = TrackerConfig(min_match_points=1, min_new_track_points=1)
    tracker = Tracker(cfg)
    tracker.track(frame(pose(0, 0, missing=0), pose(100, 0, missing=0)), frame_idx=0)
    # Track 1's only candidates now have 1 valid point: after this frame, and with window 1,
    # its candidates are all ignored by min_match_points and it cannot be scored.
    tracker = Tracker(TrackerConfig(min_match_points=1, min_new_track_points=1, window_size=1))
    tracker.track(frame(pose(0, 0), pose(100, 0)), frame_idx=0)
    tracker.track(frame(pose(0, 0), pose(100, 0, missing=2)), frame_idx=1)
    res = tracker.track(frame(pose(0, 0), pose(100, 0)), frame_idx=2)
    assert ids(res) == [0, 2] and res.tracking_scores[1] == 1.0  # respawned
    tracker = Tracker(TrackerConfig(min_match_points=1, min_new_track_points=1, window_size=1))
    tracker.track(frame(pose(0, 0), pose(100, 0)), frame_idx=0)
    tracker.track(frame(pose(0, 0), pose(100, 0, missing=2)), frame_idx=1)
    res = tracker.track(frame(pose(0, 0), pose(100, 0, missing=2)), frame_idx=2)
    assert ids(res) == [0, 1] and res.tracking_scores[1] == -np.inf  # too few points: kept


def test_all_nan_instance_is_matched_with_minus_inf() -> None:
    tracker = Tracker(TrackerConfig(min_new_track_points=0))
    tracker.track(frame(pose(0, 0), pose(100, 0)), frame_idx=0)
    res = tracker.track(frame(pose(0, 0), np.full((3, 2), NAN)), frame_idx=1)
    # No valid point: cannot respawn (0 is not > 0), keeps the inf match.
    assert ids(res) == [0, 1] and res.tracking_scores[1] == -np.inf


def test_greedy_output_is_in_input_order_for_fixed_window() -> None:
    tracker = Tracker(TrackerConfig(track_matching_method="greedy"))
    tracker.track(frame(pose(0, 0), pose(100, 0)), frame_idx=0)
    res = tracker.track(frame(pose(100, 0), pose(0, 0)), frame_idx=1)
    assert res.indices.tolist() == [0, 1] and ids(res) == [1, 0]


# --- local queues ----------------------------------------------------------------------------

def test_local_queues_output_order_matched_then_new() -> None:
    tracker = Tracker(TrackerConfig(candidates_method="local_queues",
                                    track_matching_method="greedy"))
    tracker.track(frame(pose(0, 0), pose(100, 0)), frame_idx=0)
    res = tracker.track(frame(pose(500, 500), pose(100, 1), pose(0, 1)), frame_idx=1)
    # Greedy pairs come cheapest first (both exact, ties by argsort), then the new track.
    assert sorted(zip(res.indices.tolist()[:2], ids(res)[:2])) == [(1, 1), (2, 0)]
    assert res.indices.tolist()[2] == 0 and ids(res)[2] == 2


def test_local_queues_init_returns_too_small_instances_unassigned() -> None:
    tracker = Tracker(TrackerConfig(candidates_method="local_queues", min_new_track_points=1))
    res = tracker.track(frame(pose(0, 0, missing=2), pose(100, 0)), frame_idx=0)
    assert res.indices.tolist() == [0, 1] and ids(res) == [UNASSIGNED, 0]
    assert np.isnan(res.tracking_scores[0])
    # After initialisation such instances are dropped.
    res = tracker.track(frame(pose(100, 0), pose(300, 300, missing=2)), frame_idx=1)
    assert res.indices.tolist() == [0] and ids(res) == [0]


def test_local_queues_tracks_never_expire() -> None:
    tracker = Tracker(TrackerConfig(candidates_method="local_queues", window_size=2))
    tracker.track(frame(pose(0, 0), pose(100, 0)), frame_idx=0)
    for i in range(1, 20):
        tracker.track(frame(pose(0, 0)), frame_idx=i)
    res = tracker.track(frame(pose(0, 0), pose(100, 0)), frame_idx=20)
    assert sorted(ids(res)) == [0, 1]


def test_max_tracks_caps_ids_and_drops_extra_instances() -> None:
    tracker = Tracker(TrackerConfig(max_tracks=2))  # fixed_window -> local_queues
    res = tracker.track(frame(pose(0, 0), pose(100, 0), pose(200, 0)), frame_idx=0)
    assert res.indices.tolist() == [0, 1] and ids(res) == [0, 1]
    res = tracker.track(frame(pose(0, 0), pose(100, 0), pose(200, 0)), frame_idx=1)
    assert sorted(ids(res)) == [0, 1] and len(res) == 2


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 4), st.lists(st.integers(0, 6), min_size=1, max_size=40),
       st.sampled_from(["hungarian", "greedy"]), st.integers(0, 2**31))
def test_never_more_than_max_tracks(max_tracks: int, counts: list[int], method: str,
                                    seed: int) -> None:
    rng = np.random.default_rng(seed)
    tracker = Tracker(TrackerConfig(max_tracks=max_tracks, track_matching_method=method))
    seen: set[int] = set()
    for i, n in enumerate(counts):
        pts = rng.uniform(0, 500, size=(n, 3, 2))
        pts[rng.random((n, 3)) < 0.2] = NAN
        res = tracker.track(pts, frame_idx=i)
        assigned = [t for t in ids(res) if t != UNASSIGNED]
        assert len(assigned) == len(set(assigned)) <= max_tracks  # one instance per track
        seen.update(assigned)
    assert seen <= set(range(max_tracks))
    assert tracker.state().tracks <= max_tracks


# --- pre-cull --------------------------------------------------------------------------------

def test_pre_cull_keeps_the_highest_scores_and_maps_indices() -> None:
    cfg = TrackerConfig(tracking_target_instance_count=1, tracking_pre_cull_to_target=1)
    tracker = Tracker(cfg)
    pts = frame(pose(0, 0), pose(100, 0), pose(200, 0), pose(300, 0))
    res = tracker.track(pts, np.array([0.9, 0.5, 0.7, 0.2]), frame_idx=0)
    assert res.indices.tolist() == [0] and ids(res) == [0]
    assert len(tracker.track(frame(), np.empty(0), frame_idx=1)) == 0  # no crash when empty


def test_pre_cull_with_nms_removes_overlaps_first() -> None:
    cfg = TrackerConfig(tracking_target_instance_count=2, tracking_pre_cull_to_target=1,
                        tracking_pre_cull_iou_threshold=0.5)
    pts = frame(pose(0, 0), pose(1, 1), pose(200, 0))
    res = Tracker(cfg).track(pts, np.array([0.9, 0.8, 0.1]), frame_idx=0)
    assert res.indices.tolist() == [0, 2]


# --- images: flow and appearance --------------------------------------------------------------

def _texture(size: int = 96, seed: int = 0) -> np.ndarray:
    """Smooth random texture: LK follows it reliably over a dozen pixels."""
    rng = np.random.default_rng(seed)
    tex = cv2.GaussianBlur(rng.integers(0, 255, (size, size), dtype=np.uint8), (0, 0), 4)
    return cv2.normalize(tex, None, 0, 255, cv2.NORM_MINMAX)


def test_flow_needs_an_image() -> None:
    with pytest.raises(ValueError, match="image"):
        Tracker(TrackerConfig(use_flow=True)).track(frame(pose(0, 0)), frame_idx=0)


@pytest.mark.parametrize("method", ["fixed_window", "local_queues"])
@pytest.mark.parametrize("scale", [1.0, 0.5])
def test_flow_follows_a_moving_scene(method: str, scale: float) -> None:
    """Two animals swap places in one jump, but the scene moves with them: pose similarity
    alone would swap the ids, flow-shifted candidates keep them."""
    tex = _texture(160)
    cfg = TrackerConfig(use_flow=True, of_img_scale=scale, candidates_method=method)
    tracker = Tracker(cfg)
    a, b = pose(50, 60), pose(62, 60)
    tracker.track(frame(a, b), frame_idx=0, image=tex)
    moved = np.roll(tex, 12, axis=1)  # everything moves 12 px right: a lands where b was
    step = np.array([12.0, 0.0])
    res = tracker.track(frame(a + step, b + step), frame_idx=1, image=moved[..., None])
    assert ids(res) == [0, 1]
    assert np.all(res.tracking_scores > 0.5)


def test_image_features_track_by_appearance() -> None:
    cfg = TrackerConfig(features="image", scoring_method="cosine_sim")
    rng = np.random.default_rng(3)
    img = np.zeros((100, 200), dtype=np.uint8)
    patch_a = rng.integers(0, 255, (20, 20), dtype=np.uint8)
    patch_b = rng.integers(0, 255, (20, 20), dtype=np.uint8)
    img[10:30, 10:30], img[10:30, 110:130] = patch_a, patch_b
    tracker = Tracker(cfg)
    corners = np.array([[0.0, 0.0], [19.0, 19.0]])
    tracker.track(np.stack([corners + 10, corners + np.array([110, 10])]), frame_idx=0, image=img)
    img2 = np.zeros_like(img)
    img2[60:80, 150:170], img2[60:80, 40:60] = patch_a, patch_b  # swapped and far away
    res = tracker.track(np.stack([corners + np.array([40, 60]), corners + np.array([150, 60])]),
                        frame_idx=1, image=img2)
    assert ids(res) == [1, 0]
    assert np.all(res.tracking_scores > 0.9)


# --- bounded state ---------------------------------------------------------------------------

def _noisy_stream(n_frames: int, seed: int = 0, max_animals: int = 3):
    """Random numbers of animals (0 to ``max_animals``) appearing anywhere: many tracks, many
    spawns."""
    rng = np.random.default_rng(seed)
    for i in range(n_frames):
        n = int(rng.integers(0, max_animals + 1))
        pts = rng.uniform(0, 1000, size=(n, 2, 2))
        pts[rng.random((n, 2)) < 0.1] = NAN
        yield i, pts


@pytest.mark.timeout(60)
@pytest.mark.parametrize("cfg", [
    TrackerConfig(window_size=5),
    TrackerConfig(candidates_method="local_queues", window_size=5, max_tracks=4),
], ids=["fixed_window", "local_queues"])
def test_state_is_bounded_by_the_window(cfg: TrackerConfig) -> None:
    tracker = Tracker(cfg)
    # Uncapped, up to 8 animals a frame spawn ids fast enough for the 1000 below in 8000 frames
    # (1175 ids; 3 a frame needed 20 000). Capped, the stream only has to outlast the window
    # many times over. The state is read after every frame, so no peak between reads goes unseen.
    max_instances, n_frames = (8, 8_000) if cfg.max_tracks is None else (3, 2_000)
    limit_records = cfg.window_size if cfg.max_tracks is None else cfg.max_tracks
    limit_instances = cfg.window_size * (max_instances if cfg.max_tracks is None
                                         else cfg.max_tracks)
    peak_records = peak_instances = 0
    for i, pts in _noisy_stream(n_frames, max_animals=max_instances):
        tracker.track(pts, frame_idx=i)
        state = tracker.state()
        peak_records = max(peak_records, state.records)
        peak_instances = max(peak_instances, state.instances)
    assert peak_records <= limit_records
    assert 0 < peak_instances <= limit_instances
    if cfg.max_tracks is None:
        assert tracker.state().tracks > 1000  # ids keep growing, storage does not


@pytest.mark.timeout(60)
def test_flow_keeps_only_the_images_the_window_needs() -> None:
    tex = _texture(48)
    for cfg in (TrackerConfig(use_flow=True, window_size=3),
                TrackerConfig(use_flow=True, window_size=3, candidates_method="local_queues",
                              max_tracks=2)):
        tracker = Tracker(cfg)
        peak = 0
        # 300 frames outlast the 3-frame window a hundred times (1500 only took longer).
        for i, pts in _noisy_stream(300, seed=1):
            tracker.track(pts / 25, frame_idx=i, image=np.roll(tex, i % 7, axis=0))
            peak = max(peak, tracker.state().images)
        bound = cfg.window_size * (1 if cfg.max_tracks is None else cfg.max_tracks)
        assert 0 < peak <= bound

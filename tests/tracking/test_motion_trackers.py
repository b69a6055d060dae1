"""Motion-model trackers and the classic tracker's Kalman shift, scored with eval-tracking."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import sleap_io as sio
from tracking_helpers import assert_refused_before_running

from sleapflow.cli.app import main
from sleapflow.evaluation.identity import evaluate_labels
from sleapflow.tracking import TrackerConfig
from sleapflow.tracking.kalman import ConstantVelocity
from sleapflow.tracking.motion import make_tracker
from sleapflow.tracking.synthetic import SyntheticClip, crossing_clip, walking_clip


def run_tracker(clip: SyntheticClip, cfg: TrackerConfig) -> list[list[str | None]]:
    tracker = make_tracker(cfg)
    names = []
    for f, (pts, scores) in enumerate(zip(clip.points, clip.scores)):
        result = tracker.track(pts, scores, f)
        row: list[str | None] = [None] * len(pts)
        for i, tid in zip(result.indices.tolist(), result.track_ids.tolist()):
            if tid >= 0:
                row[i] = f"track_{tid}"
        names.append(row)
    return names


def score(clip: SyntheticClip, cfg: TrackerConfig) -> dict:
    return evaluate_labels(clip.to_labels(truth=True),
                           clip.to_labels(truth=False, tracks=run_tracker(clip, cfg)))


@pytest.fixture(scope="module")
def hard_clip() -> SyntheticClip:
    """Two animals, three occlusion gaps of 5-25 frames each, 3% dropped detections, spurious
    low-score detections anywhere and beside the animals, 1 px node noise, 5% missing nodes."""
    return walking_clip(400, seed=0)


def test_clip_is_hard_for_the_classic_tracker(hard_clip: SyntheticClip) -> None:
    m = score(hard_clip, TrackerConfig())
    assert m["n_pred_tracks"] > 10 and m["idf1"] < 0.5


@pytest.mark.parametrize("name", ["sort", "bytetrack", "ocsort"])
def test_motion_trackers_keep_identities(hard_clip: SyntheticClip, name: str) -> None:
    m = score(hard_clip, TrackerConfig(tracker=name))
    assert m["id_switches"] == 0 and m["mot"]["idsw"] == 0
    assert m["n_pred_tracks"] == hard_clip.n_animals
    # Only the first min_hits-1 frames of each animal and the spurious detections are untracked.
    assert m["mot"]["clr_fp"] == 0 and m["idf1"] > 0.99


def test_spurious_detections_never_get_a_track(hard_clip: SyntheticClip) -> None:
    names = run_tracker(hard_clip, TrackerConfig(tracker="bytetrack"))
    spurious = [n for row, ids in zip(names, hard_clip.ids) for n, i in zip(row, ids) if i < 0]
    assert spurious and all(n is None for n in spurious)


def test_tentative_tracks_and_min_hits() -> None:
    clip = walking_clip(20, seed=1, gaps=None, drop=0.0, spurious=0.0)
    for min_hits in (1, 4):
        names = run_tracker(clip, TrackerConfig(tracker="sort", min_hits=min_hits))
        first = next(f for f, row in enumerate(names) if any(row))
        assert first == min_hits - 1


def test_kalman_keeps_a_crossing_the_classic_tracker_swaps() -> None:
    clip = crossing_clip(speed=4.0, offset=0.0)
    classic = score(clip, TrackerConfig(candidates_method="local_queues", max_tracks=2))
    assert classic["id_switches"] > 0
    for features in ("centroid", "keypoints"):
        kalman = score(clip, TrackerConfig(candidates_method="local_queues", max_tracks=2,
                                           use_kalman=True, kf_track_features=features))
        assert kalman["id_switches"] == 0 and kalman["idf1"] == 1.0
    # The warm-up is honoured: a filter that never starts tracks like the classic tracker.
    late = score(clip, TrackerConfig(candidates_method="local_queues", max_tracks=2,
                                     use_kalman=True, kf_init_frame_count=len(clip)))
    assert late["id_switches"] == classic["id_switches"]
    # The motion-model trackers cross cleanly too.
    assert score(clip, TrackerConfig(tracker="ocsort"))["id_switches"] == 0


def test_constant_velocity_filter_extrapolates_and_skips_missing() -> None:
    kf = ConstantVelocity(np.array([0.0, 10.0]), 0, q=0.01, r=0.01)
    for f in range(1, 30):
        kf.predict_to(f)
        kf.update(np.array([2.0 * f, np.nan if f % 2 else 10.0 - f]))
    kf.predict_to(39)
    pos = kf.position
    assert pos[0] == pytest.approx(78.0, abs=0.5)  # 2 px/frame, 10 frames after the last update
    assert pos[1] == pytest.approx(10.0 - 39, abs=1.0)  # updated on even frames only
    var_before = kf.position_var
    kf.predict_to(60)
    assert kf.position_var > var_before  # uncertainty grows while unseen


def test_untracked_detections_clear_old_tracks_in_track_only(tmp_path: Path) -> None:
    """Through the streaming graph: a track-only run with a motion tracker writes 2 tracks, and
    a detection it leaves untracked loses the track it had in the input."""
    clip = walking_clip(120, seed=2)
    gt = clip.to_labels(truth=True)
    # The input carries stale tracks on every instance: the truth, which must not leak through.
    stale = clip.to_labels(truth=False, tracks=[[f"old_{i}" for i in ids] for ids in clip.ids])
    src, out = tmp_path / "in.slp", tmp_path / "out.slp"
    sio.save_slp(stale, str(src))
    assert main(["track", "-i", str(src), "-t", "--tracker", "bytetrack", "-o", str(out)]) == 0
    labels = sio.load_slp(str(out))
    names = {i.track.name for lf in labels for i in lf.instances if i.track is not None}
    assert len(names) == 2 and not any(n.startswith("old_") for n in names)
    m = evaluate_labels(gt, labels)
    assert m["id_switches"] == 0


@pytest.mark.parametrize("bad", [
    ["--tracker", "deepsort"], ["--use_kalman"], ["--use_kalman", "--use_flow", "--max_tracks", "2"],
    ["--kf_node_indices", "0,x"], ["--kf_node_indices", "1,1"], ["--kf_track_features", "bbox"],
    ["--tracker", "sort", "--max_tracks", "2"], ["--tracker", "ocsort", "--use_kalman"],
    ["--min_hits", "0"], ["--track_buffer", "0"], ["--track_low_threshold", "0.9"],
    ["--new_track_threshold", "1.5"], ["--min_match_similarity", "-0.1"], ["--max_gap", "-1"],
    ["--fill_gaps", "-2"], ["--kf_init_frame_count", "-1"],
])
def test_bad_tracker_options_fail_before_running(bad: list[str], reference: Path, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    assert_refused_before_running(bad, reference, tmp_path, capsys)

"""Gap-aware linking (--max_gap) and marked gap filling (--fill_gaps)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import sleap_io as sio

from sleapflow.cli.app import main
from sleapflow.evaluation.identity import evaluate_labels
from sleapflow.messages import FramePrediction
from sleapflow.tracking.linking import INTERPOLATED_SCORE, GapLinker
from sleapflow.tracking.synthetic import walking_clip

BODY = np.array([[0.0, 0.0], [20.0, 0.0], [10.0, 8.0]])


def frame(f: int, dets: list[tuple[float, str]]) -> FramePrediction:
    pts = np.stack([BODY + np.array([x, 100.0]) for x, _ in dets]) if dets else np.zeros((0, 3, 2))
    return FramePrediction(seq=f, video_id=0, frame_idx=f, points=pts,
                           point_scores=np.ones(pts.shape[:2]), instance_scores=np.ones(len(pts)),
                           track_names=tuple(n for _, n in dets),
                           tracking_scores=np.ones(len(pts)))


def run(linker: GapLinker, frames: list[FramePrediction]) -> list[FramePrediction]:
    out = []
    for fr in frames:
        out.extend(linker.push(fr))
    return out + linker.flush()


def walker(gap: tuple[int, int], new_name: str = "b", x_new: float | None = None
           ) -> list[FramePrediction]:
    """One animal walking +3 px/frame, tracked as "a" until the gap and as ``new_name`` after."""
    frames = []
    for f in range(30):
        if gap[0] <= f < gap[1]:
            frames.append(frame(f, []))
            continue
        x = 3.0 * f if x_new is None or f < gap[1] else x_new
        frames.append(frame(f, [(x, "a" if f < gap[0] else new_name)]))
    return frames


def test_links_a_track_that_restarts_where_motion_predicts() -> None:
    out = run(GapLinker(max_gap=10, fill_gaps=0), walker((10, 18)))
    names = {n for fr in out for n in fr.track_names}
    assert names == {"a"}
    assert [fr.frame_idx for fr in out] == list(range(30))


def test_does_not_link_far_away_or_after_too_long_a_gap() -> None:
    far = run(GapLinker(max_gap=10, fill_gaps=0), walker((10, 18), x_new=900.0))
    assert {n for fr in far for n in fr.track_names} == {"a", "b"}
    late = run(GapLinker(max_gap=5, fill_gaps=0), walker((10, 18)))
    assert {n for fr in late for n in fr.track_names} == {"a", "b"}


def test_fill_gaps_marks_interpolated_instances_and_holds_k_frames() -> None:
    linker = GapLinker(max_gap=10, fill_gaps=4)
    frames = walker((10, 13))  # a 3-frame gap, then the track continues as "b" -> linked to "a"
    released = [len(linker.push(fr)) for fr in frames]
    assert released[:4] == [0, 0, 0, 0] and all(r == 1 for r in released[4:])
    out = run(GapLinker(max_gap=10, fill_gaps=4), frames)
    filled = {fr.frame_idx: fr for fr in out if fr.frame_idx in (10, 11, 12)}
    for f, fr in filled.items():
        assert fr.n_instances == 1 and fr.track_names == ("a",)
        assert fr.instance_scores[0] == INTERPOLATED_SCORE
        assert np.all(fr.point_scores[0] == 0) and fr.tracking_scores[0] == 0.0
        np.testing.assert_allclose(fr.points[0], BODY + np.array([3.0 * f, 100.0]))  # straight-line walk
    # A gap longer than K is linked but not filled.
    long_gap = run(GapLinker(max_gap=10, fill_gaps=2), walker((10, 15)))
    assert all(fr.n_instances == 0 for fr in long_gap if 10 <= fr.frame_idx < 15)


@pytest.fixture(scope="module")
def long_gaps(tmp_path_factory: pytest.TempPathFactory) -> tuple[sio.Labels, Path]:
    """Occlusions of 30-45 frames: longer than the motion trackers' 30-frame track buffer."""
    clip = walking_clip(300, seed=3, gaps=(30, 45), gaps_per_animal=2)
    path = tmp_path_factory.mktemp("gaps") / "pred.slp"
    sio.save_slp(clip.to_labels(truth=False), str(path))
    return clip.to_labels(truth=True), path


def test_max_gap_rejoins_tracks_lost_in_long_occlusions(long_gaps: tuple[sio.Labels, Path],
                                                        tmp_path: Path) -> None:
    gt, src = long_gaps
    results = {}
    for label, extra in (("plain", []), ("linked", ["--max_gap", "50", "--fill_gaps", "45"])):
        out = tmp_path / f"{label}.slp"
        assert main(["track", "-i", str(src), "-t", "--tracker", "sort", "-o", str(out),
                     *extra]) == 0
        results[label] = sio.load_slp(str(out))
    plain = evaluate_labels(gt, results["plain"])
    assert plain["n_pred_tracks"] > 2 and plain["id_switches"] > 0
    linked_labels = results["linked"]
    filled = [i for lf in linked_labels for i in lf.instances if i.score == INTERPOLATED_SCORE]
    assert filled and all(isinstance(i, sio.PredictedInstance) and i.track is not None
                          for i in filled)
    # Scored without the interpolated instances, the linked run keeps both identities.
    for lf in linked_labels:
        lf.instances = [i for i in lf.instances if i.score != INTERPOLATED_SCORE]
    linked = evaluate_labels(gt, linked_labels)
    assert linked["id_switches"] == 0 and linked["n_pred_tracks"] == 2

"""Appearance trackers and the classic tracker's appearance blend keep identities where only
appearance can tell two animals apart; without identity in the vectors they do no better."""

from __future__ import annotations

import numpy as np
import pytest

from sleapflow.evaluation.identity import evaluate_labels
from sleapflow.options.tracker import APPEARANCE_TRACKERS, TrackerConfig
from sleapflow.tracking.appearance import base_tracker
from sleapflow.tracking.motion import make_tracker
from sleapflow.tracking.synthetic import SyntheticClip, appearance_vectors, meeting_clip


def switches(clip: SyntheticClip, cfg: TrackerConfig, vectors: list[np.ndarray] | None) -> int:
    tracker = make_tracker(cfg)
    names = []
    for f, (pts, scores) in enumerate(zip(clip.points, clip.scores)):
        extra = {} if vectors is None else {"embeddings": vectors[f]}
        result = tracker.track(pts, scores, f, **extra)
        row: list[str | None] = [None] * len(pts)
        for i, tid in zip(result.indices.tolist(), result.track_ids.tolist()):
            if tid >= 0:
                row[i] = f"track_{tid}"
        names.append(row)
    m = evaluate_labels(clip.to_labels(truth=True), clip.to_labels(truth=False, tracks=names))
    assert m["n_pred_tracks"] == 2  # every tracker keeps both animals; only identities differ
    return int(m["id_switches"])


@pytest.mark.parametrize("seed", [0, 1])
def test_appearance_trackers_keep_identities_where_motion_swaps_them(seed: int) -> None:
    # The animals meet while hidden and turn back: every motion tracker extrapolates them
    # through each other and swaps them; each appearance tracker keeps them apart.
    clip = meeting_clip("bounce", seed=seed)
    vectors = appearance_vectors(clip, seed=seed + 1)
    bases = {base: switches(clip, TrackerConfig(tracker=base), vectors)
             for base in {base_tracker(name) for name in APPEARANCE_TRACKERS}}
    assert all(n > 0 for n in bases.values()), bases
    for name in APPEARANCE_TRACKERS:
        ours = switches(clip, TrackerConfig(tracker=name), vectors)
        assert ours == 0 < bases[base_tracker(name)], f"{name}: {ours} switches"


def test_the_vectors_decide() -> None:
    # Vectors that exchange the animals' appearance after the gap (and only then) make every
    # appearance tracker swap them: the identity comes from the vectors, not from the clip.
    clip = meeting_clip("bounce", seed=0)
    swapped = SyntheticClip(clip.points, clip.scores,
                            [1 - ids if f >= 25 else ids for f, ids in enumerate(clip.ids)], 2)
    vectors = appearance_vectors(swapped, noise=0.05)
    for name in APPEARANCE_TRACKERS:
        assert switches(clip, TrackerConfig(tracker=name), vectors) > 0, name


def test_classic_appearance_weight_fixes_a_swap_geometry_makes() -> None:
    # They walk on past each other while hidden: the last seen poses swap them.
    clip = meeting_clip("pass", seed=0)
    vectors = appearance_vectors(clip)
    cfg = TrackerConfig(candidates_method="local_queues", max_tracks=2)
    assert switches(clip, cfg, vectors) > 0  # the vectors are ignored at weight 0
    blended = TrackerConfig(candidates_method="local_queues", max_tracks=2, appearance_weight=0.5)
    assert switches(clip, blended, vectors) == 0


def test_detections_without_vectors_fall_back_to_geometry() -> None:
    clip = meeting_clip("bounce", seed=0, hidden=(0, 0))  # never hidden: motion alone suffices
    missing = [np.full((len(p), 16), np.nan) for p in clip.points]
    for name in (*APPEARANCE_TRACKERS, "classic"):
        cfg = (TrackerConfig(candidates_method="local_queues", max_tracks=2, appearance_weight=0.5)
               if name == "classic" else TrackerConfig(tracker=name))
        assert switches(clip, cfg, missing) == 0


def test_frames_without_vectors_can_come_between_frames_with_them() -> None:
    # A .slp whose instances carry vectors on some frames only (an edited file): the classic
    # tracker's stored candidates then mix both; the blend still fixes the pass-through swap.
    clip = meeting_clip("pass", seed=0)
    vectors = appearance_vectors(clip)
    mixed = [v if f % 4 else np.full((len(v), 1), np.nan) for f, v in enumerate(vectors)]
    for method in ("local_queues", "fixed_window"):
        cfg = TrackerConfig(candidates_method=method, max_tracks=2 if method == "local_queues"
                            else None, window_size=12, appearance_weight=0.5)
        assert switches(clip, cfg, mixed) == 0, method


def test_mot_param_sets_the_appearance_knobs_only_for_appearance_trackers() -> None:
    """sleap-nn's appearance MOTParams names reach the appearance trackers; a motion-only
    tracker refuses them by name."""
    from sleapflow.errors import ConfigError

    tracker = make_tracker(TrackerConfig(tracker="botsort",
                                         mot_param=("ema_alpha=0.5", "appearance_threshold=0.3")))
    assert tracker.appearance is not None
    assert (tracker.appearance.ema_alpha, tracker.appearance.appearance_threshold) == (0.5, 0.3)
    default = make_tracker(TrackerConfig(tracker="botsort"))
    assert default.appearance is not None and default.appearance.ema_alpha == 0.8
    deep = make_tracker(TrackerConfig(tracker="deepsort", mot_param=("gallery_budget=7",)))
    assert deep.appearance is not None and deep.appearance.gallery_budget == 7
    with pytest.raises(ConfigError, match="appearance trackers"):
        TrackerConfig(tracker="bytetrack", mot_param=("ema_alpha=0.5",))
    with pytest.raises(ConfigError, match="expects a number"):
        TrackerConfig(tracker="botsort", mot_param=("ema_alpha=fast",))

"""Identity linking (--link_tracklets): heals gaps and swaps, windowed or whole-video; options."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import pytest
import sleap_io as sio
from tracking_helpers import assert_refused_before_running

from sleapflow.cli.app import app, main
from sleapflow.errors import ConfigError
from sleapflow.evaluation.identity import evaluate_labels
from sleapflow.messages import FramePrediction
from sleapflow.options.mot import resolve_mot_params
from sleapflow.stages.track import LinkIdentities
from sleapflow.tracking import TrackerConfig
from sleapflow.tracking.identity import LinkParams, TrackletLinker
from sleapflow.tracking.motion import make_tracker
from sleapflow.tracking.synthetic import crossing_clip, walking_clip

BODY = np.array([[0.0, 0.0], [20.0, 0.0], [10.0, 8.0], [5.0, -6.0]])


def frame(f: int, dets: list[tuple[np.ndarray, str | None]]) -> FramePrediction:
    pts = np.stack([p for p, _ in dets]) if dets else np.zeros((0, len(BODY), 2))
    return FramePrediction(seq=f, video_id=0, frame_idx=f, points=pts,
                           point_scores=np.ones(pts.shape[:2]), instance_scores=np.full(len(pts), 0.9),
                           track_names=tuple(n for _, n in dets))


def run(linker: TrackletLinker, frames: list[FramePrediction]) -> list[FramePrediction]:
    out = []
    for fr in frames:
        out.extend(linker.push(fr))
    return out + linker.flush()


def two_walkers(gap: tuple[int, int], n: int = 60) -> list[FramePrediction]:
    """Two animals walking +3 px/frame in lanes 200 px apart; the tracker loses the first one in
    ``gap`` and calls it "c" after; the second is "b" throughout."""
    frames = []
    for f in range(n):
        dets: list[tuple[np.ndarray, str | None]] = []
        if not gap[0] <= f < gap[1]:
            dets.append((BODY + np.array([3.0 * f, 100.0]), "a" if f < gap[0] else "c"))
        dets.append((BODY + np.array([3.0 * f, 300.0]), "b"))
        frames.append(frame(f, dets))
    return frames


def identity_of(out: list[FramePrediction], lane_y: float) -> set[str | None]:
    return {n for fr in out for n, p in zip(fr.track_names or (), fr.points)
            if abs(float(np.mean(p[:, 1])) - lane_y) < 50}


@pytest.mark.parametrize("window", [0, 25])
def test_heals_a_gap_whole_video_and_windowed(window: int) -> None:
    out = run(TrackletLinker(LinkParams(window=window)), two_walkers((20, 45)))
    assert [fr.frame_idx for fr in out] == list(range(60))  # every frame, in order
    first, second = identity_of(out, 100.0), identity_of(out, 300.0)
    assert len(first) == 1 and len(second) == 1 and first != second


def test_does_not_link_an_animal_that_appears_far_away() -> None:
    frames = two_walkers((20, 45))
    # The "c" track now starts 600 px off the first animal's path: another animal.
    moved = [frame(fr.frame_idx, [(p + ([0.0, 600.0] if n == "c" else 0.0), n)
                                  for p, n in zip(fr.points, fr.track_names or ())])
             for fr in frames]
    out = run(TrackletLinker(LinkParams()), moved)
    assert len({n for fr in out for n in fr.track_names or ()}) == 3


def test_windowed_linker_holds_at_most_its_window() -> None:
    linker = TrackletLinker(LinkParams(window=10))
    released = [len(linker.push(fr)) for fr in two_walkers((20, 25), n=35)]
    assert linker.max_held == 10
    assert released[:9] == [0] * 9 and released[9] == 10  # blocks of 10 leave together
    assert len(linker.flush()) == 5


def test_corrects_the_swap_a_tracker_makes_at_a_crossing() -> None:
    """Two animals cross head-on; the tracker output swaps their names at the middle."""
    clip = crossing_clip(80, speed=4.0, offset=0.0, seed=1)
    frames = []
    for f, ids in enumerate(clip.ids):
        swapped = f >= 40
        names = tuple(f"t{int(i) ^ int(swapped)}" for i in ids)
        frames.append(FramePrediction(seq=f, video_id=0, frame_idx=f, points=clip.points[f],
                                      point_scores=np.ones(clip.points[f].shape[:2]),
                                      instance_scores=clip.scores[f], track_names=names))
    linker = TrackletLinker(LinkParams())
    out = run(linker, frames)

    def truth_per_name(preds: list[FramePrediction]) -> dict[str | None, set[int]]:
        seen: dict[str | None, set[int]] = {}
        for fr, ids in zip(preds, clip.ids):
            for n, i in zip(fr.track_names or (), ids.tolist()):
                seen.setdefault(n, set()).add(i)
        return seen

    assert all(len(ids) == 2 for ids in truth_per_name(frames).values())  # swapped input
    linked = truth_per_name(out)
    assert len(linked) == 2 and all(len(ids) == 1 for ids in linked.values())
    assert linker.swaps >= 1


def test_max_tracks_makes_a_closed_set() -> None:
    """With a count, a third track that co-occurs with both animals is left untracked."""
    frames = two_walkers((20, 45))
    extra = [frame(fr.frame_idx, [*zip(fr.points, fr.track_names or ()),
                                  (BODY + np.array([3.0 * fr.frame_idx, 200.0]), "z")])
             if 10 <= fr.frame_idx < 14 else fr for fr in frames]
    # As a track-only input: every instance carries an old track the output must not keep.
    skeleton = sio.Skeleton([f"n{i}" for i in range(len(BODY))])
    old = sio.Track("old")
    extra = [msgspec.structs.replace(fr, source_instances=tuple(
        sio.PredictedInstance.from_numpy(p, skeleton=skeleton, track=old) for p in fr.points))
        for fr in extra]
    out = run(TrackletLinker(LinkParams(max_tracks=2)), extra)
    names = [n for fr in out for n in fr.track_names or ()]
    assert len({n for n in names if n is not None}) == 2
    assert names.count(None) == 4
    left = [inst for fr in out for n, inst in zip(fr.track_names or (), fr.source_instances or ())
            if n is None]
    assert len(left) == 4 and all(inst.track is None for inst in left)


def test_link_tracklets_through_the_cli_heals_occlusions(tmp_path: Path) -> None:
    """The streaming graph: bytetrack loses animals hidden longer than its track buffer; with
    --link_tracklets (a window, no count) the two animals keep one identity each."""
    clip = walking_clip(120, seed=5, gaps=(32, 40), gaps_per_animal=1, noise=2.0)
    gt = clip.to_labels(truth=True)
    src, out = tmp_path / "in.slp", tmp_path / "out.slp"
    sio.save_slp(clip.to_labels(truth=False), str(src))
    assert main(["track", "-i", str(src), "-t", "--tracker", "bytetrack", "--link_tracklets",
                 "--link_window", "100", "-o", str(out)]) == 0
    linked = evaluate_labels(gt, sio.load_slp(str(out)))
    assert linked["n_pred_tracks"] == 2 and linked["id_switches"] == 0
    assert linked["idf1"] > 0.95
    # Without linking the same tracker gives each return a new track.
    tracker = make_tracker(TrackerConfig(tracker="bytetrack"))
    plain = set()
    for f, (pts, scores) in enumerate(zip(clip.points, clip.scores)):
        plain.update(tracker.track(pts, scores, f).track_ids.tolist())
    assert len({t for t in plain if t >= 0}) > 2


def test_mot_param_presets_and_overrides() -> None:
    cfg = TrackerConfig(tracker="sort", mot_param=("preset=paper",))
    assert (cfg.track_buffer, cfg.min_hits, cfg.new_track_threshold) == (1, 3, 0.0)
    cfg = TrackerConfig(tracker="bytetrack", mot_param=("preset=animal", "min_hits=5"))
    assert (cfg.min_hits, cfg.min_match_similarity) == (5, 0.2)
    cfg = TrackerConfig(tracker="ocsort", mot_param=("link_tracklets=true", "max_tracks=2"))
    assert cfg.link_tracklets and cfg.max_tracks == 2
    assert resolve_mot_params("classic", ("body_size=40", "link_swap_correction=false")) == {}
    with pytest.raises(ConfigError, match="valid parameters: preset, track_buffer"):
        TrackerConfig(tracker="sort", mot_param=("bogus=1",))


@pytest.mark.parametrize("bad", [
    ["--link_window", "10"],
    ["--link_tracklets", "--link_window", "-1"],
    ["--tracker", "bytetrack", "--mot_param", "nonsense=1"],
    ["--tracker", "bytetrack", "--mot_param", "kalman=xywh"],
    ["--tracker", "bytetrack", "--mot_param", "min_hits"],
    ["--tracker", "bytetrack", "--mot_param", "min_hits=two"],
    ["--tracker", "bytetrack", "--mot_param", "preset=fast"],
    ["--tracker", "bytetrack", "--mot_param", "track_high_threshold=2"],
    ["--link_tracklets", "--mot_param", "track_buffer=5"],
    ["--link_tracklets", "--mot_param", "body_size=-3"],
    ["--tracker", "sort", "--max_tracks", "2"],
])
def test_bad_linking_options_fail_before_running(bad: list[str], reference: Path, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    assert_refused_before_running(bad, reference, tmp_path, capsys)


def test_new_options_have_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        app(["track", "--help"], exit_on_error=False)
    text = re.sub(r"[\s│]+", " ", capsys.readouterr().out)
    assert "--link_tracklets Identity linking after tracking" in text
    assert "--link_window INT With --link_tracklets: frames held back" in text
    assert "0 = the whole video" in text  # the window's meaning is in its help
    assert "--mot_param STR... KEY=VALUE, repeatable" in text


class _WithVectors(FramePrediction, frozen=True):
    """Frames whose instances carry appearance vectors (what an embedding model adds)."""

    embeddings: Any = None


def test_appearance_vectors_decide_what_motion_cannot() -> None:
    """Both animals stand still side by side, vanish together and come back in each other's
    place: motion and shape cannot tell, the vectors they carry can."""
    vec = {"left": np.array([1.0, 0.0, 0.0]), "right": np.array([0.0, 1.0, 0.0])}
    frames = []
    for f in range(40):
        if 15 <= f < 30:
            frames.append(_WithVectors(seq=f, video_id=0, frame_idx=f, points=np.zeros((0, 4, 2)),
                                       point_scores=np.zeros((0, 4)),
                                       instance_scores=np.zeros(0), track_names=()))
            continue
        after = f >= 30
        # After the gap the animal first seen on the left stands on the right.
        animals = [("left", 130.0 if after else 100.0), ("right", 100.0 if after else 130.0)]
        pts = np.stack([BODY + np.array([x, 100.0]) for _, x in animals])
        frames.append(_WithVectors(
            seq=f, video_id=0, frame_idx=f, points=pts, point_scores=np.ones(pts.shape[:2]),
            instance_scores=np.full(2, 0.9),
            track_names=tuple(f"{a}{'2' if after else ''}" for a, _ in animals),
            # A NaN row (an instance the embedding model could not crop) counts as no vector.
            embeddings=np.stack([vec[a] if f != 31 else np.full(3, np.nan) for a, _ in animals])))
    out = run(TrackletLinker(LinkParams()), frames)
    seen: dict[str, set[str]] = {}
    for fr, raw in zip(out, frames):
        for n, r in zip(fr.track_names or (), raw.track_names or ()):
            seen.setdefault(r.rstrip("2"), set()).add(n)
    assert len(seen["left"]) == 1 and len(seen["right"]) == 1
    assert seen["left"] != seen["right"]


def test_identities_of_different_videos_never_share_a_name() -> None:
    """The stage links each video on its own (nothing links across), with one numbering."""
    stage = LinkIdentities(TrackerConfig(link_tracklets=True, link_window=8))
    assert stage.name == "link_tracklets(window=8)"
    first = two_walkers((5, 8), n=20)
    second = [msgspec.structs.replace(fr, video_id=1) for fr in two_walkers((5, 8), n=20)]
    out = [o for fr in first + second for o in stage.push(fr)] + stage.finish()
    assert [(fr.video_id, fr.frame_idx) for fr in out] == [(v, f) for v in (0, 1)
                                                            for f in range(20)]
    names = [{n for fr in out if fr.video_id == v for n in fr.track_names or ()} for v in (0, 1)]
    assert len(names[0]) == 2 and len(names[1]) == 2 and not names[0] & names[1]

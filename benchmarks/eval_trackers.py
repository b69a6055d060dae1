"""Identity metrics of every tracker, with and without identity linking, on occlusion-heavy clips.

Runs each tracker configuration on each clip through the synchronous tracker API, then the
linking steps as the streaming graph chains them (``--link_tracklets`` then ``--max_gap``), and
scores the result with ``eval-tracking``'s metrics against the clip's true identities. Prints
one Markdown table per clip set (IDF1, ID switches and track count per clip, and the mean IDF1)::

    python benchmarks/eval_trackers.py

The clip sets are held out from the ones the linker was developed on (other seeds):

* ``walk``: synthetic two-animal clips (400 frames) with occlusion gaps of 5-40 frames, dropped
  detections, spurious low-score detections on ~10 % of frames, 2 px noise;
* ``cross``: two animals crossing head-on (80 frames);
* ``flies``: a real two-fly clip (``assets/eval/flies24_gt.slp``, 500 frames, tracked with
  ``local_queues --max_tracks 2`` for the true identities) made occlusion-heavy with
  :func:`~sleapflow.tracking.synthetic.occlude`: each fly hidden for runs of 5-40 frames (about
  20 % of its frames), 2 px noise, a spurious low-score detection on 10 % of frames.

Side by side with sleap-nn 0.3.5: ``--write DIR`` saves each clip's ground truth
(``CLIP.gt.slp``) and untracked detections (``CLIP.slp``); run
``benchmarks/peer_tracking.py DIR`` with the reference's Python to track them with
``sleap-nn predict``; ``--peer DIR`` then scores its outputs (``CLIP__CONFIG.slp``) here too.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np
import sleap_io as sio
import structlog

from sleapflow.evaluation.identity import evaluate_labels
from sleapflow.messages import FramePrediction
from sleapflow.tracking import TrackerConfig, track_labels
from sleapflow.tracking.identity import TrackletLinker, link_params
from sleapflow.tracking.linking import GapLinker
from sleapflow.tracking.motion import make_tracker
from sleapflow.tracking.synthetic import (
    SyntheticClip,
    clip_from_labels,
    crossing_clip,
    occlude,
    walking_clip,
)

ASSETS = Path(__file__).resolve().parents[2] / "shared" / "assets"


def real_flies(assets: Path) -> SyntheticClip:
    """The real two-fly clip with its identities (fragments of < 5 nodes left out)."""
    labels = sio.load_slp(str(assets / "eval" / "flies24_gt.slp"))
    for lf in labels.labeled_frames:
        lf.instances = [i for i in lf.instances if (~np.isnan(i.numpy()[:, 0])).sum() >= 5]
    tracked = track_labels(labels, TrackerConfig(candidates_method="local_queues", max_tracks=2))
    return clip_from_labels(tracked)


def clip_sets(assets: Path) -> dict[str, dict[str, SyntheticClip]]:
    flies = real_flies(assets)
    return {
        "walk": {f"walk{s}": walking_clip(400, seed=s, gaps=(5, 40), noise=2.0)
                 for s in (10, 11, 12)},
        "cross": {"cross10": crossing_clip(speed=4.0, offset=0.0, seed=10),
                  "cross11": crossing_clip(speed=3.0, offset=6.0, seed=11)},
        "flies": {f"flies{s}": occlude(flies, seed=s) for s in (10, 11, 12)},
    }


def configs(full: bool = False) -> dict[str, TrackerConfig]:
    """Every tracker with and without linking; ``full`` adds --max_gap, the linking window and
    a given count for each tracker."""
    bases: dict[str, dict] = {"classic": {}, "sort": {"tracker": "sort"},
                              "bytetrack": {"tracker": "bytetrack"}, "ocsort": {"tracker": "ocsort"}}
    if full:
        bases["classic local_queues"] = {"candidates_method": "local_queues"}
    out: dict[str, TrackerConfig] = {}
    for name, base in bases.items():
        out[f"{name} --link_tracklets"] = TrackerConfig(**base, link_tracklets=True)
    out["bytetrack --link_tracklets --link_window 100"] = TrackerConfig(
        tracker="bytetrack", link_tracklets=True, link_window=100)
    for name, base in bases.items():
        out[name] = TrackerConfig(**base)
        if full or name == "bytetrack":
            out[f"{name} --max_gap 50"] = TrackerConfig(**base, max_gap=50)
        if full:
            out[f"{name} --link_tracklets --link_window 100"] = TrackerConfig(
                **base, link_tracklets=True, link_window=100)
        if full or name == "bytetrack":
            out[f"{name} --link_tracklets --max_tracks 2 (count given)"] = TrackerConfig(
                **base, link_tracklets=True, max_tracks=2)
    out["classic local_queues --max_tracks 2 (count given)"] = TrackerConfig(
        candidates_method="local_queues", max_tracks=2)
    return out


def track_names(clip: SyntheticClip, cfg: TrackerConfig) -> list[list[str | None]]:
    """Per frame, the track name of each detection after the tracker and the linkers."""
    tracker = make_tracker(cfg)
    steps: list[TrackletLinker | GapLinker] = []
    if cfg.link_tracklets:
        steps.append(TrackletLinker(link_params(cfg)))
    if cfg.max_gap:
        steps.append(GapLinker(cfg.max_gap, 0, cfg.min_match_similarity))
    frames: list[FramePrediction] = []
    for f, (pts, scores) in enumerate(zip(clip.points, clip.scores)):
        result = tracker.track(pts, scores, f)
        row: list[str | None] = [None] * len(pts)
        for i, tid in zip(result.indices.tolist(), result.track_ids.tolist()):
            if tid >= 0:
                row[i] = f"track_{tid}"
        frames.append(FramePrediction(seq=f, video_id=0, frame_idx=f, points=pts,
                                      point_scores=np.ones(pts.shape[:2]), instance_scores=scores,
                                      track_names=tuple(row), tracking_scores=np.ones(len(pts))))
    for step in steps:
        out: list[FramePrediction] = []
        for pred in frames:
            out.extend(step.push(pred))
        frames = out + step.flush()
    return [list(p.track_names or ()) for p in frames]


def score(gt: sio.Labels, pred: sio.Labels) -> tuple[float, int, int]:
    m = evaluate_labels(gt, pred)
    return float(m["idf1"]), int(m["id_switches"]), int(m["n_pred_tracks"])


def _row(name: str, cells: list[tuple[float, int, int]]) -> None:
    shown = " | ".join(f"{i:.3f} / {s} / {t}" for i, s, t in cells)
    print(f"| {name} | {shown} | {np.mean([c[0] for c in cells]):.3f} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--assets", type=Path, default=ASSETS)
    parser.add_argument("--write", type=Path, help="save each clip's .gt.slp and .slp here")
    parser.add_argument("--peer", type=Path, help="score sleap-nn's CLIP__CONFIG.slp from here")
    parser.add_argument("--only", help="only configurations whose name contains this")
    parser.add_argument("--peer-only", action="store_true", help="only sleap-nn's rows")
    parser.add_argument("--full", action="store_true",
                        help="also --max_gap, the window and a count for every tracker")
    args = parser.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    sets = clip_sets(args.assets)
    if args.write:
        args.write.mkdir(parents=True, exist_ok=True)
        for clips in sets.values():
            for name, clip in clips.items():
                sio.save_slp(clip.to_labels(truth=True), str(args.write / f"{name}.gt.slp"))
                sio.save_slp(clip.to_labels(truth=False), str(args.write / f"{name}.slp"))
    for set_name, clips in sets.items():
        print(f"\n### {set_name}: {', '.join(clips)}\n")
        print(f"| configuration | {' | '.join(clips)} | mean IDF1 |")
        print(f"|---|{'---|' * len(clips)}---|")
        rows: dict[str, list[tuple[float, int, int]]] = {}
        for name, cfg in configs(args.full).items():
            if args.peer_only or (args.only and args.only not in name):
                continue
            rows[f"sleapflow {name}"] = [
                score(c.to_labels(truth=True), c.to_labels(truth=False, tracks=track_names(c, cfg)))
                for c in clips.values()]
            _row(f"sleapflow {name}", rows[f"sleapflow {name}"])
        if args.peer:
            runs = sorted({p.name.split("__", 1)[1].removesuffix(".slp")
                           for p in args.peer.glob("*__*.slp")})
            for run in runs:
                paths = [args.peer / f"{clip}__{run}.slp" for clip in clips]
                if all(p.exists() for p in paths):
                    _row(f"sleap-nn 0.3.5 predict {run.replace('+', ' ')}",
                         [score(c.to_labels(truth=True), sio.load_slp(str(p)))
                          for c, p in zip(clips.values(), paths)])
    print("\ncells: IDF1 / ID switches / tracks")


if __name__ == "__main__":
    main()

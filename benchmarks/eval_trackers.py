"""Identity metrics of every tracker on the synthetic clips the tests generate (issue 15).

Runs each tracker configuration on each clip through the synchronous tracker API (plus the
gap-linking step where asked, as the streaming graph runs it) and scores the result with
``eval-tracking``'s metrics against the clip's true identities. Prints a Markdown table::

    python benchmarks/eval_trackers.py
"""

from __future__ import annotations

import logging

import numpy as np
import structlog

from sleapflow.evaluation.identity import evaluate_labels
from sleapflow.messages import FramePrediction
from sleapflow.tracking import TrackerConfig
from sleapflow.tracking.linking import GapLinker
from sleapflow.tracking.motion import make_tracker
from sleapflow.tracking.synthetic import SyntheticClip, crossing_clip, walking_clip

CLIPS: dict[str, SyntheticClip] = {
    # tests/tracking/test_motion_trackers.py::hard_clip
    "gaps 5-25 + spurious (400 fr)": walking_clip(400, seed=0),
    # tests/tracking/test_motion_trackers.py::test_kalman_keeps_a_crossing...
    "head-on crossing (80 fr)": crossing_clip(speed=4.0, offset=0.0),
    # tests/tracking/test_gap_linking.py::long_gaps
    "gaps 30-45 + spurious (300 fr)": walking_clip(300, seed=3, gaps=(30, 45), gaps_per_animal=2),
}

TRACKERS: dict[str, TrackerConfig] = {
    "classic (default)": TrackerConfig(),
    "classic local_queues max_tracks=2": TrackerConfig(candidates_method="local_queues",
                                                       max_tracks=2),
    "classic local_queues max_tracks=2 --use_kalman": TrackerConfig(
        candidates_method="local_queues", max_tracks=2, use_kalman=True),
    "sort": TrackerConfig(tracker="sort"),
    "bytetrack": TrackerConfig(tracker="bytetrack"),
    "ocsort": TrackerConfig(tracker="ocsort"),
    "sort --max_gap 50": TrackerConfig(tracker="sort", max_gap=50),
    "bytetrack --max_gap 50": TrackerConfig(tracker="bytetrack", max_gap=50),
    "ocsort --max_gap 50": TrackerConfig(tracker="ocsort", max_gap=50),
}


def track_names(clip: SyntheticClip, cfg: TrackerConfig) -> list[list[str | None]]:
    tracker = make_tracker(cfg)
    linker = GapLinker(cfg.max_gap, 0, cfg.min_match_similarity) if cfg.max_gap else None
    out: list[list[str | None]] = []
    for f, (pts, scores) in enumerate(zip(clip.points, clip.scores)):
        result = tracker.track(pts, scores, f)
        row: list[str | None] = [None] * len(pts)
        for i, tid in zip(result.indices.tolist(), result.track_ids.tolist()):
            if tid >= 0:
                row[i] = f"track_{tid}"
        if linker is None:
            out.append(row)
            continue
        pred = FramePrediction(seq=f, video_id=0, frame_idx=f, points=pts,
                               point_scores=np.ones(pts.shape[:2]), instance_scores=scores,
                               track_names=tuple(row), tracking_scores=np.ones(len(pts)))
        out.extend(list(p.track_names or ()) for p in linker.push(pred))
    if linker is not None:
        out.extend(list(p.track_names or ()) for p in linker.flush())
    return out


def main() -> None:
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    print("| clip | tracker | tracks | IDSW | IDF1 | MOTA | HOTA | AssA |")
    print("|---|---|---|---|---|---|---|---|")
    for clip_name, clip in CLIPS.items():
        gt = clip.to_labels(truth=True)
        for name, cfg in TRACKERS.items():
            m = evaluate_labels(gt, clip.to_labels(truth=False, tracks=track_names(clip, cfg)))
            mot = m["mot"]
            print(f"| {clip_name} | {name} | {m['n_pred_tracks']} | {m['id_switches']} | "
                  f"{m['idf1']:.3f} | {mot['mota']:.3f} | {mot['hota']:.3f} | "
                  f"{mot['ass_a']:.3f} |")


if __name__ == "__main__":
    main()

"""Appearance (issue #27): identity metrics and tracker speed with and without re-ID vectors.

Synthetic clips from :mod:`sleapflow.tracking.synthetic` get one re-ID vector per detection
(:func:`~sleapflow.tracking.synthetic.appearance_vectors`: each animal its own direction plus
noise, spurious detections random ones). Every motion tracker runs beside its appearance
variant, and the classic tracker with and without ``--appearance_weight``, through the
synchronous tracker API; results are scored with ``eval-tracking``'s metrics against the true
identities. Two modes::

    python benchmarks/eval_appearance.py                 # accuracy table (Markdown)
    taskset -c 0 python benchmarks/eval_appearance.py --speed --frames 5000   # frames/s, 1 core
    python benchmarks/eval_appearance.py --export DIR    # the clips as .slp, for the reference
    python benchmarks/eval_appearance.py --score DIR     # score DIR/CLIP.TRACKER.slp outputs

``--export`` writes ``CLIP.gt.slp`` (true identities) and ``CLIP.pred.slp`` (untracked
detections carrying their vectors as sleap-io ``Embedding``s) for each clip; run the reference
on them, e.g. ``sleap-nn predict -i DIR/bounce.pred.slp --tracking --tracker botsort -o
DIR/bounce.botsort.slp``, then ``--score DIR`` scores every such output against its truth.

``--speed`` times ``track()`` per configuration on a long walking clip (tracker only: no
network, no vectors computed), alternating configurations within each repeat, and prints the
median frames/s of ``--repeats`` runs.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import time
from pathlib import Path

import numpy as np
import structlog

from sleapflow.evaluation.identity import evaluate_labels
from sleapflow.tracking import TrackerConfig
from sleapflow.tracking.motion import make_tracker
from sleapflow.tracking.synthetic import SyntheticClip, appearance_vectors, meeting_clip, walking_clip

CONFIGS: dict[str, TrackerConfig] = {
    "classic local_queues max_tracks=2": TrackerConfig(candidates_method="local_queues",
                                                       max_tracks=2),
    "  + --appearance_weight 0.3": TrackerConfig(candidates_method="local_queues", max_tracks=2,
                                                 appearance_weight=0.3),
    "classic (default)": TrackerConfig(),
    "  + --appearance_weight 0.3 ": TrackerConfig(appearance_weight=0.3),
    "sort": TrackerConfig(tracker="sort"),
    "deepsort": TrackerConfig(tracker="deepsort"),
    "strongsort": TrackerConfig(tracker="strongsort"),
    "bytetrack": TrackerConfig(tracker="bytetrack"),
    "botsort": TrackerConfig(tracker="botsort"),
    "ocsort": TrackerConfig(tracker="ocsort"),
    "deepocsort": TrackerConfig(tracker="deepocsort"),
}


#: Short file names of the clips for --export / --score.
SHORT = {"meet and turn back, hidden 9 fr (50 fr)": "bounce",
         "meet and walk on, hidden 9 fr (50 fr)": "pass",
         "gaps 5-25 + spurious (400 fr)": "gaps525",
         "gaps 30-45 + spurious (300 fr)": "gaps3045"}


def clips() -> dict[str, SyntheticClip]:
    return {
        "meet and turn back, hidden 9 fr (50 fr)": meeting_clip("bounce", seed=0),
        "meet and walk on, hidden 9 fr (50 fr)": meeting_clip("pass", seed=0),
        "gaps 5-25 + spurious (400 fr)": walking_clip(400, seed=0),
        "gaps 30-45 + spurious (300 fr)": walking_clip(300, seed=3, gaps=(30, 45),
                                                       gaps_per_animal=2),
    }


def export(folder: Path) -> None:
    import sleap_io as sio

    folder.mkdir(parents=True, exist_ok=True)
    for name, clip in clips().items():
        short = SHORT[name]
        pred = clip.to_labels(truth=False, video_name=f"{short}.mp4")
        for lf, vectors in zip(pred.labeled_frames, appearance_vectors(clip)):
            for inst, row in zip(lf.instances, vectors):
                inst.identity_embedding = sio.Embedding(row.astype(np.float32))
        sio.save_slp(pred, str(folder / f"{short}.pred.slp"), save_embedding_vectors=True)
        sio.save_slp(clip.to_labels(truth=True, video_name=f"{short}.mp4"),
                     str(folder / f"{short}.gt.slp"))
        print(f"{folder / short}.pred.slp / .gt.slp")


def score(folder: Path) -> None:
    import sleap_io as sio

    print("| clip | tracker | tracks | IDSW | IDF1 |")
    print("|---|---|---|---|---|")
    for name, short in SHORT.items():
        truth = folder / f"{short}.gt.slp"
        if not truth.exists():
            continue
        gt = sio.load_slp(str(truth))
        for out in sorted(folder.glob(f"{short}.*.slp")):
            tracker = out.name[len(short) + 1:-len(".slp")]
            if tracker in ("gt", "pred"):
                continue
            m = evaluate_labels(gt, sio.load_slp(str(out)))
            print(f"| {name} | {tracker} | {m['n_pred_tracks']} | {m['id_switches']} | "
                  f"{m['idf1']:.3f} |")


def track_names(clip: SyntheticClip, cfg: TrackerConfig,
                vectors: list[np.ndarray]) -> list[list[str | None]]:
    tracker = make_tracker(cfg)
    out: list[list[str | None]] = []
    for f, (pts, scores) in enumerate(zip(clip.points, clip.scores)):
        result = tracker.track(pts, scores, f, embeddings=vectors[f])
        row: list[str | None] = [None] * len(pts)
        for i, tid in zip(result.indices.tolist(), result.track_ids.tolist()):
            if tid >= 0:
                row[i] = f"track_{tid}"
        out.append(row)
    return out


def accuracy() -> None:
    print("| clip | tracker | tracks | IDSW | IDF1 |")
    print("|---|---|---|---|---|")
    for clip_name, clip in clips().items():
        gt = clip.to_labels(truth=True)
        vectors = appearance_vectors(clip)
        for name, cfg in CONFIGS.items():
            m = evaluate_labels(gt, clip.to_labels(truth=False,
                                                   tracks=track_names(clip, cfg, vectors)))
            print(f"| {clip_name} | {name.strip()} | {m['n_pred_tracks']} | {m['id_switches']} | "
                  f"{m['idf1']:.3f} |")


def speed(n_frames: int, repeats: int) -> None:
    clip = walking_clip(n_frames, seed=0)
    vectors = appearance_vectors(clip)
    runs: dict[str, list[float]] = {name: [] for name in CONFIGS}
    # One untimed pass of every configuration first: imports and first-call costs out of the figures.
    for cfg in CONFIGS.values():
        tracker = make_tracker(cfg)
        for f, (pts, scores) in enumerate(zip(clip.points[:50], clip.scores[:50])):
            tracker.track(pts, scores, f, embeddings=vectors[f])
    for _ in range(repeats):
        for name, cfg in CONFIGS.items():
            tracker = make_tracker(cfg)
            start = time.perf_counter()
            for f, (pts, scores) in enumerate(zip(clip.points, clip.scores)):
                tracker.track(pts, scores, f, embeddings=vectors[f])
            runs[name].append(n_frames / (time.perf_counter() - start))
    print("| tracker | frames/s (median) |")
    print("|---|---|")
    for name, fps in runs.items():
        print(f"| {name.strip()} | {statistics.median(fps):.0f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--speed", action="store_true", help="time the trackers instead")
    parser.add_argument("--frames", type=int, default=5000, help="--speed: clip length")
    parser.add_argument("--repeats", type=int, default=5, help="--speed: runs per tracker")
    parser.add_argument("--export", type=Path, help="write the clips as .slp files here")
    parser.add_argument("--score", type=Path, help="score the tracked .slp files here")
    args = parser.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    if args.export is not None:
        export(args.export)
    elif args.score is not None:
        score(args.score)
    elif args.speed:
        speed(args.frames, args.repeats)
    else:
        accuracy()


if __name__ == "__main__":
    main()

"""Identity metrics between two tracked ``.slp`` files, as ``sleap-nn eval-tracking`` 0.3.5 scores them.

Two blocks over the same frames and matcher:

* the *identity* block, sleap-nn's own definitions: a plain per-frame Hungarian match (OKS >= 0.5,
  or centroid distance <= 50 px for single-node skeletons), ID switches and fragmentations per
  ground-truth trajectory, IDF1 from one-to-one co-matches, MT/PT/ML with ``mt_threshold`` /
  ``ml_threshold``, length-weighted track purity;
* the ``mot`` block, TrackEval's CLEAR-MOT / Identity / HOTA (:mod:`sleapflow.evaluation.mot`).

Frames are keyed by (video path, frame index), falling back to the frame index when each side
has one video under different paths; every ground-truth frame of a video the prediction covers is
scored. Untracked ground truth is don't-care, untracked predictions are counted and never
matched, predictions a user label on the same frame replaces are left out of the ground truth.
Only the pose carrier exists in sleapflow (no segmentation masks).
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np
import sleap_io as sio

from sleapflow.errors import ConfigError
from sleapflow.evaluation import load_labels, mot
from sleapflow.evaluation.files import json_safe
from sleapflow.evaluation.matching import match_scores, video_key
from sleapflow.logs import get_logger
from sleapflow.outputs.files import check_output_target

__all__ = (
    "CARRIERS", "MATCH_THRESHOLDS", "Key", "compute_mot_metrics", "evaluate_labels", "identity_metrics",
    "identity_summary", "mot_summary", "motion_diagnostic", "run_identity_evaluation",
)


log = get_logger(__name__)

CARRIERS = ("auto", "pose", "mask")
#: Default match threshold per method: OKS in [0, 1], or a pixel radius for single-node skeletons.
MATCH_THRESHOLDS = {"oks": 0.5, "distance": 50.0}

Key = tuple[str, str]  # (video or "", track name): one trajectory


def _check_oks_stddev(value: Any) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError):
        out = float("nan")
    if not (np.isfinite(out) and out > 0):
        raise ConfigError(f"--oks_stddev must be a finite number > 0 (e.g. 0.025), got {value!r}.")
    return out


def _check_carrier(carrier: str) -> str:
    if carrier not in CARRIERS:
        raise ConfigError(f"--carrier must be one of {', '.join(CARRIERS)}, got {carrier!r}.")
    if carrier == "mask":
        raise ConfigError("--carrier mask: sleapflow has no segmentation masks; use --carrier pose.")
    return "pose"


def _points(instances: list[Any]) -> np.ndarray:
    if not instances:
        return np.zeros((0, 0, 2))
    return np.stack([np.asarray(i.numpy(), dtype=np.float64)[:, :2] for i in instances])


def _mean_centroids(points: np.ndarray) -> np.ndarray:
    """Mean of the visible nodes per instance; NaN rows for instances with none."""
    visible = ~np.isnan(points).any(axis=-1)
    count = visible.sum(axis=1)
    total = np.where(visible[..., None], points, 0.0).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = total / count[:, None]
    out[count == 0] = np.nan
    return out


def _match_method(gt: sio.Labels, pred: sio.Labels) -> str:
    """OKS, or centroid distance when either side has a single-node skeleton (OKS is then an
    equality test: the ground truth's area is zero)."""
    for labels in (gt, pred):
        for lf in labels:
            for inst in lf.instances:
                if len(inst.skeleton.nodes) == 1:
                    return "distance"
    return "oks"


def _superseded(frame: sio.LabeledFrame) -> set[int]:
    """ids of predictions that a user label on the same frame replaces (sleap-io's rule, plus any
    prediction a user instance links to through ``from_predicted``)."""
    unused = {id(p) for p in frame.unused_predictions}
    out = {id(i) for i in frame.instances if type(i) is sio.PredictedInstance and id(i) not in unused}
    predicted = {id(i) for i in frame.instances if isinstance(i, sio.PredictedInstance)}
    for inst in frame.instances:
        source = getattr(inst, "from_predicted", None)
        if not isinstance(inst, sio.PredictedInstance) and source is not None and id(source) in predicted:
            out.add(id(source))
    return out


def _gt_keep(frame: sio.LabeledFrame, user_labels_only: bool) -> tuple[list[Any], int]:
    """The ground-truth instances scored, and how many a user label replaced."""
    dets = list(frame.instances)
    if user_labels_only:
        return [d for d in dets if not isinstance(d, sio.PredictedInstance)], 0
    drop = _superseded(frame)
    kept = [d for d in dets if id(d) not in drop]
    return kept, len(dets) - len(kept)


def _similarity(gt: list[Any], pr: list[Any], method: str, threshold: float,
                oks_stddev: float) -> np.ndarray:
    """``(n_gt, n_pr)`` similarity: OKS (pixel score for zero-area ground truth), or for
    ``distance`` the pixel distance itself (identity block) — see :func:`_mot_similarity`."""
    if not gt or not pr:
        return np.zeros((len(gt), len(pr)))
    if method == "distance":
        gc, pc = _mean_centroids(_points(gt)), _mean_centroids(_points(pr))
        return np.linalg.norm(gc[:, None, :] - pc[None, :, :], axis=-1)
    return match_scores(_points(gt), _points(pr), None, oks_stddev)


def _match_frame(gt: list[Any], pr: list[Any], method: str, threshold: float,
                 oks_stddev: float) -> list[tuple[int, int]]:
    """Per-frame Hungarian matching; pairs that pass the threshold."""
    from scipy.optimize import linear_sum_assignment

    if not gt or not pr:
        return []
    if method == "distance":
        gc, pc = _mean_centroids(_points(gt)), _mean_centroids(_points(pr))
        # Fully occluded poses have no centroid: they never match (scipy rejects NaN).
        g_ok = np.flatnonzero(~np.isnan(gc).any(axis=1))
        p_ok = np.flatnonzero(~np.isnan(pc).any(axis=1))
        if not len(g_ok) or not len(p_ok):
            return []
        dist = np.linalg.norm(gc[g_ok][:, None, :] - pc[p_ok][None, :, :], axis=-1)
        rows, cols = linear_sum_assignment(dist)
        return [(int(g_ok[r]), int(p_ok[c])) for r, c in zip(rows, cols) if dist[r, c] <= threshold]
    sim = _similarity(gt, pr, method, threshold, oks_stddev)
    # An all-missing ground-truth pose has NaN OKS: it can never match (scipy rejects NaN).
    sim = np.nan_to_num(sim, nan=0.0)
    rows, cols = linear_sum_assignment(-sim)
    return [(int(r), int(c)) for r, c in zip(rows, cols) if sim[r, c] >= threshold]


def _mot_similarity(gt: list[Any], pr: list[Any], method: str, threshold: float,
                    oks_stddev: float) -> np.ndarray:
    """Similarity in [0, 1] for every pair: OKS, or ``max(0, 1 - d / (2 * threshold))`` for
    centroid distance ``d`` (0.5 is exactly ``threshold`` pixels); NaN becomes 0."""
    sim = _similarity(gt, pr, method, threshold, oks_stddev)
    if method == "distance" and sim.size:
        sim = np.maximum(0.0, 1.0 - sim / (2.0 * threshold))
    return np.nan_to_num(sim, nan=0.0)


class _Aligned:
    """Ground-truth and predicted frames paired by (video path, frame index)."""

    def __init__(self, gt: sio.Labels, pred: sio.Labels) -> None:
        self.notes: list[str] = []
        self.gt = {(video_key(lf.video), lf.frame_idx): lf for lf in gt}
        self.pred = {(video_key(lf.video), lf.frame_idx): lf for lf in pred}
        shared = set(self.gt) & set(self.pred)
        if not shared and len({k[0] for k in self.gt}) == 1 and len({k[0] for k in self.pred}) == 1:
            # One video each side, saved under different paths: only one pairing is possible.
            self.gt = {("", lf.frame_idx): lf for lf in gt}
            self.pred = {("", lf.frame_idx): lf for lf in pred}
            shared = set(self.gt) & set(self.pred)
            self.notes.append("aligned on frame_idx only (single video on both sides)")
        self.videos = {v for v, _ in shared}
        if not shared:
            self.notes.append("no frames in common -- nothing compared")
            self.keys: list[tuple[str, int]] = []
            return
        unscored = sorted({v for v, _ in self.gt} - self.videos)
        if unscored:
            self.notes.append(f"{len(unscored)} GT video(s) share no frame with the prediction "
                              f"and were not scored: {unscored}")
        self.keys = sorted(k for k in self.gt if k[0] in self.videos)
        self.missing = sum(1 for k in self.keys if k not in self.pred)
        if self.missing:
            self.notes.append(f"{self.missing} GT frames had no predicted counterpart -- scored "
                              "as misses (every tracked GT detection on them is unmatched)")


def _phrase(method: str, threshold: float) -> str:
    return f"centroid distance <= {threshold:g} px" if method == "distance" else f"OKS >= {threshold:g}"


_SUPERSEDED_NOTE = ("{} ground-truth detections were left out because a user label on the same "
                    "frame replaces them (a prediction corrected in the GUI -- same track, or "
                    "linked by from_predicted -- or its mask)")
_DONT_CARE_ONLY_NOTE = ("every prediction that matched ground truth matched an UNTRACKED "
                        "detection (don't-care) and was not scored. If the untracked ground "
                        "truth is stale predictions rather than animals left unlabeled, pass "
                        "user_labels_only=True (--user_labels_only).")


def _frame_sides(gt_frame: sio.LabeledFrame, pred_frame: sio.LabeledFrame | None,
                 user_labels_only: bool) -> tuple[list[Any], list[Any], list[Any], int, int]:
    """(kept GT, tracked predictions, all predictions, superseded count, predicted GT count)."""
    gt_kept, n_superseded = _gt_keep(gt_frame, user_labels_only)
    n_gt_predicted = sum(1 for d in (gt_frame.instances if user_labels_only else gt_kept)
                         if isinstance(d, sio.PredictedInstance))
    pred_all = list(pred_frame.instances) if pred_frame is not None else []
    pred_tracked = [d for d in pred_all if d.track is not None]
    return gt_kept, pred_tracked, pred_all, n_superseded, n_gt_predicted


def identity_metrics(gt_labels: sio.Labels, pred_labels: sio.Labels, *,
                     match_threshold: float | None = None, mt_threshold: float = 0.8,
                     ml_threshold: float = 0.2, user_labels_only: bool = False,
                     global_identity: bool = False, oks_stddev: float = 0.025) -> dict[str, Any]:
    """sleap-nn's identity block (field names and order of its ``IdentityMetrics``)."""
    from scipy.optimize import linear_sum_assignment

    oks_stddev = _check_oks_stddev(oks_stddev)
    method = _match_method(gt_labels, pred_labels)
    threshold = MATCH_THRESHOLDS[method] if match_threshold is None else float(match_threshold)
    m: dict[str, Any] = {
        "id_switches": 0, "idf1": float("nan"), "idp": float("nan"), "idr": float("nan"),
        "idf1_matched": float("nan"), "mostly_tracked": 0, "partly_tracked": 0, "mostly_lost": 0,
        "fragmentations": 0, "mean_gt_coverage": float("nan"), "mean_track_purity": float("nan"),
        "n_gt_dets": 0, "n_gt_untracked": 0, "n_pred_dets": 0, "n_matched": 0, "n_dont_care": 0,
        "n_frames_compared": 0, "n_frames_missing_pred": 0, "n_videos_compared": 0,
        "n_gt_tracks": 0, "n_pred_tracks": 0, "n_pred_untracked": 0, "match_method": method,
        "match_threshold": threshold, "global_identity": global_identity, "notes": [],
    }
    aligned = _Aligned(gt_labels, pred_labels)
    m["notes"].extend(aligned.notes)
    if not aligned.videos:
        return m

    def traj(video: str, track: sio.Track) -> Key:
        return ("" if global_identity else video, track.name)

    timeline: dict[Key, list[Key | None]] = defaultdict(list)  # per GT trajectory, frame order
    co: Counter[tuple[Key, Key]] = Counter()
    pred_dets: Counter[Key] = Counter()
    gt_tracks: set[Key] = set()
    pred_tracks: set[Key] = set()
    gt_names_by_video: dict[str, set[str]] = defaultdict(set)
    n_gt_predicted = n_gt_superseded = 0
    for key in aligned.keys:
        video = key[0]
        gt_kept, pred_tracked, pred_all, n_sup, n_pgt = _frame_sides(
            aligned.gt[key], aligned.pred.get(key), user_labels_only)
        n_gt_superseded += n_sup
        n_gt_predicted += n_pgt
        tracked_gt = [i for i, d in enumerate(gt_kept) if d.track is not None]
        m["n_gt_dets"] += len(tracked_gt)
        m["n_gt_untracked"] += len(gt_kept) - len(tracked_gt)
        m["n_pred_dets"] += len(pred_all)
        m["n_pred_untracked"] += len(pred_all) - len(pred_tracked)
        for i in tracked_gt:
            gt_tracks.add(traj(video, gt_kept[i].track))
            gt_names_by_video[video].add(gt_kept[i].track.name)
        pred_tracks.update(traj(video, d.track) for d in pred_tracked)
        matched: dict[int, Key] = {}
        for g, p in _match_frame(gt_kept, pred_tracked, method, threshold, oks_stddev):
            if gt_kept[g].track is None:
                m["n_dont_care"] += 1
                continue
            gk, pk = traj(video, gt_kept[g].track), traj(video, pred_tracked[p].track)
            matched[g] = pk
            co[(gk, pk)] += 1
            pred_dets[pk] += 1
            m["n_matched"] += 1
        for i in tracked_gt:
            timeline[traj(video, gt_kept[i].track)].append(matched.get(i))

    m["n_frames_compared"] = len(aligned.keys)
    m["n_frames_missing_pred"] = aligned.missing
    m["n_videos_compared"] = len(aligned.videos)
    m["n_gt_tracks"] = len(gt_tracks)
    m["n_pred_tracks"] = len(pred_tracks)
    notes = m["notes"]
    if n_gt_predicted:
        if user_labels_only:
            notes.append(f"{n_gt_predicted} predicted detections were dropped from the ground "
                         "truth (user_labels_only=True)")
            if not m["n_gt_dets"]:
                notes.append("user_labels_only=True left NO ground truth: every tracked detection "
                             "is model output. Tracked GT is usually predicted poses with tracks "
                             "assigned afterwards -- pass user_labels_only=False to score it.")
        else:
            notes.append(f"{n_gt_predicted} of the ground-truth detections are model output "
                         "(tracks assigned over predictions); scored as ground truth. Pass "
                         "user_labels_only=True to exclude them.")
    if n_gt_superseded:
        notes.append(_SUPERSEDED_NOTE.format(n_gt_superseded))
    if m["n_gt_untracked"]:
        notes.append(f"{m['n_gt_untracked']} untracked ground-truth detections are don't-care; "
                     f"{m['n_dont_care']} tracked predictions matched them and are scored as "
                     "neither hits nor false positives")
    if m["n_dont_care"] and m["n_gt_dets"] and not m["n_matched"]:
        notes.append(_DONT_CARE_ONLY_NOTE)
    if not global_identity and len(aligned.videos) > 1:
        counts = Counter(n for names in gt_names_by_video.values() for n in names)
        recurring = sorted(n for n, c in counts.items() if c > 1)
        if recurring:
            notes.append(f"GT track names recur across videos ({recurring[:5]}"
                         f"{' ...' if len(recurring) > 5 else ''}); scored as separate animals per "
                         "video. If they are global identities, pass global_identity=True "
                         "(--global_identity).")
    if m["n_gt_dets"] and pred_tracks and not m["n_matched"]:
        notes.append("no tracked prediction matched a tracked ground-truth detection "
                     f"({_phrase(method, threshold)}) -- check the match threshold and the carrier")

    coverages = []
    for entries in timeline.values():
        hits = [e is not None for e in entries]
        coverage = sum(hits) / len(entries)
        coverages.append(coverage)
        names = [e for e in entries if e is not None]
        m["id_switches"] += sum(1 for a, b in pairwise(names) if a != b)
        # A matched -> unmatched step counts only if the trajectory is matched again later.
        for i in range(1, len(hits)):
            if hits[i - 1] and not hits[i] and any(hits[i + 1:]):
                m["fragmentations"] += 1
        if coverage >= mt_threshold:
            m["mostly_tracked"] += 1
        elif coverage < ml_threshold:
            m["mostly_lost"] += 1
        else:
            m["partly_tracked"] += 1
    m["mean_gt_coverage"] = float(np.mean(coverages)) if coverages else float("nan")

    gt_names, pred_names = sorted(gt_tracks), sorted(pred_tracks)
    if gt_names and pred_names:
        gi = {n: i for i, n in enumerate(gt_names)}
        pi = {n: j for j, n in enumerate(pred_names)}
        weights = np.zeros((len(gt_names), len(pred_names)))
        for (g, p), c in co.items():
            weights[gi[g], pi[p]] = c
        rows, cols = linear_sum_assignment(-weights)
        idtp = float(weights[rows, cols].sum())
        idfn = m["n_gt_dets"] - idtp
        idfp = (m["n_pred_dets"] - m["n_pred_untracked"] - m["n_dont_care"]) - idtp
        m["idp"] = idtp / (idtp + idfp) if idtp + idfp > 0 else float("nan")
        m["idr"] = idtp / (idtp + idfn) if idtp + idfn > 0 else float("nan")
        denom = 2 * idtp + idfp + idfn
        m["idf1"] = 2 * idtp / denom if denom > 0 else float("nan")
        m["idf1_matched"] = idtp / m["n_matched"] if m["n_matched"] else float("nan")

    by_pred: dict[Key, Counter[Key]] = defaultdict(Counter)
    for (g, p), c in co.items():
        by_pred[p][g] += c
    if by_pred:
        total = sum(pred_dets[p] for p in by_pred)
        m["mean_track_purity"] = (float(sum(max(c.values()) for c in by_pred.values()) / total)
                                  if total else float("nan"))
    return m


def compute_mot_metrics(gt_labels: sio.Labels, pred_labels: sio.Labels, *,
                        match_threshold: float | None = None, oks_stddev: float = 0.025,
                        user_labels_only: bool = False,
                        global_identity: bool = False) -> dict[str, Any]:
    """The TrackEval ``mot`` block (field names of sleap-nn's ``MOTMetrics``).

    Raises:
        ValueError: a track occurs on two scored detections of one frame (TrackEval refuses).
    """
    from scipy.optimize import linear_sum_assignment

    oks_stddev = _check_oks_stddev(oks_stddev)
    method = _match_method(gt_labels, pred_labels)
    threshold = MATCH_THRESHOLDS[method] if match_threshold is None else float(match_threshold)
    if method == "distance" and not threshold > 0:
        raise ConfigError(f"--match_threshold must be a positive pixel distance for single-node "
                          f"skeletons, got {threshold!r}.")
    sim_threshold = 0.5 if method == "distance" else threshold
    nan = float("nan")
    m: dict[str, Any] = {k: nan for k in (
        "mota", "motp", "moda")}
    m.update({k: 0 for k in ("idsw", "frag", "mt", "pt", "ml", "clr_tp", "clr_fn", "clr_fp")})
    m.update({"idf1": nan, "idp": nan, "idr": nan, "idtp": 0, "idfp": 0, "idfn": 0})
    m.update({k: nan for k in ("hota", "det_a", "ass_a", "loc_a", "det_re", "det_pr", "ass_re",
                               "ass_pr", "owta", "hota_0", "loc_a_0")})
    m.update({"hota_alpha": [], "det_a_alpha": [], "ass_a_alpha": [], "loc_a_alpha": []})
    m.update({k: 0 for k in ("n_gt_dets", "n_gt_untracked", "n_pred_dets", "n_pred_untracked",
                             "n_dont_care", "n_frames", "n_frames_missing_pred", "n_videos")})
    m.update({"match_method": method, "match_threshold": threshold, "oks_stddev": oks_stddev,
              "global_identity": global_identity, "notes": []})
    aligned = _Aligned(gt_labels, pred_labels)
    m["notes"].extend(aligned.notes)
    if not aligned.videos:
        return m

    frames: dict[str, list[tuple[np.ndarray, np.ndarray, np.ndarray]]] = defaultdict(list)
    resets: dict[str, list[int]] = defaultdict(list)
    gt_ids: dict[Key, int] = {}
    pred_ids: dict[Key, int] = {}
    last_video: str | None = None
    n_gt_superseded = 0
    for key in aligned.keys:
        video = key[0]
        seq_key = "" if global_identity else video
        if global_identity and last_video is not None and video != last_video:
            resets[seq_key].append(len(frames[seq_key]))
        last_video = video
        gt_kept, pred_tracked, pred_all, n_sup, _ = _frame_sides(
            aligned.gt[key], aligned.pred.get(key), user_labels_only)
        n_gt_superseded += n_sup
        m["n_pred_untracked"] += len(pred_all) - len(pred_tracked)
        tracked = np.array([d.track is not None for d in gt_kept], dtype=bool)
        m["n_gt_untracked"] += int((~tracked).sum())
        sim = _mot_similarity(gt_kept, pred_tracked, method, threshold, oks_stddev)
        keep = np.ones(len(pred_tracked), dtype=bool)
        if sim.size and not tracked.all():
            # Don't-care preprocessing: predictions matched to untracked ground truth go.
            score = np.where(sim < sim_threshold - mot.EPS, 0.0, sim)
            rows, cols = linear_sum_assignment(-score)
            hit = score[rows, cols] > mot.EPS
            keep[cols[hit & ~tracked[rows]]] = False
        m["n_dont_care"] += int((~keep).sum())
        sim = sim[np.ix_(tracked, keep)] if sim.size else np.zeros((int(tracked.sum()), int(keep.sum())))
        gt_traj = [("" if global_identity else video, d.track.name) for d in gt_kept if d.track]
        pr_traj = [("" if global_identity else video, pred_tracked[j].track.name)
                   for j in np.flatnonzero(keep)]
        for side, trajs in (("Ground-truth", gt_traj), ("Predicted", pr_traj)):
            names = [n for _, n in trajs]
            dup = sorted({n for n in names if names.count(n) > 1})
            if dup:
                raise ValueError(f"{side} track(s) {dup} occur on more than one scored detection "
                                 f"in video {key[0]!r}, frame {key[1]} -- a track can be on at most "
                                 "one detection per frame. Fix the tracks (or drop the duplicate "
                                 "detections) before scoring.")
        frames[seq_key].append((
            np.array([gt_ids.setdefault(k, len(gt_ids)) for k in gt_traj], dtype=np.int64),
            np.array([pred_ids.setdefault(k, len(pred_ids)) for k in pr_traj], dtype=np.int64),
            sim))
    per_seq = [mot.mot_metrics(mot.MOTSequence([g for g, _, _ in f], [p for _, p, _ in f],
                                               [s for _, _, s in f], tuple(resets[k])),
                               sim_threshold)
               for k, f in frames.items()]
    res = mot.combine_sequences(per_seq)
    for ours, theirs in (("mota", "MOTA"), ("motp", "MOTP"), ("moda", "MODA"), ("idf1", "IDF1"),
                         ("idp", "IDP"), ("idr", "IDR")):
        m[ours] = float(res[theirs])
    for ours, theirs in (("idsw", "IDSW"), ("frag", "Frag"), ("mt", "MT"), ("pt", "PT"),
                         ("ml", "ML"), ("clr_tp", "CLR_TP"), ("clr_fn", "CLR_FN"),
                         ("clr_fp", "CLR_FP"), ("idtp", "IDTP"), ("idfp", "IDFP"),
                         ("idfn", "IDFN")):
        m[ours] = int(res[theirs])
    for ours, theirs in (("hota", "HOTA"), ("det_a", "DetA"), ("ass_a", "AssA"), ("loc_a", "LocA"),
                         ("det_re", "DetRe"), ("det_pr", "DetPr"), ("ass_re", "AssRe"),
                         ("ass_pr", "AssPr"), ("owta", "OWTA")):
        m[ours] = float(np.mean(res[theirs]))
    m["hota_0"], m["loc_a_0"] = float(res["HOTA(0)"]), float(res["LocA(0)"])
    for ours, theirs in (("hota_alpha", "HOTA"), ("det_a_alpha", "DetA"), ("ass_a_alpha", "AssA"),
                         ("loc_a_alpha", "LocA")):
        m[ours] = [float(v) for v in res[theirs]]
    m["n_gt_dets"] = m["clr_tp"] + m["clr_fn"]
    m["n_pred_dets"] = m["clr_tp"] + m["clr_fp"]
    m["n_frames"] = len(aligned.keys)
    m["n_frames_missing_pred"] = aligned.missing
    m["n_videos"] = len(aligned.videos)
    if n_gt_superseded:
        m["notes"].append(_SUPERSEDED_NOTE.format(n_gt_superseded))
    if m["n_gt_untracked"]:
        m["notes"].append(f"{m['n_gt_untracked']} untracked ground-truth detections are "
                          f"don't-care; {m['n_dont_care']} tracked predictions matched them and "
                          "were removed before scoring")
    if m["n_dont_care"] and m["n_gt_dets"] and not m["clr_tp"]:
        m["notes"].append(_DONT_CARE_ONLY_NOTE)
    if m["n_gt_dets"] and m["n_pred_dets"] and not m["clr_tp"]:
        m["notes"].append("no tracked prediction matched a tracked ground-truth detection "
                          f"({_phrase(method, threshold)}) -- check the match threshold and the "
                          "carrier")
    return m


def motion_diagnostic(labels: sio.Labels) -> dict[str, Any]:
    """Per-frame step of each tracked animal relative to its size: ~0.01-0.06 for real video,
    several units for a temporally sparse set (a renumbered training split)."""
    prev: dict[Key, tuple[int, np.ndarray]] = {}
    steps: list[float] = []
    gaps: list[int] = []
    sizes: list[float] = []
    for frame in sorted(labels, key=lambda lf: (video_key(lf.video), lf.frame_idx)):
        video = video_key(frame.video)
        for det in frame.instances:
            if det.track is None:
                continue
            pts = np.asarray(det.numpy(), dtype=np.float64)[:, :2]
            pts = pts[~np.isnan(pts).any(axis=1)]
            if not len(pts):
                continue
            center = pts.mean(axis=0)
            sizes.append(float(np.ptp(pts, axis=0).max()))
            key = (video, det.track.name)
            if key in prev:
                gap = frame.frame_idx - prev[key][0]
                if gap > 0:
                    steps.append(float(np.linalg.norm(center - prev[key][1])) / gap)
                    gaps.append(gap)
            prev[key] = (frame.frame_idx, center)
    nan = float("nan")
    if not steps or not sizes:
        return {"median_step_px": nan, "median_size_px": nan, "step_over_size": nan,
                "median_frame_gap": nan, "is_continuous": False,
                "note": "not enough tracked detections to judge"}
    step, size, gap = float(np.median(steps)), float(np.median(sizes)), float(np.median(gaps))
    if size <= 0.0:
        return {"median_step_px": round(step, 2), "median_size_px": size, "step_over_size": nan,
                "median_frame_gap": gap, "is_continuous": False,
                "note": "detections have no measurable extent (single-node skeleton?) -- cannot "
                        "judge continuity"}
    ratio = step / size
    return {"median_step_px": round(step, 2), "median_size_px": round(size, 2),
            "step_over_size": round(ratio, 3), "median_frame_gap": gap,
            "is_continuous": bool(ratio < 0.5)}


def identity_summary(m: dict[str, Any]) -> str:
    """One line with the identity block's headline numbers (sleap-nn's layout)."""
    missing = f", {m['n_frames_missing_pred']} without a prediction" if m["n_frames_missing_pred"] else ""
    return (f"IDSW={m['id_switches']}  IDF1={m['idf1']:.4f} (P={m['idp']:.4f} R={m['idr']:.4f}; "
            f"matched-only {m['idf1_matched']:.4f})  MT/PT/ML={m['mostly_tracked']}/"
            f"{m['partly_tracked']}/{m['mostly_lost']}  Frag={m['fragmentations']}  "
            f"purity={m['mean_track_purity']:.4f}  cov={m['mean_gt_coverage']:.4f}  "
            f"[{m['n_matched']}/{m['n_gt_dets']} GT dets matched, {m['n_pred_dets']} pred, "
            f"{m['n_frames_compared']} frames{missing}]")


def mot_summary(m: dict[str, Any]) -> str:
    """One line with the ``mot`` block's headline numbers."""
    return (f"MOTA={m['mota']:.4f} MOTP={m['motp']:.4f} IDSW={m['idsw']} Frag={m['frag']} "
            f"MT/PT/ML={m['mt']}/{m['pt']}/{m['ml']}  IDF1={m['idf1']:.4f} (P={m['idp']:.4f} "
            f"R={m['idr']:.4f})  HOTA={m['hota']:.4f} (DetA={m['det_a']:.4f} "
            f"AssA={m['ass_a']:.4f} LocA={m['loc_a']:.4f})  [{m['clr_tp']} TP / {m['clr_fn']} FN / "
            f"{m['clr_fp']} FP over {m['n_gt_dets']} GT dets, {m['n_frames']} frames]")


def evaluate_labels(gt_labels: sio.Labels, pred_labels: sio.Labels, *, carrier: str = "auto",
                    match_threshold: float | None = None, mt_threshold: float = 0.8,
                    ml_threshold: float = 0.2, user_labels_only: bool = False,
                    global_identity: bool = False, oks_stddev: float = 0.025) -> dict[str, Any]:
    """Both blocks plus ``carrier`` and ``motion_diagnostic``: the dict sleap-nn saves.

    Raises:
        ConfigError: nothing is scoreable (no tracked prediction, no frame in common, no tracked
            ground truth), or an option is invalid.
    """
    carrier = _check_carrier(carrier)
    oks_stddev = _check_oks_stddev(oks_stddev)
    if not any(d.track is not None for lf in pred_labels for d in lf.instances):
        raise ConfigError("Nothing to score: the prediction has 0 tracked pose detections. "
                          "Identity metrics score tracks -- run sleapflow track -t first.")
    motion = motion_diagnostic(gt_labels)
    if not np.isnan(motion["step_over_size"]) and not motion["is_continuous"]:
        log.warning("ground truth does not look like continuous video; identity metrics on a "
                    "temporally sparse set are not meaningful",
                    step_over_size=motion["step_over_size"])
    ident = identity_metrics(gt_labels, pred_labels, match_threshold=match_threshold,
                             mt_threshold=mt_threshold, ml_threshold=ml_threshold,
                             user_labels_only=user_labels_only, global_identity=global_identity,
                             oks_stddev=oks_stddev)
    if not ident["n_frames_compared"]:
        raise ConfigError("Nothing to score: the prediction shares no frame with the ground truth "
                          "(compared by video path and frame index).")
    if not ident["n_gt_dets"]:
        raise ConfigError(f"Nothing to score: no tracked ground-truth pose detections in the "
                          f"{ident['n_frames_compared']} frames compared. Check that the ground "
                          "truth carries tracks.")
    try:
        mot_block: dict[str, Any] = compute_mot_metrics(
            gt_labels, pred_labels, match_threshold=match_threshold, oks_stddev=oks_stddev,
            user_labels_only=user_labels_only, global_identity=global_identity)
    except ValueError as exc:
        # The legacy block still stands; the mot block says why it is missing.
        mot_block = {"error": str(exc)}
    return {**ident, "carrier": carrier, "motion_diagnostic": motion, "mot": mot_block}


def _check_number(name: str, value: float | None, lo: float, hi: float) -> None:
    if value is not None and not (np.isfinite(value) and lo <= value <= hi):
        raise ConfigError(f"--{name} must be in [{lo:g}, {hi:g}], got {value!r}.")


def run_identity_evaluation(ground_truth_path: str, predicted_path: str, *, carrier: str = "auto",
                            match_threshold: float | None = None, mt_threshold: float = 0.8,
                            ml_threshold: float = 0.2, user_labels_only: bool = False,
                            global_identity: bool = False, save_metrics: str | None = None,
                            oks_stddev: float = 0.025) -> dict[str, Any]:
    """Load both files, score them, optionally write the JSON (NaN as ``null``).

    Every option is checked before a file is read.
    """
    _check_carrier(carrier)
    _check_oks_stddev(oks_stddev)
    _check_number("mt_threshold", mt_threshold, 0.0, 1.0)
    _check_number("ml_threshold", ml_threshold, 0.0, 1.0)
    if match_threshold is not None and not (np.isfinite(match_threshold) and match_threshold >= 0):
        raise ConfigError(f"--match_threshold must be a number >= 0, got {match_threshold!r}.")
    if save_metrics:
        # A folder, device, FIFO or socket is refused before anything is read or scored.
        check_output_target(save_metrics, "--save_metrics")
    for path, what in ((ground_truth_path, "--ground_truth_path"), (predicted_path, "--predicted_path")):
        if not Path(path).is_file():
            raise ConfigError(f"{what} {path!r} does not exist; give a tracked .slp file.")
    gt = load_labels(ground_truth_path, "ground truth")
    pred = load_labels(predicted_path, "predicted")
    result = evaluate_labels(gt, pred, carrier=carrier, match_threshold=match_threshold,
                             mt_threshold=mt_threshold, ml_threshold=ml_threshold,
                             user_labels_only=user_labels_only, global_identity=global_identity,
                             oks_stddev=oks_stddev)
    if save_metrics:
        path = Path(save_metrics)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        # Written beside and renamed, so a failure never leaves a half-written metrics file.
        tmp.write_text(json.dumps(json_safe(result), indent=2))
        tmp.replace(path)
    return result

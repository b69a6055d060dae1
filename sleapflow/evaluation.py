"""Pose-evaluation metrics that reproduce sleap-nn 0.3.5's ``eval`` (keys, values, file format).

Ground-truth and predicted ``sio.Labels`` are paired frame by frame (videos paired by sleap-io's
``Labels.match``), predicted instances are greedily matched to ground-truth instances by OKS in
PASCAL-VOC fashion, and the matched pairs feed the metric families sleap-nn reports: VOC
precision/recall over OKS and PCK match scores, mean OKS, keypoint distance percentiles, PCK and
node-visibility counts. ``match_method="centroid"`` reports detection and distance metrics of
single-point (centroid) predictions instead.

Unlike the reference, which calls ``compute_oks`` once per predicted instance, every frame's full
OKS matrix is computed up front, and frames with the same instance counts are stacked and
evaluated as one array operation; the greedy assignment then walks prediction ranks for all
those frames at once. Behaviours of the reference that look accidental but change numbers are
kept and marked *[as-implemented]*; deliberate differences are marked *[differs]*.
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import sleap_io as sio
import structlog

from sleapflow.errors import ConfigError, VideoDecodeError
from sleapflow.ops.instances import gt_centroids

__all__ = [
    "MATCH_METHODS",
    "Evaluator",
    "compute_distance_match_score",
    "compute_instance_area",
    "compute_oks",
    "find_frame_pairs",
    "format_summary",
    "load_metrics",
    "match_frame_pairs",
    "match_instances",
    "run_evaluation",
    "save_metrics",
]

logger = structlog.get_logger(__name__)

#: Every value sleap-nn 0.3.5's ``--match_method`` accepts; only the first three are implemented.
MATCH_METHODS = ("oks", "centroid", "auto", "mask", "semantic", "bbox")
_IMPLEMENTED_METHODS = ("oks", "centroid", "auto")

#: A ground-truth bounding box smaller than this (px²) turns OKS into an exact-equality test, so
#: sleap-nn 0.3.5 scores such instances by mean pixel distance instead (see
#: ``compute_distance_match_score``).
DEGENERATE_AREA_EPS = 1e-9
#: Distance (px) at which the degenerate-instance score reaches 0; fixed in the reference.
DEGENERATE_PIXEL_THRESHOLD = 50.0
#: Centroid-mode pixel match threshold used when the caller leaves ``match_threshold`` at 0.
CENTROID_DEFAULT_THRESHOLD = 50.0

_EPS = np.spacing(1)
_PERCENTILES = (50, 75, 90, 95, 99)
_VOC_KEYS = (
    "match_score_thresholds",
    "recall_thresholds",
    "match_scores",
    "precisions",
    "recalls",
    "AP",
    "AR",
    "mAP",
    "mAR",
)
# Large per-pair arrays only useful offline; left out of the JSON sibling as sleap-nn does.
_JSON_PRUNE_KEYS: dict[str, tuple[str, ...]] = {"pck_metrics": ("pcks",)}


# ------------------------------------------------------------------------------------------------
# Pure array maths
# ------------------------------------------------------------------------------------------------


def compute_instance_area(points: np.ndarray) -> np.ndarray:
    """Return the bounding-box area of each instance's visible points.

    Args:
        points: ``(..., n_nodes, n_dims)`` coordinates, NaN for missing nodes; a 2-D array is
            treated as one instance.

    Returns:
        ``(..., )`` areas (product of the per-axis extents); NaN for an instance with no
        visible node.
    """
    points = np.asarray(points, dtype=np.float64)
    if points.ndim == 2:
        points = points[None]
    # fmin/fmax skip NaN like nanmin/nanmax but stay silent on all-NaN instances.
    lo = np.fmin.reduce(points, axis=-2)
    hi = np.fmax.reduce(points, axis=-2)
    return np.prod(hi - lo, axis=-1)


def compute_oks(
    points_gt: np.ndarray,
    points_pr: np.ndarray,
    scale: float | np.ndarray | None = None,
    stddev: float | np.ndarray = 0.025,
    use_cocoeval: bool = True,
) -> np.ndarray:
    """Object keypoint similarity between every ground-truth and every predicted instance.

    Args:
        points_gt: ``(..., n_gt, n_nodes, n_dims)`` ground truth, NaN for missing nodes. Leading
            batch dimensions (e.g. a stack of frames) are broadcast against ``points_pr``'s.
        points_pr: ``(..., n_pr, n_nodes, n_dims)`` predictions.
        scale: Normalising area per ground-truth instance: a scalar for all of them, an
            ``(..., n_gt)`` array, or None for each instance's bounding-box area (not its
            square root, as in sleap-nn).
        stddev: Per-node spread, scalar or ``(n_nodes,)``.
        use_cocoeval: Normalise like pycocotools (``(2σ)²·2·(s+ε)``) rather than the paper
            (``σ²·2·(s+ε)²``).

    Returns:
        ``(..., n_gt, n_pr)`` OKS in [0, 1]; NaN for a ground-truth instance with no visible
        node. Missing predicted nodes score 0; missing ground-truth nodes are left out.
    """
    gt = np.asarray(points_gt, dtype=np.float64)
    pr = np.asarray(points_pr, dtype=np.float64)
    if gt.ndim == 2:
        gt = gt[None]
    if pr.ndim == 2:
        pr = pr[None]
    n_nodes = gt.shape[-2]
    area = compute_instance_area(gt) if scale is None else np.asarray(scale, dtype=np.float64)
    area = np.broadcast_to(area, gt.shape[:-2])
    sigma = np.broadcast_to(np.asarray(stddev, dtype=np.float64), (n_nodes,))

    # (..., n_gt, n_pr, n_nodes) squared distances, one broadcast for the whole frame (or stack).
    sq_dist = ((gt[..., :, None, :, :] - pr[..., None, :, :, :]) ** 2).sum(axis=-1)
    if use_cocoeval:
        spread = (2 * sigma) ** 2
        scale_factor = 2 * (area + _EPS)
    else:
        spread = sigma**2
        scale_factor = 2 * ((area + _EPS) ** 2)
    norm = spread * scale_factor[..., None]  # (..., n_gt, n_nodes)

    missing_pr = np.isnan(pr).any(axis=-1)  # (..., n_pr, n_nodes)
    missing_gt = np.isnan(gt).any(axis=-1)  # (..., n_gt, n_nodes)
    # A missing prediction counts as infinitely far, i.e. KS 0.
    sq_dist = np.where(missing_pr[..., None, :, :], np.inf, sq_dist)
    ks = np.exp(-(sq_dist / norm[..., :, None, :]))
    ks = np.where(missing_gt[..., :, None, :], 0.0, ks)
    # float32 count as in the reference, so the quotient rounds identically.
    n_visible = (~missing_gt).astype(np.float32).sum(axis=-1)[..., None]
    # An all-missing ground truth gives 0/0 = NaN on purpose: it can never be matched.
    with np.errstate(invalid="ignore", divide="ignore"):
        return ks.sum(axis=-1) / n_visible


def compute_distance_match_score(
    points_gt: np.ndarray,
    points_pr: np.ndarray,
    pixel_threshold: float = DEGENERATE_PIXEL_THRESHOLD,
) -> np.ndarray:
    """Pixel-distance match score that sleap-nn 0.3.5 substitutes for OKS on zero-area instances.

    Args:
        points_gt: ``(..., n_gt, n_nodes, n_dims)`` ground truth, NaN for missing nodes.
        points_pr: ``(..., n_pr, n_nodes, n_dims)`` predictions.
        pixel_threshold: Mean distance at which the score reaches 0.

    Returns:
        ``(..., n_gt, n_pr)`` scores ``max(0, 1 - mean_dist / pixel_threshold)`` where the mean
        runs over nodes visible in both instances; 0 when no node is visible in both.
    """
    gt = np.asarray(points_gt, dtype=np.float64)
    pr = np.asarray(points_pr, dtype=np.float64)
    if gt.ndim == 2:
        gt = gt[None]
    if pr.ndim == 2:
        pr = pr[None]
    both = (~np.isnan(gt).any(axis=-1))[..., :, None, :] & (~np.isnan(pr).any(axis=-1))[
        ..., None, :, :
    ]
    dist = np.sqrt(((gt[..., :, None, :, :] - pr[..., None, :, :, :]) ** 2).sum(axis=-1))
    count = both.sum(axis=-1)
    total = np.where(both, dist, 0.0).sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        score = np.maximum(0.0, 1.0 - (total / count) / pixel_threshold)
    return np.where(count > 0, score, 0.0)


def _match_scores(
    gt: np.ndarray, pr: np.ndarray, scale: float | None, stddev: float
) -> np.ndarray:
    """OKS, with the reference's distance score for ground truth whose bounding box has no area."""
    oks = compute_oks(gt, pr, scale=scale, stddev=stddev)
    # NaN area (nothing visible) compares False, so such instances keep their NaN OKS.
    degenerate = compute_instance_area(gt) < DEGENERATE_AREA_EPS
    if degenerate.any():
        fallback = compute_distance_match_score(gt, pr, DEGENERATE_PIXEL_THRESHOLD)
        oks = np.where(degenerate[..., :, None], fallback, oks)
    return oks


def _greedy_assign(scores: np.ndarray, order: np.ndarray, threshold: float) -> np.ndarray:
    """PASCAL-VOC greedy assignment for a stack of frames with equal instance counts.

    Args:
        scores: ``(n_frames, n_gt, n_pr)`` match scores (NaN = never matchable).
        order: ``(n_frames, n_ranks)`` predicted-instance index tried at each rank (best
            detection first); -1 where a frame has no prediction at that rank.
        threshold: A pair matches only if its score is strictly above this.

    Returns:
        ``(n_frames, n_ranks)`` ground-truth index matched at each rank, -1 if unmatched.
    """
    n_frames, n_gt, _ = scores.shape
    with np.errstate(invalid="ignore"):
        valid = scores > threshold  # NaN compares False: unmatchable, as the reference's NaN mask
    available = np.ones((n_frames, n_gt), dtype=bool)
    matched = np.full(order.shape, -1, dtype=np.intp)
    rows = np.arange(n_frames)
    # One iteration per prediction rank, all frames of the stack at once; the reference loops
    # over every prediction of every frame.
    for rank in range(order.shape[1]):
        pred = order[:, rank]
        active = pred >= 0
        pred = np.where(active, pred, 0)
        ok = valid[rows, :, pred] & available & active[:, None]
        has = ok.any(axis=1)
        if not has.any():
            continue
        # argmax takes the first maximum: ties go to the lowest remaining ground-truth index,
        # exactly like the reference's stable sort over the remaining ground truth.
        best = np.where(ok, scores[rows, :, pred], -np.inf).argmax(axis=1)
        matched[has, rank] = best[has]
        available[rows[has], best[has]] = False
    return matched


def _rank_order(scores: np.ndarray, has_score: np.ndarray) -> np.ndarray:
    """Prediction indices by descending detection score (stable), one row per frame.

    *[as-implemented]* Like the reference, a frame whose predictions include instances without a
    ``score`` (user instances) is ordered by the scored ones only and those positions are then
    used as indices into the full instance list; the unscored tail is never tried.
    """
    order = np.argsort(-scores, axis=1, kind="stable")
    for row in np.flatnonzero(~has_score.all(axis=1)):
        sub = np.argsort(-scores[row][has_score[row]], kind="stable")
        order[row] = -1
        order[row, : sub.size] = sub
    return order


# ------------------------------------------------------------------------------------------------
# Frames and instances
# ------------------------------------------------------------------------------------------------


def _video_key(video: sio.Video | None) -> str:
    """The path sleap-nn reports for a video: embedded source, backend file, filename, id."""
    if video is None:
        return "unknown"
    path = None
    backend = getattr(video, "backend", None)
    if backend is not None:
        path = getattr(backend, "source_filename", None)
        if path is None:
            path = getattr(backend, "filename", None)
    if path is None:
        path = getattr(video, "filename", None)
        if isinstance(path, list) and path:
            path = path[0]
    if path is None:
        return f"video_{id(video)}"
    return str(path)


def _user_centroids(frame: sio.LabeledFrame) -> list[Any]:
    """A frame's user (hand-made or mask-derived) centroid annotations."""
    return [c for c in (getattr(frame, "centroids", None) or []) if not c.is_predicted]


def find_frame_pairs(
    labels_gt: sio.Labels,
    labels_pr: sio.Labels,
    user_labels_only: bool = True,
    *,
    keep_user_centroid_frames: bool = False,
    video_map: dict[sio.Video, sio.Video | None] | None = None,
) -> list[tuple[sio.LabeledFrame, sio.LabeledFrame]]:
    """Pair ground-truth and predicted frames of the same video and frame index.

    Args:
        labels_gt: Ground-truth labels.
        labels_pr: Predicted labels.
        user_labels_only: Keep only user instances of ground-truth frames (in copies; the
            caller's labels are never modified) and drop frames left empty. If False, every
            instance of a ground-truth frame, predicted ones included, is ground truth.
        keep_user_centroid_frames: Also keep ground-truth frames that carry user centroid
            annotations but no user instance (centroid mode).
        video_map: ``{predicted video: ground-truth video or None}``; by default sleap-io's
            ``labels_gt.match(labels_pr).video_map`` (path, file identity, source chains, shape).

    Returns:
        ``(frame_gt, frame_pr)`` pairs, grouped by predicted video in ``video_map`` order and
        in ground-truth frame order within a video. With several prediction frames for one
        ground-truth frame the last one is used, as sleap-io 0.9's ``Labels.find`` does.
    """
    if video_map is None:
        video_map = labels_gt.match(labels_pr).video_map
    # One pass over each file instead of a Labels.find per frame.
    gt_by_video: dict[int, list[sio.LabeledFrame]] = {}
    for lf in labels_gt.labeled_frames:
        gt_by_video.setdefault(id(lf.video), []).append(lf)
    pr_index: dict[tuple[int, int], sio.LabeledFrame] = {}
    duplicates = 0
    for lf in labels_pr.labeled_frames:
        key = (id(lf.video), lf.frame_idx)
        duplicates += key in pr_index
        pr_index[key] = lf
    if duplicates:
        logger.warning("duplicate prediction frames; using the last of each", count=duplicates)

    pairs: list[tuple[sio.LabeledFrame, sio.LabeledFrame]] = []
    for video_pr, video_gt in video_map.items():
        if video_gt is None:
            continue
        frames_gt = gt_by_video.get(id(video_gt), [])
        if user_labels_only:
            kept = []
            for lf in frames_gt:
                users = lf.user_instances
                if users or (keep_user_centroid_frames and _user_centroids(lf)):
                    # A shallow copy with its own instance list: the caller's frame keeps its
                    # predicted instances (sleap-nn < 0.3.5 overwrote them in place).
                    lf = copy.copy(lf)
                    lf.instances = users
                    kept.append(lf)
            frames_gt = kept
        for lf_gt in frames_gt:
            lf_pr = pr_index.get((id(video_pr), lf_gt.frame_idx))
            if lf_pr is not None:
                pairs.append((lf_gt, lf_pr))
    return pairs


@dataclass(frozen=True, slots=True)
class _Side:
    """All instances of one side of the frame pairs, stacked into one array."""

    points: np.ndarray  # (n_instances, n_nodes, n_dims), NaN = missing node
    offsets: np.ndarray  # (n_frames + 1,) start of each frame's block of rows
    instances: list[Any]  # the instance objects, row order
    scores: np.ndarray  # (n_instances,) detection score, NaN where absent
    has_score: np.ndarray  # (n_instances,) whether the instance has a ``score`` attribute


def _stack_side(per_frame: Sequence[Sequence[Any]], what: str) -> _Side:
    """Stack every frame's instances once so all later maths is array maths."""
    counts = np.fromiter((len(f) for f in per_frame), dtype=np.intp, count=len(per_frame))
    offsets = np.zeros(len(per_frame) + 1, dtype=np.intp)
    np.cumsum(counts, out=offsets[1:])
    flat = [inst for frame in per_frame for inst in frame]
    if not flat:
        empty = np.empty(0)
        return _Side(np.empty((0, 0, 2)), offsets, flat, empty, empty.astype(bool))
    try:
        xy = np.stack([np.asarray(inst.points["xy"], dtype=np.float64) for inst in flat])
        visible = np.stack([np.asarray(inst.points["visible"], dtype=bool) for inst in flat])
    except ValueError as exc:
        raise ConfigError(
            f"The {what} instances do not all have the same number of nodes; evaluate files "
            "that use one skeleton."
        ) from exc
    points = np.where(visible[..., None], xy, np.nan)
    has_score = np.fromiter((hasattr(i, "score") for i in flat), dtype=bool, count=len(flat))
    scores = np.fromiter(
        (float(getattr(i, "score", np.nan)) for i in flat), dtype=np.float64, count=len(flat)
    )
    return _Side(points, offsets, flat, scores, has_score)


@dataclass(frozen=True, slots=True)
class _Matches:
    """Matched pairs in reference order (frame pair, then detection rank) plus the FN count."""

    gt_rows: np.ndarray  # row into the ground-truth side
    pr_rows: np.ndarray  # row into the predicted side
    frame_pos: np.ndarray  # index of the frame pair
    scores: np.ndarray  # OKS (or the degenerate distance score) of each pair
    n_false_negatives: int
    unmatched_gt_rows: np.ndarray


def _check_nodes(gt: _Side, pr: _Side) -> None:
    if gt.points.shape[0] and pr.points.shape[0] and gt.points.shape[1:] != pr.points.shape[1:]:
        raise ConfigError(
            f"Ground truth has {gt.points.shape[1]} nodes per instance but predictions have "
            f"{pr.points.shape[1]}; OKS evaluation needs the same skeleton on both sides "
            "(use match_method='centroid' for single-node predictions)."
        )


def _match_oks(
    gt: _Side, pr: _Side, stddev: float, scale: float | None, threshold: float
) -> _Matches:
    """Greedy OKS matching of every frame pair, frames with equal instance counts stacked."""
    _check_nodes(gt, pr)
    n_gt = np.diff(gt.offsets)
    n_pr = np.diff(pr.offsets)
    parts: list[tuple[np.ndarray, ...]] = []
    # *[differs]* A ground-truth frame with no instance but some predictions crashes the
    # reference (stacking an empty list); here its predictions simply stay unmatched.
    live = np.flatnonzero((n_gt > 0) & (n_pr > 0))
    if live.size:
        shapes = np.stack([n_gt[live], n_pr[live]], axis=1)
        uniq, bucket_of = np.unique(shapes, axis=0, return_inverse=True)
        bucket_of = bucket_of.reshape(-1)
        for b, (g, p) in enumerate(uniq):
            frames = live[bucket_of == b]
            gt_rows = gt.offsets[frames][:, None] + np.arange(g)  # (B, g)
            pr_rows = pr.offsets[frames][:, None] + np.arange(p)  # (B, p)
            scores = _match_scores(gt.points[gt_rows], pr.points[pr_rows], scale, stddev)
            order = _rank_order(pr.scores[pr_rows], pr.has_score[pr_rows])
            matched = _greedy_assign(scores, order, threshold)
            fb, rank = np.nonzero(matched >= 0)
            g_local = matched[fb, rank]
            p_local = order[fb, rank]
            parts.append(
                (
                    frames[fb],
                    rank,
                    gt_rows[fb, g_local],
                    pr_rows[fb, p_local],
                    scores[fb, g_local, p_local],
                )
            )
    if parts:
        frame_pos, rank, gt_rows, pr_rows, scores = (np.concatenate(c) for c in zip(*parts))
        # Back to the reference's order: frame pair first, then detection rank.
        sort = np.lexsort((rank, frame_pos))
        frame_pos, gt_rows, pr_rows, scores = (
            a[sort] for a in (frame_pos, gt_rows, pr_rows, scores)
        )
    else:
        frame_pos = gt_rows = pr_rows = np.empty(0, dtype=np.intp)
        scores = np.empty(0)
    unmatched = np.ones(gt.points.shape[0], dtype=bool)
    unmatched[gt_rows] = False
    unmatched_rows = np.flatnonzero(unmatched)
    return _Matches(gt_rows, pr_rows, frame_pos, scores, int(unmatched_rows.size), unmatched_rows)


def match_instances(
    frame_gt: sio.LabeledFrame,
    frame_pr: sio.LabeledFrame,
    stddev: float = 0.025,
    scale: float | None = None,
    threshold: float = 0,
) -> tuple[list[tuple[Any, Any, float]], list[Any]]:
    """Greedily match the predicted instances of one frame to its ground truth (PASCAL VOC).

    Predictions are tried by descending ``score``; each takes the still-unmatched ground-truth
    instance with the highest OKS above ``threshold`` (ties: lowest index).

    Args:
        frame_gt: Ground-truth frame.
        frame_pr: Predicted frame.
        stddev: OKS spread.
        scale: OKS scale; None uses each ground-truth instance's bounding-box area.
        threshold: A pair matches only if its OKS is strictly greater.

    Returns:
        ``(positive_pairs, false_negatives)``: ``(instance_gt, instance_pr, oks)`` tuples in
        match order, and the unmatched ground-truth instances. Unmatched predictions are not
        reported.
    """
    gt = _stack_side([list(frame_gt.instances)], "ground-truth")
    pr = _stack_side([list(frame_pr.instances)], "predicted")
    m = _match_oks(gt, pr, stddev, scale, threshold)
    pairs = [
        (gt.instances[g], pr.instances[p], float(s))
        for g, p, s in zip(m.gt_rows.tolist(), m.pr_rows.tolist(), m.scores.tolist())
    ]
    return pairs, [gt.instances[g] for g in m.unmatched_gt_rows.tolist()]


def match_frame_pairs(
    frame_pairs: Sequence[tuple[sio.LabeledFrame, sio.LabeledFrame]],
    stddev: float = 0.025,
    scale: float | None = None,
    threshold: float = 0,
) -> tuple[list[tuple[Any, Any, float]], list[Any]]:
    """``match_instances`` over many frame pairs, computed as one batched operation.

    Returns:
        ``(positive_pairs, false_negatives)`` concatenated over the frames, in frame order.
    """
    gt = _stack_side([list(f.instances) for f, _ in frame_pairs], "ground-truth")
    pr = _stack_side([list(f.instances) for _, f in frame_pairs], "predicted")
    m = _match_oks(gt, pr, stddev, scale, threshold)
    pairs = [
        (gt.instances[g], pr.instances[p], float(s))
        for g, p, s in zip(m.gt_rows.tolist(), m.pr_rows.tolist(), m.scores.tolist())
    ]
    return pairs, [gt.instances[g] for g in m.unmatched_gt_rows.tolist()]


def _pred_centroids(points: np.ndarray) -> np.ndarray:
    """A prediction's centroid: its first visible node, node 0 if none is visible."""
    if points.shape[0] == 0:
        return np.empty((0, 2))
    visible = ~np.isnan(points).any(axis=-1)
    first = visible.argmax(axis=1)  # 0 when nothing is visible, matching the node-0 fallback
    return points[np.arange(points.shape[0]), first]


# ------------------------------------------------------------------------------------------------
# Evaluator
# ------------------------------------------------------------------------------------------------


class Evaluator:
    """Match ground truth and predictions once, then compute sleap-nn's metric families.

    Args:
        ground_truth_instances: Ground-truth labels.
        predicted_instances: Predicted labels.
        oks_stddev: OKS spread (OKS mode).
        oks_scale: OKS scale; None uses each ground-truth bounding-box area (OKS mode).
        match_threshold: OKS mode: a pair needs OKS strictly above it. Centroid mode: maximum
            pixel distance of a match (inclusive).
        user_labels_only: Only user instances of the ground truth count (see
            ``find_frame_pairs``).
        match_method: ``"oks"`` or ``"centroid"``.
        anchor_ind: Centroid mode: ground-truth node used as the centroid when visible.
        video_map: Optional precomputed ``labels_gt.match(labels_pr).video_map``.

    Attributes:
        frame_pairs: ``(frame_gt, frame_pr)`` pairs from ``find_frame_pairs``.
        positive_pairs: ``(instance_gt, instance_pr, score)`` per match, in the reference's
            order; score is the OKS (centroid mode: the pixel distance). *[differs]* The
            instances are the sleap-io objects themselves, not sleap-nn's ``MatchInstance``
            wrappers (frame index and video path are in ``dists_dict``).
        false_negatives: Unmatched ground-truth instances.
        false_positives: Unmatched predictions (centroid mode only; OKS mode ignores them).
        dists_dict: ``{"dists", "frame_idxs", "video_paths"}`` of the matched pairs.

    Raises:
        ConfigError: No frame of the two files pairs up, the method is unknown, or the two
            skeletons differ in node count (OKS mode).
    """

    def __init__(
        self,
        ground_truth_instances: sio.Labels,
        predicted_instances: sio.Labels,
        oks_stddev: float = 0.025,
        oks_scale: float | None = None,
        match_threshold: float = 0,
        user_labels_only: bool = True,
        match_method: str = "oks",
        anchor_ind: int | None = None,
        *,
        video_map: dict[sio.Video, sio.Video | None] | None = None,
    ) -> None:
        if match_method not in ("oks", "centroid"):
            raise ConfigError(
                f"Evaluator match_method must be 'oks' or 'centroid', not {match_method!r}."
            )
        self.ground_truth_instances = ground_truth_instances
        self.predicted_instances = predicted_instances
        self.oks_stddev = oks_stddev
        self.oks_scale = oks_scale
        self.match_threshold = match_threshold
        self.user_labels_only = user_labels_only
        self.match_method = match_method
        self.anchor_ind = anchor_ind
        self.false_positives: list[Any] = []

        self.frame_pairs = find_frame_pairs(
            ground_truth_instances,
            predicted_instances,
            user_labels_only,
            keep_user_centroid_frames=match_method == "centroid",
            video_map=video_map,
        )
        if not self.frame_pairs:
            raise ConfigError(
                "Empty Frame Pairs: no frame of the ground truth matches a frame of the "
                "predictions (no video of the two files could be paired, or they share no "
                "labeled frame index with user instances). Check that both files label the "
                "same video."
            )
        self._frame_idxs = [lf.frame_idx for lf, _ in self.frame_pairs]
        keys: dict[int, str] = {}
        self._frame_videos = [
            keys.setdefault(id(lf.video), _video_key(lf.video)) for lf, _ in self.frame_pairs
        ]
        if match_method == "centroid":
            self._process_centroid()
        else:
            self._process_oks()

    # -- matching ------------------------------------------------------------------------------

    def _process_oks(self) -> None:
        gt = _stack_side([lf.instances for lf, _ in self.frame_pairs], "ground-truth")
        pr = _stack_side([lf.instances for _, lf in self.frame_pairs], "predicted")
        m = _match_oks(gt, pr, self.oks_stddev, self.oks_scale, self.match_threshold)
        self._pair_gt = gt.points[m.gt_rows]
        self._pair_pr = pr.points[m.pr_rows]
        self._pair_scores = m.scores
        # *[differs]* The reference raises AttributeError when a matched prediction has no
        # score (a user instance in the prediction file); it ranks last here instead.
        self._detection_scores = pr.scores[m.pr_rows]
        self.positive_pairs = [
            (gt.instances[g], pr.instances[p], s)
            for g, p, s in zip(m.gt_rows.tolist(), m.pr_rows.tolist(), m.scores.tolist())
        ]
        self.false_negatives = [gt.instances[g] for g in m.unmatched_gt_rows.tolist()]
        self._n_false_negatives = m.n_false_negatives
        frame_pos = m.frame_pos.tolist()
        dists = (
            np.linalg.norm(self._pair_pr - self._pair_gt, axis=-1)
            if m.gt_rows.size
            else np.array([])  # shape (0,), as the reference's np.array([])
        )
        self.dists_dict = {
            "dists": dists,
            "frame_idxs": [self._frame_idxs[f] for f in frame_pos],
            "video_paths": [self._frame_videos[f] for f in frame_pos],
        }

    def _process_centroid(self) -> None:
        from scipy.optimize import linear_sum_assignment
        from scipy.spatial.distance import cdist

        self.positive_pairs = []
        self.false_negatives = []
        self.false_positives = []
        dists: list[float] = []
        frame_idxs: list[int] = []
        video_paths: list[str] = []
        for pos, (lf_gt, lf_pr) in enumerate(self.frame_pairs):
            gt_objs: list[Any] = list(lf_gt.instances)
            anchor = self.anchor_ind
            if not gt_objs and _user_centroids(lf_gt):
                # Centroid annotations are already centroids; the pose anchor does not apply.
                gt_objs = _user_centroids(lf_gt)
                gt_pts = np.array([[[float(c.x), float(c.y)]] for c in gt_objs])
                anchor = None
            else:
                gt_pts = _stack_side([gt_objs], "ground-truth").points
            pr_objs = list(lf_pr.instances)
            pr_c = _pred_centroids(_stack_side([pr_objs], "predicted").points[..., :2])
            gt_c = gt_centroids(gt_pts[..., :2], anchor) if gt_objs else np.empty((0, 2))

            gt_ok = np.flatnonzero(~np.isnan(gt_c).any(axis=1))
            pr_ok = np.flatnonzero(~np.isnan(pr_c).any(axis=1))
            matched_gt: set[int] = set()
            matched_pr: set[int] = set()
            if gt_ok.size and pr_ok.size:
                cost = cdist(pr_c[pr_ok], gt_c[gt_ok])
                rows, cols = linear_sum_assignment(cost)
                for r, c in zip(rows.tolist(), cols.tolist()):
                    if cost[r, c] <= self.match_threshold:
                        p, g = int(pr_ok[r]), int(gt_ok[c])
                        matched_pr.add(p)
                        matched_gt.add(g)
                        d = float(np.linalg.norm(pr_c[p] - gt_c[g]))
                        self.positive_pairs.append((gt_objs[g], pr_objs[p], d))
                        dists.append(d)
                        frame_idxs.append(self._frame_idxs[pos])
                        video_paths.append(self._frame_videos[pos])
            # Unmatched valid GT first, then GT with no visible node (automatic misses).
            self.false_negatives += [gt_objs[g] for g in gt_ok.tolist() if g not in matched_gt]
            self.false_negatives += [
                gt_objs[g] for g in np.flatnonzero(np.isnan(gt_c).any(axis=1)).tolist()
            ]
            # A prediction with no usable point is not a detection, so never a false positive.
            self.false_positives += [pr_objs[p] for p in pr_ok.tolist() if p not in matched_pr]
        self._n_false_negatives = len(self.false_negatives)
        self.dists_dict = {
            "dists": np.array(dists, dtype=np.float64),
            "frame_idxs": frame_idxs,
            "video_paths": video_paths,
        }

    def _require_oks(self, what: str) -> None:
        if self.match_method != "oks":
            raise ConfigError(f"{what} is defined only for match_method='oks'.")

    # -- metrics -------------------------------------------------------------------------------

    def voc_metrics(
        self,
        match_score_by: str = "oks",
        match_score_thresholds: np.ndarray | None = None,
        recall_thresholds: np.ndarray | None = None,
    ) -> dict[str, Any]:
        """PASCAL-VOC style precision/recall of the matched pairs.

        Pairs are ranked by detection score; at each match-score threshold a pair is a true
        positive if its score reaches the threshold, else a false positive. *[as-implemented]*
        Unmatched predictions are never false positives (SLEAP's semantics, unlike COCO).

        Args:
            match_score_by: ``"oks"`` (pair OKS) or ``"pck"`` (mean PCK over nodes and
                thresholds).
            match_score_thresholds: Default ``linspace(0.5, 0.95, 10)``.
            recall_thresholds: Default ``linspace(0, 1, 101)``.

        Returns:
            ``{prefix + key}`` for the 9 VOC keys with prefix ``oks_voc.`` / ``pck_voc.``; every
            value is the integer 0 when nothing matched.
        """
        self._require_oks("voc_metrics")
        t = np.linspace(0.5, 0.95, 10) if match_score_thresholds is None else match_score_thresholds
        r = np.linspace(0, 1, 101) if recall_thresholds is None else recall_thresholds
        t = np.asarray(t)
        r = np.asarray(r)
        if match_score_by == "oks":
            name = "oks_voc"
            match_scores = self._pair_scores
        elif match_score_by == "pck":
            name = "pck_voc"
            match_scores = (
                self._pcks().mean(axis=-1).mean(axis=-1)
                if self._pair_scores.size
                else np.array([])
            )
        else:
            raise ConfigError(f"match_score_by must be 'oks' or 'pck', not {match_score_by!r}.")

        if match_scores.size == 0:
            return {f"{name}.{k}": 0 for k in _VOC_KEYS}
        inds = np.argsort(-self._detection_scores, kind="mergesort")
        match_scores = match_scores[inds]
        npig = match_scores.size + self._n_false_negatives  # ground-truth instances in pairs

        # All thresholds at once: rows are thresholds, columns are ranked pairs.
        tp = np.cumsum(match_scores[None, :] >= t[:, None], axis=1)
        fp = np.cumsum(match_scores[None, :] < t[:, None], axis=1)
        rc = tp / npig
        pr = tp / (fp + tp + _EPS)
        recalls = rc[:, -1].copy()
        # Precision envelope: running maximum from the right.
        pr = np.maximum.accumulate(pr[:, ::-1], axis=1)[:, ::-1]
        precisions = np.zeros((t.size, r.size))
        for i in range(t.size):  # 10 thresholds; searchsorted is 1-D only
            idx = np.searchsorted(rc[i], r, side="left")
            ok = idx < pr.shape[1]
            precisions[i, ok] = pr[i, idx[ok]]
        values = (
            t,
            r,
            match_scores,
            precisions,
            recalls,
            precisions.mean(axis=1),
            recalls,
            precisions.mean(),
            recalls.mean(),
        )
        return {f"{name}.{k}": v for k, v in zip(_VOC_KEYS, values)}

    def mOKS(self) -> dict[str, float]:
        """Mean OKS of the matched pairs (NaN when nothing matched)."""
        self._require_oks("mOKS")
        s = self._pair_scores
        return {"mOKS": float(s.mean()) if s.size else np.nan}

    def distance_metrics(self) -> dict[str, Any]:
        """Per-node keypoint distances of the matched pairs and their summary percentiles."""
        dists = self.dists_dict["dists"]
        finite = dists[~np.isnan(dists)]
        results: dict[str, Any] = {
            "frame_idxs": self.dists_dict["frame_idxs"],
            "video_paths": self.dists_dict["video_paths"],
            "dists": dists,
            # nanmean (not finite.mean()) keeps the reference's summation order bit for bit.
            "avg": float(np.nanmean(dists)) if finite.size else np.nan,
        }
        if finite.size:
            # One partition pass for all five percentiles; same linear interpolation.
            values = np.percentile(finite, _PERCENTILES)
            results.update({f"p{q}": values[i] for i, q in enumerate(_PERCENTILES)})
        else:
            results.update({f"p{q}": np.nan for q in _PERCENTILES})
        return results

    def _pcks(self, thresholds: np.ndarray | None = None) -> np.ndarray:
        th = np.linspace(1, 10, 10) if thresholds is None else np.asarray(thresholds)
        dists = np.where(np.isnan(self.dists_dict["dists"]), np.inf, self.dists_dict["dists"])
        # Kept in the reference's exact broadcast so an empty result has its (1, 0, T) shape.
        return np.expand_dims(dists, -1) < np.reshape(th, (1, 1, -1))

    def pck_metrics(self, thresholds: np.ndarray | None = None) -> dict[str, Any]:
        """Percentage of correct keypoints at pixel thresholds (default ``linspace(1, 10, 10)``).

        A node is correct when its distance is strictly below the threshold; missing nodes
        never are.
        """
        self._require_oks("pck_metrics")
        th = np.linspace(1, 10, 10) if thresholds is None else np.asarray(thresholds)
        pcks = self._pcks(th)
        if self.dists_dict["dists"].size == 0:
            parts: np.ndarray = np.array([])
            mpck = pck5 = pck10 = np.nan
        else:
            parts = pcks.mean(axis=0).mean(axis=-1)
            mpck = float(parts.mean())
            pck5 = float(pcks[:, :, np.argmin(np.abs(th - 5))].mean())
            pck10 = float(pcks[:, :, np.argmin(np.abs(th - 10))].mean())
        return {
            "thresholds": th,
            "pcks": pcks,
            "mPCK_parts": parts,
            "mPCK": mpck,
            "PCK@5": pck5,
            "PCK@10": pck10,
        }

    def visibility_metrics(self) -> dict[str, Any]:
        """Node-visibility confusion counts over the matched pairs, with precision and recall."""
        self._require_oks("visibility_metrics")
        if not self._pair_scores.size:
            # The reference's untouched accumulators: plain ints and NaN ratios.
            return {"tp": 0, "fp": 0, "tn": 0, "fn": 0, "precision": np.nan, "recall": np.nan}
        miss_gt = np.isnan(self._pair_gt).any(axis=-1)
        miss_pr = np.isnan(self._pair_pr).any(axis=-1)
        tp = (~miss_gt & ~miss_pr).sum()
        fp = (miss_gt & ~miss_pr).sum()
        tn = (miss_gt & miss_pr).sum()
        fn = (~miss_gt & miss_pr).sum()
        return {
            "tp": tp,
            "fp": fp,
            "tn": tn,
            "fn": fn,
            "precision": tp / (tp + fp) if tp + fp else np.nan,
            "recall": tp / (tp + fn) if tp + fn else np.nan,
        }

    def detection_metrics(self) -> dict[str, Any]:
        """Centroid-mode detection precision/recall/F1 and matched-distance percentiles."""
        n_tp = len(self.positive_pairs)
        n_fp = len(self.false_positives)
        n_fn = len(self.false_negatives)
        precision = n_tp / (n_tp + n_fp) if n_tp + n_fp else 0.0
        recall = n_tp / (n_tp + n_fn) if n_tp + n_fn else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        results: dict[str, Any] = {
            "precision": precision,
            "recall": recall,
            "f1": f1,
            "n_tp": n_tp,
            "n_fp": n_fp,
            "n_fn": n_fn,
        }
        dists = self.dists_dict["dists"]
        finite = dists[~np.isnan(dists)]
        results["avg"] = float(finite.mean()) if finite.size else np.nan
        values = np.percentile(finite, _PERCENTILES) if finite.size else None
        for i, q in enumerate(_PERCENTILES):
            results[f"p{q}"] = float(values[i]) if values is not None else np.nan
        return results

    def evaluate(self) -> dict[str, dict[str, Any]]:
        """Every metric family of the match method, keyed as sleap-nn 0.3.5 keys them."""
        if self.match_method == "centroid":
            return {
                "detection_metrics": self.detection_metrics(),
                "distance_metrics": self.distance_metrics(),
            }
        if not self.positive_pairs:
            logger.info(
                "0 matched instances: metrics undefined (the model predicted nothing usable, "
                "or training likely collapsed)"
            )
        voc = self.voc_metrics(match_score_by="oks")
        voc.update(self.voc_metrics(match_score_by="pck"))
        return {
            "voc_metrics": voc,
            "mOKS": self.mOKS(),
            "distance_metrics": self.distance_metrics(),
            "pck_metrics": self.pck_metrics(),
            "visibility_metrics": self.visibility_metrics(),
        }


# ------------------------------------------------------------------------------------------------
# Saving, loading, summary
# ------------------------------------------------------------------------------------------------


def _json_safe(obj: Any) -> Any:
    """numpy → Python, arrays → nested lists, NaN/±Inf → None, keys → str."""
    if isinstance(obj, np.ndarray):
        return _json_safe(obj.tolist())
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_json_safe(v) for v in obj]
    return obj


def _write_metrics(path: str | Path, metrics: dict[str, Any]) -> tuple[Path, Path]:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, metrics=metrics)
    # numpy appends .npz when missing; the JSON sibling uses the path as given, like sleap-nn.
    npz_path = path if str(path).endswith(".npz") else Path(f"{path}.npz")
    json_path = path.with_suffix(".json")
    safe = _json_safe(metrics)
    for section, keys in _JSON_PRUNE_KEYS.items():
        if isinstance(safe.get(section), dict):
            for key in keys:
                safe[section].pop(key, None)
    with open(json_path, "w") as f:
        json.dump(safe, f)
    return npz_path, json_path


def save_metrics(metrics: dict[str, Any], path: str | Path) -> tuple[Path, Path]:
    """Write metrics as sleap-nn does: an ``.npz`` plus a JSON sibling.

    The ``.npz`` holds one key, ``metrics``, a pickled 0-d object array of the dict (numpy
    appends ``.npz`` if ``path`` lacks it). The JSON file is ``path.with_suffix(".json")``:
    the same dict with numpy values as plain numbers/lists, NaN/±Inf as ``null`` and
    ``pck_metrics.pcks`` left out. Parent folders are created.

    Returns:
        ``(npz_path, json_path)`` actually written.
    """
    return _write_metrics(path, metrics)


def _find_metrics_file(model_dir: Path, split: str, dataset_idx: int) -> Path:
    for name in (f"metrics.{split}.{dataset_idx}.npz", f"{split}_{dataset_idx}_pred_metrics.npz"):
        if (model_dir / name).exists():
            return model_dir / name
    if split == "test":
        return _find_metrics_file(model_dir, "val", dataset_idx)
    return model_dir / f"metrics.{split}.{dataset_idx}.npz"


def load_metrics(path: str | Path, split: str = "test", dataset_idx: int = 0) -> dict[str, Any]:
    """Read metrics saved by ``save_metrics`` or by sleap-nn (also its old per-key layout).

    Args:
        path: A ``.npz`` file, or a model folder searched for ``metrics.{split}.{idx}.npz``,
            then ``{split}_{idx}_pred_metrics.npz``; ``test`` falls back to ``val``.
        split: Split name used for a model folder.
        dataset_idx: Dataset index used for a model folder.

    Raises:
        ConfigError: No metrics file exists there.
    """
    path = Path(path)
    file = path if path.suffix == ".npz" else _find_metrics_file(path, split, dataset_idx)
    if not file.exists():
        raise ConfigError(f"Metrics file not found at {file}.")
    with np.load(file, allow_pickle=True) as data:
        keys = list(data.keys())
        if "metrics" in keys:
            return data["metrics"].item()
        return {k: data[k].item() if data[k].ndim == 0 else data[k] for k in keys}


def _headline(metrics: dict[str, Any]) -> dict[str, float | int]:
    """The numbers sleap-nn logs after an evaluation, as structured log fields."""
    dist = metrics["distance_metrics"]
    if "detection_metrics" in metrics:
        det = metrics["detection_metrics"]
        out = {k: det[k] for k in ("precision", "recall", "f1", "n_tp", "n_fp", "n_fn")}
        out.update({f"dist_{k}": dist[k] for k in ("avg", "p50", "p90", "p95", "p99")})
    else:
        voc, pck = metrics["voc_metrics"], metrics["pck_metrics"]
        vis = metrics["visibility_metrics"]
        out = {
            "mOKS": metrics["mOKS"]["mOKS"],
            "mAP": voc["oks_voc.mAP"],
            "mAR": voc["oks_voc.mAR"],
            **{f"dist_{k}": dist[k] for k in ("avg", "p50", "p95", "p99")},
            "mPCK": pck["mPCK"],
            "PCK@5": pck["PCK@5"],
            "PCK@10": pck["PCK@10"],
            "visibility_precision": vis["precision"],
            "visibility_recall": vis["recall"],
        }
    return {k: v if isinstance(v, int) else round(float(v), 4) for k, v in out.items()}


def _fmt(value: Any, digits: int) -> str:
    return f"{float(value):.{digits}f}"


def format_summary(metrics: dict[str, Any]) -> str:
    """A readable multi-line summary of ``Evaluator.evaluate()`` output (OKS or centroid mode).

    OKS mode lists mOKS, mAP/mAR (OKS VOC), average and p50/p95/p99 distance, mPCK, PCK@5/@10
    and visibility precision/recall, the lines sleap-nn logs.
    """
    dist = metrics["distance_metrics"]
    if "detection_metrics" in metrics:
        det = metrics["detection_metrics"]
        rows = [
            "Evaluation Results (centroid mode):",
            f"  Precision: {_fmt(det['precision'], 4)}",
            f"  Recall: {_fmt(det['recall'], 4)}",
            f"  F1: {_fmt(det['f1'], 4)}",
            f"  Counts: TP={det['n_tp']}, FP={det['n_fp']}, FN={det['n_fn']}",
            f"  Average Distance: {_fmt(dist['avg'], 2)} px",
        ]
        rows += [f"  dist.p{q}: {_fmt(dist[f'p{q}'], 2)} px" for q in (50, 90, 95, 99)]
        return "\n".join(rows)
    voc = metrics["voc_metrics"]
    pck = metrics["pck_metrics"]
    vis = metrics["visibility_metrics"]
    rows = [
        "Evaluation Results:",
        f"  mOKS: {_fmt(metrics['mOKS']['mOKS'], 4)}",
        f"  mAP (OKS VOC): {_fmt(voc['oks_voc.mAP'], 4)}",
        f"  mAR (OKS VOC): {_fmt(voc['oks_voc.mAR'], 4)}",
        f"  Average Distance: {_fmt(dist['avg'], 2)} px",
    ]
    rows += [f"  dist.p{q}: {_fmt(dist[f'p{q}'], 2)} px" for q in (50, 95, 99)]
    rows += [
        f"  mPCK: {_fmt(pck['mPCK'], 4)}",
        f"  PCK@5px: {_fmt(pck['PCK@5'], 4)}",
        f"  PCK@10px: {_fmt(pck['PCK@10'], 4)}",
        f"  Visibility Precision: {_fmt(vis['precision'], 4)}",
        f"  Visibility Recall: {_fmt(vis['recall'], 4)}",
    ]
    return "\n".join(rows)


# ------------------------------------------------------------------------------------------------
# Entry point
# ------------------------------------------------------------------------------------------------


def _load_labels(path: str | Path, what: str) -> sio.Labels:
    logger.info(f"loading {what} labels", path=str(path))
    if not Path(path).exists():
        raise VideoDecodeError(f"The {what} file {path} does not exist.")
    try:
        labels = sio.load_slp(str(path))
    except Exception as exc:  # sleap-io/h5py raise many types; all mean "unreadable"
        raise VideoDecodeError(f"Cannot read the {what} file {path}: {exc}") from exc
    logger.info(
        f"{what} loaded", videos=len(labels.videos), frames=len(labels.labeled_frames)
    )
    return labels


def _resolve_anchor_ind(skeleton: sio.Skeleton | None, anchor_part: str | None) -> int | None:
    if anchor_part is None or skeleton is None:
        return None
    names = list(skeleton.node_names)
    if anchor_part in names:
        return names.index(anchor_part)
    logger.warning(
        "anchor part not in the ground-truth skeleton; using the mean of visible nodes",
        anchor_part=anchor_part,
        node_names=names,
    )
    return None


def _has_instances(labels: Iterable[sio.LabeledFrame]) -> bool:
    return any(len(lf.instances) for lf in labels)


def run_evaluation(
    ground_truth_path: str | Path,
    predicted_path: str | Path,
    oks_stddev: float = 0.025,
    oks_scale: float | None = None,
    match_threshold: float = 0,
    user_labels_only: bool = True,
    save_metrics: str | Path | None = None,
    match_method: str = "oks",
    anchor_part: str | None = None,
) -> dict[str, Any] | None:
    """Evaluate a prediction ``.slp`` against a ground-truth ``.slp`` like ``sleap-nn eval``.

    Args:
        ground_truth_path: Ground-truth labels file.
        predicted_path: Predicted labels file.
        oks_stddev: OKS spread.
        oks_scale: OKS scale; None uses each ground-truth bounding-box area.
        match_threshold: OKS threshold (OKS mode) or pixel distance (centroid mode, where the
            default 0 means 50 px).
        user_labels_only: Only user instances of the ground truth count.
        save_metrics: If given, write the metrics there (see ``save_metrics``).
        match_method: ``"oks"``, ``"centroid"`` or ``"auto"`` (centroid when the prediction
            skeleton has one node, else OKS). ``"mask"``/``"semantic"`` are not supported.
        anchor_part: Centroid mode: ground-truth node used as the centroid when visible.

    Returns:
        The metrics dict, or None (nothing written) when the prediction file has no frame or
        no instance.

    Raises:
        ConfigError: Unsupported match method, or no frame of the two files pairs up.
        VideoDecodeError: A labels file is missing or unreadable.
    """
    if match_method not in MATCH_METHODS:
        raise ConfigError(
            f"Unknown match_method {match_method!r}; choose one of {', '.join(MATCH_METHODS)}."
        )
    if match_method not in _IMPLEMENTED_METHODS:
        raise ConfigError(
            f"match_method={match_method!r} (mask, semantic-segmentation and bounding-box "
            "evaluation) is not supported by sleapflow; use 'oks', 'centroid' or 'auto'."
        )
    labels_gt = _load_labels(ground_truth_path, "ground truth")
    labels_pr = _load_labels(predicted_path, "predictions")

    if not len(labels_pr) or not _has_instances(labels_pr):
        logger.info(
            "0 predicted instances: skipping metric computation (the model likely predicted "
            "nothing usable, or training collapsed)"
        )
        return None

    method = match_method
    if method == "auto":
        skeleton = labels_pr.skeletons[0] if labels_pr.skeletons else None
        method = "centroid" if skeleton is not None and len(skeleton.nodes) == 1 else "oks"
        logger.info("match method selected", match_method=method)
    gt_skeleton = labels_gt.skeletons[0] if labels_gt.skeletons else None
    anchor_ind = _resolve_anchor_ind(gt_skeleton, anchor_part)
    if method == "centroid" and match_threshold == 0:
        match_threshold = CENTROID_DEFAULT_THRESHOLD

    logger.info("matching videos and frames")
    match = labels_gt.match(labels_pr)
    logger.info(
        "videos matched", matched=match.n_videos_matched, predicted_videos=len(match.video_map)
    )
    logger.info("matching instances")
    evaluator = Evaluator(
        labels_gt,
        labels_pr,
        oks_stddev=oks_stddev,
        oks_scale=oks_scale,
        match_threshold=match_threshold,
        user_labels_only=user_labels_only,
        match_method=method,
        anchor_ind=anchor_ind,
        video_map=match.video_map,
    )
    logger.info(
        "instances matched",
        frame_pairs=len(evaluator.frame_pairs),
        matched_instances=len(evaluator.positive_pairs),
        unmatched_gt=len(evaluator.false_negatives),
    )
    logger.info("computing evaluation metrics")
    metrics = evaluator.evaluate()
    logger.info("evaluation results", **_headline(metrics))

    if save_metrics:
        logger.info("saving metrics", path=str(save_metrics))
        npz_path, json_path = _write_metrics(save_metrics, metrics)
        logger.info("metrics saved", npz=str(npz_path), json=str(json_path))
    return metrics

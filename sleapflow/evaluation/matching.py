"""Pairing frames and matching instances: ground truth against predictions, as sleap-nn 0.3.5.

Every frame's full OKS matrix is computed up front, and frames with the same instance counts are
stacked and matched as one array operation; the greedy assignment then walks prediction ranks
for all those frames at once.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import sleap_io as sio

from sleapflow.errors import ConfigError
from sleapflow.logs import get_logger
from sleapflow.ops.oks import compute_instance_area, compute_oks, instance_arrays

__all__ = (
    "DEGENERATE_AREA_EPS", "DEGENERATE_PIXEL_THRESHOLD", "compute_distance_match_score", "find_frame_pairs",
    "match_frame_pairs", "match_instances", "match_oks", "match_scores", "pred_centroids", "stack_side",
    "user_centroids", "video_key",
)


logger = get_logger(__name__)

#: A ground-truth bounding box smaller than this (px²) turns OKS into an exact-equality test, so
#: sleap-nn 0.3.5 scores such instances by mean pixel distance instead (see
#: ``compute_distance_match_score``).
DEGENERATE_AREA_EPS = 1e-9
#: Distance (px) at which the degenerate-instance score reaches 0; fixed in the reference.
DEGENERATE_PIXEL_THRESHOLD = 50.0


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
    gt, pr = instance_arrays(points_gt, points_pr)
    both = (~np.isnan(gt).any(axis=-1))[..., :, None, :] & (~np.isnan(pr).any(axis=-1))[
        ..., None, :, :
    ]
    dist = np.sqrt(((gt[..., :, None, :, :] - pr[..., None, :, :, :]) ** 2).sum(axis=-1))
    count = both.sum(axis=-1)
    total = np.where(both, dist, 0.0).sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        score = np.maximum(0.0, 1.0 - (total / count) / pixel_threshold)
    return np.where(count > 0, score, 0.0)


def match_scores(
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


def video_key(video: sio.Video | None) -> str:
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


def user_centroids(frame: sio.LabeledFrame) -> list[Any]:
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
                if users or (keep_user_centroid_frames and user_centroids(lf)):
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


def stack_side(per_frame: Sequence[Sequence[Any]], what: str) -> _Side:
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


def match_oks(
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
            scores = match_scores(gt.points[gt_rows], pr.points[pr_rows], scale, stddev)
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
    gt = stack_side([list(frame_gt.instances)], "ground-truth")
    pr = stack_side([list(frame_pr.instances)], "predicted")
    m = match_oks(gt, pr, stddev, scale, threshold)
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
    gt = stack_side([list(f.instances) for f, _ in frame_pairs], "ground-truth")
    pr = stack_side([list(f.instances) for _, f in frame_pairs], "predicted")
    m = match_oks(gt, pr, stddev, scale, threshold)
    pairs = [
        (gt.instances[g], pr.instances[p], float(s))
        for g, p, s in zip(m.gt_rows.tolist(), m.pr_rows.tolist(), m.scores.tolist())
    ]
    return pairs, [gt.instances[g] for g in m.unmatched_gt_rows.tolist()]


def pred_centroids(points: np.ndarray) -> np.ndarray:
    """A prediction's centroid: its first visible node, node 0 if none is visible."""
    if points.shape[0] == 0:
        return np.empty((0, 2))
    visible = ~np.isnan(points).any(axis=-1)
    first = visible.argmax(axis=1)  # 0 when nothing is visible, matching the node-0 fallback
    return points[np.arange(points.shape[0]), first]

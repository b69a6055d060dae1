"""Per-frame instance filters: overlap NMS, node-count and confidence filters, max_instances.

Everything here is plain numpy on one frame's instances and reproduces what ``sleap-nn track``
(sleap-nn 0.3.5, the legacy predictors in ``sleap_nn/inference/predictors.py`` and the helpers in
``sleap_nn/inference/ops/filters.py``) does when it filters ``sio.PredictedInstance`` objects.
The functions return indices or keep masks, never modified arrays, so the caller decides how to
drop instances.

Dtypes matter for exact parity:

- Points are promoted to float64 (sleap-io stores keypoints as float64, so the reference computes
  boxes and OKS in float64; the promotion from float32 is exact).
- Scores are used in the dtype the caller passes. The reference sorts and compares
  ``PredictedInstance.score`` values, which sleap-io keeps as ``np.float32`` for predictions, so
  pass float32 scores for model outputs; NumPy's default (unstable) argsort can order ties
  differently for float32 and float64, and NEP 50 makes ``float32 < python_float`` compare in
  float32.
- Point scores are promoted to float64 (sleap-io stores them as float64).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = (
    "confidence_keep", "instance_bboxes", "nms_overlapping", "node_count_keep", "order_for_max_instances",
    "visible_nodes",
)

# The fixed per-keypoint falloff of the reference's simplified OKS.
_OKS_KAPPA = 0.1


def visible_nodes(points: ArrayLike) -> NDArray[np.bool_]:
    """Visible-node mask ``(n, N)``: both coordinates not NaN (inf counts as visible, as in the
    reference's ``~np.isnan(pts).any(axis=1)``)."""
    pts = np.asarray(points, dtype=np.float64)
    return ~np.isnan(pts).any(axis=-1)


def instance_bboxes(points: ArrayLike) -> NDArray[np.float64]:
    """Boxes ``(n, 4)`` as ``[xmin, ymin, xmax, ymax]`` over visible nodes; ``[0, 0, 0, 0]`` when an
    instance has no visible node (the reference's ``_instance_bbox``)."""
    pts = np.asarray(points, dtype=np.float64)
    vis = visible_nodes(pts)
    # Fill invisible nodes with +/-inf so min/max ignore them without an all-NaN warning.
    lo = np.where(vis[..., None], pts, np.inf).min(axis=1)
    hi = np.where(vis[..., None], pts, -np.inf).max(axis=1)
    boxes = np.concatenate([lo, hi], axis=1)
    boxes[~vis.any(axis=1)] = 0.0
    return boxes


def _iou_one_to_many(box: NDArray[np.float64], boxes: NDArray[np.float64]) -> NDArray[np.float64]:
    # Same expression order as the reference's _compute_iou_one_to_many (continuous IoU, no +1).
    inter_w = np.maximum(0.0, np.minimum(box[2], boxes[:, 2]) - np.maximum(box[0], boxes[:, 0]))
    inter_h = np.maximum(0.0, np.minimum(box[3], boxes[:, 3]) - np.maximum(box[1], boxes[:, 1]))
    inter = inter_w * inter_h
    area_a = (box[2] - box[0]) * (box[3] - box[1])
    area_b = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    union = area_a + area_b - inter
    # The reference evaluates the division everywhere and masks afterwards; keep that but do not
    # let the discarded 0/0 raise (warnings are errors in the test suite).
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(union > 0, inter / union, 0.0)


def _oks_one_to_many(a: NDArray[np.float64], bs: NDArray[np.float64]) -> NDArray[np.float64]:
    """The reference's simplified, asymmetric OKS ``sim(a, b)`` for one ``a`` against many ``b``.

    Scale is the box area of ``a``'s own visible nodes (not the jointly visible ones); fewer than
    two visible nodes in ``a``, a non-positive area or no jointly visible node give 0.
    """
    vis_a = ~np.isnan(a).any(axis=-1)  # (N,)
    vis_b = ~np.isnan(bs).any(axis=-1)  # (m, N)
    joint = vis_a[None, :] & vis_b
    out = np.zeros(len(bs), dtype=np.float64)
    if vis_a.sum() < 2:
        return out
    pa = a[vis_a]
    area = (pa[:, 0].max() - pa[:, 0].min()) * (pa[:, 1].max() - pa[:, 1].min())
    # `<= 0` (not `not > 0`): a NaN area falls through to NaN similarities, as in the reference.
    if area <= 0:
        return out
    n_joint = joint.sum(axis=1)
    diff = np.where(joint[..., None], a[None] - bs, 0.0)
    d_sq = np.sum(diff**2, axis=-1)
    terms = np.where(joint, np.exp(-d_sq / (2 * area * _OKS_KAPPA**2)), 0.0)
    # Masked mean: zeros stand in for the reference's compressed array. The sum is bit-identical
    # for fewer than 8 nodes (NumPy's pairwise sum is sequential there) and within 1 ulp beyond.
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = terms.sum(axis=1) / n_joint
    return np.where(n_joint > 0, mean, 0.0)


def nms_overlapping(
    points: ArrayLike,
    scores: ArrayLike,
    *,
    threshold: float = 0.8,
    method: Literal["iou", "oks"] = "iou",
) -> NDArray[np.int64]:
    """Greedy overlap NMS as ``sleap-nn track`` applies it (``_nms_greedy_iou`` / ``_nms_greedy_oks``).

    Args:
        points: ``(n, N, 2)`` keypoints of one frame's instances; NaN = missing node.
        scores: ``(n,)`` instance scores, in the dtype the reference sees (float32 for predictions,
            see the module docstring).
        threshold: similarity strictly above it suppresses the lower-ranked instance.
        method: ``"iou"`` (box IoU over visible nodes) or ``"oks"`` (simplified OKS, scale from the
            higher-ranked instance's own box).

    Returns:
        Indices of the kept instances ``(k,) int64`` in the order they were kept (descending score).
        The order is ``np.argsort(scores)[::-1]``: NaN scores rank first and ties follow NumPy's
        default sort reversed, as in the reference.

    Raises:
        ValueError: ``method`` is neither ``"iou"`` nor ``"oks"``.
    """
    if method not in ("iou", "oks"):
        raise ValueError(f"Unknown method: {method}. Use 'iou' or 'oks'.")
    pts = np.asarray(points, dtype=np.float64)
    sc = np.asarray(scores)
    n = len(sc)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    pts = pts.reshape(n, -1, 2)
    order = np.argsort(sc)[::-1].astype(np.int64)
    boxes = instance_bboxes(pts) if method == "iou" else None
    keep: list[int] = []
    while len(order):
        i = int(order[0])
        keep.append(i)
        rest = order[1:]
        if not len(rest):
            break
        if boxes is not None:
            sims = _iou_one_to_many(boxes[i], boxes[rest])
        else:
            sims = _oks_one_to_many(pts[i], pts[rest])
        # `<=` keeps; NaN similarities are therefore suppressed, as in the reference.
        order = rest[sims <= threshold]
    return np.asarray(keep, dtype=np.int64)


def node_count_keep(
    points: ArrayLike,
    *,
    min_visible_nodes: int = 0,
    min_visible_node_fraction: float = 0.0,
) -> NDArray[np.bool_]:
    """Keep mask ``(n,)`` of the node-count filter (both criteria must pass; each is off at <= 0).

    ``points`` is ``(n, N, 2)``; a node is visible when neither coordinate is NaN; the fraction is
    ``visible / N``.
    """
    pts = np.asarray(points, dtype=np.float64)
    n = pts.shape[0]
    keep = np.ones(n, dtype=bool)
    if n == 0:
        return keep
    n_nodes = pts.shape[-2]
    n_vis = visible_nodes(pts).sum(axis=-1)
    if min_visible_nodes > 0:
        keep &= ~(n_vis < min_visible_nodes)
    if min_visible_node_fraction > 0.0:
        frac = n_vis / n_nodes if n_nodes > 0 else np.zeros(n)
        keep &= ~(frac < min_visible_node_fraction)
    return keep


def confidence_keep(
    scores: ArrayLike,
    point_scores: ArrayLike | None,
    points: ArrayLike,
    *,
    min_mean_node_score: float = 0.0,
    min_instance_score: float = 0.0,
) -> NDArray[np.bool_]:
    """Keep mask ``(n,)`` of the confidence filter (both criteria must pass; each is off at <= 0).

    - instance score: dropped when ``score < min_instance_score`` (a NaN score is kept); compared in
      the dtype of ``scores`` against a Python float, as NumPy 2 does for ``np.float32`` scores.
    - mean node score: mean of ``point_scores`` over visible nodes, NaN scores ignored, 0.0 when
      nothing is left; dropped when below ``min_mean_node_score``. ``point_scores=None`` skips this
      test, like the reference when an instance has no point scores.
    """
    sc = np.asarray(scores)
    n = len(sc)
    keep = np.ones(n, dtype=bool)
    if n == 0:
        return keep
    if min_instance_score > 0.0:
        keep &= ~(sc < min_instance_score)
    if min_mean_node_score > 0.0 and point_scores is not None:
        ps = np.asarray(point_scores, dtype=np.float64).reshape(n, -1)
        use = visible_nodes(points).reshape(n, -1) & ~np.isnan(ps)
        cnt = use.sum(axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            mean = np.where(use, ps, 0.0).sum(axis=1) / cnt
        mean = np.where(cnt > 0, mean, 0.0)
        keep &= ~(mean < min_mean_node_score)
    return keep


def order_for_max_instances(
    scores: ArrayLike,
    max_instances: int | None,
    *,
    mode: Literal["track", "predict"] = "track",
    present: ArrayLike | None = None,
) -> NDArray[np.int64]:
    """Which of a frame's instances survive ``max_instances``, in output order.

    Args:
        scores: ``(n,)`` instance scores of one frame.
        max_instances: the user's cap, or None.
        mode:
            - ``"track"`` (``sleap-nn track``, the legacy predictors that produced the reference
              files): instances not in ``present`` are dropped first; then, only when a cap is
              set, the rest are sorted by score descending with Python's stable
              ``sorted(..., reverse=True)`` (ties keep their order) and the first
              ``min(max_instances, n)`` are kept. Without a cap the order is unchanged.
            - ``"predict"`` (the newer ``sleap-nn predict`` flow, spec §6.5): only when a cap is set
              and more than ``max_instances`` instances exist, take ``np.argsort(scores)[::-1]``
              (NaN first, ties reversed) and keep the first ``max_instances``; otherwise keep the
              first ``max_instances`` in assembly order. ``max_instances=0`` means no cap there.
        present: optional ``(n,)`` mask of instances that exist (a non-empty keypoint set); in
            ``"track"`` mode absent ones are removed before sorting, as the reference skips all-NaN
            instances before it sorts. Ignored in ``"predict"`` mode.

    Returns:
        ``(k,) int64`` indices into the frame's instances.
    """
    sc = np.asarray(scores)
    n = len(sc)
    if mode == "track":
        idx = np.arange(n) if present is None else np.flatnonzero(np.asarray(present, bool))
        if max_instances is None:
            return idx.astype(np.int64)
        vals = sc[idx].tolist()
        # Python's stable sort with reverse=True, exactly what the reference calls.
        ranked = sorted(range(len(idx)), key=lambda j: vals[j], reverse=True)
        ranked = ranked[: min(max_instances, len(ranked))]
        return idx[np.asarray(ranked, dtype=np.int64)].astype(np.int64)
    if mode == "predict":
        if not max_instances:
            return np.arange(n, dtype=np.int64)
        if n > max_instances:
            return np.argsort(sc)[::-1][:max_instances].astype(np.int64)
        return np.arange(n, dtype=np.int64)
    raise ValueError(f"Unknown max_instances mode: {mode!r}. Use 'track' or 'predict'.")

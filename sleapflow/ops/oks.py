"""Object keypoint similarity (OKS): one implementation for evaluation and for the tracker."""

from __future__ import annotations

import numpy as np

__all__ = ("compute_instance_area", "compute_oks", "frame_oks", "instance_arrays")

#: np.spacing(1): the epsilon sleap-nn adds to the bounding-box area in OKS.
_EPS = np.spacing(1)


def instance_arrays(points_gt: np.ndarray, points_pr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both sides as float64 ``(..., n_instances, n_nodes, n_dims)``; a 2-D array is one instance."""
    gt = np.asarray(points_gt, dtype=np.float64)
    pr = np.asarray(points_pr, dtype=np.float64)
    return (gt[None] if gt.ndim == 2 else gt), (pr[None] if pr.ndim == 2 else pr)


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
    gt, pr = instance_arrays(points_gt, points_pr)
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


def frame_oks(current: np.ndarray, candidates: np.ndarray, stddev: float = 0.025) -> np.ndarray:
    """:func:`compute_oks` for one frame, ``(n, N, 2)`` against ``(m, N, 2)`` → ``(n, m)``.

    The same values, bit for bit, without the batch broadcasting: the tracker calls this once
    per frame on a handful of instances, where the general form costs about 1.4x as much.
    """
    n, m = current.shape[0], candidates.shape[0]
    if n == 0 or m == 0:
        return np.zeros((n, m))
    missing_cur = np.isnan(current).any(axis=-1)  # (n, N)
    missing_cand = np.isnan(candidates).any(axis=-1)  # (m, N)
    lo = np.fmin.reduce(current, axis=1)
    hi = np.fmax.reduce(current, axis=1)
    area = np.prod(hi - lo, axis=-1)  # NaN for an all-NaN instance
    norm = (2.0 * stddev) ** 2 * (2.0 * (area + _EPS))  # (n,)
    disp = current[:, None, :, :] - candidates[None, :, :, :]
    dist = (disp**2).sum(axis=-1)  # (n, m, N)
    # A node missing from the candidate scores 0; one missing from the current instance scores 0
    # and is not counted.
    both = (~missing_cur)[:, None, :] & (~missing_cand)[None, :, :]
    with np.errstate(invalid="ignore", divide="ignore"):
        ks = np.where(both, np.exp(-(dist / norm[:, None, None])), 0.0)
        n_visible = (~missing_cur).sum(axis=-1).astype(np.float32)  # float32 as in sleap-nn
        return ks.sum(axis=-1) / n_visible[:, None]

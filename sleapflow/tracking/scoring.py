"""Similarity matrices between a frame's instances and stored candidates, and their reductions.

Each scoring function compares every current feature (rows, the first argument of sleap-nn's
scalar function) with every candidate feature (columns) in one vectorised call, giving an
``(n_instances, n_candidates)`` float64 matrix; higher is more similar and NaN means "cannot be
compared" (it becomes an infinite cost). The reductions then collapse the candidates of each track:
they take ``(n_instances, n_tracks, k)`` values plus an ``(n_tracks, k)`` mask of which slots hold a
candidate, so tracks with different numbers of candidates share one padded array.
"""

from __future__ import annotations

import numpy as np

from sleapflow.ops.oks import frame_oks

__all__ = ("blend_appearance", "cosine_sim", "euclidean_dist", "iou", "oks", "reduce_scores", "similarity")



def oks(current: np.ndarray, candidates: np.ndarray, stddev: float = 0.025) -> np.ndarray:
    """Object keypoint similarity, sleap-nn's ``compute_oks`` (cocoeval normalisation).

    The current instance plays "ground truth": its visible-node bounding-box area is the scale and
    its visible nodes are the ones averaged over; a node missing from the candidate scores 0. A
    current instance with no visible node gives NaN. Evaluation's OKS, one frame at a time
    (:func:`sleapflow.ops.oks.frame_oks`).
    """
    return frame_oks(current, candidates, stddev)


def cosine_sim(current: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """Cosine similarity of the flattened features; NaN if either has a NaN or a zero norm."""
    a = current.reshape(current.shape[0], -1)
    b = candidates.reshape(candidates.shape[0], -1)
    with np.errstate(invalid="ignore", divide="ignore"):
        num = a @ b.T
        denom = np.linalg.norm(a, axis=1)[:, None] * np.linalg.norm(b, axis=1)[None, :]
        out = num / denom
    # sleap-nn 0.3.5 maps any non-finite operand or a zero denominator to NaN.
    bad = ~np.isfinite(denom) | (denom == 0)
    out[bad] = np.nan
    return out


def euclidean_dist(current: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """Negative Euclidean (Frobenius) distance of the flattened features; NaN if any NaN."""
    a = current.reshape(current.shape[0], -1)
    b = candidates.reshape(candidates.shape[0], -1)
    diff = a[:, None, :] - b[None, :, :]
    return -np.sqrt((diff * diff).sum(axis=-1))


def iou(current: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """Box IoU with the +1 pixel convention (SLEAP's integer-pixel boxes); NaN if a box is NaN."""
    a = current[:, None, :]
    b = candidates[None, :, :]
    with np.errstate(invalid="ignore", divide="ignore"):
        inter_w = np.maximum(0.0, np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]) + 1)
        inter_h = np.maximum(0.0, np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]) + 1)
        inter = inter_w * inter_h
        area_a = (a[..., 2] - a[..., 0] + 1) * (a[..., 3] - a[..., 1] + 1)
        area_b = (b[..., 2] - b[..., 0] + 1) * (b[..., 3] - b[..., 1] + 1)
        out = inter / (area_a + area_b - inter)
    # np.maximum(0, NaN) is NaN already; keep a NaN box NaN even where numpy would give a number.
    out[np.isnan(a).any(axis=-1) | np.isnan(b).any(axis=-1)] = np.nan
    return out


def similarity(method: str, current: np.ndarray, candidates: np.ndarray,
               oks_stddev: float = 0.025) -> np.ndarray:
    """Dispatch to the scoring function ``method`` (a validated name)."""
    if method == "oks":
        return oks(current, candidates, oks_stddev)
    if method == "cosine_sim":
        return cosine_sim(current, candidates)
    if method == "iou":
        return iou(current, candidates)
    if method == "euclidean_dist":
        return euclidean_dist(current, candidates)
    raise ValueError(f"unknown scoring method {method!r}")


def reduce_scores(method: str, values: np.ndarray, present: np.ndarray,
                  q: float = 1.0) -> np.ndarray:
    """Collapse each track's candidate similarities into one score.

    ``values`` is ``(n, t, k)``; ``present`` is ``(t, k)`` and marks real candidates (padding and
    candidates filtered out by ``min_match_points`` are absent). NaN similarities are ignored like
    numpy's ``nanmean``/``nanmax``/``nanquantile`` do; a track with no usable value scores NaN.
    ``robust_quantile`` uses numpy's default linear interpolation at quantile ``q``.
    """
    usable = present[None, :, :] & ~np.isnan(values)
    count = usable.sum(axis=-1)
    empty = count == 0
    if method == "mean":
        total = np.where(usable, values, 0.0).sum(axis=-1)
        with np.errstate(invalid="ignore", divide="ignore"):
            out = total / count
    elif method == "max":
        out = np.where(usable, values, -np.inf).max(axis=-1)
    elif method == "robust_quantile":
        out = _quantile_linear(np.where(usable, values, np.inf), count, q)
    else:
        raise ValueError(f"unknown scoring reduction {method!r}")
    out[empty] = np.nan
    return out


def _quantile_linear(values: np.ndarray, count: np.ndarray, q: float) -> np.ndarray:
    """``np.quantile(..., method="linear")`` of the first ``count`` sorted values of each row.

    Absent values were set to +inf so they sort last; the index arithmetic mirrors numpy's so the
    interpolation rounds the same way.
    """
    srt = np.sort(values, axis=-1)
    n = np.maximum(count, 1).astype(np.float64)
    virtual = n * q + (1.0 + q * (1.0 - 1.0 - 1.0)) - 1.0
    prev = np.floor(virtual)
    gamma = virtual - prev
    prev_i = np.clip(prev.astype(np.int64), 0, np.maximum(count - 1, 0))
    next_i = np.clip(prev_i + 1, 0, np.maximum(count - 1, 0))
    a = np.take_along_axis(srt, prev_i[..., None], axis=-1)[..., 0]
    b = np.take_along_axis(srt, next_i[..., None], axis=-1)[..., 0]
    with np.errstate(invalid="ignore"):
        diff = b - a
        # numpy's _lerp: interpolate from the nearer end for better rounding.
        out = np.where(gamma >= 0.5, b - diff * (1.0 - gamma), a + diff * gamma)
    # inf - inf padding can only appear where count == 0, which the caller sets to NaN anyway;
    # where both ends coincide keep the exact value (avoids inf * 0).
    same = prev_i == next_i
    out[same] = a[same]
    return out


def blend_appearance(geometric: np.ndarray, current: np.ndarray, stored: np.ndarray,
                     weight: float) -> np.ndarray:
    """``(1 - w) * geometric + w * cosine`` for pairs where both re-ID vectors exist.

    ``current`` (n, D) and ``stored`` (m, D) are unit vectors (NaN rows: no vector). A pair
    without appearance, or that geometry cannot score (NaN), keeps its geometric score, so the
    blend never invents a match geometry rules out.
    """
    if current.shape[-1] != stored.shape[-1]:  # one side has no vectors at all
        return geometric
    appearance = np.nan_to_num(current) @ np.nan_to_num(stored).T
    both = (~np.isnan(current).any(axis=1))[:, None] & (~np.isnan(stored).any(axis=1))[None, :]
    both &= ~np.isnan(geometric)
    return np.where(both, (1.0 - weight) * geometric + weight * appearance, geometric)


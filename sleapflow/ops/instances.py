"""Pure numpy helpers on instance arrays ``(n, nodes, 2)`` shared by inference and evaluation."""

from __future__ import annotations

import numpy as np

__all__ = ("gt_centroids",)



def gt_centroids(points: np.ndarray, anchor_ind: int | None) -> np.ndarray:
    """Centroid (n, 2) per ground-truth instance: the anchor node when it is visible, else the
    mean of the visible nodes (per axis); NaN only when nothing is visible, like sleap-nn's
    ``generate_centroids``."""
    present = ~np.isnan(points)
    counts = np.maximum(present.sum(axis=-2), 1)
    mean = np.where(present, points, 0.0).sum(axis=-2) / counts
    mean = np.where(present.any(axis=(-2, -1))[:, None], mean, np.nan)
    if anchor_ind is None:
        return mean
    anchor = points[:, anchor_ind, :]
    return np.where(np.isnan(anchor).any(axis=-1)[:, None], mean, anchor)

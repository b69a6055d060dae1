"""Top-down geometry on numpy arrays (ONNX Runtime's outputs on the CPU), as ops.crops does it
on torch tensors: centroid slots, crop windows and the rounding-boundary test, crop extraction."""

from __future__ import annotations

import numpy as np

__all__ = ("centroid_slots", "crop_windows", "extract_crops", "near_crop_boundary")


def centroid_slots(points: np.ndarray, vals: np.ndarray, sample_inds: np.ndarray, n_frames: int,
                   max_instances: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame centroid slots (B, I, 2) and values (B, I), NaN-padded: ``I`` is
    ``max_instances`` or the largest peak count (at least 1); a frame with more peaks keeps its
    top ``I`` by value, in descending order, else its peaks in raster order. Points may carry
    more columns than x and y (n, K): the slots then hold all K."""
    counts = np.bincount(sample_inds.astype(np.int64), minlength=n_frames)[:n_frames] \
        if points.shape[0] else np.zeros(n_frames, dtype=np.int64)
    slots = max_instances if max_instances is not None else max([1, *counts.tolist()])
    out_points = np.full((n_frames, slots, *points.shape[1:]), np.nan, dtype=points.dtype)
    out_vals = np.full((n_frames, slots), np.nan, dtype=vals.dtype)
    start = 0
    for b, count in enumerate(counts.tolist()):
        if count:
            p = points[start:start + count]
            v = vals[start:start + count]
            if count > slots:
                order = np.argsort(-v, kind="stable")[:slots]
                p, v = p[order], v[order]
            out_points[b, : p.shape[0]] = p
            out_vals[b, : v.shape[0]] = v
        start += count
    return out_points, out_vals


def crop_windows(centers: np.ndarray, crop_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Float top-left corners (n, 2) and integer origins (n, 2) of centred square crops:
    ``tl = c - crop/2 + 0.5`` and ``trunc(tl + crop//2) - crop//2``."""
    top_left = centers - np.float32(crop_size / 2) + np.float32(0.5)
    origins = np.trunc(top_left + np.float32(crop_size // 2)).astype(np.int64) - crop_size // 2
    return top_left, origins


def near_crop_boundary(centers: np.ndarray, crop_size: int, eps: float | np.ndarray) -> np.ndarray:
    """Which centres (..., 2) lie within ``eps`` of a whole-pixel move of their crop origin
    (``eps`` a number, or one per coordinate, shaped like ``centers``)."""
    x = centers - np.float32(crop_size / 2) + np.float32(0.5) + np.float32(crop_size // 2)
    with np.errstate(invalid="ignore"):
        return (np.abs(x - np.round(x)) < eps).any(axis=-1)


def extract_crops(frames: np.ndarray, frame_inds: np.ndarray, origins: np.ndarray,
                  crop_size: int) -> np.ndarray:
    """Integer-pixel windows (n, C, crop, crop) of (B, C, H, W) frames; outside pixels are 0."""
    n = int(frame_inds.shape[0])
    channels = frames.shape[1]
    if n == 0:
        return np.zeros((0, channels, crop_size, crop_size), dtype=frames.dtype)
    height, width = frames.shape[2:]
    # Copy each window's overlap with its frame into a zeroed crop: padding the whole batch and
    # gathering from it cost more than the instance model itself at 1024x1024.
    out = np.zeros((n, channels, crop_size, crop_size), dtype=frames.dtype)
    for k, (b, x0, y0) in enumerate(zip(frame_inds.tolist(), origins[:, 0].tolist(),
                                        origins[:, 1].tolist(), strict=True)):
        top, bottom = max(y0, 0), min(y0 + crop_size, height)
        left, right = max(x0, 0), min(x0 + crop_size, width)
        if top < bottom and left < right:
            out[k, :, top - y0:bottom - y0, left - x0:right - x0] = frames[b, :, top:bottom, left:right]
    return out

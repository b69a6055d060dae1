"""Peak finding on numpy confidence maps (ONNX Runtime's outputs on the CPU), as ops.peaks does
it on torch tensors: same argmax ties, same refinement patch, float32 throughout."""

from __future__ import annotations

import numpy as np

__all__ = ("find_global_peaks", "find_local_peaks", "integral_refine")


def integral_refine(cms: np.ndarray, sample_inds: np.ndarray, channel_inds: np.ndarray,
                    xs: np.ndarray, ys: np.ndarray, patch_size: int = 5) -> np.ndarray:
    """Sub-pixel offsets (n, 2) from the centroid of a zero-padded patch around each peak.

    Negative map values count as they are and a zero-sum patch gives NaN/inf, as the torch
    form (and the reference) does.
    """
    n = xs.shape[0]
    dtype = cms.dtype
    if n == 0:
        return np.zeros((0, 2), dtype=dtype)
    half = patch_size // 2
    padded = np.pad(cms, ((0, 0), (0, 0), (half, half), (half, half)))
    shift = dtype.type(-patch_size / 2 + 0.5 + half)
    origin_x = np.trunc(xs.astype(dtype) + shift).astype(np.int64) - half
    origin_y = np.trunc(ys.astype(dtype) + shift).astype(np.int64) - half
    steps = np.arange(patch_size)
    rows = (origin_y[:, None] + steps[None, :] + half)[:, :, None]
    cols = (origin_x[:, None] + steps[None, :] + half)[:, None, :]
    patches = padded[sample_inds.astype(np.int64)[:, None, None],
                     channel_inds.astype(np.int64)[:, None, None], rows, cols]
    grid = np.arange(patch_size, dtype=dtype) - dtype.type((patch_size - 1) / 2)
    total = patches.sum(axis=(1, 2))
    with np.errstate(divide="ignore", invalid="ignore"):
        dx = (patches * grid[None, None, :]).sum(axis=(1, 2)) / total
        dy = (patches * grid[None, :, None]).sum(axis=(1, 2)) / total
    return np.stack([dx, dy], axis=1)


def find_global_peaks(cms: np.ndarray, threshold: float, *, refinement: str | None = "integral",
                      patch_size: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """One peak per (sample, channel) of (S, C, H, W) maps → points (S, C, 2) xy, values (S, C).

    x and y are the first argmax of the column and row maxima (independently, as the reference);
    values below ``threshold`` give NaN points and a value of 0.
    """
    samples, channels = cms.shape[:2]
    col_max = cms.max(axis=2)
    row_max = cms.max(axis=3)
    xs = col_max.argmax(axis=-1)
    ys = row_max.argmax(axis=-1)
    vals = col_max.max(axis=-1)
    points = np.stack([xs, ys], axis=-1).astype(cms.dtype)
    below = vals < threshold
    if refinement == "integral":
        flat_s = np.repeat(np.arange(samples), channels)
        flat_c = np.tile(np.arange(channels), samples)
        offsets = integral_refine(cms, flat_s, flat_c, xs.reshape(-1), ys.reshape(-1), patch_size)
        points = points + offsets.reshape(samples, channels, 2)
    points = np.where(below[..., None], np.float32(np.nan), points).astype(cms.dtype)
    vals = np.where(below, np.float32(0), vals).astype(cms.dtype)
    return points, vals


def find_local_peaks(cms: np.ndarray, threshold: float, *, refinement: str | None = "integral",
                     patch_size: int = 5
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Pixels strictly above all 8 neighbours and strictly above ``threshold``.

    Returns points (n, 2) xy float, values (n,), sample and channel indices (n,) int32, in raster
    order: sample, then row, then column, then channel.
    """
    low = np.finfo(cms.dtype).min
    padded = np.pad(cms, ((0, 0), (0, 0), (1, 1), (1, 1)), constant_values=low)
    height, width = cms.shape[-2:]
    neighbour_max = np.full_like(cms, low)
    for dy in (0, 1, 2):
        for dx in (0, 1, 2):
            if dy == 1 and dx == 1:
                continue
            np.maximum(neighbour_max, padded[..., dy:dy + height, dx:dx + width], out=neighbour_max)
    mask = (cms > neighbour_max) & (cms > threshold)
    sample_inds, ys, xs, channel_inds = np.nonzero(mask.transpose(0, 2, 3, 1))
    vals = cms[sample_inds, channel_inds, ys, xs]
    points = np.stack([xs, ys], axis=-1).astype(cms.dtype)
    if refinement == "integral":
        points = points + integral_refine(cms, sample_inds, channel_inds, xs, ys, patch_size)
    return points, vals, sample_inds.astype(np.int32), channel_inds.astype(np.int32)

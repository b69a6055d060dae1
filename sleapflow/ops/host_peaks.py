"""Peak finding on numpy confidence maps (ONNX Runtime's outputs on the CPU), as ops.peaks does
it on torch tensors: same argmax ties, same refinement patch, float32 throughout."""

from __future__ import annotations

import numpy as np

__all__ = ("find_global_peaks", "find_local_peaks", "find_local_peaks_and_spread", "integral_refine",
           "refinement_spread")


def _patches(cms: np.ndarray, sample_inds: np.ndarray, channel_inds: np.ndarray,
             xs: np.ndarray, ys: np.ndarray, patch_size: int) -> np.ndarray:
    """The zero-padded (n, P, P) patches the integral refinement reads around each peak."""
    dtype = cms.dtype
    half = patch_size // 2
    padded = np.pad(cms, ((0, 0), (0, 0), (half, half), (half, half)))
    shift = dtype.type(-patch_size / 2 + 0.5 + half)
    origin_x = np.trunc(xs.astype(dtype) + shift).astype(np.int64) - half
    origin_y = np.trunc(ys.astype(dtype) + shift).astype(np.int64) - half
    steps = np.arange(patch_size)
    rows = (origin_y[:, None] + steps[None, :] + half)[:, :, None]
    cols = (origin_x[:, None] + steps[None, :] + half)[:, None, :]
    return padded[sample_inds.astype(np.int64)[:, None, None],
                  channel_inds.astype(np.int64)[:, None, None], rows, cols]


def integral_refine(cms: np.ndarray, sample_inds: np.ndarray, channel_inds: np.ndarray,
                    xs: np.ndarray, ys: np.ndarray, patch_size: int = 5) -> np.ndarray:
    """Sub-pixel offsets (n, 2) from the centroid of a zero-padded patch around each peak.

    Negative map values count as they are and a zero-sum patch gives NaN/inf, as the torch
    form (and the reference) does.
    """
    dtype = cms.dtype
    if xs.shape[0] == 0:
        return np.zeros((0, 2), dtype=dtype)
    patches = _patches(cms, sample_inds, channel_inds, xs, ys, patch_size)
    grid = np.arange(patch_size, dtype=dtype) - dtype.type((patch_size - 1) / 2)
    total = patches.sum(axis=(1, 2))
    with np.errstate(divide="ignore", invalid="ignore"):
        dx = (patches * grid[None, None, :]).sum(axis=(1, 2)) / total
        dy = (patches * grid[None, :, None]).sum(axis=(1, 2)) / total
    return np.stack([dx, dy], axis=1)


def refinement_spread(cms: np.ndarray, sample_inds: np.ndarray, channel_inds: np.ndarray,
                      xs: np.ndarray, ys: np.ndarray, patch_size: int = 5) -> np.ndarray:
    """How far each peak's integral-refined offset (x, y) moves, at most and to first order,
    when every value of its patch moves by 1: ``sum_j |g_j - o| / |sum_j p_j|`` (float64, map
    pixels; inf for a zero-sum patch). Times a bound on two runtimes' map difference, it is
    the most their refined peaks can differ: small for a peak that stands clear of its
    surroundings, large where the patch nearly cancels out."""
    if xs.shape[0] == 0:
        return np.zeros((0, 2), dtype=np.float64)
    patches = _patches(cms, sample_inds, channel_inds, xs, ys, patch_size).astype(np.float64)
    grid = np.arange(patch_size, dtype=np.float64) - (patch_size - 1) / 2
    total = patches.sum(axis=(1, 2))
    with np.errstate(divide="ignore", invalid="ignore"):
        dx = (patches * grid[None, None, :]).sum(axis=(1, 2)) / total
        dy = (patches * grid[None, :, None]).sum(axis=(1, 2)) / total
        # d(offset)/d(value) is (g - o) / sum for each of the patch's P x P values.
        per_value = patch_size / np.abs(total)
        spread_x = np.abs(grid[None, :] - dx[:, None]).sum(axis=1) * per_value
        spread_y = np.abs(grid[None, :] - dy[:, None]).sum(axis=1) * per_value
    spread = np.stack([spread_x, spread_y], axis=1)
    return np.where(np.isnan(spread), np.inf, spread)


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


def _local_maxima(cms: np.ndarray, threshold: float
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(xs, ys, values, sample indices, channel indices) of the pixels strictly above all 8
    neighbours and ``threshold``, in raster order: sample, row, column, channel."""
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
    return xs, ys, cms[sample_inds, channel_inds, ys, xs], sample_inds, channel_inds


def find_local_peaks(cms: np.ndarray, threshold: float, *, refinement: str | None = "integral",
                     patch_size: int = 5
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Pixels strictly above all 8 neighbours and strictly above ``threshold``.

    Returns points (n, 2) xy float, values (n,), sample and channel indices (n,) int32, in raster
    order: sample, then row, then column, then channel.
    """
    points, vals, samples, channels, _ = find_local_peaks_and_spread(
        cms, threshold, refinement=refinement, patch_size=patch_size, spread=False)
    return points, vals, samples, channels


def find_local_peaks_and_spread(cms: np.ndarray, threshold: float, *,
                                refinement: str | None = "integral", patch_size: int = 5,
                                spread: bool = True
                                ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """:func:`find_local_peaks` and each point's :func:`refinement_spread` (n, 2): zeros
    without refinement (whole pixels) or when ``spread`` is false."""
    xs, ys, vals, sample_inds, channel_inds = _local_maxima(cms, threshold)
    points = np.stack([xs, ys], axis=-1).astype(cms.dtype)
    spreads = np.zeros((xs.shape[0], 2), dtype=np.float64)
    if refinement == "integral":
        points = points + integral_refine(cms, sample_inds, channel_inds, xs, ys, patch_size)
        if spread:
            spreads = refinement_spread(cms, sample_inds, channel_inds, xs, ys, patch_size)
    return points, vals, sample_inds.astype(np.int32), channel_inds.astype(np.int32), spreads

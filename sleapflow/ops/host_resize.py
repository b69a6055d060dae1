"""Antialiased bilinear resize of uint8 numpy batches, bit-identical to torch's uint8 CPU kernel.

torch (and the reference) resizes uint8 frames with Pillow's separable scheme: per output pixel,
triangle-filter taps widened by the downscale factor and normalised, turned into int16 weights
at the largest precision that keeps them below 2^15; a horizontal pass, rounded and clamped to
uint8, then a vertical pass the same way. This computes the same integers with numpy, so a run
on ONNX Runtime can resize without importing torch. It is several times slower than torch's
vectorised kernel, which is why the preprocessor uses it only up to a pixel budget.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

__all__ = ("resize_uint8",)

#: Weights stay below 2^15 (int16); Pillow's precision never exceeds 22 bits.
_WEIGHT_LIMIT = 1 << 15
_MAX_PRECISION = 22


@lru_cache(maxsize=64)
def _taps(in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray, int]:
    """(indices (out, K), int weights (out, K), precision bits) of one axis's resize."""
    scale = in_size / out_size
    support = scale if scale >= 1.0 else 1.0
    inv = 1.0 / scale if scale >= 1.0 else 1.0
    centers = scale * (np.arange(out_size, dtype=np.float64) + 0.5)
    # int() truncates towards zero as C's cast does; the arguments here are >= -0.5.
    lo = np.maximum(np.trunc(centers - support + 0.5).astype(np.int64), 0)
    hi = np.minimum(np.trunc(centers + support + 0.5).astype(np.int64), in_size)
    width = int((hi - lo).max())
    j = np.arange(width, dtype=np.float64)[None, :]
    inside = j < (hi - lo)[:, None]
    w = np.where(inside, 1.0 - np.abs((j + lo[:, None] - centers[:, None] + 0.5) * inv), 0.0)
    w = np.where(w > 0.0, w, 0.0)
    total = w.sum(axis=1, keepdims=True)
    w = np.divide(w, total, out=w, where=total != 0)
    biggest = float(w.max())
    precision = 0
    while precision < _MAX_PRECISION and int(0.5 + biggest * (1 << (precision + 1))) < _WEIGHT_LIMIT:
        precision += 1
    scaled = w * (1 << precision)
    ints = np.where(scaled < 0, np.trunc(scaled - 0.5), np.trunc(scaled + 0.5)).astype(np.int32)
    index = np.where(inside, lo[:, None] + j.astype(np.int64), lo[:, None]).astype(np.intp)
    return index, ints, precision


def _rows(x: np.ndarray, out_size: int) -> np.ndarray:
    """Resize axis -2 of a uint8 array (whole rows gathered: contiguous copies)."""
    index, weights, precision = _taps(x.shape[-2], out_size)
    acc = np.full((*x.shape[:-2], out_size, x.shape[-1]), 1 << (precision - 1), dtype=np.int32)
    for k in range(index.shape[1]):
        acc += x[..., index[:, k], :] * weights[:, k, None]
    acc >>= precision
    return np.clip(acc, 0, 255).astype(np.uint8)


def resize_uint8(x: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(..., H, W) uint8 → (..., *size) uint8, equal to torch's antialiased bilinear uint8 resize
    (``F.interpolate(..., mode="bilinear", antialias=True, align_corners=False)``) on the CPU."""
    height, width = x.shape[-2:]
    out_h, out_w = size
    y = x
    if out_w != width:
        # The horizontal pass first, as torch does; done on the transpose so rows are gathered.
        y = np.ascontiguousarray(_rows(np.ascontiguousarray(y.swapaxes(-1, -2)), out_w).swapaxes(-1, -2))
    if out_h != height:
        y = _rows(y, out_h)
    return np.ascontiguousarray(y)

"""Antialiased bilinear resize of uint8 numpy batches, bit-identical to torch's uint8 CPU kernel.

torch (and the reference) resizes uint8 frames with Pillow's separable scheme: per output pixel,
triangle-filter taps widened by the downscale factor and normalised, turned into int16 weights
at the largest precision that keeps them below 2^15; a horizontal pass, rounded and clamped to
uint8, then a vertical pass the same way. This computes the same integers with numpy, so a run
on ONNX Runtime can resize without importing torch.

Exact in floating point: the weights are non-negative integers and the pixels at most 255, so
every partial sum of a pass is an integer no larger than ``255 * sum(weights)``. Where that stays
within 2^24 (every common scale: 0.5 and 0.25 reach 2^24 - 2^15) float32 holds each sum exactly
in any order, else float64 does. Scaling the weights by 2^-precision is exact too, so
``floor(sum + 0.5)`` is torch's ``(sum + 2^(precision-1)) >> precision``.

Fast where it matters: away from the borders, output ``i`` of a resize by an integer ratio P
(0.5, 0.25: the usual model input scales) reads inputs ``P*i + c_k`` with the same weights. With
the input split once into its P phases (every P-th pixel, contiguous), each tap is one
contiguous slice of the phase, across all lines of a block at once, and the taps run as whole
1-D SIMD loops; outputs that mix lines there are border pixels, which a per-tap gather then
overwrites. Other ratios, and small blocks (fewer numpy calls), are products with the weight
matrix, a band of outputs at a time (BLAS; exact as well, as every partial sum is a sub-sum of
the exact total), kept on the calling thread. Both passes run a few planes at a time (the
uint8 intermediate is what torch rounds to anyway), in blocks whose scratch stays in cache and
is reused: fresh pages per call cost more than the arithmetic.
"""

from __future__ import annotations

import math
import sys
from functools import lru_cache
from typing import NamedTuple

import numpy as np

__all__ = ("resize_uint8",)

#: Weights stay below 2^15 (int16); Pillow's precision never exceeds 22 bits.
_WEIGHT_LIMIT = 1 << 15
_MAX_PRECISION = 22
#: Largest integer up to which float32 counts exactly.
_FLOAT32_EXACT = 1 << 24
#: Largest integer ratio split into phases (more phases cost more than a gather saves).
_MAX_PHASES = 8
#: Values per block of a pass: large enough that numpy's per-call cost is small, small enough
#: (float32: 1 MiB) to stay in cache; measured best between 2^17 and 2^19.
_BLOCK = 1 << 18
#: Input values of a block up to which an integer ratio takes the matrix bands as well.
_SMALL = 1 << 14
#: Outputs per band of a matrix-product pass (wider bands multiply more zeros).
_BAND = 32
#: OpenBLAS keeps a product of m * n * k up to 65536 * 4 on one thread (its SMP threshold).
_GEMM_SERIAL = 1 << 18


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


class _Axis(NamedTuple):
    """One axis's resize: the interior run of an integer ratio, and the gathered rest."""

    ratio: int  # P of an integer ratio with an interior run, else 0
    start: int  # first output of the run
    count: int  # outputs in the run
    taps: tuple[tuple[int, int, float], ...]  # (phase, offset in the phase, weight) per tap
    groups: tuple[tuple[float, tuple[tuple[int, int], ...]], ...]  # taps paired by equal weight
    rest: np.ndarray  # output positions gathered
    rest_index: np.ndarray  # (len(rest), K) their input positions
    rest_weights: np.ndarray  # (len(rest), K, 1) weights scaled by 2^-precision
    #: Other ratios: (first output, stop, first input, stop, weights (inputs, outputs)) per band
    #: of outputs, a dense slice of the weight matrix for a BLAS product.
    bands: tuple[tuple[int, int, int, int, np.ndarray], ...]
    dtype: type[np.floating]
    clamp: bool  # whether a rounded sum can exceed 255 (weights summing above 2^precision)


@lru_cache(maxsize=64)
def _axis(in_size: int, out_size: int) -> _Axis:
    """One axis's plan: for an integer ratio, the longest stretch of outputs whose taps are the
    middle output's shifted by the ratio (checked on the taps, not assumed), and the rest."""
    index, ints, precision = _taps(in_size, out_size)
    bound = 255 * int(ints.sum(axis=1).max()) + (1 << (precision - 1))
    dtype = np.float32 if bound <= _FLOAT32_EXACT else np.float64
    scaled = ints.astype(np.float64) * 2.0 ** -precision
    ratio, start, count, taps = 0, 0, 0, ()
    if in_size % out_size == 0 and 1 < in_size // out_size <= _MAX_PHASES and out_size >= 3:
        ratio = in_size // out_size
        shifted = index - ratio * np.arange(out_size)[:, None]
        mid = out_size // 2
        same = (shifted == shifted[mid]).all(axis=1) & (ints == ints[mid]).all(axis=1)
        # The stretch of equal outputs around the middle (the borders differ).
        start = mid - int(np.argmin(same[mid::-1])) + 1 if not same[:mid + 1].all() else 0
        stop = mid + int(np.argmin(same[mid:])) if not same[mid:].all() else out_size
        count = stop - start
        taps = tuple((int(i) % ratio, int(i) // ratio, float(w))
                     for i, w in zip(index[start], scaled[start], strict=True) if w != 0.0)
    groups: list[tuple[float, list[tuple[int, int]]]] = []
    unpaired: dict[float, int] = {}  # weight → its group still waiting for a partner
    for r, at, weight in taps:
        if (pair := unpaired.pop(weight, None)) is None:
            unpaired[weight] = len(groups)
            groups.append((weight, [(r, at)]))
        else:
            groups[pair][1].append((r, at))
    bands = []
    # Matrix products are exact too (every partial sum is a sub-sum of the exact total);
    # bands of outputs keep the zeros they multiply few. Any ratio has them: a small block
    # takes them too, as they cost fewer numpy calls than phases and border gathers.
    for o0 in range(0, out_size, _BAND):
        o1 = min(o0 + _BAND, out_size)
        used = index[o0:o1][ints[o0:o1] != 0]
        lo, hi = (int(used.min()), int(used.max()) + 1) if used.size else (0, 1)
        band = np.zeros((hi - lo, o1 - o0), dtype=dtype)
        for k in range(index.shape[1]):
            live = ints[o0:o1, k] != 0
            band[index[o0:o1, k][live] - lo, np.flatnonzero(live)] = scaled[o0:o1, k][live]
        bands.append((o0, o1, lo, hi, band))
    inside = np.zeros(out_size, dtype=bool)
    inside[start:start + count] = True
    rest = np.flatnonzero(~inside) if ratio else np.empty(0, dtype=np.intp)
    return _Axis(ratio=ratio, start=start, count=count, taps=taps,
                 groups=tuple((w, tuple(t)) for w, t in groups), bands=tuple(bands), rest=rest,
                 rest_index=index[rest], rest_weights=scaled[rest, :, None].astype(dtype),
                 dtype=dtype, clamp=bound >= 256 << precision)


def _pass(src: np.ndarray, plan: _Axis, out: np.ndarray, work: np.ndarray) -> None:
    """Resize axis 1 of ``src`` (lines, L, E) into the uint8 ``out`` (lines, out, E).
    ``work``: a flat scratch buffer of ``plan.dtype`` and :func:`_work_size` values, reused
    across blocks (fresh pages cost more than the arithmetic)."""
    lines, _, per = src.shape
    out_size = out.shape[1]
    values = lines * out_size * per
    acc = work[:values].reshape(out.shape)
    banded = not plan.ratio or src.size <= _SMALL
    if not banded:
        # An integer ratio: every phase has exactly out_size pixels.
        ratio = plan.ratio
        phases = work[values:values * (ratio + 1)].reshape(ratio, lines, out_size, per)
        _split(src, phases)
        flat, tmp = acc.reshape(-1), work[values * (ratio + 1):values * (ratio + 2)]
        # Output j of the block's flat lines reads phase element j - start + at: a line's run
        # outputs stay within the line; the lanes that cross lines are overwritten below.
        first = plan.start * per
        n = min(flat.size - first, flat.size - max(at for _, at, _ in plan.taps) * per)
        flat[:first] = 0.0
        flat[first + n:] = 0.0
        for k, (weight, taps) in enumerate(plan.groups):
            views = [phases[r].reshape(-1)[at * per:at * per + n] for r, at in taps]
            dst = flat[first:first + n] if k == 0 else tmp[:n]
            if len(views) == 2:
                # Taps of equal weight (the filter is symmetric) add before one multiply.
                np.add(views[0], views[1], out=dst)
                np.multiply(dst, weight, out=dst)
            else:
                np.multiply(views[0], weight, out=dst)
            if k:
                flat[first:first + n] += dst
    else:
        if src.dtype != plan.dtype:
            cast = work[values:values + src.size].reshape(src.shape)
            np.copyto(cast, src)
            src = cast
        for o0, o1, lo, hi, band in plan.bands:
            # Products of at most _GEMM_SERIAL multiply-adds, which OpenBLAS runs on the
            # calling thread: its own threads would only spin against ONNX Runtime's.
            step = max(1, _GEMM_SERIAL // band.size)
            if per == 1:
                for a in range(0, lines, step):
                    np.matmul(src[a:a + step, lo:hi, 0], band, out=acc[a:a + step, o0:o1, 0])
            else:
                for a in range(0, per, step):
                    np.matmul(band.T, src[:, lo:hi, a:a + step], out=acc[:, o0:o1, a:a + step])
    if not banded and len(plan.rest):
        part = np.take(src, plan.rest_index[:, 0], axis=1) * plan.rest_weights[:, 0]
        for k in range(1, plan.rest_index.shape[1]):
            part += np.take(src, plan.rest_index[:, k], axis=1) * plan.rest_weights[:, k]
        acc[:, plan.rest] = part
    acc += 0.5
    if plan.clamp:
        np.minimum(acc, 255.0, out=acc)
    # Non-negative, so the cast's truncation is the floor.
    np.copyto(out, acc, casting="unsafe")


def _split(src: np.ndarray, phases: np.ndarray) -> None:
    """``phases[r] = src[:, r::P]`` as float: the P phases of axis 1 of ``src``."""
    ratio, lines, _, per = phases.shape
    width = src.shape[1]
    word = {2: np.uint16, 4: np.uint32, 8: np.uint64}.get(ratio)
    if (word is not None and per == 1 and src.dtype == np.uint8 and src.flags.c_contiguous
            and width % ratio == 0 and sys.byteorder == "little"):
        # A strided casting copy is slow in numpy; P bytes read as one word and split with
        # shifts and masks are contiguous integer loops (pixel r is byte r on little-endian).
        words = src.reshape(lines, width).view(word)
        part = np.empty_like(words)
        for r in range(ratio):
            if r == 0:
                np.bitwise_and(words, 255, out=part)
            else:
                np.right_shift(words, 8 * r, out=part)
                if r < ratio - 1:
                    np.bitwise_and(part, 255, out=part)
            np.copyto(phases[r, :, :, 0], part)
        return
    for r in range(ratio):
        np.copyto(phases[r], src[:, r::ratio])


def _work_size(plan: _Axis, values: int, inputs: int) -> int:
    """Scratch values :func:`_pass` needs for a block of at most ``values`` outputs read from
    at most ``inputs`` values."""
    return max(values * (plan.ratio + 2), values + inputs)


def resize_uint8(x: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(..., H, W) uint8 → (..., *size) uint8, equal to torch's antialiased bilinear uint8 resize
    (``F.interpolate(..., mode="bilinear", antialias=True, align_corners=False)``) on the CPU."""
    height, width = x.shape[-2:]
    out_h, out_w = size
    if (out_h, out_w) == (height, width):
        return np.ascontiguousarray(x)
    lead = x.shape[:-2]
    count = math.prod(lead)
    result = np.empty((count, out_h, out_w), dtype=np.uint8)
    if count == 0:
        return result.reshape(*lead, out_h, out_w)
    # A few planes at a time through both passes: the intermediate (uint8, as torch rounds it)
    # and the scratch stay small and in cache, and a channels-last batch is copied plane-wise.
    group = min(count, max(1, _BLOCK // (height * max(width, out_w))))
    flat = x.reshape(-1, height, width) if x.flags.c_contiguous else None
    staged = np.empty((group, height, width), dtype=np.uint8) if flat is None else None
    hplan = _axis(width, out_w) if out_w != width else None
    vplan = _axis(height, out_h) if out_h != height else None
    hstep = max(1, _BLOCK // max(width, out_w))
    vstep = max(1, _BLOCK // (max(height, out_h) * out_w))
    if hplan is not None:
        lines = min(hstep, group * height)
        hwork = np.empty(_work_size(hplan, lines * out_w, lines * width), dtype=hplan.dtype)
        mid = np.empty((group, height, out_w), dtype=np.uint8) if vplan is not None else None
    if vplan is not None:
        lines = min(vstep, group)
        vwork = np.empty(_work_size(vplan, lines * out_h * out_w, lines * height * out_w),
                         dtype=vplan.dtype)
    for p0 in range(0, count, group):
        p1 = min(p0 + group, count)
        if flat is not None:
            planes = flat[p0:p1]
        else:
            planes = staged[:p1 - p0]
            for i, p in enumerate(range(p0, p1)):
                np.copyto(planes[i], x[np.unravel_index(p, lead)])
        if hplan is not None:
            # The horizontal pass first, as torch does; rows are independent lines.
            done = result[p0:p1] if mid is None else mid[:p1 - p0]
            rows, rows_out = planes.reshape(-1, width, 1), done.reshape(-1, out_w, 1)
            for r0 in range(0, rows.shape[0], hstep):
                _pass(rows[r0:r0 + hstep], hplan, rows_out[r0:r0 + hstep], hwork)
            planes = done
        if vplan is not None:
            # Then the vertical pass: a line is a plane, a pixel one of its rows.
            for q0 in range(p0, p1, vstep):
                q1 = min(q0 + vstep, p1)
                _pass(planes[q0 - p0:q1 - p0], vplan, result[q0:q1], vwork)
    return result.reshape(*lead, out_h, out_w)

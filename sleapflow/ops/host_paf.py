"""PAF line scoring on numpy arrays (ONNX Runtime's maps on the CPU), as ops.paf does it on torch.

:func:`score_paf_lines` enumerates the same candidates in the same order as
:func:`sleapflow.ops.paf.score_paf_lines` and computes each score with the float32 operations
torch's CPU kernels perform, in their order: the linspace with its fused multiply-add upper
half, the FMA inside ``torch.norm``, the reciprocal-then-multiply penalty and the summation
order of the mean. On an AVX2 CPU (the scores were checked bit for bit there for every
``n_points`` from 1 to 5 and 8 to 47) the scores equal torch's; elsewhere they can differ in
the last bit.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike, NDArray

from sleapflow.ops.paf import PafScores

__all__ = ("candidate_pairs", "score_paf_lines")

# interp1d's denominator in sleap-nn: 1 + float32 eps (see ops.paf).
_INTERP_DENOM = np.float32(1.0 + float(np.finfo(np.float32).eps))

# Candidates scored per pass: bounds the temporary arrays (~300 bytes per candidate at
# n_points=10) when a frame has hundreds of peaks per node, without changing any result.
_CHUNK = 1 << 16

# torch's CPU sum over a short contiguous row: float32 lanes of one AVX2 vector, and the
# independent accumulators its scalar and vector loops keep.
_LANES = 8
_ILP = 4


def _empty() -> PafScores:
    z = np.zeros(0, dtype=np.int64)
    return PafScores(z, z, z, z, z, z, np.zeros(0, dtype=np.float32))


def _linspace01(n: int) -> NDArray[np.float32]:
    """``torch.linspace(0, 1, n)`` in float32: the first half counts up from 0, the second down
    from 1; the compiler fuses the latter's multiply-add, which float64 reproduces here."""
    if n == 1:
        return np.zeros(1, dtype=np.float32)
    step = np.float32(1.0) / np.float32(n - 1)
    i = np.arange(n)
    up = (np.float64(step) * i).astype(np.float32)
    down = (1.0 - np.float64(step) * (n - 1 - i)).astype(np.float32)
    return np.where(i < n // 2, up, down).astype(np.float32)


def _row_sum(x: NDArray[np.float32]) -> NDArray[np.float32]:
    """Sum over axis 1 of (m, P) float32 in the order torch's CPU kernel adds."""
    n = x.shape[1]
    total = np.zeros(x.shape[0], dtype=np.float32)
    if n < _LANES:
        # Scalar loop: _ILP running sums, each over every _ILP-th element, then added in order.
        accs = [x[:, k::_ILP].copy() for k in range(min(_ILP, n))]
        for acc in accs:
            part = acc[:, 0].copy()
            for j in range(1, acc.shape[1]):
                part += acc[:, j]
            total += part
        return total
    # Vector loop: whole vectors into _ILP vector accumulators, those added together; the tail
    # elements summed first, then the accumulator's lanes one by one.
    n_vec = n // _LANES
    vecs = [x[:, v * _LANES:(v + 1) * _LANES] for v in range(n_vec)]
    accs = [vecs[k].copy() for k in range(min(_ILP, n_vec))]
    for v in range(_ILP, n_vec):
        accs[v % _ILP] += vecs[v]
    lanes = accs[0]
    for acc in accs[1:]:
        lanes += acc
    for j in range(n_vec * _LANES, n):
        total += x[:, j]
    for j in range(_LANES):
        total += lanes[:, j]
    return total


def candidate_pairs(sample_inds: NDArray[np.integer], channel_inds: NDArray[np.integer],
                    edges: NDArray[np.int64], n_frames: int) -> PafScores:
    """Every (src peak, dst peak) pair of every edge of every frame, without scores (NaN).

    Ordered by frame, edge, src rank, dst rank; a rank is the peak's position among its frame's
    peaks of that node, in the given peak order (the fields of :class:`PafScores`)."""
    n_edges = len(edges)
    n_keys = int(edges.max()) + 1
    si = np.asarray(sample_inds, dtype=np.int64)
    ci = np.asarray(channel_inds, dtype=np.int64)
    n_groups = n_frames * n_keys
    valid = (ci >= 0) & (ci < n_keys) & (si >= 0) & (si < n_frames)
    key = np.where(valid, si * n_keys + ci, n_groups)
    counts = np.bincount(key, minlength=n_groups + 1)[:n_groups]
    by_group = np.argsort(key, kind="stable")
    starts = (np.cumsum(counts) - counts).reshape(n_frames, n_keys)
    counts = counts.reshape(n_frames, n_keys)
    src_node, dst_node = edges[:, 0], edges[:, 1]
    n_dst = counts[:, dst_node].reshape(-1)  # per (frame, edge), frame-major
    pairs = counts[:, src_node].reshape(-1) * n_dst
    n_cand = int(pairs.sum())
    if n_cand == 0:
        return _empty()
    group = np.repeat(np.arange(n_frames * n_edges), pairs)
    local = np.arange(n_cand) - (np.cumsum(pairs) - pairs)[group]
    nd = n_dst[group]
    src_rank = local // nd
    dst_rank = local - src_rank * nd
    cand_sample = group // n_edges
    cand_edge = group - cand_sample * n_edges
    src_idx = by_group[starts[cand_sample, src_node[cand_edge]] + src_rank]
    dst_idx = by_group[starts[cand_sample, dst_node[cand_edge]] + dst_rank]
    return PafScores(cand_sample, cand_edge, src_idx, dst_idx, src_rank, dst_rank,
                     np.full(n_cand, np.nan, dtype=np.float32))


def score_paf_lines(
    pafs: NDArray[np.floating],
    points: NDArray[np.floating],
    sample_inds: NDArray[np.integer],
    channel_inds: NDArray[np.integer],
    edge_inds: Sequence[tuple[int, int]] | ArrayLike,
    *,
    pafs_stride: float,
    n_points: int = 10,
    max_edge_length_ratio: float = 0.25,
    dist_penalty_weight: float = 1.0,
) -> PafScores:
    """:func:`sleapflow.ops.paf.score_paf_lines` on numpy arrays: the same candidates, in the same
    order, with the same float32 scores (NaN for zero-length lines); numpy fields.

    Args:
        pafs: ``(B, 2E, Hp, Wp)`` float32 PAFs, NCHW as ONNX Runtime returns them.
        points / sample_inds / channel_inds: the batch's peaks ``(n, 2)`` xy in scaled-input
            pixels, their frame and node; their order defines the node-local ranks.
        edge_inds, pafs_stride, n_points, max_edge_length_ratio, dist_penalty_weight: as there.
    """
    if pafs.ndim != 4:
        raise ValueError(f"pafs must be (B, 2E, Hp, Wp); got shape {tuple(pafs.shape)}")
    n_frames, n_channels, height, width = (int(s) for s in pafs.shape)
    edges = np.asarray(edge_inds, dtype=np.int64).reshape(-1, 2)
    if n_channels != 2 * len(edges):
        raise ValueError(f"pafs has {n_channels} channels but there are {len(edges)} edges")
    if len(edges) == 0 or points.shape[0] == 0:
        return _empty()
    cand = candidate_pairs(sample_inds, channel_inds, edges, n_frames)
    n_cand = len(cand)
    if n_cand == 0:
        return cand

    # The Python-float expression of ops.paf, rounded to float32 where torch's kernel takes it.
    max_edge_length = np.float32(max_edge_length_ratio * max(n_channels, height, width) * pafs_stride)
    stride = np.float32(pafs_stride)
    weight = np.float32(dist_penalty_weight)
    pts = np.asarray(points, dtype=np.float32).reshape(-1, 2)
    t = _linspace01(n_points)
    scores = cand.line_scores
    for lo in range(0, n_cand, _CHUNK):
        sl = slice(lo, min(lo + _CHUNK, n_cand))
        a = pts[cand.src_inds[sl]]  # (m, 2)
        b = pts[cand.dst_inds[sl]]
        slope = (b - a) / _INTERP_DENOM
        line_xy = a[:, :, None] + slope[:, :, None] * t  # (m, 2, P)
        # NaN points (a refinement patch that sums to zero) cast to torch's int32 sentinel.
        with np.errstate(invalid="ignore"):
            sub = np.rint(line_xy / stride).astype(np.int32)
        col = np.clip(sub[:, 0], 0, width - 1)
        row = np.clip(sub[:, 1], 0, height - 1)
        frame = cand.sample_inds[sl][:, None]
        channel = 2 * cand.edge_inds[sl][:, None]
        vx = pafs[frame, channel, row, col].astype(np.float32, copy=False)  # (m, P)
        vy = pafs[frame, channel + 1, row, col].astype(np.float32, copy=False)

        vec = b - a
        # torch.norm's kernel fuses the second square into its sum (one rounding): float64
        # holds both products exactly.
        sq = (vec[:, 0] * vec[:, 0]).astype(np.float64) + np.square(vec[:, 1], dtype=np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            length = np.sqrt(sq.astype(np.float32))
            ux = vec[:, 0] / length
            uy = vec[:, 1] / length
            per_point = vx * ux[:, None] + vy * uy[:, None]
            penalty = np.minimum(max_edge_length * (np.float32(1.0) / length) - np.float32(1.0),
                                 np.float32(0.0)) * weight
            scores[sl] = _row_sum(per_point) / np.float32(n_points) + penalty
    return cand

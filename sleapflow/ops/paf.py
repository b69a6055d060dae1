"""Bottom-up grouping with part affinity fields (PAFs), as sleap-nn 0.3.5 does it.

Three steps, split by where they run:

1. :func:`score_paf_lines` (torch, on the model's device, vectorised over the whole batch): every
   (src peak, dst peak) pair of every skeleton edge of every frame gets a line-integral score.
   Numerically it mirrors ``sleap_nn.inference.ops.paf.score_paf_lines_batch`` op for op (same
   interpolation with the float32-eps denominator, torch half-to-even rounding, clamping, matmul,
   mean and distance penalty), so per-candidate scores agree with the reference on the same device.
   :func:`sleapflow.ops.host_paf.score_paf_lines` is its numpy form for ONNX Runtime's maps.
2. :func:`group_instances` (numpy + scipy, on the host, one frame): per edge, Hungarian matching of
   the candidates (``linear_sum_assignment`` on ``-score``), then SLEAP's greedy assembly of matched
   connections into instances in BFS edge order, ``min_instance_peaks`` and instance scores.
3. :func:`group_batch`: the per-batch driver that moves the scores to the host once, groups every
   frame and pads to ``(B, I, N, 2)`` with the reference's ``max_instances`` handling.

Coordinates stay in scaled-input pixels (peak · confmap output stride) throughout; dividing by
``input_scale`` and the size-matcher ``eff_scale`` is the caller's job.

Known, deliberate differences from the reference (listed for docs/COMPATIBILITY.md):

- An infeasible assignment problem (a row or column of the cost matrix with no finite entry, e.g.
  from NaN scores of coincident peaks) makes SciPy, and therefore sleap-nn, raise and abort the
  run. Here the solver is retried with non-finite costs treated as "no candidate": the largest
  matching over finite entries with minimum cost is used. Feasible problems are solved by the very
  same ``linear_sum_assignment`` call on the very same matrix, so their results are unchanged.
- Edges that grouping never uses (outside the BFS tree) are not matched at all; the reference
  matches them and drops the result (it could only crash there, never change the output).
- A skeleton without edges yields no instances (the reference raises ``StopIteration``); a skeleton
  whose every node lies on a cycle raises :class:`~sleapflow.errors.ModelLoadError` (the
  reference raises ``networkx.NetworkXUnfeasible``).
- Candidate scores are computed in one batched pass; on CUDA the batched matmul may choose a
  different cuBLAS kernel than the per-frame reference, so scores can differ in the last bit.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal, ParamSpec, TypeAlias, TypeVar

import numpy as np
from numpy.typing import ArrayLike, NDArray

from sleapflow.errors import ModelLoadError
from sleapflow.lazy import lazy_module
from sleapflow.ops.assignment import linear_sum_assignment
from sleapflow.ops.filters import order_for_max_instances

# torch loads on first use: grouping (numpy) also serves runs that never import torch.
torch = lazy_module("torch")


__all__ = (
    "Array", "PafScores", "assign_connections", "group_batch", "group_instances", "linear_sum_assignment",
    "match_edge", "paf_edge_order", "score_paf_lines", "solve_assignment",
)

# interp1d in sleap-nn divides by (eps + 1) with eps = float32 machine epsilon; 1 + 2**-23 is
# exactly representable in float32, so this constant reproduces its denominator bit for bit.
_INTERP_DENOM = 1.0 + float(np.finfo(np.float32).eps)

# Candidates scored per device pass: bounds peak memory (~1 KB per candidate at n_points=10)
# when a frame has hundreds of peaks per node, without changing any result.
_CHUNK = 1 << 17

Array: TypeAlias = "torch.Tensor | np.ndarray"


_P = ParamSpec("_P")
_R = TypeVar("_R")


def _no_grad(fn: Callable[_P, _R]) -> Callable[_P, _R]:
    """``torch.no_grad()`` as a decorator that imports torch at the first call, not here."""
    @functools.wraps(fn)
    def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        with torch.no_grad():
            return fn(*args, **kwargs)

    return wrapper


@dataclass(frozen=True, slots=True)
class PafScores:
    """Scored candidate connections of one batch, one entry per (frame, edge, src, dst) pair.

    All fields have shape ``(M,)``. Entries are ordered by frame, then edge index, then src rank,
    then dst rank. Fields are torch tensors on the model's device as returned by
    :func:`score_paf_lines`, or numpy arrays after :meth:`to_numpy`.

    Attributes:
        sample_inds: frame index within the batch (int64).
        edge_inds: skeleton edge index ``k`` (int64).
        src_inds / dst_inds: index of the src / dst peak in the batch's peak arrays (int64).
        src_ranks / dst_ranks: rank of that peak among its frame's peaks of the same node, in peak
            order (int64). This is the node-local index the reference's matching uses.
        line_scores: PAF line score with distance penalty (float32); NaN for zero-length lines.
    """

    sample_inds: Array
    edge_inds: Array
    src_inds: Array
    dst_inds: Array
    src_ranks: Array
    dst_ranks: Array
    line_scores: Array

    def __len__(self) -> int:
        return int(self.line_scores.shape[0])

    def to_numpy(self) -> PafScores:
        """Host copy with numpy fields (two device-to-host transfers: ints stacked, scores)."""
        if isinstance(self.line_scores, np.ndarray):
            return self
        ints = torch.stack(
            [self.sample_inds, self.edge_inds, self.src_inds, self.dst_inds,
             self.src_ranks, self.dst_ranks]
        ).cpu().numpy()
        return PafScores(*ints, self.line_scores.detach().cpu().numpy())

    def select(self, mask_or_slice: NDArray[np.bool_] | NDArray[np.integer] | slice) -> PafScores:
        """Subset (boolean mask, index array or slice) of every field."""
        return PafScores(
            self.sample_inds[mask_or_slice], self.edge_inds[mask_or_slice],
            self.src_inds[mask_or_slice], self.dst_inds[mask_or_slice],
            self.src_ranks[mask_or_slice], self.dst_ranks[mask_or_slice],
            self.line_scores[mask_or_slice],
        )


def _empty_scores(device: torch.device) -> PafScores:
    z = torch.zeros(0, dtype=torch.int64, device=device)
    return PafScores(z, z, z, z, z, z, torch.zeros(0, dtype=torch.float32, device=device))


@_no_grad
def score_paf_lines(
    pafs: torch.Tensor,
    points: torch.Tensor,
    sample_inds: torch.Tensor,
    channel_inds: torch.Tensor,
    edge_inds: Sequence[tuple[int, int]] | ArrayLike,
    *,
    pafs_stride: float,
    n_points: int = 10,
    max_edge_length_ratio: float = 0.25,
    dist_penalty_weight: float = 1.0,
) -> PafScores:
    """Score every candidate connection of every edge of every frame in one device pass.

    Args:
        pafs: ``(B, 2E, Hp, Wp)`` float32 PAF head output, **NCHW** as the model returns it (the
            reference permutes to NHWC first; channels ``2k, 2k+1`` are edge ``k``'s x, y).
        points: ``(n, 2)`` float32 peak ``(x, y)`` in scaled-input pixels (confmap peak times the
            confmap output stride).
        sample_inds: ``(n,)`` integer frame index of each peak.
        channel_inds: ``(n,)`` integer node index of each peak.
        edge_inds: ``(E, 2)`` (src node, dst node) per edge, in the PAF channel order.
        pafs_stride: PAF output stride; line points are indexed at ``round(xy / pafs_stride)``.
        n_points: points sampled along each line.
        max_edge_length_ratio: lines longer than ``ratio * max(Hp, Wp, 2E) * pafs_stride`` are
            penalised (the reference's ``max`` includes the channel count; kept as a quirk).
        dist_penalty_weight: weight of that penalty.

    Returns:
        :class:`PafScores` with tensors on ``pafs.device``. Peaks keep the order they are given in
        (the reference's raster order), which defines the node-local ranks.

    A host synchronisation happens once to learn the candidate count; nothing else leaves the
    device.
    """
    device = pafs.device
    if pafs.ndim != 4:
        raise ValueError(f"pafs must be (B, 2E, Hp, Wp); got shape {tuple(pafs.shape)}")
    n_frames, n_channels, height, width = (int(s) for s in pafs.shape)
    edges_np = np.asarray(edge_inds, dtype=np.int64).reshape(-1, 2)
    n_edges = len(edges_np)
    if n_channels != 2 * n_edges:
        raise ValueError(f"pafs has {n_channels} channels but there are {n_edges} edges")
    if n_edges == 0 or points.shape[0] == 0:
        return _empty_scores(device)

    # Python-float expression in the reference's order, so it rounds identically.
    max_edge_length = max_edge_length_ratio * max(n_channels, height, width) * pafs_stride

    # Group peaks by (frame, node) with a stable sort, so ranks follow the given peak order.
    n_keys = int(edges_np.max()) + 1
    si = sample_inds.to(device=device, dtype=torch.int64)
    ci = channel_inds.to(device=device, dtype=torch.int64)
    n_groups = n_frames * n_keys
    valid = (ci >= 0) & (ci < n_keys) & (si >= 0) & (si < n_frames)
    key = torch.where(valid, si * n_keys + ci, torch.full_like(si, n_groups))
    counts = torch.bincount(key, minlength=n_groups + 1)[:n_groups]
    by_group = torch.argsort(key, stable=True)
    starts = (torch.cumsum(counts, 0) - counts).view(n_frames, n_keys)
    counts = counts.view(n_frames, n_keys)

    edges = torch.as_tensor(edges_np, device=device)
    src_node, dst_node = edges[:, 0], edges[:, 1]
    n_src = counts[:, src_node]  # (B, E)
    n_dst = counts[:, dst_node]
    pairs = (n_src * n_dst).reshape(-1)  # per (frame, edge), frame-major
    n_cand = int(pairs.sum())  # the one host sync
    if n_cand == 0:
        return _empty_scores(device)

    # Enumerate all src x dst pairs of each (frame, edge) group without a Python loop.
    group = torch.repeat_interleave(
        torch.arange(n_frames * n_edges, device=device), pairs, output_size=n_cand
    )
    first = torch.cumsum(pairs, 0) - pairs
    local = torch.arange(n_cand, device=device) - first[group]
    nd = n_dst.reshape(-1)[group]
    src_rank = torch.div(local, nd, rounding_mode="floor")
    dst_rank = local - src_rank * nd
    cand_sample = torch.div(group, n_edges, rounding_mode="floor")
    cand_edge = group - cand_sample * n_edges
    src_idx = by_group[starts[cand_sample, src_node[cand_edge]] + src_rank]
    dst_idx = by_group[starts[cand_sample, dst_node[cand_edge]] + dst_rank]

    pts = points.to(device=device, dtype=torch.float32)
    t = torch.linspace(0, 1, steps=n_points, device=device, dtype=torch.float32)
    # A 1-element device tensor (not a Python scalar): CUDA would turn division by a CPU scalar
    # into multiplication by its reciprocal, which the reference does not do here.
    denom = torch.full((1,), _INTERP_DENOM, dtype=torch.float32, device=device)
    scores = torch.empty(n_cand, dtype=torch.float32, device=device)
    for lo in range(0, n_cand, _CHUNK):
        sl = slice(lo, min(lo + _CHUNK, n_cand))
        a = pts[src_idx[sl]]  # (m, 2)
        b = pts[dst_idx[sl]]
        # interp1d: y0 + ((y1 - y0) / (eps + 1)) * t, as separate multiply and add.
        slope = (b - a) / denom
        line_xy = a.unsqueeze(-1) + slope.unsqueeze(-1) * t  # (m, 2, P)
        # A Python-scalar divisor, like the reference, so each device uses the same kernel.
        sub = (line_xy / pafs_stride).round().int()
        col = torch.clip(sub[:, 0], min=0, max=width - 1).long()
        row = torch.clip(sub[:, 1], min=0, max=height - 1).long()
        fr = cand_sample[sl].unsqueeze(-1)
        ch = (2 * cand_edge[sl]).unsqueeze(-1)
        lines = torch.stack([pafs[fr, ch, row, col], pafs[fr, ch + 1, row, col]], dim=-1)
        lines = lines.to(torch.float32)  # (m, P, 2)

        vec = b - a
        length = torch.norm(vec, dim=1, keepdim=True)  # (m, 1)
        unit = vec / length
        per_point = torch.squeeze(lines @ unit.unsqueeze(2), dim=-1)  # (m, P)
        # `float / tensor` (reciprocal-then-multiply in torch), exactly the reference's form.
        penalty = torch.clamp((max_edge_length / length) - 1, max=0) * dist_penalty_weight
        scores[sl] = torch.mean(per_point, dim=1) + torch.squeeze(penalty, dim=1)

    return PafScores(
        cand_sample, cand_edge, src_idx, dst_idx, src_rank, dst_rank, scores
    )


@lru_cache(maxsize=64)
def _edge_order_cached(edges: tuple[tuple[int, int], ...]) -> tuple[int, ...]:
    if not edges:
        return ()
    # networkx.DiGraph(edge_list): nodes in order of first appearance (src before dst),
    # successors in order of first edge, duplicate edges collapsed.
    nodes = list(dict.fromkeys(n for edge in edges for n in edge))
    succ: dict[int, dict[int, None]] = {n: {} for n in nodes}
    indeg = dict.fromkeys(nodes, 0)
    for s, d in edges:
        if d not in succ[s]:
            succ[s][d] = None
            indeg[d] += 1
    # next(nx.topological_sort(G)): the first node, in insertion order, with in-degree 0. It only
    # fails when no such node exists; cycles elsewhere are not detected by a single `next`.
    root = next((n for n in nodes if indeg[n] == 0), None)
    if root is None:
        raise ModelLoadError(
            "The PAF skeleton has no root node (every node lies on a cycle), so bottom-up "
            f"grouping has no start; edges: {list(edges)}. Check the model's pafs.edges."
        )
    # nx.bfs_edges(G, root): tree edges in BFS order; edges.index picks the first duplicate.
    order: list[int] = []
    seen = {root}
    frontier = [root]
    while frontier:
        nxt: list[int] = []
        for parent in frontier:
            for child in succ[parent]:
                if child not in seen:
                    seen.add(child)
                    nxt.append(child)
                    order.append(edges.index((parent, child)))
        frontier = nxt
    return tuple(order)


def paf_edge_order(edges: Sequence[tuple[int, int]] | ArrayLike) -> tuple[int, ...]:
    """Edge indices in the order grouping processes them (sleap-nn ``toposort_edges``).

    The root is the first node (in order of first appearance in ``edges``) with no incoming edge;
    edges are ordered by a breadth-first search from it, following successors in edge-list order.
    Only BFS tree edges are returned: edges unreachable from the root (a disconnected skeleton),
    edges into an already visited node and duplicates are ignored by grouping, as in the reference.

    Raises:
        ModelLoadError: no node has in-degree 0.
    """
    key = tuple((int(s), int(d)) for s, d in np.asarray(edges, dtype=np.int64).reshape(-1, 2))
    return _edge_order_cached(key)


def solve_assignment(cost: NDArray[np.floating]) -> tuple[NDArray[np.intp], NDArray[np.intp]]:
    """``linear_sum_assignment(cost)``; if SciPy finds it infeasible, the best partial matching.

    The first call is exactly the reference's. Only when it raises (a row/column without a finite
    entry, or an invalid entry) is the problem re-solved with every non-finite cost priced above
    any combination of finite ones, and matches at those entries dropped: this maximises the
    number of finite matches, then minimises their cost.
    """
    try:
        return linear_sum_assignment(cost)
    except ValueError:
        finite = np.isfinite(cost)
        if not finite.any():
            empty = np.zeros(0, dtype=np.intp)
            return empty, empty
        padded = cost.astype(np.float64)
        big = (np.abs(padded[finite]).max() + 1.0) * (min(cost.shape) + 1) * 2.0
        padded[~finite] = big
        rows, cols = linear_sum_assignment(padded)
        ok = finite[rows, cols]
        return rows[ok], cols[ok]


def match_edge(
    src_ranks: ArrayLike, dst_ranks: ArrayLike, line_scores: ArrayLike
) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.float32]]:
    """Hungarian matching of one edge's candidates in one frame (``match_candidates_sample``).

    Rows are the sorted unique src ranks, columns the sorted unique dst ranks; cost ``-score``,
    missing and NaN entries ``+inf``, float32 like the reference.

    Returns:
        ``(src_ranks, dst_ranks, scores)`` of the matches in SciPy's output order (rows ascending);
        scores are float32.
    """
    src = np.asarray(src_ranks, dtype=np.int64)
    dst = np.asarray(dst_ranks, dtype=np.int64)
    sc = np.asarray(line_scores, dtype=np.float32)
    if len(sc) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32)
    rows_u, rows_inv = np.unique(src, return_inverse=True)
    cols_u, cols_inv = np.unique(dst, return_inverse=True)
    cost = np.full((len(rows_u), len(cols_u)), np.inf, dtype=np.float32)
    cost[rows_inv, cols_inv] = -sc
    cost[np.isnan(cost)] = np.inf
    rows, cols = solve_assignment(cost)
    return rows_u[rows], cols_u[cols], -cost[rows, cols]


def assign_connections(
    conn_src_nodes: ArrayLike,
    conn_dst_nodes: ArrayLike,
    conn_src_peaks: ArrayLike,
    conn_dst_peaks: ArrayLike,
    n_peaks: int,
    peak_nodes: ArrayLike,
    *,
    edge_starts: Sequence[int] | None = None,
) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """SLEAP's greedy assembly of connections into instances (``assign_connections_to_instances``).

    Connections are processed in the order given. Peaks are identified by their index in the
    frame (``peak_nodes[p]`` is peak ``p``'s node). For a connection ``(s, d)``:

    - neither assigned: both get a new id ``max(current ids, default -1) + 1``;
    - only ``s`` assigned: ``d`` joins ``s``'s instance;
    - both assigned: ``d`` moves to ``s``'s instance; then if the node sets of ``s``'s instance and
      of ``d``'s old instance (after the move) are disjoint, the old instance merges into ``s``'s;
    - only ``d`` assigned: nothing happens (SLEAP behaviour, kept).

    Args:
        conn_src_nodes / conn_dst_nodes: node of each connection's ends (used only to detect when
            the vectorised path is safe).
        conn_src_peaks / conn_dst_peaks: frame peak index of each connection's ends.
        n_peaks: number of peaks in the frame.
        peak_nodes: ``(n_peaks,)`` node of each peak.
        edge_starts: optional boundaries of runs of connections that belong to one edge (one
            Hungarian matching). A run whose dst peaks are all unassigned and whose src and dst
            nodes differ can only take the first two cases, so it is applied vectorised; runs
            not described, or not safe, go through the exact per-connection loop.

    Returns:
        ``(instance_of_peak, insertion_seq)``, both ``(n_peaks,) int64``: the instance id of each
        peak (-1 = unassigned) and the order in which each peak was first assigned (-1 = never),
        which is the reference's dict insertion order.
    """
    src_nodes = np.asarray(conn_src_nodes, dtype=np.int64)
    dst_nodes = np.asarray(conn_dst_nodes, dtype=np.int64)
    src_peaks = np.asarray(conn_src_peaks, dtype=np.int64)
    dst_peaks = np.asarray(conn_dst_peaks, dtype=np.int64)
    nodes_of = np.asarray(peak_nodes, dtype=np.int64)
    inst = np.full(n_peaks, -1, dtype=np.int64)
    seq = np.full(n_peaks, -1, dtype=np.int64)
    n_conn = len(src_peaks)
    bounds = [0, n_conn] if edge_starts is None else [*edge_starts, n_conn]
    counter = 0
    max_id = -1  # max over current ids; only the both-assigned case can lower it

    for lo, hi in itertools.pairwise(bounds):
        if hi <= lo:
            continue
        s, d = src_peaks[lo:hi], dst_peaks[lo:hi]
        fast = (
            edge_starts is not None
            and not np.any(src_nodes[lo:hi] == dst_nodes[lo:hi])
            and np.all(inst[d] < 0)
            and len(np.unique(d)) == len(d)
            and len(np.unique(s)) == len(s)
            and not np.isin(d, s).any()
        )
        if fast:
            ids = inst[s]
            new = ids < 0
            n_new = int(new.sum())
            ids[new] = max_id + 1 + np.arange(n_new)
            max_id += n_new
            # Dict insertion order: a new instance inserts s then d, an extension only d.
            step = np.where(new, 2, 1)
            base = counter + np.cumsum(step) - step
            seq[s[new]] = base[new]
            seq[d] = base + new
            counter += int(step.sum())
            inst[s] = ids
            inst[d] = ids
            continue
        for sp, dp in zip(s.tolist(), d.tolist()):
            si, di = inst[sp], inst[dp]
            if si < 0 and di < 0:
                new_id = max_id + 1
                for p in (sp, dp):
                    if seq[p] < 0:
                        seq[p] = counter
                        counter += 1
                    inst[p] = new_id
                max_id = new_id
            elif si >= 0 and di < 0:
                seq[dp] = counter
                counter += 1
                inst[dp] = si
            elif si >= 0 and di >= 0:
                inst[dp] = si
                src_set = nodes_of[inst == si]
                dst_set = nodes_of[inst == di]
                if not np.isin(src_set, dst_set).any():
                    inst[inst == di] = si
                # d's move or the merge can empty the highest id; the reference takes the max of
                # the current values each time it creates an instance.
                max_id = int(inst.max(initial=-1))
            # Only d assigned: nothing, as in SLEAP.
    return inst, seq


def group_instances(
    points: ArrayLike,
    vals: ArrayLike,
    channel_inds: ArrayLike,
    candidates: PafScores,
    *,
    edge_inds: Sequence[tuple[int, int]] | ArrayLike,
    n_nodes: int,
    min_line_scores: float = 0.25,
    min_instance_peaks: int | float = 0,
    edge_order: Sequence[int] | None = None,
) -> tuple[NDArray[np.float32], NDArray[np.float32], NDArray[np.float32]]:
    """Match and group one frame's scored candidates into instances (host, numpy + scipy).

    Args:
        points: ``(n, 2)`` this frame's peaks ``(x, y)``, in the order used for scoring.
        vals: ``(n,)`` peak values.
        channel_inds: ``(n,)`` node of each peak.
        candidates: this frame's :class:`PafScores` in numpy form (``edge_inds``, ``src_ranks``,
            ``dst_ranks`` and ``line_scores`` are used; ranks are node-local, in peak order).
        edge_inds: ``(E, 2)`` skeleton edges as (src node, dst node).
        n_nodes: number of nodes.
        min_line_scores: matches scoring below it are dropped (equal is kept).
        min_instance_peaks: drop instances with fewer assigned peaks; a Python ``float`` means a
            fraction, ``int(value * n_nodes)`` (so a float 2.0 means ``2 * n_nodes``, as the CLI
            passes it to the reference).
        edge_order: processing order of edges; default :func:`paf_edge_order` of ``edge_inds``.

    Returns:
        ``(instances (I, N, 2), peak_values (I, N), instance_scores (I,))``, float32, in assembly
        order (instances numbered by creation). Missing nodes are NaN. The score is the float32
        sum, in processing order, of the line scores of kept connections whose src peak is
        assigned; it can exceed 1. Coordinates are those of ``points`` (not rescaled).
    """
    edges_np = np.asarray(edge_inds, dtype=np.int64).reshape(-1, 2)
    order = paf_edge_order(edges_np) if edge_order is None else tuple(edge_order)
    pts = np.asarray(points, dtype=np.float32).reshape(-1, 2)
    pv = np.asarray(vals, dtype=np.float32).reshape(-1)
    ch = np.asarray(channel_inds, dtype=np.int64).reshape(-1)
    n_peaks = len(pts)

    # Frame index of (node, rank): stable sort by node keeps the peak order within a node.
    by_node = np.argsort(ch, kind="stable")
    counts = np.bincount(ch[(ch >= 0) & (ch < n_nodes)], minlength=n_nodes)[:n_nodes]
    first_of_node = np.searchsorted(ch[by_node], np.arange(n_nodes), side="left")

    cand = candidates.to_numpy()
    cand_edge = np.asarray(cand.edge_inds, dtype=np.int64)
    edge_sort = np.argsort(cand_edge, kind="stable")
    edge_bounds = np.searchsorted(cand_edge[edge_sort], np.arange(len(edges_np) + 1))

    c_src: list[NDArray[np.int64]] = []
    c_dst: list[NDArray[np.int64]] = []
    c_score: list[NDArray[np.float32]] = []
    c_snode: list[NDArray[np.int64]] = []
    c_dnode: list[NDArray[np.int64]] = []
    starts: list[int] = []
    total = 0
    for k in order:
        sel = edge_sort[edge_bounds[k]:edge_bounds[k + 1]]
        if len(sel) == 0:
            continue
        src_node, dst_node = (int(v) for v in edges_np[k])
        rs, rd, ms = match_edge(cand.src_ranks[sel], cand.dst_ranks[sel], cand.line_scores[sel])
        keep = ms >= min_line_scores
        rs, rd, ms = rs[keep], rd[keep], ms[keep]
        # Ranks beyond a node's peak count cannot come from score_paf_lines; guard anyway.
        ok = (rs < counts[src_node]) & (rd < counts[dst_node])
        rs, rd, ms = rs[ok], rd[ok], ms[ok]
        if len(ms) == 0:
            continue
        starts.append(total)
        total += len(ms)
        c_src.append(by_node[first_of_node[src_node] + rs])
        c_dst.append(by_node[first_of_node[dst_node] + rd])
        c_score.append(ms)
        c_snode.append(np.full(len(ms), src_node, np.int64))
        c_dnode.append(np.full(len(ms), dst_node, np.int64))

    empty = (
        np.zeros((0, n_nodes, 2), np.float32),
        np.zeros((0, n_nodes), np.float32),
        np.zeros(0, np.float32),
    )
    if total == 0:
        return empty
    conn_src = np.concatenate(c_src)
    conn_dst = np.concatenate(c_dst)
    conn_score = np.concatenate(c_score)
    inst, seq = assign_connections(
        np.concatenate(c_snode), np.concatenate(c_dnode), conn_src, conn_dst, n_peaks, ch,
        edge_starts=starts,
    )

    if min_instance_peaks > 0:
        threshold = min_instance_peaks
        if isinstance(min_instance_peaks, float):
            threshold = int(min_instance_peaks * n_nodes)
        ids, peak_counts = np.unique(inst[inst >= 0], return_counts=True)
        small = ids[peak_counts < threshold]
        inst[np.isin(inst, small)] = -1

    assigned = np.flatnonzero(inst >= 0)
    if len(assigned) == 0:
        return empty
    ids_sorted = np.unique(inst[assigned])
    n_inst = len(ids_sorted)
    remap = np.full(int(ids_sorted[-1]) + 1, -1, dtype=np.int64)
    remap[ids_sorted] = np.arange(n_inst)

    scores = np.zeros(n_inst, dtype=np.float32)
    has_src = inst[conn_src] >= 0
    # np.add.at is unbuffered and sequential: float32 accumulation in connection order.
    np.add.at(scores, remap[inst[conn_src[has_src]]], conn_score[has_src])

    instances = np.full((n_inst, n_nodes, 2), np.nan, dtype=np.float32)
    peak_vals = np.full((n_inst, n_nodes), np.nan, dtype=np.float32)
    # Write in dict insertion order so that, should an instance hold two peaks of one node, the
    # later one wins as in the reference (fancy assignment keeps the last duplicate).
    p = assigned[np.argsort(seq[assigned], kind="stable")]
    rows = remap[inst[p]]
    instances[rows, ch[p]] = pts[p]
    peak_vals[rows, ch[p]] = pv[p]
    return instances, peak_vals, scores


def _to_numpy(x: ArrayLike | torch.Tensor) -> np.ndarray:
    if isinstance(x, np.ndarray):
        return x
    if hasattr(x, "detach"):  # a torch tensor: checked by duck type so numpy input never imports torch
        return x.detach().cpu().numpy()
    return np.asarray(x)


def group_batch(
    scores: PafScores,
    points: ArrayLike | torch.Tensor,
    vals: ArrayLike | torch.Tensor,
    sample_inds: ArrayLike | torch.Tensor,
    channel_inds: ArrayLike | torch.Tensor,
    *,
    n_frames: int,
    n_nodes: int,
    edge_inds: Sequence[tuple[int, int]] | ArrayLike,
    min_line_scores: float = 0.25,
    min_instance_peaks: int | float = 0,
    max_instances: int | None = None,
    max_instances_mode: Literal["track", "predict"] = "track",
) -> tuple[NDArray[np.float32], NDArray[np.float32], NDArray[np.float32]]:
    """Group a whole batch on the host and pad to fixed arrays.

    Args:
        scores: output of :func:`score_paf_lines` (device tensors or numpy).
        points / vals / sample_inds / channel_inds: the batch's peaks exactly as passed to
            :func:`score_paf_lines` (torch on any device, or numpy); moved to the host here.
        n_frames: ``B``.
        n_nodes: ``N``.
        edge_inds / min_line_scores / min_instance_peaks: see :func:`group_instances`.
        max_instances: the user's cap, or None.
        max_instances_mode: how the cap orders and truncates a frame's instances, see
            :func:`sleapflow.ops.filters.order_for_max_instances`. ``"track"`` (default) is what
            ``sleap-nn track`` does and what the reference ``.slp`` files show: with a cap,
            instances are always re-sorted by score, descending, stable. ``"predict"`` is spec
            §6.5 (the newer flow): re-sort with ``np.argsort(scores)[::-1]`` only when truncating.

    Returns:
        ``(instances (B, I, N, 2), peak_values (B, I, N), instance_scores (B, I))`` float32 numpy,
        NaN-padded, with ``I = max(max_instances, 1)`` when a cap is set (in ``"predict"`` mode a
        cap of 0 counts as none) and otherwise the largest instance count in the batch (at
        least 1). Coordinates are still in scaled-input pixels: **not yet divided by
        ``input_scale`` or ``eff_scale``**; the caller does that.
    """
    cand = scores.to_numpy()
    pts = _to_numpy(points).astype(np.float32, copy=False).reshape(-1, 2)
    pv = _to_numpy(vals).astype(np.float32, copy=False).reshape(-1)
    si = _to_numpy(sample_inds).astype(np.int64, copy=False).reshape(-1)
    ci = _to_numpy(channel_inds).astype(np.int64, copy=False).reshape(-1)
    edges_np = np.asarray(edge_inds, dtype=np.int64).reshape(-1, 2)
    order = paf_edge_order(edges_np)

    # Per-frame slices; the stable sort keeps each frame's peak order (normally a no-op).
    by_frame = np.argsort(si, kind="stable")
    peak_bounds = np.searchsorted(si[by_frame], np.arange(n_frames + 1))
    cand_frame = np.asarray(cand.sample_inds, dtype=np.int64)
    cand_sort = np.argsort(cand_frame, kind="stable")
    cand_bounds = np.searchsorted(cand_frame[cand_sort], np.arange(n_frames + 1))

    per_frame = []
    for b in range(n_frames):
        p = by_frame[peak_bounds[b]:peak_bounds[b + 1]]
        c = cand.select(cand_sort[cand_bounds[b]:cand_bounds[b + 1]])
        inst, inst_vals, inst_scores = group_instances(
            pts[p], pv[p], ci[p], c, edge_inds=edges_np, n_nodes=n_nodes,
            min_line_scores=min_line_scores, min_instance_peaks=min_instance_peaks,
            edge_order=order,
        )
        keep = order_for_max_instances(inst_scores, max_instances, mode=max_instances_mode)
        per_frame.append((inst[keep], inst_vals[keep], inst_scores[keep]))

    capped = max_instances is not None and (max_instances_mode == "track" or max_instances > 0)
    largest = max([len(f[2]) for f in per_frame] + [1])
    n_slots = max(int(max_instances), 1) if capped else largest
    out_pts = np.full((n_frames, n_slots, n_nodes, 2), np.nan, dtype=np.float32)
    out_vals = np.full((n_frames, n_slots, n_nodes), np.nan, dtype=np.float32)
    out_scores = np.full((n_frames, n_slots), np.nan, dtype=np.float32)
    for b, (inst, inst_vals, inst_scores) in enumerate(per_frame):
        n = min(len(inst_scores), n_slots)
        out_pts[b, :n] = inst[:n]
        out_vals[b, :n] = inst_vals[:n]
        out_scores[b, :n] = inst_scores[:n]
    return out_pts, out_vals, out_scores

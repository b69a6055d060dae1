"""Bottom-up PAF scoring and grouping (sleapflow.ops.paf)."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch
from scipy.optimize import linear_sum_assignment

from sleapflow.errors import ModelLoadError
from sleapflow.ops.paf import (
    PafScores,
    assign_connections,
    group_batch,
    group_instances,
    match_edge,
    paf_edge_order,
    score_paf_lines,
)

NAN = np.nan


# --------------------------------------------------------------------------------------------
# helpers


def _cands(rows: list[tuple[int, int, int, float]], sample: int = 0) -> PafScores:
    """Host PafScores from (edge, src_rank, dst_rank, score) rows of one frame."""
    a = np.array([r[:3] for r in rows], dtype=np.int64).reshape(-1, 3)
    n = len(a)
    return PafScores(
        np.full(n, sample, np.int64), a[:, 0], np.zeros(n, np.int64), np.zeros(n, np.int64),
        a[:, 1], a[:, 2], np.array([r[3] for r in rows], dtype=np.float32),
    )


def _paint(
    instances: np.ndarray, edges: list[tuple[int, int]], hw: tuple[int, int], stride: int,
    width: float = 1.5,
) -> torch.Tensor:
    """PAFs (1, 2E, Hp, Wp): unit vectors along every edge of every instance (x, y pixels)."""
    hp, wp = hw[0] // stride, hw[1] // stride
    pafs = np.zeros((1, 2 * len(edges), hp, wp), np.float32)
    yy, xx = np.mgrid[0:hp, 0:wp].astype(np.float64)
    for inst in instances:
        for k, (s, d) in enumerate(edges):
            a, b = inst[s] / stride, inst[d] / stride
            length = np.linalg.norm(b - a)
            u = (b - a) / length
            along = (xx - a[0]) * u[0] + (yy - a[1]) * u[1]
            perp = np.abs(-(xx - a[0]) * u[1] + (yy - a[1]) * u[0])
            band = (along >= -0.5) & (along <= length + 0.5) & (perp <= width)
            pafs[0, 2 * k][band] = u[0]
            pafs[0, 2 * k + 1][band] = u[1]
    return torch.from_numpy(pafs)


def _raster_peaks(
    instances: np.ndarray, n_frames: int = 1
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Peaks of the given instances (same in each frame), in (sample, y, x, channel) order."""
    n_inst, n_nodes, _ = instances.shape
    rows = []
    for b in range(n_frames):
        for i in range(n_inst):
            for n in range(n_nodes):
                x, y = instances[i, n]
                rows.append((b, round(y), round(x), n, x, y))
    rows.sort(key=lambda r: r[:4])
    arr = np.array(rows, dtype=np.float64).reshape(-1, 6)
    points = torch.from_numpy(arr[:, 4:6].astype(np.float32))
    vals = torch.linspace(0.5, 1.0, len(arr))
    return (points, vals, torch.from_numpy(arr[:, 0].astype(np.int32)),
            torch.from_numpy(arr[:, 3].astype(np.int32)))


# --------------------------------------------------------------------------------------------
# edge order (networkx DiGraph + topological_sort root + bfs_edges semantics)


@pytest.mark.parametrize(
    ("edges", "expected"),
    [
        ([(0, 1), (1, 2)], (0, 1)),
        # BFS: all of the root's successors (in edge-list order) before grandchildren.
        ([(0, 1), (1, 2), (0, 3)], (0, 2, 1)),
        # Root = first *inserted* node with in-degree 0 (node 1 is inserted first but has a parent).
        ([(1, 2), (0, 1)], (1, 0)),
        ([(2, 0), (2, 1), (1, 3), (0, 4)], (0, 1, 3, 2)),
        # Disconnected skeleton: the second component is ignored.
        ([(0, 1), (2, 3)], (0,)),
        ([(2, 3), (0, 1)], (0,)),
        # A second parent is unreachable from the root: ignored.
        ([(0, 2), (1, 2)], (0,)),
        # Duplicates collapse onto the first index.
        ([(0, 1), (0, 1), (1, 2)], (0, 2)),
        # A cycle elsewhere does not stop the first topological node from being found.
        ([(0, 1), (2, 3), (3, 2)], (0,)),
        # Edge into an already-visited node is not a tree edge.
        ([(0, 1), (0, 2), (1, 2)], (0, 1)),
        ([], ()),
    ],
)
def test_paf_edge_order(edges: list[tuple[int, int]], expected: tuple[int, ...]) -> None:
    assert paf_edge_order(edges) == expected


def test_paf_edge_order_without_root_raises() -> None:
    with pytest.raises(ModelLoadError, match="no root"):
        paf_edge_order([(0, 1), (1, 0)])


# --------------------------------------------------------------------------------------------
# assignment rules (SLEAP's assign_connections_to_instances), exact sequential path


def _assign(conns: list[tuple[int, int]], nodes: list[int]) -> tuple[list[int], list[int]]:
    src, dst = zip(*conns, strict=True)
    nodes_arr = np.asarray(nodes)
    inst, seq = assign_connections(nodes_arr[list(src)], nodes_arr[list(dst)], src, dst,
                                   len(nodes), nodes)
    return inst.tolist(), seq.tolist()


def test_assign_new_then_extend() -> None:
    # peaks: 0 (node 0), 1 (node 1), 2 (node 2), 3 (node 0), 4 (node 1)
    inst, seq = _assign([(0, 1), (3, 4), (1, 2)], [0, 1, 2, 0, 1])
    assert inst == [0, 0, 0, 1, 1]
    assert seq == [0, 1, 4, 2, 3]  # dict insertion order


def test_assign_only_dst_assigned_does_nothing() -> None:
    # (1 -> 2) creates instance 0; then (0 -> 1): src unassigned, dst assigned -> nothing.
    inst, _ = _assign([(1, 2), (0, 1)], [0, 1, 2])
    assert inst == [-1, 0, 0]


def test_assign_both_assigned_merges_disjoint_instances() -> None:
    # peaks: 0 (n0), 1 (n1), 2 (n2), 3 (n3); (0->1) -> inst 0, (2->3) -> inst 1, then (1->2)
    # moves 2 into inst 0; inst 1 keeps {n3}, disjoint from {n0, n1, n2}: merged.
    inst, _ = _assign([(0, 1), (2, 3), (1, 2)], [0, 1, 2, 3])
    assert inst == [0, 0, 0, 0]


def test_assign_both_assigned_overlapping_nodes_only_moves_dst() -> None:
    # peaks: 0 (n0), 1 (n1), 2 (n0), 3 (n2); (0->1) inst 0, (2->3) inst 1; (1->3) moves 3 into
    # inst 0; inst 1 = {n0} overlaps inst 0's {n0, n1, n2}: no merge, peak 2 stays in inst 1.
    inst, _ = _assign([(0, 1), (2, 3), (1, 3)], [0, 1, 0, 2])
    assert inst == [0, 0, 1, 0]


def test_assign_new_id_is_max_of_current_ids_plus_one() -> None:
    # a0..a3 (nodes 0..3) form inst 0; b2 (n2), b3 (n3) form inst 1; (a1->b2) moves b2 (no merge:
    # both have node 3), (a2->b3) moves b3, emptying inst 1; the next new instance reuses id 1.
    nodes = [0, 1, 2, 3, 2, 3, 0, 1]
    conns = [(0, 1), (1, 2), (2, 3), (4, 5), (1, 4), (2, 5), (6, 7)]
    inst, _ = _assign(conns, nodes)
    assert inst == [0, 0, 0, 0, 0, 0, 1, 1]


def test_assign_vectorised_path_matches_sequential_on_tree_order() -> None:
    rng = np.random.default_rng(0)
    for _ in range(50):
        n_nodes = int(rng.integers(2, 7))
        edges = [(int(rng.integers(0, i)), i) for i in range(1, n_nodes)]
        counts = rng.integers(0, 5, n_nodes)
        first = np.concatenate([[0], np.cumsum(counts)])
        nodes = np.repeat(np.arange(n_nodes), counts)
        src_l, dst_l, sn, dn, starts = [], [], [], [], []
        for k in paf_edge_order(edges):
            s, d = edges[k]
            m = int(min(counts[s], counts[d]))
            if m == 0:
                continue
            rs = rng.permutation(counts[s])[:m]
            rd = rng.permutation(counts[d])[:m]
            starts.append(len(src_l))
            src_l += (first[s] + rs).tolist()
            dst_l += (first[d] + rd).tolist()
            sn += [s] * m
            dn += [d] * m
        fast = assign_connections(sn, dn, src_l, dst_l, len(nodes), nodes, edge_starts=starts)
        slow = assign_connections(sn, dn, src_l, dst_l, len(nodes), nodes)
        np.testing.assert_array_equal(fast[0], slow[0])
        np.testing.assert_array_equal(fast[1], slow[1])


# --------------------------------------------------------------------------------------------
# matching


def test_match_edge_hungarian_and_missing_candidates() -> None:
    # 2 src x 2 dst; the greedy choice (0,0)=0.9 is not optimal.
    rs, rd, sc = match_edge([0, 0, 1, 1], [0, 1, 0, 1], [0.9, 0.8, 0.85, 0.1])
    assert rs.tolist() == [0, 1] and rd.tolist() == [1, 0]
    assert sc.dtype == np.float32
    np.testing.assert_array_equal(sc, np.float32([0.8, 0.85]))
    # NaN scores are +inf costs (never matched while something finite is available).
    rs, rd, _ = match_edge([0, 0], [0, 1], [NAN, 0.3])
    assert (rs.tolist(), rd.tolist()) == ([0], [1])


def test_match_edge_infeasible_falls_back_to_partial_matching() -> None:
    # src 1's only candidates are NaN (coincident peaks); with fewer rows than columns SciPy
    # (and so sleap-nn) rejects the problem. We match what can be matched instead.
    cost = np.array([[-0.9, -0.1, -0.2], [np.inf, np.inf, np.inf]], np.float32)
    with pytest.raises(ValueError, match="infeasible"):
        linear_sum_assignment(cost)
    rs, rd, sc = match_edge([0, 0, 0, 1, 1, 1], [0, 1, 2, 0, 1, 2],
                            [0.9, 0.1, 0.2, NAN, NAN, NAN])
    assert (rs.tolist(), rd.tolist(), sc.tolist()) == ([0], [0], [np.float32(0.9)])
    empty = match_edge([0], [0], [NAN])
    assert [len(x) for x in empty] == [0, 0, 0]


# --------------------------------------------------------------------------------------------
# group_instances on hand-built candidates


def _chain_frame() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    # 3-node chain 0 -> 1 -> 2, two animals, peaks in raster-ish order:
    # peak: 0 (n0, A), 1 (n0, B), 2 (n1, A), 3 (n1, B), 4 (n2, A), 5 (n2, B)
    pts = np.array([[0, 0], [50, 0], [0, 10], [50, 10], [0, 20], [50, 20]], np.float32)
    vals = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4], np.float32)
    ch = np.array([0, 0, 1, 1, 2, 2])
    return pts, vals, ch


def test_group_instances_assembles_chain_and_sums_scores_in_float32() -> None:
    pts, vals, ch = _chain_frame()
    cands = _cands([
        (0, 0, 0, 0.9), (0, 0, 1, 0.1), (0, 1, 0, 0.2), (0, 1, 1, 0.7),
        (1, 0, 0, 0.6), (1, 0, 1, -0.5), (1, 1, 0, -0.5), (1, 1, 1, 0.3),
    ])
    inst, pv, sc = group_instances(pts, vals, ch, cands, edge_inds=[(0, 1), (1, 2)], n_nodes=3)
    assert inst.shape == (2, 3, 2) and inst.dtype == np.float32
    np.testing.assert_array_equal(inst[0], pts[[0, 2, 4]])
    np.testing.assert_array_equal(inst[1], pts[[1, 3, 5]])
    np.testing.assert_array_equal(pv, vals[[[0, 2, 4], [1, 3, 5]]])
    assert sc.dtype == np.float32
    assert sc[0] == np.float32(0.9) + np.float32(0.6)
    assert sc[1] == np.float32(0.7) + np.float32(0.3)


def test_group_instances_min_line_scores_keeps_equal() -> None:
    pts, vals, ch = _chain_frame()
    cands = _cands([(0, 0, 0, 0.25), (0, 1, 1, 0.2499), (1, 0, 0, 0.9), (1, 1, 1, 0.9)])
    inst, _, sc = group_instances(pts, vals, ch, cands, edge_inds=[(0, 1), (1, 2)], n_nodes=3)
    # Animal A: both edges kept. Animal B: the first edge is dropped, the second starts a new
    # instance at node 1.
    assert len(inst) == 2
    np.testing.assert_array_equal(inst[0], pts[[0, 2, 4]])
    assert np.isnan(inst[1, 0]).all()
    np.testing.assert_array_equal(inst[1, 1:], pts[[3, 5]])
    np.testing.assert_array_equal(sc, np.float32([np.float32(0.25) + np.float32(0.9), 0.9]))


def test_group_instances_min_instance_peaks_int_and_float_fraction() -> None:
    pts, vals, ch = _chain_frame()
    # A is complete (3 peaks), B only has the first edge (2 peaks).
    cands = _cands([(0, 0, 0, 0.9), (0, 1, 1, 0.9), (1, 0, 0, 0.9), (1, 1, 1, 0.1)])
    kw = dict(edge_inds=[(0, 1), (1, 2)], n_nodes=3)
    assert len(group_instances(pts, vals, ch, cands, min_instance_peaks=2, **kw)[0]) == 2
    assert len(group_instances(pts, vals, ch, cands, min_instance_peaks=3, **kw)[0]) == 1
    # float = fraction of n_nodes: int(0.7 * 3) = 2 keeps both; int(1.0 * 3) = 3 keeps A.
    assert len(group_instances(pts, vals, ch, cands, min_instance_peaks=0.7, **kw)[0]) == 2
    assert len(group_instances(pts, vals, ch, cands, min_instance_peaks=1.0, **kw)[0]) == 1
    # The CLI passes floats, so "2" means 2 * n_nodes = 6 peaks: nothing survives.
    assert len(group_instances(pts, vals, ch, cands, min_instance_peaks=2.0, **kw)[0]) == 0


def test_group_instances_ignores_edges_outside_the_bfs_tree() -> None:
    # Edges: 0 -> 1 and (disconnected) 2 -> 3. Only the first component is grouped.
    pts = np.array([[0, 0], [0, 5], [9, 9], [9, 12]], np.float32)
    ch = np.array([0, 1, 2, 3])
    cands = _cands([(0, 0, 0, 0.9), (1, 0, 0, 0.9)])
    inst, _, sc = group_instances(pts, np.ones(4, np.float32), ch, cands,
                                  edge_inds=[(0, 1), (2, 3)], n_nodes=4)
    assert len(inst) == 1
    np.testing.assert_array_equal(inst[0, :2], pts[:2])
    assert np.isnan(inst[0, 2:]).all()
    assert sc.tolist() == [np.float32(0.9)]


def test_group_instances_node_without_peaks_and_empty_frame() -> None:
    # Star 0 -> 1, 0 -> 2; node 2 has no peaks.
    pts = np.array([[0, 0], [0, 5]], np.float32)
    inst, pv, _ = group_instances(pts, np.ones(2, np.float32), [0, 1], _cands([(0, 0, 0, 0.8)]),
                                  edge_inds=[(0, 1), (0, 2)], n_nodes=3)
    assert inst.shape == (1, 3, 2) and np.isnan(inst[0, 2]).all() and np.isnan(pv[0, 2])
    empty = group_instances(np.zeros((0, 2)), np.zeros(0), np.zeros(0, int), _cands([]),
                            edge_inds=[(0, 1)], n_nodes=2)
    assert [a.shape for a in empty] == [(0, 2, 2), (0, 2), (0,)]


# --------------------------------------------------------------------------------------------
# score_paf_lines


def test_score_single_line_with_distance_penalty() -> None:
    # Constant field (1, 0): mean dot product 1 for a line along +x.
    pafs = torch.zeros(1, 2, 8, 8)
    pafs[:, 0] = 1.0
    pts = torch.tensor([[0.0, 2.0], [7.0, 2.0]])
    s = score_paf_lines(pafs, pts, torch.tensor([0, 0]), torch.tensor([0, 1]), [(0, 1)],
                        pafs_stride=1).to_numpy()
    assert len(s) == 1 and s.src_inds.tolist() == [0] and s.dst_inds.tolist() == [1]
    # max_edge_length = 0.25 * max(2, 8, 8) * 1 = 2; L = 7 -> penalty 2/7 - 1.
    assert s.line_scores[0] == pytest.approx(1 + (2 / 7 - 1), abs=1e-6)
    s2 = score_paf_lines(pafs, pts, torch.tensor([0, 0]), torch.tensor([0, 1]), [(0, 1)],
                         pafs_stride=1, dist_penalty_weight=0.0).to_numpy()
    assert s2.line_scores[0] == pytest.approx(1.0, abs=1e-6)


def test_score_max_edge_length_includes_channel_count() -> None:
    # 5 edges -> 10 channels > 4x4 map: max_edge_length = 0.25 * 10 * 2 = 5 (not 0.25 * 4 * 2).
    pafs = torch.zeros(1, 10, 4, 4)
    pts = torch.tensor([[0.0, 0.0], [6.0, 0.0]])
    s = score_paf_lines(pafs, pts, torch.tensor([0, 0]), torch.tensor([0, 1]),
                        [(0, 1), (1, 2), (2, 3), (3, 4), (4, 5)], pafs_stride=2).to_numpy()
    assert s.line_scores[0] == pytest.approx(5 / 6 - 1, abs=1e-6)


def test_score_rounds_half_to_even() -> None:
    # One line sampled at t = 0 (x = 2.5 exactly -> column 2 under half-to-even, 3 under
    # half-up) and t = 1. Column 2 holds (1, 0), everything else 0.
    pafs = torch.zeros(1, 2, 4, 16)
    pafs[0, 0, :, 2] = 1.0
    pts = torch.tensor([[2.5, 1.0], [9.0, 1.0]])
    s = score_paf_lines(pafs, pts, torch.tensor([0, 0]), torch.tensor([0, 1]), [(0, 1)],
                        pafs_stride=1, n_points=2, dist_penalty_weight=0.0).to_numpy()
    assert s.line_scores[0] == pytest.approx(0.5)


def test_score_interp_uses_eps_denominator() -> None:
    # dst x = 5.5: without the (1 + eps) denominator the t = 1 sample is 5.5 -> column 6; with it,
    # 5.4999995 -> column 5. Column 5 holds (1, 0).
    pafs = torch.zeros(1, 2, 2, 8)
    pafs[0, 0, :, 5] = 1.0
    pts = torch.tensor([[0.0, 0.0], [5.5, 0.0]])
    s = score_paf_lines(pafs, pts, torch.tensor([0, 0]), torch.tensor([0, 1]), [(0, 1)],
                        pafs_stride=1, n_points=2, dist_penalty_weight=0.0).to_numpy()
    assert s.line_scores[0] == pytest.approx(0.5)


def test_score_clamps_to_map_and_reads_y_channel() -> None:
    # Points outside the map read the border; channel 2k+1 is the y component.
    pafs = torch.zeros(1, 2, 4, 4)
    pafs[0, 1] = 1.0
    pts = torch.tensor([[-10.0, -10.0], [-10.0, 30.0]])
    s = score_paf_lines(pafs, pts, torch.tensor([0, 0]), torch.tensor([0, 1]), [(0, 1)],
                        pafs_stride=1, dist_penalty_weight=0.0).to_numpy()
    assert s.line_scores[0] == pytest.approx(1.0)


def test_score_zero_length_line_is_nan() -> None:
    pafs = torch.ones(1, 2, 4, 4)
    pts = torch.tensor([[1.0, 1.0], [1.0, 1.0]])
    s = score_paf_lines(pafs, pts, torch.tensor([0, 0]), torch.tensor([0, 1]), [(0, 1)],
                        pafs_stride=1).to_numpy()
    assert np.isnan(s.line_scores[0])


def test_score_enumerates_all_pairs_per_frame_and_edge_in_order() -> None:
    # Frame 0: node 0 x2, node 1 x3, node 2 x0. Frame 1: node 0 x1, node 1 x1, node 2 x1.
    sample = torch.tensor([0, 0, 0, 0, 0, 1, 1, 1])
    chan = torch.tensor([1, 0, 1, 0, 1, 2, 1, 0])
    pts = torch.arange(16, dtype=torch.float32).view(8, 2)
    pafs = torch.zeros(2, 4, 8, 8)
    s = score_paf_lines(pafs, pts, sample, chan, [(0, 1), (1, 2)], pafs_stride=1).to_numpy()
    # frame 0: edge 0 -> 2*3 pairs, edge 1 -> 0; frame 1: 1 + 1.
    assert len(s) == 8
    assert s.sample_inds.tolist() == [0] * 6 + [1, 1]
    assert s.edge_inds.tolist() == [0] * 6 + [0, 1]
    assert s.src_ranks[:6].tolist() == [0, 0, 0, 1, 1, 1]
    assert s.dst_ranks[:6].tolist() == [0, 1, 2, 0, 1, 2]
    # ranks follow peak order: node 0 peaks of frame 0 are peaks 1 and 3.
    assert s.src_inds[:6].tolist() == [1, 1, 1, 3, 3, 3]
    assert s.dst_inds[:6].tolist() == [0, 2, 4, 0, 2, 4]
    assert s.src_inds[6:].tolist() == [7, 6] and s.dst_inds[6:].tolist() == [6, 5]


def test_score_no_peaks() -> None:
    pafs = torch.zeros(2, 2, 4, 4)
    none = torch.zeros(0, dtype=torch.int32)
    s = score_paf_lines(pafs, torch.zeros(0, 2), none, none, [(0, 1)], pafs_stride=1)
    assert len(s) == 0
    inst, pv, sc = group_batch(s, torch.zeros(0, 2), torch.zeros(0), none, none, n_frames=2,
                               n_nodes=2, edge_inds=[(0, 1)])
    assert inst.shape == (2, 1, 2, 2) and np.isnan(inst).all()
    assert np.isnan(pv).all() and np.isnan(sc).all()


def test_score_rejects_channel_mismatch() -> None:
    with pytest.raises(ValueError, match="channels"):
        score_paf_lines(torch.zeros(1, 3, 4, 4), torch.zeros(1, 2), torch.zeros(1),
                        torch.zeros(1), [(0, 1)], pafs_stride=1)


# --------------------------------------------------------------------------------------------
# end to end on synthetic PAFs


def _grid_instances(n_side: int, n_nodes: int, spacing: float, rng: np.random.Generator):
    centers = (np.stack(np.meshgrid(np.arange(n_side), np.arange(n_side)), -1).reshape(-1, 2)
               * spacing + spacing / 2)
    offsets = rng.uniform(-spacing * 0.3, spacing * 0.3, (len(centers), n_nodes, 2))
    return (centers[:, None, :] + offsets).astype(np.float32)


def test_end_to_end_hundreds_of_peaks_recovers_every_instance() -> None:
    rng = np.random.default_rng(3)
    n_nodes = 8
    edges = [(0, 1), (1, 2), (1, 3), (0, 4), (4, 5), (5, 6), (5, 7)]
    truth = _grid_instances(6, n_nodes, 80.0, rng)  # 36 animals, 288 peaks per frame
    stride = 4
    pafs = _paint(truth, edges, (480, 480), stride).repeat(2, 1, 1, 1)
    points, vals, sample, chan = _raster_peaks(truth, n_frames=2)
    t0 = time.perf_counter()
    scores = score_paf_lines(pafs, points, sample, chan, edges, pafs_stride=stride)
    inst, _, sc = group_batch(scores, points, vals, sample, chan, n_frames=2, n_nodes=n_nodes,
                               edge_inds=edges)
    assert time.perf_counter() - t0 < 10.0
    assert inst.shape == (2, 36, n_nodes, 2)
    for b in range(2):
        assert not np.isnan(inst[b]).any()
        # Each grouped instance is exactly one true animal.
        found = sorted(map(tuple, inst[b].reshape(36, -1).tolist()))
        assert found == sorted(map(tuple, truth.reshape(36, -1).tolist()))
        # Painted unit fields score ~1 per edge.
        np.testing.assert_allclose(sc[b], len(edges), atol=0.8)


def test_group_batch_max_instances_modes() -> None:
    pts, vals, ch = _chain_frame()
    # A (score 0.5 + 0.3) before B (score 0.9 + 0.9) in assembly order.
    cands = _cands([(0, 0, 0, 0.5), (0, 1, 1, 0.9), (1, 0, 0, 0.3), (1, 1, 1, 0.9)])
    si = np.zeros(6, np.int64)
    kw = dict(n_frames=1, n_nodes=3, edge_inds=[(0, 1), (1, 2)])
    inst, _, sc = group_batch(cands, pts, vals, si, ch, **kw)
    np.testing.assert_allclose(sc[0], [0.8, 1.8], rtol=1e-6)
    # Reference `track`: a cap always re-sorts by score, descending.
    inst, _, sc = group_batch(cands, pts, vals, si, ch, max_instances=3, **kw)
    assert inst.shape == (1, 3, 3, 2)
    np.testing.assert_allclose(sc[0, :2], [1.8, 0.8], rtol=1e-6)
    assert np.isnan(sc[0, 2]) and np.isnan(inst[0, 2]).all()
    np.testing.assert_array_equal(inst[0, 0], pts[[1, 3, 5]])
    _, _, sc = group_batch(cands, pts, vals, si, ch, max_instances=1, **kw)
    np.testing.assert_allclose(sc[0], [1.8], rtol=1e-6)
    # spec §6.5 (predict): no reorder unless truncating.
    _, _, sc = group_batch(cands, pts, vals, si, ch, max_instances=3, max_instances_mode="predict",
                           **kw)
    np.testing.assert_allclose(sc[0, :2], [0.8, 1.8], rtol=1e-6)
    _, _, sc = group_batch(cands, pts, vals, si, ch, max_instances=1, max_instances_mode="predict",
                           **kw)
    np.testing.assert_allclose(sc[0], [1.8], rtol=1e-6)

"""Features, scoring functions, reductions and matchers against scalar reference formulas."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sleapflow.tracking import features, matching, scoring


def _random_poses(rng: np.random.Generator, n: int, n_nodes: int, p_missing: float = 0.2,
                  all_nan: int = 0) -> np.ndarray:
    pts = rng.uniform(0, 100, size=(n, n_nodes, 2))
    pts[rng.random((n, n_nodes)) < p_missing] = np.nan
    pts[:all_nan] = np.nan
    return pts


# --- scalar oracles, written from the spec (sleap-nn computes these one pair at a time) -------

def oks_scalar(gt: np.ndarray, pr: np.ndarray, stddev: float = 0.025) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        area = np.prod(np.nanmax(gt, axis=0) - np.nanmin(gt, axis=0))
    denom = (2 * stddev) ** 2 * 2 * (area + np.spacing(1))
    total, visible = 0.0, 0
    for k in range(len(gt)):
        if np.isnan(gt[k]).any():
            continue
        visible += 1
        if np.isnan(pr[k]).any():
            continue
        total += np.exp(-((gt[k] - pr[k]) ** 2).sum() / denom)
    return total / visible if visible else np.nan


def iou_scalar(a: np.ndarray, b: np.ndarray) -> float:
    if np.isnan(a).any() or np.isnan(b).any():
        return np.nan
    inter = max(0, min(a[2], b[2]) - max(a[0], b[0]) + 1) * max(
        0, min(a[3], b[3]) - max(a[1], b[1]) + 1)
    area_a = (a[2] - a[0] + 1) * (a[3] - a[1] + 1)
    area_b = (b[2] - b[0] + 1) * (b[3] - b[1] + 1)
    return inter / (area_a + area_b - inter)


def cosine_scalar(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.ravel(), b.ravel()
    denom = np.linalg.norm(a) * np.linalg.norm(b)
    if not np.isfinite(denom) or denom == 0:
        return np.nan
    return float(a @ b / denom)


def greedy_oracle(cost: np.ndarray) -> tuple[list[int], list[int]]:
    """sleap-nn's greedy matcher, literally: pop the cheapest edge, delete its row and column."""
    rows, cols = np.unravel_index(np.argsort(cost, axis=None), cost.shape)
    edges = list(zip(rows.tolist(), cols.tolist()))
    out_r, out_c = [], []
    while edges:
        r, c = edges.pop(0)
        out_r.append(r)
        out_c.append(c)
        edges = [e for e in edges if e[0] != r and e[1] != c]
    return out_r, out_c


# --- features --------------------------------------------------------------------------------

def test_valid_point_counts() -> None:
    pts = np.array([[[0, 0], [np.nan, 1], [2, 2]], [[np.nan] * 2] * 3])
    assert features.valid_point_counts(pts).tolist() == [2, 0]


def test_centroids_match_nanmedian() -> None:
    rng = np.random.default_rng(0)
    pts = _random_poses(rng, 50, 7, all_nan=2)
    pts[5, :3, 0] = np.nan  # x missing where y is present: per-axis medians differ in count
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        expected = np.nanmedian(pts, axis=1)
    np.testing.assert_array_equal(features.centroids(pts), expected)
    full = rng.uniform(0, 10, size=(4, 6, 2))
    np.testing.assert_array_equal(features.centroids(full), np.median(full, axis=1))


def test_bboxes_match_nanmin_nanmax() -> None:
    rng = np.random.default_rng(1)
    pts = _random_poses(rng, 30, 5, all_nan=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        expected = np.concatenate([np.nanmin(pts, axis=1), np.nanmax(pts, axis=1)], axis=1)
    np.testing.assert_array_equal(features.bboxes(pts), expected)
    assert features.bboxes(np.empty((0, 5, 2))).shape == (0, 4)


def test_image_patches() -> None:
    rng = np.random.default_rng(2)
    image = (rng.random((120, 160, 3)) * 255).astype(np.uint8)
    pts = np.array([
        [[20, 20], [40, 50]],
        [[np.nan, np.nan], [np.nan, np.nan]],
        [[500, 500], [600, 600]],  # outside the frame
    ], dtype=float)
    feats = features.image_patches(pts, image)
    assert feats.shape == (3, features.IMAGE_PATCH_SIZE ** 2)
    assert np.isclose(np.linalg.norm(feats[0]), 1.0) and np.isclose(feats[0].mean(), 0.0)
    assert np.isnan(feats[1]).all() and np.isnan(feats[2]).all()
    # The same content at another place in another frame has the same feature.
    shifted = np.roll(image, (10, 30), axis=(0, 1))
    moved = features.image_patches(pts[:1] + np.array([30, 10]), shifted)
    np.testing.assert_allclose(moved, feats[:1], atol=1e-9)
    assert np.isclose(scoring.cosine_sim(moved, feats[:1])[0, 0], 1.0)
    with pytest.raises(ValueError, match="image"):
        features.image_patches(pts, None)
    assert features.image_patches(pts, image[..., :1]).shape == feats.shape  # (H, W, 1) frames


# --- scoring ---------------------------------------------------------------------------------

def test_oks_matches_scalar_formula() -> None:
    rng = np.random.default_rng(3)
    cur = _random_poses(rng, 6, 8, all_nan=1)
    cur[2, 1:] = np.nan  # one visible node: area 0 -> eps
    cand = _random_poses(rng, 9, 8)
    cand[:3] = cur[:3] + rng.normal(0, 0.5, size=(3, 8, 2))
    got = scoring.oks(cur, cand, stddev=0.05)
    expected = np.array([[oks_scalar(a, b, 0.05) for b in cand] for a in cur])
    np.testing.assert_allclose(got, expected, rtol=1e-12, equal_nan=True)
    assert np.isnan(got[0]).all()  # no visible node in the current instance
    assert scoring.oks(cur[:0], cand).shape == (0, 9)


def test_iou_cosine_euclidean_match_scalar_formulas() -> None:
    rng = np.random.default_rng(4)
    a = features.bboxes(_random_poses(rng, 5, 4, all_nan=1))
    b = features.bboxes(_random_poses(rng, 7, 4))
    np.testing.assert_allclose(scoring.iou(a, b), [[iou_scalar(x, y) for y in b] for x in a],
                               equal_nan=True)
    ka, kb = _random_poses(rng, 4, 3, 0.2), _random_poses(rng, 5, 3, 0.2)
    np.testing.assert_allclose(scoring.cosine_sim(ka, kb),
                               [[cosine_scalar(x, y) for y in kb] for x in ka], equal_nan=True)
    zero = np.zeros((1, 2))
    assert np.isnan(scoring.cosine_sim(zero, np.ones((1, 2))))[0, 0]
    np.testing.assert_allclose(
        scoring.euclidean_dist(ka, kb),
        [[-np.linalg.norm(x - y) for y in kb] for x in ka], equal_nan=True)


def test_iou_identical_and_disjoint_boxes() -> None:
    box = np.array([[0.0, 0.0, 9.0, 9.0]])
    assert scoring.iou(box, box)[0, 0] == 1.0
    assert scoring.iou(box, box + 100)[0, 0] == 0.0


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 4), st.integers(1, 5), st.integers(1, 6),
       st.floats(0.0, 1.0), st.integers(0, 2**31))
def test_reductions_match_numpy_nan_reducers(n: int, t: int, k: int, q: float, seed: int) -> None:
    rng = np.random.default_rng(seed)
    values = rng.normal(size=(n, t, k))
    values[rng.random(values.shape) < 0.3] = np.nan
    present = rng.random((t, k)) < 0.7
    got = {m: scoring.reduce_scores(m, values, present, q)
           for m in ("mean", "max", "robust_quantile")}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for i in range(n):
            for j in range(t):
                vals = values[i, j][present[j]]
                exp_mean = np.nanmean(vals) if vals.size else np.nan
                exp_max = np.nanmax(vals) if vals.size and not np.isnan(vals).all() else np.nan
                exp_q = np.nanquantile(vals, q) if vals.size else np.nan
                np.testing.assert_allclose(got["mean"][i, j], exp_mean, rtol=1e-12)
                np.testing.assert_equal(got["max"][i, j], exp_max)
                np.testing.assert_allclose(got["robust_quantile"][i, j], exp_q, rtol=1e-12,
                                           atol=1e-15)


def test_robust_quantile_of_one_is_max() -> None:
    values = np.array([[[0.1, 0.9, 0.5, np.nan]]])
    present = np.ones((1, 4), dtype=bool)
    assert scoring.reduce_scores("robust_quantile", values, present, 1.0)[0, 0] == 0.9
    assert scoring.reduce_scores("robust_quantile", values, present, 0.0)[0, 0] == 0.1
    assert scoring.reduce_scores("robust_quantile", values, present, 0.5)[0, 0] == 0.5


# --- matching --------------------------------------------------------------------------------

def test_hungarian_fills_infinite_costs_and_keeps_those_pairs() -> None:
    cost = np.array([[np.inf, -0.5], [np.inf, -0.1]])
    rows, cols = matching.hungarian(cost)
    assert rows.tolist() == [0, 1] and cols.tolist() == [1, 0]  # the inf pair is kept
    rows, _ = matching.hungarian(np.full((2, 3), np.inf))  # nothing finite: fill 1e6
    assert len(rows) == 2
    rows, _ = matching.hungarian(np.zeros((3, 0)))
    assert len(rows) == 0


def test_hungarian_rectangular_returns_min_pairs_in_row_order() -> None:
    rng = np.random.default_rng(5)
    cost = rng.random((4, 2))
    rows, cols = matching.hungarian(cost)
    assert len(rows) == 2 and list(rows) == sorted(rows) and sorted(cols) == [0, 1]


@settings(max_examples=80, deadline=None)
@given(st.integers(0, 5), st.integers(0, 5), st.integers(0, 2**31), st.booleans())
def test_greedy_equals_sleap_nn_loop(n: int, m: int, seed: int, ties: bool) -> None:
    rng = np.random.default_rng(seed)
    cost = rng.integers(0, 3, size=(n, m)).astype(float) if ties else rng.random((n, m))
    cost[rng.random((n, m)) < 0.2] = np.inf
    rows, cols = matching.greedy(cost)
    exp_r, exp_c = greedy_oracle(cost)
    assert rows.tolist() == exp_r and cols.tolist() == exp_c
    assert len(rows) == min(n, m)


def test_match_dispatch() -> None:
    cost = np.array([[0.0, 1.0], [1.0, 0.0]])
    for method in ("hungarian", "greedy"):
        rows, cols = matching.match(method, cost)
        assert sorted(zip(rows.tolist(), cols.tolist())) == [(0, 0), (1, 1)]
    with pytest.raises(ValueError):
        matching.match("auction", cost)


def test_flow_criteria_are_opencvs_and_the_tracker_loads_without_opencv() -> None:
    import subprocess
    import sys

    import cv2

    from sleapflow.tracking import flow

    assert flow.LK_CRITERIA[0] == cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT
    code = ("import sys, sleapflow.tracking, sleapflow.tracking.flow, sleapflow.tracking.features; "
            "print('cv2' in sys.modules)")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert loaded.stdout.strip() == "False"

"""Identity assignment for multi-class models (sleapflow.ops.identity)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from sleapflow.ops.identity import (
    assign_classes_topdown,
    class_slot_order,
    classify_peaks_from_maps,
    nanmean_last,
)

NAN = np.nan


def test_nanmean_last_matches_numpy_without_warning() -> None:
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 2, (50, 13)).astype(np.float32)
    x[rng.random(x.shape) < 0.4] = NAN
    x[0] = NAN
    got = nanmean_last(x)
    assert got.dtype == np.float32 and np.isnan(got[0])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        want = np.array([np.nanmean(row) for row in x], dtype=np.float32)
    np.testing.assert_array_equal(got, want)


def _maps(k: int, h: int, w: int, cells: dict[tuple[int, int], list[float]]) -> torch.Tensor:
    """(1, K, H, W) class maps, 0 everywhere except the listed (row, col) probability vectors."""
    cm = torch.zeros(1, k, h, w)
    for (r, c), probs in cells.items():
        cm[0, :, r, c] = torch.tensor(probs)
    return cm


def test_classify_assigns_slots_by_class_and_rescales_points() -> None:
    # Class-map stride 2: a peak at scaled-input (x, y) reads map cell (round(y/2), round(x/2)).
    cm = _maps(2, 8, 8, {(1, 1): [0.9, 0.2], (1, 5): [0.1, 0.8], (3, 1): [0.7, 0.3],
                         (3, 5): [0.2, 0.6]})
    points = torch.tensor([[2.0, 2.0], [10.0, 2.0], [2.0, 6.0], [10.0, 6.0]])
    vals = torch.tensor([0.5, 0.6, 0.7, 0.8])
    sample = torch.zeros(4, dtype=torch.int32)
    chan = torch.tensor([0, 0, 1, 1], dtype=torch.int32)
    pts, pv, probs, inst_sc, track_sc = classify_peaks_from_maps(
        cm, points, vals, sample, chan, class_maps_stride=2, n_nodes=2
    )
    assert pts.shape == (1, 2, 2, 2) and pts.dtype == np.float32
    np.testing.assert_array_equal(pts[0, 0], [[2, 2], [2, 6]])
    np.testing.assert_array_equal(pts[0, 1], [[10, 2], [10, 6]])
    np.testing.assert_array_equal(pv[0], np.float32([[0.5, 0.7], [0.6, 0.8]]))
    np.testing.assert_array_equal(probs[0], np.float32([[0.9, 0.7], [0.8, 0.6]]))
    np.testing.assert_array_equal(inst_sc[0], nanmean_last(pv[0]))
    np.testing.assert_array_equal(track_sc[0], nanmean_last(probs[0]))


def test_classify_keeps_a_match_only_if_it_is_the_argmax_class() -> None:
    # Both node-0 peaks prefer class 0. Hungarian gives peak A -> 0 (0.9 + 0.3 > 0.8 + 0.1) and
    # peak B -> 1, but 1 is not B's argmax: B is dropped, class 1 has no node 0.
    cm = _maps(2, 4, 8, {(0, 0): [0.9, 0.1], (0, 4): [0.8, 0.3]})
    points = torch.tensor([[0.0, 0.0], [4.0, 0.0]])
    out = classify_peaks_from_maps(cm, points, torch.tensor([1.0, 1.0]),
                                   torch.tensor([0, 0]), torch.tensor([0, 0]),
                                   class_maps_stride=1, n_nodes=1)
    pts, _, probs, inst_sc, track_sc = out
    np.testing.assert_array_equal(pts[0, 0, 0], [0, 0])
    assert np.isnan(pts[0, 1]).all() and np.isnan(probs[0, 1]).all()
    assert np.isnan(inst_sc[0, 1]) and np.isnan(track_sc[0, 1])


def test_classify_rounds_half_to_even_and_clamps() -> None:
    # x / stride = 2.5 -> column 2 (half-to-even); y far outside -> last row.
    cm = _maps(2, 4, 6, {(3, 2): [0.2, 0.9], (3, 3): [0.9, 0.2]})
    out = classify_peaks_from_maps(cm, torch.tensor([[5.0, 99.0]]), torch.tensor([1.0]),
                                   torch.tensor([0]), torch.tensor([0]),
                                   class_maps_stride=2, n_nodes=1)
    assert np.isnan(out[0][0, 0]).all()
    np.testing.assert_array_equal(out[0][0, 1, 0], [5.0, 99.0])


def test_classify_frames_without_peaks_and_many_peaks() -> None:
    none = torch.zeros(0, dtype=torch.int32)
    pts, _, _, inst_sc, track_sc = classify_peaks_from_maps(
        torch.rand(3, 4, 8, 8), torch.zeros(0, 2), torch.zeros(0), none, none,
        class_maps_stride=4, n_nodes=5,
    )
    assert pts.shape == (3, 4, 5, 2) and np.isnan(pts).all()
    assert np.isnan(inst_sc).all() and np.isnan(track_sc).all()

    gen = torch.Generator().manual_seed(0)
    n = 600
    sample = torch.sort(torch.randint(0, 2, (n,), generator=gen)).values
    out = classify_peaks_from_maps(
        torch.rand(2, 6, 32, 32, generator=gen), torch.rand(n, 2, generator=gen) * 128,
        torch.rand(n, generator=gen), sample, torch.randint(0, 10, (n,), generator=gen),
        class_maps_stride=4, n_nodes=10,
    )
    assert out[0].shape == (2, 6, 10, 2)
    # At most one peak per (frame, class, node) by construction; every kept prob is finite.
    kept = ~np.isnan(out[2])
    assert kept.any() and np.isfinite(out[1][kept]).all()


def test_class_slot_order_track_mode() -> None:
    pts = np.zeros((1, 4, 2, 2), np.float32)
    pts[0, 2] = NAN  # class 2 absent
    scores = np.array([[0.5, 0.9, NAN, 0.5]], np.float32)
    assert class_slot_order(pts, scores, None).tolist() == [[0, 1, 3, -1]]
    # Cap: present slots sorted by score, descending, ties in slot order.
    assert class_slot_order(pts, scores, 2).tolist() == [[1, 0, -1, -1]]
    assert class_slot_order(pts, scores, 5).tolist() == [[1, 0, 3, -1]]


def test_class_slot_order_predict_mode_masks_without_reordering() -> None:
    pts = np.zeros((1, 3, 2, 2), np.float32)
    scores = np.array([[0.2, 0.9, 0.5]], np.float32)
    assert class_slot_order(pts, scores, 2, mode="predict").tolist() == [[1, 2, -1]]
    assert class_slot_order(pts, scores, None, mode="predict").tolist() == [[0, 1, 2]]
    # The reference's np.argsort(...)[::-1] ranks NaN (an empty class) first: with a cap of 1 and
    # two real classes, the empty slot "wins" and nothing is emitted.
    pts[0, 1] = NAN
    scores = np.array([[0.2, NAN, 0.5]], np.float32)
    assert class_slot_order(pts, scores, 1, mode="predict").tolist() == [[-1, -1, -1]]
    with pytest.raises(ValueError, match="mode"):
        class_slot_order(pts, scores, 1, mode="x")  # type: ignore[arg-type]


def test_assign_classes_topdown_per_frame() -> None:
    probs = np.array(
        [
            [0.9, 0.1],  # frame 7
            [0.6, 0.4],  # frame 7
            [0.7, 0.3],  # frame 3
            [0.55, 0.45],  # frame 7: third crop, two classes -> one is left out
        ],
        np.float32,
    )
    frames = np.array([7, 7, 3, 7])
    cls, sc = assign_classes_topdown(probs, frames)
    # Frame 7: best total is crop 0 -> class 0 (0.9) + crop 3 -> class 1 (0.45).
    assert cls.tolist() == [0, -1, 0, 1]
    np.testing.assert_array_equal(sc, np.float32([0.9, NAN, 0.7, 0.45]))
    assert sc.dtype == np.float32

    cls_t, sc_t = assign_classes_topdown(torch.from_numpy(probs), torch.from_numpy(frames))
    np.testing.assert_array_equal(cls_t, cls)
    np.testing.assert_array_equal(sc_t, sc)
    empty = assign_classes_topdown(np.zeros((0, 3)), np.zeros(0))
    assert [len(x) for x in empty] == [0, 0]

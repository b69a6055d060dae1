"""Crop extraction: each window equals the frame zero-padded on every side and sliced, wherever
the window lies (inside, across an edge or corner, wholly outside), for either memory layout."""

from __future__ import annotations

import numpy as np
import torch

from sleapflow.ops.crops import extract_crops
from sleapflow.ops.preprocess import frames_to_tensor


def _expected(frames: np.ndarray, frame_inds: list[int], origins: list[tuple[int, int]],
              crop: int) -> np.ndarray:
    """(n, C, crop, crop) by the definition: pad with zeros far enough all round, then slice."""
    margin = 100
    padded = np.pad(frames, ((0, 0), (margin, margin), (margin, margin), (0, 0)))
    return np.stack([padded[b, y0 + margin:y0 + margin + crop, x0 + margin:x0 + margin + crop]
                     .transpose(2, 0, 1) for b, (x0, y0) in zip(frame_inds, origins, strict=True)])


def test_windows_match_the_padded_frame_everywhere() -> None:
    rng = np.random.default_rng(0)
    frames = rng.integers(1, 256, (2, 40, 56, 3), dtype=np.uint8)  # no zero pixel: 0 means outside
    crop = 16
    origins = [(5, 7), (-4, 10), (50, -3), (-16, -16), (-30, 5), (60, 45), (40, 24), (0, 0), (-15, 39)]
    inds = [0, 1, 0, 1, 0, 1, 0, 1, 1]
    expected = _expected(frames, inds, origins, crop)
    for x in (frames_to_tensor(frames), frames_to_tensor(frames).contiguous()):
        got = extract_crops(x, torch.tensor(inds), torch.tensor(origins), crop)
        assert got.shape == (len(inds), 3, crop, crop) and got.dtype == torch.uint8
        assert got.is_contiguous()
        np.testing.assert_array_equal(got.numpy(), expected)
    # Spot checks of the definition itself: an inside window is a plain slice, a window wholly
    # outside is all zeros, and one across the top-left corner keeps only its bottom-right part.
    np.testing.assert_array_equal(expected[0], frames[0, 7:23, 5:21].transpose(2, 0, 1))
    assert not expected[4].any() and not expected[3].any() and not expected[5].any()
    assert not expected[8][:, :, :15].any() and expected[8][:, 0, 15:].all() and not expected[8][:, 1:].any()


def test_no_centroids_give_an_empty_batch() -> None:
    x = frames_to_tensor(np.zeros((1, 8, 8, 1), dtype=np.uint8))
    got = extract_crops(x, torch.zeros(0, dtype=torch.long), torch.zeros((0, 2), dtype=torch.long), 4)
    assert got.shape == (0, 1, 4, 4)

"""Preprocessing ops: channel coercion, size matching, input scale and padding as sleap-nn does."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sleapflow.ops import preprocess as prep


def test_grayscale_truncates_like_torchvision_uint8() -> None:
    white = torch.full((1, 3, 1, 1), 255, dtype=torch.uint8)
    gray = prep.ensure_channels(white, ensure_rgb=False, ensure_grayscale=True)
    # 0.9999 * 255 = 254.97: truncated to 254, where rounding would give 255
    assert gray.shape == (1, 1, 1, 1)
    assert int(gray) == 254


def test_rgb_repeats_gray_and_flags_are_noops_when_satisfied() -> None:
    gray = torch.arange(6, dtype=torch.uint8).reshape(1, 1, 2, 3)
    rgb = prep.ensure_channels(gray, ensure_rgb=True, ensure_grayscale=False)
    assert rgb.shape == (1, 3, 2, 3) and torch.equal(rgb[:, 2], gray[:, 0])
    assert prep.ensure_channels(rgb, ensure_rgb=True, ensure_grayscale=False) is rgb
    assert prep.ensure_channels(gray, ensure_rgb=False, ensure_grayscale=False) is gray


def test_size_matcher_keeps_aspect_and_pads_bottom_right() -> None:
    x = torch.full((1, 1, 384, 384), 7, dtype=torch.uint8)
    out, eff = prep.size_match(x, 320, 560)
    assert eff == pytest.approx(320 / 384)
    assert out.shape == (1, 1, 320, 560)
    assert int(out[0, 0, :, :320].min()) == 7 and int(out[0, 0, :, 320:].max()) == 0
    same, one = prep.size_match(x, None, None)
    assert same is x and one == 1.0


def test_input_scale_truncates_size_and_stride_padding() -> None:
    x = torch.zeros((1, 1, 101, 75), dtype=torch.uint8)
    scaled = prep.apply_input_scale(x, 0.5)
    assert scaled.shape[-2:] == (50, 37)
    padded = prep.pad_to_stride(scaled, 16)
    assert padded.shape[-2:] == (64, 48)


def test_uint8_resize_is_torch_native_antialiased_kernel() -> None:
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.integers(0, 256, size=(1, 1, 50, 70), dtype=np.uint8))
    ours = prep.resize_uint8(x, (25, 35))
    native = torch.nn.functional.interpolate(x, size=(25, 35), mode="bilinear", antialias=True,
                                             align_corners=False)
    assert ours.dtype == torch.uint8 and torch.equal(ours, native)


def test_normalize_scales_uint8_and_large_floats_only() -> None:
    assert torch.equal(prep.normalize(torch.tensor([255], dtype=torch.uint8)), torch.tensor([1.0]))
    assert torch.equal(prep.normalize(torch.tensor([0.5])), torch.tensor([0.5]))
    assert torch.equal(prep.normalize(torch.tensor([51.0])), torch.tensor([0.2]))

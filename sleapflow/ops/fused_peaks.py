"""Peak finding written for export: fixed-shape global and top-k local peaks, traceable to ONNX.

The rules are :mod:`sleapflow.ops.peaks`'s (strict 3x3 local maxima above the threshold, global
maxima with NaN below it, the zero-padded centroid patch of integral refinement); the shapes are
static (a top-``k`` with a mask instead of ``nonzero``) and every op has an ONNX opset-17 form,
so a runtime can return peaks instead of maps. Used by the runners' fused exports and by
``sleapflow export``'s baked graph.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ("NOT_A_PEAK", "global_peaks", "refine_offsets", "top_local_peaks")

#: Fill for non-peaks before the top-k: below any confidence a network produces.
NOT_A_PEAK = -1e9


def refine_offsets(maps: torch.Tensor, xs: torch.Tensor, ys: torch.Tensor,
                   patch_size: int = 5) -> torch.Tensor:
    """Integral-refinement offsets (B, C, k, 2) of the peaks at integer ``xs``/``ys`` (B, C, k) of
    ``maps`` (B, C, H, W): the weighted centroid of a zero-padded ``patch_size`` square around
    each (a zero-sum patch gives NaN, as the torch path)."""
    half = patch_size // 2
    padded = F.pad(maps, [half, half, half, half])
    width = torch._shape_as_tensor(padded)[-1]  # traced as the graph's own size, not a constant
    flat = padded.flatten(2)
    steps = torch.arange(patch_size, device=maps.device)
    rows = ys.long()[..., None, None] + steps[:, None]
    cols = xs.long()[..., None, None] + steps[None, :]
    index = (rows * width + cols).flatten(2)  # (B, C, k * P * P)
    patch = torch.gather(flat, -1, index).reshape(*xs.shape, patch_size * patch_size)
    grid = torch.arange(patch_size, device=maps.device, dtype=maps.dtype) - (patch_size - 1) / 2
    gx = grid.repeat(patch_size)
    gy = grid.repeat_interleave(patch_size)
    total = patch.sum(-1)
    return torch.stack([(patch * gx).sum(-1) / total, (patch * gy).sum(-1) / total], dim=-1)


def global_peaks(maps: torch.Tensor, threshold: float, *, refinement: str | None = "integral",
                 patch_size: int = 5) -> tuple[torch.Tensor, torch.Tensor]:
    """Per channel of (B, C, H, W): points (B, C, 2) in map pixels and values (B, C); below
    ``threshold`` a NaN point and 0 (x and y are the first argmax of the column and row maxima)."""
    col_max = maps.amax(dim=2)
    xs = col_max.argmax(dim=-1)
    ys = maps.amax(dim=3).argmax(dim=-1)
    vals = col_max.amax(dim=-1)
    points = torch.stack([xs, ys], dim=-1).to(maps.dtype)
    if refinement == "integral":
        points = points + refine_offsets(maps, xs[..., None], ys[..., None], patch_size)[:, :, 0]
    below = vals < threshold
    points = torch.where(below[..., None], torch.full_like(points, float("nan")), points)
    return points, torch.where(below, torch.zeros_like(vals), vals)


def top_local_peaks(maps: torch.Tensor, k: int, threshold: float, *,
                    refinement: str | None = "integral", patch_size: int = 5
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The ``k`` highest local peaks (strictly above their 8 neighbours and ``threshold``) of each
    channel of (B, C, H, W), highest first: points (B, C, k, 2) in map pixels, values (B, C, k),
    valid (B, C, k), raster index ``y * W + x`` (B, C, k), and the local peaks per channel (B, C)."""
    padded = F.pad(maps, [1, 1, 1, 1], value=NOT_A_PEAK)
    others = torch.full_like(maps, NOT_A_PEAK)
    for dy in (0, 1, 2):
        for dx in (0, 1, 2):
            if dy != 1 or dx != 1:
                # Slices by offsets from both ends: the frame size stays dynamic in the graph.
                others = torch.maximum(others, padded[..., dy:dy - 2 or None, dx:dx - 2 or None])
    is_peak = (maps > others) & (maps > threshold)
    counts = is_peak.sum(dim=(2, 3))
    flat = torch.where(is_peak, maps, torch.full_like(maps, NOT_A_PEAK)).flatten(2)
    vals, idx = torch.topk(flat, k, dim=-1)
    width = torch._shape_as_tensor(maps)[-1]
    xs = idx % width
    ys = torch.div(idx, width, rounding_mode="floor")
    valid = vals > threshold
    points = torch.stack([xs, ys], dim=-1).to(maps.dtype)
    if refinement == "integral":
        points = points + refine_offsets(maps, xs, ys, patch_size)
    return points, vals, valid, idx, counts

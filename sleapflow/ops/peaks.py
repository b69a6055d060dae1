"""Peak finding on confidence maps: global peaks, local peaks (NMS) and integral refinement.

Everything runs on the maps' device and returns tensors there; callers move the small results
to the host once per batch.
"""

from __future__ import annotations

from sleapflow.lazy import lazy_module

# torch loads on first use: a run on ONNX Runtime with a warm export cache never needs it.
torch = lazy_module("torch")
_F = lazy_module("torch.nn.functional")


__all__ = ("find_global_peaks", "find_local_peaks", "integral_refine")



def integral_refine(cms: torch.Tensor, sample_inds: torch.Tensor, channel_inds: torch.Tensor,
                    xs: torch.Tensor, ys: torch.Tensor, patch_size: int = 5) -> torch.Tensor:
    """Sub-pixel offsets (n, 2) from the centroid of a zero-padded patch around each peak.

    Negative map values count as they are and a zero-sum patch gives NaN/inf, as in the
    reference; the caller adds the offsets to the integer peaks.
    """
    n = xs.shape[0]
    if n == 0:
        return torch.zeros((0, 2), dtype=cms.dtype, device=cms.device)
    half = patch_size // 2
    padded = _F.pad(cms, (half, half, half, half))
    # The crop origin, trunc(p - P/2 + 0.5 + P//2) - P//2, is p - half for odd P.
    origin_x = torch.trunc(xs.to(cms.dtype) - patch_size / 2 + 0.5 + half).long() - half
    origin_y = torch.trunc(ys.to(cms.dtype) - patch_size / 2 + 0.5 + half).long() - half
    steps = torch.arange(patch_size, device=cms.device)
    rows = (origin_y[:, None] + steps[None, :] + half)[:, :, None]
    cols = (origin_x[:, None] + steps[None, :] + half)[:, None, :]
    patches = padded[sample_inds.long()[:, None, None], channel_inds.long()[:, None, None], rows, cols]
    grid = torch.arange(patch_size, device=cms.device, dtype=cms.dtype) - (patch_size - 1) / 2
    total = patches.sum(dim=(1, 2))
    dx = (patches * grid[None, None, :]).sum(dim=(1, 2)) / total
    dy = (patches * grid[None, :, None]).sum(dim=(1, 2)) / total
    return torch.stack([dx, dy], dim=1)


def find_global_peaks(cms: torch.Tensor, threshold: float, *, refinement: str | None = "integral",
                      patch_size: int = 5) -> tuple[torch.Tensor, torch.Tensor]:
    """One peak per (sample, channel) of (S, C, H, W) maps → points (S, C, 2) xy, values (S, C).

    x and y are the first argmax of the column and row maxima (independently, as the reference);
    values below ``threshold`` give NaN points and a value of 0.
    """
    samples, channels = cms.shape[:2]
    col_max = cms.amax(dim=2)
    row_max = cms.amax(dim=3)
    xs = col_max.argmax(dim=-1)
    ys = row_max.argmax(dim=-1)
    vals = col_max.amax(dim=-1)
    points = torch.stack([xs, ys], dim=-1).to(cms.dtype)
    below = vals < threshold
    if refinement == "integral":
        flat_s = torch.arange(samples, device=cms.device).repeat_interleave(channels)
        flat_c = torch.arange(channels, device=cms.device).repeat(samples)
        offsets = integral_refine(cms, flat_s, flat_c, xs.reshape(-1), ys.reshape(-1), patch_size)
        points = points + offsets.reshape(samples, channels, 2)
    points = torch.where(below[..., None], torch.full_like(points, float("nan")), points)
    vals = torch.where(below, torch.zeros_like(vals), vals)
    return points, vals


def find_local_peaks(cms: torch.Tensor, threshold: float, *, refinement: str | None = "integral",
                     patch_size: int = 5
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Pixels strictly above all 8 neighbours and strictly above ``threshold``.

    Returns points (n, 2) xy float, values (n,), sample and channel indices (n,) int32, in raster
    order: sample, then row, then column, then channel.
    """
    neg_inf = torch.finfo(cms.dtype).min
    padded = _F.pad(cms, (1, 1, 1, 1), value=neg_inf)
    height, width = cms.shape[-2:]
    neighbour_max = torch.full_like(cms, neg_inf)
    for dy in (0, 1, 2):
        for dx in (0, 1, 2):
            if dy == 1 and dx == 1:
                continue
            neighbour_max = torch.maximum(neighbour_max,
                                          padded[..., dy:dy + height, dx:dx + width])
    mask = (cms > neighbour_max) & (cms > threshold)
    sample_inds, ys, xs, channel_inds = torch.nonzero(mask.permute(0, 2, 3, 1), as_tuple=True)
    vals = cms[sample_inds, channel_inds, ys, xs]
    points = torch.stack([xs, ys], dim=-1).to(cms.dtype)
    if refinement == "integral":
        points = points + integral_refine(cms, sample_inds, channel_inds, xs, ys, patch_size)
    return points, vals, sample_inds.int(), channel_inds.int()

"""Top-down geometry: centroid slots per frame, crop windows, crop extraction, GT centroids."""

from __future__ import annotations

from sleapflow.lazy import lazy_module

# torch loads on first use: a run on ONNX Runtime with a warm export cache never needs it.
torch = lazy_module("torch")
_F = lazy_module("torch.nn.functional")


__all__ = ("centroid_slots", "crop_windows", "extract_crops", "near_crop_boundary")



def centroid_slots(points: torch.Tensor, vals: torch.Tensor, sample_inds: torch.Tensor,
                   n_frames: int, max_instances: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-frame centroid slots (B, I, 2) and values (B, I), NaN-padded.

    ``I`` is ``max_instances`` or the largest peak count of the batch (at least 1). A frame with
    more peaks than ``I`` keeps its top-``I`` by value, in descending order; otherwise its peaks
    stay in raster order, as the reference does.
    """
    device = points.device
    counts = torch.bincount(sample_inds.long(), minlength=n_frames) if points.shape[0] else \
        torch.zeros(n_frames, dtype=torch.long, device=device)
    counts_host = counts.tolist()  # one small sync per batch, to size the slot tensor
    slots = max_instances if max_instances is not None else max([1, *counts_host])
    out_points = torch.full((n_frames, slots, 2), float("nan"), dtype=points.dtype, device=device)
    out_vals = torch.full((n_frames, slots), float("nan"), dtype=vals.dtype, device=device)
    start = 0
    for b, count in enumerate(counts_host):
        if count:
            p = points[start:start + count]
            v = vals[start:start + count]
            if count > slots:
                v, order = torch.topk(v, slots)
                p = p[order]
            out_points[b, : p.shape[0]] = p
            out_vals[b, : v.shape[0]] = v
        start += count
    return out_points, out_vals


def crop_windows(centers: torch.Tensor, crop_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Float top-left corners (n, 2) and integer crop origins (n, 2) for centred square crops.

    The origin is ``trunc(tl + crop//2) - crop//2`` with ``tl = c - crop/2 + 0.5``; keypoints are
    later offset by the float ``tl`` (not the origin), a sub-pixel shift the reference has too.
    """
    top_left = centers - crop_size / 2 + 0.5
    origins = torch.trunc(top_left + crop_size // 2).long() - crop_size // 2
    return top_left, origins


def near_crop_boundary(centers: torch.Tensor, crop_size: int, eps: float) -> torch.Tensor:
    """Which centres (..., 2) lie within ``eps`` pixels of where :func:`crop_windows` would move
    their crop origin by a whole pixel (either axis); NaN centres are never near."""
    x = centers - crop_size / 2 + 0.5 + crop_size // 2
    return ((x - torch.round(x)).abs() < eps).any(dim=-1)


def extract_crops(frames: torch.Tensor, frame_inds: torch.Tensor, origins: torch.Tensor,
                  crop_size: int) -> torch.Tensor:
    """Integer-pixel windows (n, C, crop, crop) of (B, C, H, W) frames; outside pixels are 0."""
    n = int(frame_inds.shape[0])
    channels, height, width = frames.shape[1:]
    if n == 0:
        return frames.new_zeros((0, channels, crop_size, crop_size))
    if frames.device.type != "cpu":
        # On an accelerator one batched gather from the padded frames, with no host sync.
        padded = _F.pad(frames, (crop_size, crop_size, crop_size, crop_size))
        steps = torch.arange(crop_size, device=frames.device)
        rows = (origins[:, 1, None] + steps[None, :] + crop_size).clamp_(0, padded.shape[-2] - 1)
        cols = (origins[:, 0, None] + steps[None, :] + crop_size).clamp_(0, padded.shape[-1] - 1)
        # The clamp only matters for crops wholly outside the padded frame, whose pixels are 0.
        crops = padded[frame_inds[:, None, None], :, rows[:, :, None], cols[:, None, :]]
        return crops.permute(0, 3, 1, 2).contiguous()
    # On the CPU, copy each window's overlap with its frame into a zeroed crop, reading the
    # frames as (B, H, W, C): decoded frames are a channels-last view, so this touches only the
    # crops' bytes. Padding the whole batch and gathering from it cost more than the instance
    # model itself at 1024x1024.
    out = frames.new_zeros((n, crop_size, crop_size, channels))
    src = frames.permute(0, 2, 3, 1)
    for k, (b, x0, y0) in enumerate(zip(frame_inds.tolist(), origins[:, 0].tolist(),
                                        origins[:, 1].tolist(), strict=True)):
        top, bottom = max(y0, 0), min(y0 + crop_size, height)
        left, right = max(x0, 0), min(x0 + crop_size, width)
        if top < bottom and left < right:
            out[k, top - y0:bottom - y0, left - x0:right - x0] = src[b, top:bottom, left:right]
    return out.permute(0, 3, 1, 2).contiguous()

"""Bounded work per frame: caps on peak candidates and the crop-part size, warning when a cap bites."""

from __future__ import annotations

import numpy as np

from sleapflow.lazy import lazy_module
from sleapflow.logs import get_logger

# torch loads on first use: a run on ONNX Runtime with a warm export cache never needs it.
torch = lazy_module("torch")

__all__ = ("MAX_CENTROIDS_PER_FRAME", "MAX_CROPS_PER_PART", "MAX_PEAKS_PER_PART", "cap_host_peaks",
           "cap_peaks")


log = get_logger(__name__)

#: Top-down: centroid candidates kept per frame (the highest-valued ones). A real frame has a
#: few animals; thousands of candidates mean a threshold near 0, where every candidate would
#: become a crop through the instance model.
MAX_CENTROIDS_PER_FRAME = 1000

#: Bottom-up: peaks kept per body part per frame. Candidate connections grow with the square
#: of this (per edge), and the PAF line integrals with it.
MAX_PEAKS_PER_PART = 512

#: Top-down: a frame's crops travel in parts of at most this many, so one frame with hundreds
#: of crops never makes one giant instance-model batch (the parts are re-joined after it).
MAX_CROPS_PER_PART = 16

_warned: set[str] = set()


def _warn_once(what: str, cap: int, worst: int) -> None:
    if what in _warned:
        return
    _warned.add(what)
    log.warning(f"too many {what}; keeping the {cap} highest-valued (raise --peak_threshold?)",
                cap=cap, found=worst)


def cap_peaks(points: torch.Tensor, vals: torch.Tensor, samples: torch.Tensor,
              channels: torch.Tensor, cap: int, *, n_channels: int, what: str
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Keep at most ``cap`` peaks per (sample, channel), the highest-valued, in their original
    (raster) order. Runs on the peaks' device; one host sync per batch, only when the batch
    has more than ``cap`` peaks at all."""
    n = int(points.shape[0])
    if n <= cap:
        return points, vals, samples, channels
    key = samples.long() * n_channels + channels.long()
    by_value = torch.argsort(vals, descending=True, stable=True)
    idx = by_value[torch.argsort(key[by_value], stable=True)]  # by group, then value desc
    group = key[idx]
    counts = torch.bincount(group)
    worst = int(counts.max())
    if worst <= cap:
        return points, vals, samples, channels
    starts = torch.cumsum(counts, 0) - counts
    rank = torch.arange(n, device=points.device) - starts[group]
    keep = torch.zeros(n, dtype=torch.bool, device=points.device)
    keep[idx[rank < cap]] = True
    _warn_once(what, cap, worst)
    return points[keep], vals[keep], samples[keep], channels[keep]


def cap_host_peaks(points: np.ndarray, vals: np.ndarray, samples: np.ndarray,
                   channels: np.ndarray, cap: int, *, n_channels: int, what: str
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """:func:`cap_peaks` on numpy arrays (ONNX Runtime's outputs on the CPU): the same peaks
    kept, in the same order."""
    n = int(points.shape[0])
    if n <= cap:
        return points, vals, samples, channels
    key = samples.astype(np.int64) * n_channels + channels.astype(np.int64)
    by_value = np.argsort(-vals, kind="stable")
    idx = by_value[np.argsort(key[by_value], kind="stable")]  # by group, then value desc
    group = key[idx]
    counts = np.bincount(group)
    worst = int(counts.max())
    if worst <= cap:
        return points, vals, samples, channels
    starts = np.cumsum(counts) - counts
    rank = np.arange(n) - starts[group]
    keep = np.zeros(n, dtype=bool)
    keep[idx[rank < cap]] = True
    _warn_once(what, cap, worst)
    return points[keep], vals[keep], samples[keep], channels[keep]

"""Peaks found inside the runtime: the fused graph's parameters, and its outputs read on the host.

An ONNX Runtime / TensorRT network can be exported with its peak finding fused in (see
:mod:`sleapflow.ops.fused_peaks` for the graph side), so a batch comes back as a few small
arrays per confidence-map head instead of whole maps. Everything here is numpy only: when the
runtime returns peaks, the host needs no torch to read them.

Local peaks come back as a fixed top-``k`` per channel with a valid mask, the raster index of
each peak (so the host restores the torch path's raster order) and the number of local peaks
each channel had. A channel with more than ``k`` peaks *overflows*: unless its consumer keeps
only the ``k`` best anyway (``keeps_top``), the forward stage then runs that batch again for
its maps, so results never depend on ``k``.
"""

from __future__ import annotations

from typing import Any

import msgspec
import numpy as np

from sleapflow.messages import HeadPeaks

__all__ = ("DEFAULT_TOP_K", "MAX_KEPT_TOP", "FusedPeaks", "HeadPeaks", "PeakHead", "centroid_slots_np",
           "local_peak_list", "overflows", "split_outputs")

#: Local peaks per channel a fused graph returns when nothing caps them (bottom-up parts, a
#: centroid model without ``max_instances``). Tiny on the host; a frame with more falls back to
#: the maps path, so this bounds only speed, never results.
DEFAULT_TOP_K = 32
#: Largest ``max_instances`` that becomes the centroid graph's ``k`` (beyond it, DEFAULT_TOP_K
#: with the maps fallback: a top-k that wide would cost more than the maps it saves).
MAX_KEPT_TOP = 256


class PeakHead(msgspec.Struct, frozen=True):
    """How one confidence-map head's peaks are found in the graph.

    ``local``: local maxima (3x3, strictly above every neighbour and ``threshold``) as a top-``k``
    per channel; otherwise one global maximum per channel (NaN point, value 0 below
    ``threshold``). Points come back as ``peak * output_stride / input_scale``, the units the
    torch path's stage computes (``input_scale`` 1 where the stage leaves the scale to later).
    """

    head: str
    local: bool
    threshold: float
    refinement: str | None
    patch_size: int
    output_stride: int
    input_scale: float = 1.0
    k: int = 1
    #: The consumer keeps only the ``k`` highest peaks (centroid slots with ``max_instances``),
    #: so a channel with more than ``k`` is not an overflow.
    keeps_top: bool = False


class FusedPeaks(msgspec.Struct, frozen=True):
    """The heads whose peaks a fused graph returns; the other heads come back as maps."""

    heads: tuple[PeakHead, ...]

    def head(self, name: str) -> PeakHead | None:
        for h in self.heads:
            if h.head == name:
                return h
        return None

    def key_parts(self) -> list[dict[str, Any]]:
        """Every parameter that changes the graph, for the export cache key."""
        return [msgspec.to_builtins(h) for h in self.heads]

    def output_names(self, head_names: list[str]) -> list[str]:
        """The graph's output names, in its output order, for the network's ``head_names``."""
        names: list[str] = []
        for name in head_names:
            spec = self.head(name)
            if spec is None:
                names.append(name)
            elif spec.local:
                names += [f"{name}/{part}" for part in ("points", "vals", "valid", "index", "counts")]
            else:
                names += [f"{name}/points", f"{name}/vals"]
        return names


def _on_host(outputs: dict[str, Any], names: list[str]) -> dict[str, np.ndarray]:
    """``names``' outputs as numpy. ONNX Runtime on the CPU gives host arrays already; a CUDA
    runtime gives device tensors, which travel in one copy (flattened and joined on the device,
    split again here), not one per output."""
    arrays = {k: outputs[k] for k in names}
    on_device = [k for k, v in arrays.items() if not isinstance(v, np.ndarray)
                 and getattr(getattr(v, "device", None), "type", "cpu") != "cpu"]
    if on_device:
        import torch  # a device tensor means torch is loaded already

        joined = torch.cat([arrays[k].reshape(-1).float() for k in on_device]).cpu().numpy()
        start = 0
        for k in on_device:
            size = int(arrays[k].numel())
            arrays[k] = joined[start:start + size].reshape(tuple(arrays[k].shape))
            start += size
    return {k: v if isinstance(v, np.ndarray) else np.asarray(v.numpy()) for k, v in arrays.items()}


def split_outputs(spec: FusedPeaks, outputs: dict[str, Any]) -> tuple[dict[str, Any], dict[str, HeadPeaks]]:
    """A fused graph's named outputs → (remaining maps by head, peaks by head).

    Every fused output is float32 in the graph (one dtype keeps TensorRT and CUDA bindings
    simple); masks, indices and counts are converted back here.
    """
    maps = {k: v for k, v in outputs.items() if "/" not in k}
    host = _on_host(outputs, [k for k in outputs if "/" in k])
    peaks: dict[str, HeadPeaks] = {}
    for h in spec.heads:
        if f"{h.head}/points" not in host:
            continue  # the head filter dropped it
        points, vals = host[f"{h.head}/points"], host[f"{h.head}/vals"]
        if not h.local:
            peaks[h.head] = HeadPeaks(points=points, vals=vals)
            continue
        peaks[h.head] = HeadPeaks(
            points=points, vals=vals, valid=host[f"{h.head}/valid"] > 0.5,
            index=np.rint(host[f"{h.head}/index"]).astype(np.int64),
            counts=np.rint(host[f"{h.head}/counts"]).astype(np.int64))
    return maps, peaks


def overflows(spec: FusedPeaks, peaks: dict[str, HeadPeaks]) -> bool:
    """Whether any channel found more local peaks than its top-``k`` holds (and its consumer
    would have kept them): the batch's peaks are then incomplete."""
    for h in spec.heads:
        p = peaks.get(h.head)
        if h.local and not h.keeps_top and p is not None and p.counts.size and int(p.counts.max()) > h.k:
            return True
    return False


def local_peak_list(p: HeadPeaks) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Every valid local peak as the torch path lists them: points (n, 2), values (n,), sample
    and channel indices (n,) int32, in raster order (sample, then row, then column, then channel)."""
    samples, channels, slots = np.nonzero(p.valid)
    order = np.lexsort((channels, p.index[samples, channels, slots], samples))
    samples, channels, slots = samples[order], channels[order], slots[order]
    return (p.points[samples, channels, slots], p.vals[samples, channels, slots],
            samples.astype(np.int32), channels.astype(np.int32))


def centroid_slots_np(p: HeadPeaks, max_instances: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame centroid slots (B, I, 2) and values (B, I), NaN-padded, from channel 0's local
    peaks, as :func:`sleapflow.ops.crops.centroid_slots` lays them out: a frame with more peaks
    than ``I`` keeps its top-``I`` in descending order, any other keeps raster order."""
    valid, index = p.valid[:, 0], p.index[:, 0]
    n_frames = valid.shape[0]
    counts = valid.sum(axis=1)
    slots = max_instances if max_instances is not None else max([1, *counts.tolist()])
    out_points = np.full((n_frames, slots, 2), np.nan, dtype=p.points.dtype)
    out_vals = np.full((n_frames, slots), np.nan, dtype=p.vals.dtype)
    for b in range(n_frames):
        kept = np.nonzero(valid[b])[0]  # descending by value (the graph's top-k order)
        if int(p.counts[b, 0]) <= slots:
            kept = kept[np.argsort(index[b, kept], kind="stable")]
        kept = kept[:slots]
        out_points[b, : len(kept)] = p.points[b, 0, kept]
        out_vals[b, : len(kept)] = p.vals[b, 0, kept]
    return out_points, out_vals

"""Bottom-up stage functions: peaks and PAF line scores on the device, grouping on the host.

The device part (peaks, refinement, line scoring) and the host part (Hungarian matching and
assembly) are separate stages so grouping overlaps the next forward pass, and can run in several
worker threads when it is the slow part. Maps that arrive as numpy arrays (ONNX Runtime on the
CPU) are read with numpy throughout, so such a run never imports torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import msgspec
import numpy as np

from sleapflow.backends.fused import DEFAULT_TOP_K, FusedPeaks, local_peak_list
from sleapflow.lazy import lazy_module
from sleapflow.messages import FrameInfo, FramePrediction, ModelOutput
from sleapflow.ops import host_paf, host_peaks
from sleapflow.ops.caps import MAX_PEAKS_PER_PART, cap_host_peaks, cap_peaks
from sleapflow.ops.paf import PafScores, group_batch, paf_edge_order, score_paf_lines
from sleapflow.ops.peaks import find_local_peaks
from sleapflow.stages.peaks import PeakSettings

if TYPE_CHECKING:
    import torch
else:
    # torch loads on first use: a run on ONNX Runtime with a warm export cache never needs it.
    torch = lazy_module("torch")

__all__ = ("ClassMapGrouping", "PafGrouping", "PafPeaks", "PeakBatch")



class PeakBatch(msgspec.Struct, frozen=True):
    """A batch's peaks and scored candidate connections, on the host, ready to group."""

    seq: int
    frames: tuple[FrameInfo, ...]
    eff_scale: Any
    points: Any
    vals: Any
    sample_inds: Any
    channel_inds: Any
    scores: Any


class PafPeaks:
    """Local peaks on the confidence maps and PAF line scores of every candidate, one batch at a
    time on the model's device; only peaks and scores move to the host."""

    def __init__(self, cms_head: str, paf_head: str, cms_stride: int, paf_stride: int,
                 edge_inds: list[tuple[int, int]], peaks: PeakSettings, *, n_points: int,
                 max_edge_length_ratio: float, dist_penalty_weight: float) -> None:
        self.cms_head = cms_head
        self.paf_head = paf_head
        self.cms_stride = cms_stride
        self.paf_stride = paf_stride
        self.edge_inds = edge_inds
        self.peaks = peaks
        self.n_points = n_points
        self.max_edge_length_ratio = max_edge_length_ratio
        self.dist_penalty_weight = dist_penalty_weight

    def fused_peaks(self) -> FusedPeaks:
        """The local peaks (scaled-input pixels) for a runtime's graph; the PAFs stay maps."""
        return _fused_local(self.peaks, self.cms_head, self.cms_stride)

    def __call__(self, out: ModelOutput) -> PeakBatch:
        pafs = out.heads[self.paf_head]
        if isinstance(pafs, np.ndarray):
            return self._host(out, pafs)
        with torch.inference_mode():
            points, vals, samples, channels = _local_peaks(out, self.cms_head, self.cms_stride,
                                                           self.peaks)
            scores = score_paf_lines(out.heads[self.paf_head], points, samples, channels,
                                     self.edge_inds, pafs_stride=self.paf_stride,
                                     n_points=self.n_points,
                                     max_edge_length_ratio=self.max_edge_length_ratio,
                                     dist_penalty_weight=self.dist_penalty_weight)
        return PeakBatch(seq=out.seq, frames=out.frames, eff_scale=out.eff_scale,
                         points=points.cpu().numpy(), vals=vals.cpu().numpy(),
                         sample_inds=samples.cpu().numpy(), channel_inds=channels.cpu().numpy(),
                         scores=scores.to_numpy() if isinstance(scores, PafScores) else scores)

    def _host(self, out: ModelOutput, pafs: np.ndarray) -> PeakBatch:
        """:meth:`__call__` on numpy maps: torch's candidates and scores for the same peaks
        (numpy's refinement sums in another order: peaks agree within ~1e-5 px)."""
        found = out.head_peaks(self.cms_head)
        if found is not None:
            points, vals, samples, channels = local_peak_list(found)
        else:
            cms = out.heads[self.cms_head]
            points, vals, samples, channels = host_peaks.find_local_peaks(
                cms, self.peaks.threshold, refinement=self.peaks.refinement,
                patch_size=self.peaks.patch_size)
            points, vals, samples, channels = cap_host_peaks(
                points, vals, samples, channels, MAX_PEAKS_PER_PART, n_channels=cms.shape[1],
                what="peaks of one part in a frame")
            points = points * np.float32(self.cms_stride)
        scores = host_paf.score_paf_lines(pafs, points, samples, channels, self.edge_inds,
                                          pafs_stride=self.paf_stride, n_points=self.n_points,
                                          max_edge_length_ratio=self.max_edge_length_ratio,
                                          dist_penalty_weight=self.dist_penalty_weight)
        return PeakBatch(seq=out.seq, frames=out.frames, eff_scale=out.eff_scale, points=points,
                         vals=vals, sample_inds=samples, channel_inds=channels, scores=scores)


def _fused_local(peaks: PeakSettings, head: str, stride: int) -> FusedPeaks:
    # DEFAULT_TOP_K is below MAX_PEAKS_PER_PART: a part with more peaks falls back to maps.
    return FusedPeaks((peaks.head(head, local=True, output_stride=stride, k=DEFAULT_TOP_K),))


def _local_peaks(out: ModelOutput, head: str, stride: int, peaks: PeakSettings
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Every local peak of ``head`` in raster order, points in scaled-input pixels (peak times
    ``stride``), from the runtime's peaks or found here on the maps."""
    found = out.head_peaks(head)
    if found is not None:
        points, vals, samples, channels = local_peak_list(found)
        return (torch.from_numpy(points), torch.from_numpy(vals), torch.from_numpy(samples),
                torch.from_numpy(channels))
    points, vals, samples, channels = find_local_peaks(
        out.heads[head], peaks.threshold, refinement=peaks.refinement, patch_size=peaks.patch_size)
    # Bounded grouping: candidates (and PAF line integrals) grow with peaks squared.
    points, vals, samples, channels = cap_peaks(
        points, vals, samples, channels, MAX_PEAKS_PER_PART, n_channels=out.heads[head].shape[1],
        what="peaks of one part in a frame")
    return points * stride, vals, samples, channels


def _per_frame(frames: tuple[FrameInfo, ...], points: np.ndarray, vals: np.ndarray,
               scores: np.ndarray, input_scale: float, eff_scale: Any) -> list[FramePrediction]:
    eff = np.asarray(eff_scale, dtype=np.float32)
    preds = []
    for b, info in enumerate(frames):
        pts = points[b] / np.float32(input_scale) / eff[b]
        preds.append(FramePrediction.of(info, points=pts.astype(np.float64), point_scores=vals[b],
                                     instance_scores=scores[b]))
    return preds


class PafGrouping:
    """Match candidates per edge and assemble instances (host, numpy/scipy), then map to frame
    pixels; emits one prediction per frame."""

    def __init__(self, edge_inds: list[tuple[int, int]], n_nodes: int, input_scale: float, *,
                 min_line_scores: float, min_instance_peaks: float, max_instances: int | None) -> None:
        paf_edge_order(edge_inds)  # fail at build time on a skeleton the grouping cannot order
        self.edge_inds = edge_inds
        self.n_nodes = n_nodes
        self.input_scale = input_scale
        self.min_line_scores = min_line_scores
        self.min_instance_peaks = min_instance_peaks
        self.max_instances = max_instances

    def __call__(self, batch: PeakBatch) -> list[FramePrediction]:
        instances, values, scores = group_batch(
            batch.scores, batch.points, batch.vals, batch.sample_inds, batch.channel_inds,
            n_frames=len(batch.frames), n_nodes=self.n_nodes, edge_inds=self.edge_inds,
            min_line_scores=self.min_line_scores, min_instance_peaks=self.min_instance_peaks,
            max_instances=self.max_instances)
        return _per_frame(batch.frames, instances, values, scores, self.input_scale, batch.eff_scale)


class ClassMapGrouping:
    """Multi-class bottom-up: peaks are assigned to classes with the class maps; each class is an
    instance whose track is the class name."""

    def __init__(self, cms_head: str, class_head: str, cms_stride: int, class_stride: int,
                 classes: tuple[str, ...], n_nodes: int, input_scale: float, peaks: PeakSettings,
                 max_instances: int | None) -> None:
        self.cms_head = cms_head
        self.class_head = class_head
        self.cms_stride = cms_stride
        self.class_stride = class_stride
        self.classes = classes
        self.n_nodes = n_nodes
        self.input_scale = input_scale
        self.peaks = peaks
        self.max_instances = max_instances

    def fused_peaks(self) -> FusedPeaks:
        """The local peaks (scaled-input pixels) for a runtime's graph; class maps stay maps."""
        return _fused_local(self.peaks, self.cms_head, self.cms_stride)

    def __call__(self, out: ModelOutput) -> list[FramePrediction]:
        # Class maps come from torch's side (exports leave their sigmoid to it): torch is loaded.
        from sleapflow.ops.identity import class_slot_order, classify_peaks_from_maps

        with torch.inference_mode():
            points, vals, samples, channels = _local_peaks(out, self.cms_head, self.cms_stride,
                                                           self.peaks)
            pts, pvals, _, scores, tracking = classify_peaks_from_maps(
                out.heads[self.class_head], points, vals, samples, channels,
                class_maps_stride=self.class_stride, n_nodes=self.n_nodes)
        order = class_slot_order(pts, scores, self.max_instances)
        eff = np.asarray(out.eff_scale, dtype=np.float32)
        preds = []
        for b, info in enumerate(out.frames):
            slots = order[b][order[b] >= 0]
            frame_pts = pts[b, slots] / np.float32(self.input_scale) / eff[b]
            preds.append(FramePrediction.of(
                info, points=frame_pts.astype(np.float64), point_scores=pvals[b, slots],
                instance_scores=scores[b, slots], tracking_scores=tracking[b, slots],
                track_names=tuple(self.classes[s] for s in slots)))
        return preds

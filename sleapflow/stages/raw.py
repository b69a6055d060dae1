"""Raw-array outputs (``run_inference(make_labels=False)``) with the reference's keys, built from
the same stage functions the labels graphs use."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import msgspec
import numpy as np

from sleapflow.lazy import lazy_module
from sleapflow.messages import CropBatch, FramePrediction, ModelOutput

__all__ = (
    "BottomUpRawDict", "MultiClassBottomUpRawDict", "RawOptions", "SingleInstanceRawDict", "TopDownRawDict",
    "frame_keys",
)

# torch loads on first use: a run on ONNX Runtime with a warm export cache never needs it.
torch = lazy_module("torch")

if TYPE_CHECKING:
    # Only named in hints: the bottom-up stages import the identity ops, whose torch
    # decorators would load torch for graphs that never group parts.
    from sleapflow.stages.bottomup import ClassMapGrouping, PafGrouping, PafPeaks
    from sleapflow.stages.peaks import SingleInstancePeaks
    from sleapflow.stages.topdown import InstancePeaks



class RawOptions(msgspec.Struct, frozen=True, kw_only=True):
    """Which optional arrays the raw dicts carry (the reference's ``return_*`` flags)."""

    return_confmaps: bool = False
    return_pafs: bool = False
    return_paf_graph: bool = False
    return_class_maps: bool = False
    return_class_vectors: bool = False


def frame_keys(out: ModelOutput) -> dict[str, np.ndarray]:
    frames = out.frames
    return {
        "image": out.input.tensor.cpu().numpy()[:, None],
        "frame_idx": np.array([f.frame_idx for f in frames], dtype=np.int32),
        "video_idx": np.array([f.video_id for f in frames], dtype=np.int32),
        "orig_size": np.array([[[f.height, f.width]] for f in frames], dtype=np.float32),
        "eff_scale": np.asarray(out.eff_scale, dtype=np.float32),
    }


def _present(pred: FramePrediction) -> np.ndarray:
    points = np.asarray(pred.points)
    return ~np.isnan(points).all(axis=(1, 2)) if points.size else np.zeros(0, dtype=bool)


class BottomUpRawDict:
    """One dict per batch: per-frame lists of instances, as the reference's bottom-up model."""

    def __init__(self, peaks: PafPeaks, grouping: PafGrouping, options: Any) -> None:
        self.peaks = peaks
        self.grouping = grouping
        self.options = options

    def __call__(self, out: ModelOutput) -> dict[str, Any]:
        batch = self.peaks(out)
        preds = self.grouping(batch)
        result: dict[str, Any] = frame_keys(out)
        keep = [_present(p) for p in preds]
        for key, field in (("pred_instance_peaks", "points"), ("pred_peak_values", "point_scores"),
                           ("instance_scores", "instance_scores")):
            result[key] = [np.asarray(getattr(p, field), np.float32)[k] for p, k in zip(preds, keep)]
        if self.options.return_confmaps:
            result["pred_confmaps"] = out.heads[self.peaks.cms_head].float().cpu().numpy()
        if self.options.return_pafs:
            result["pred_part_affinity_fields"] = (
                out.heads[self.peaks.paf_head].float().permute(0, 2, 3, 1).cpu().numpy())
        if self.options.return_paf_graph:
            frames = np.asarray(batch.sample_inds)
            result["peaks"] = [np.asarray(batch.points)[frames == b] for b in range(len(preds))]
            result["peak_vals"] = [np.asarray(batch.vals)[frames == b] for b in range(len(preds))]
            result["peak_channel_inds"] = [np.asarray(batch.channel_inds)[frames == b]
                                           for b in range(len(preds))]
            scores = batch.scores
            cand = np.asarray(scores.sample_inds)
            result["edge_inds"] = [np.asarray(scores.edge_inds)[cand == b] for b in range(len(preds))]
            result["edge_peak_inds"] = [
                np.stack([np.asarray(scores.src_inds)[cand == b], np.asarray(scores.dst_inds)[cand == b]],
                         axis=1) for b in range(len(preds))]
            result["line_scores"] = [np.asarray(scores.line_scores)[cand == b] for b in range(len(preds))]
        return result


class MultiClassBottomUpRawDict:
    """One dict per batch: class slots (B, K, N) with the matched class probabilities."""

    def __init__(self, grouping: ClassMapGrouping, options: Any) -> None:
        self.grouping = grouping
        self.options = options

    def __call__(self, out: ModelOutput) -> dict[str, Any]:
        from sleapflow.ops.identity import classify_peaks_from_maps
        from sleapflow.ops.peaks import find_local_peaks

        g = self.grouping
        with torch.inference_mode():
            points, vals, samples, channels = find_local_peaks(
                out.heads[g.cms_head], g.peaks.threshold, refinement=g.peaks.refinement,
                patch_size=g.peaks.patch_size)
            pts, pvals, probs, _, _ = classify_peaks_from_maps(
                out.heads[g.class_head], points * g.cms_stride, vals, samples, channels,
                class_maps_stride=g.class_stride, n_nodes=g.n_nodes)
        eff = np.asarray(out.eff_scale, dtype=np.float32)
        result: dict[str, Any] = frame_keys(out)
        result["pred_instance_peaks"] = pts / np.float32(g.input_scale) / eff[:, None, None, None]
        result["pred_peak_values"] = pvals
        result["instance_scores"] = probs
        if self.options.return_confmaps:
            result["pred_confmaps"] = out.heads[g.cms_head].float().cpu().numpy()
        if self.options.return_class_maps:
            result["pred_class_maps"] = out.heads[g.class_head].float().cpu().numpy()
        return result


class TopDownRawDict:
    """One dict per frame with at least one centroid, keypoints relative to each crop.

    A frame's crops may come in several parts (``limits.MAX_CROPS_PER_PART``), even across
    crop batches: the parts are held until the last one and joined into the frame's one dict,
    with identity classes assigned over all its crops (this stage runs one worker, in order).
    """

    def __init__(self, peaks: InstancePeaks, crop_size: int, options: Any) -> None:
        self.peaks = peaks
        self.crop_size = crop_size
        self.options = options
        #: The earlier parts of a frame (its seq, their dicts) waiting for its last part.
        self._pending: tuple[int, list[dict[str, Any]]] | None = None

    def __call__(self, out: ModelOutput) -> list[dict[str, Any]]:
        from sleapflow.ops.peaks import find_global_peaks

        batch: CropBatch = out.input
        total = sum(s.n_crops for s in batch.sets)
        if not total:
            return []
        p = self.peaks
        with torch.inference_mode():
            cms = out.heads[p.head]
            peak_points, peak_vals = find_global_peaks(cms, p.peaks.threshold,
                                                       refinement=p.peaks.refinement,
                                                       patch_size=p.peaks.patch_size)
            points = (peak_points * p.output_stride / p.input_scale).cpu().numpy()
            vals = peak_vals.cpu().numpy()
            probs = out.heads[p.class_head].float().cpu().numpy() if p.class_head else None
        dicts: list[dict[str, Any]] = []
        start = 0
        for s in batch.sets:
            n = s.n_crops
            if not n:
                continue
            rows = slice(start, start + n)
            eff = np.float32(s.eff_scale)
            tl = s.offsets.cpu().numpy().astype(np.float32)
            side = np.float32(self.crop_size - 1)
            steps = np.array([[0, 0], [side, 0], [side, side], [0, side]], dtype=np.float32)
            corners = tl[:, None, :] + steps[None]
            d: dict[str, Any] = {
                "centroid": np.full((n, 2), (self.crop_size - 1) / 2, dtype=np.float32),
                "centroid_val": s.centroid_vals[s.slots].astype(np.float32),
                "frame_idx": np.full(n, s.frame.frame_idx, dtype=np.float32),
                "video_idx": np.full(n, s.frame.video_id, dtype=np.float32),
                "instance_bbox": (corners / eff)[:, None].astype(np.float32),
                "instance_image": s.crops.cpu().numpy()[:, None],
                "orig_size": np.tile(np.array([s.frame.height, s.frame.width], dtype=np.float32), (n, 1)),
                "eff_scale": np.full(n, eff, dtype=np.float32),
                "pred_centroids": s.centroids[s.slots].astype(np.float32),
                "pred_instance_peaks": points[rows].astype(np.float32),
                "pred_peak_values": vals[rows].astype(np.float32),
            }
            if probs is not None and p.assign is not None:
                d["pred_class_vectors"] = probs[rows]
            if self.options.return_confmaps:
                d["pred_confmaps"] = cms[rows].float().cpu().numpy()
                if s.centroid_map is not None:
                    d["pred_centroid_confmaps"] = np.repeat(np.asarray(s.centroid_map)[None], n, axis=0)
            start += n
            parts = self._pending[1] if self._pending is not None and \
                self._pending[0] == s.seq else []
            parts.append(d)
            if not s.last:
                self._pending = (s.seq, parts)
                continue
            self._pending = None
            dicts.append(self._frame_dict(parts))
        return dicts

    def _frame_dict(self, parts: list[dict[str, Any]]) -> dict[str, Any]:
        joined = parts[0] if len(parts) == 1 else {
            key: np.concatenate([part[key] for part in parts]) for key in parts[0]}
        d: dict[str, Any] = {}
        for key, value in joined.items():
            if key != "pred_class_vectors":
                d[key] = value
                continue
            assert self.peaks.assign is not None
            class_inds, class_scores = self.peaks.assign(value, np.zeros(len(value), dtype=int))
            d["pred_class_inds"] = class_inds.astype(np.int64)
            d["instance_scores"] = class_scores.astype(np.float32)
            if self.options.return_class_vectors:
                d["pred_class_vectors"] = value
        return d


class SingleInstanceRawDict:
    """ModelOutput of one batch → the reference's single-instance dict.

    Keys and dtypes as ``SingleInstanceInferenceModel`` returns them (after ``.cpu().numpy()``):
    ``image`` (B, 1, C, H', W') uint8 preprocessed, ``frame_idx``/``video_idx`` (B,) int32,
    ``orig_size`` (B, 1, 2) float32 [H, W], ``eff_scale`` (B,) float32, ``pred_instance_peaks``
    (B, N, 2) float32 in original-image pixels, ``pred_peak_values`` (B, N) float32 and, with
    ``return_confmaps``, ``pred_confmaps`` (B, N, h, w) float32. Peaks come from the very
    :class:`SingleInstancePeaks` callable the labels graph uses.
    """

    def __init__(self, peaks: SingleInstancePeaks, head: str, options: RawOptions) -> None:
        self.peaks = peaks
        self.head = head
        self.options = options

    def __call__(self, out: ModelOutput) -> dict[str, np.ndarray]:
        preds = self.peaks(out)
        result: dict[str, np.ndarray] = frame_keys(out)
        result["pred_instance_peaks"] = np.stack([p.points[0] for p in preds]).astype(np.float32)
        result["pred_peak_values"] = np.stack([p.point_scores[0] for p in preds]).astype(np.float32)
        if self.options.return_confmaps:
            result["pred_confmaps"] = out.heads[self.head].float().cpu().numpy()
        return result

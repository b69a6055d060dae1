"""Top-down stage functions: centroids → crops → re-batched crops → keypoints in frame pixels."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anyio
import msgspec
import numpy as np
from anyio.abc import TaskStatus

from sleapflow.backends.fused import DEFAULT_TOP_K, MAX_KEPT_TOP, FusedPeaks, centroid_slots_np
from sleapflow.lazy import lazy_module
from sleapflow.messages import CropBatch, CropSet, FrameInfo, FramePrediction, ModelInput, ModelOutput
from sleapflow.ops import host_crops, host_peaks, host_resize
from sleapflow.ops import preprocess as prep
from sleapflow.ops.caps import MAX_CENTROIDS_PER_FRAME, MAX_CROPS_PER_PART, cap_host_peaks, cap_peaks
from sleapflow.ops.crops import centroid_slots, crop_windows, extract_crops, near_crop_boundary
from sleapflow.ops.instances import gt_centroids
from sleapflow.ops.peaks import find_global_peaks, find_local_peaks
from sleapflow.runtime.graph import Role
from sleapflow.stages.peaks import PeakSettings

__all__ = (
    "COORDINATE_STEPS", "CROP_BOUNDARY_EPS", "RUNTIME_MAP_DIFFERENCE", "CentroidCrops",
    "CentroidFinder", "CentroidOnlyPredictions", "ClassAssigner",
    "CropPreprocessor", "FollowCrops", "GroundTruthCrops", "InstancePeaks", "KeyFrames", "PoseMemory",
    "boundary_margin", "crop_weight", "make_crop_batch",
)

# torch loads on first use: a run on ONNX Runtime with a warm export cache never needs it.
torch = lazy_module("torch")



class CentroidFinder:
    """Local peaks of the centroid map → NaN-padded centroid slots in original pixels."""

    def __init__(self, head: str, output_stride: int, input_scale: float, peaks: PeakSettings,
                 max_instances: int | None) -> None:
        self.head = head
        self.output_stride = output_stride
        self.input_scale = input_scale
        self.peaks = peaks
        self.max_instances = max_instances

    def fused_peaks(self) -> FusedPeaks:
        """This finder's peak finding for a runtime's graph: a top-``max_instances`` (all the
        slots keep), or DEFAULT_TOP_K with the forward's maps fallback beyond it."""
        keeps_top = self.max_instances is not None and self.max_instances <= MAX_KEPT_TOP
        k = self.max_instances if keeps_top and self.max_instances is not None else DEFAULT_TOP_K
        return FusedPeaks((self.peaks.head(self.head, local=True, output_stride=self.output_stride,
                                           input_scale=self.input_scale, k=k,
                                           keeps_top=keeps_top),))

    def __call__(self, out: ModelOutput) -> tuple[Any, Any]:
        """Centroids (B, I, 2) float32 in original pixels and values (B, I), on the host
        (numpy arrays when the maps are: ONNX Runtime on the CPU)."""
        found = out.head_peaks(self.head)
        if found is not None:  # the runtime found them inside its graph (torch path otherwise)
            points, values = centroid_slots_np(found, self.max_instances)
            eff_np = torch.as_tensor(np.asarray(out.eff_scale), dtype=torch.float32)
            return torch.from_numpy(points) / eff_np[:, None, None], torch.from_numpy(values)
        cms = out.heads[self.head]
        if isinstance(cms, np.ndarray):
            return self._host(cms, out.eff_scale)
        with torch.inference_mode():
            points, vals, samples, channels = find_local_peaks(cms, self.peaks.threshold,
                                                               refinement=self.peaks.refinement,
                                                               patch_size=self.peaks.patch_size)
            points, vals, samples, _ = cap_peaks(points, vals, samples, channels,
                                                 MAX_CENTROIDS_PER_FRAME, n_channels=cms.shape[1],
                                                 what="centroid candidates in a frame")
            points = points * self.output_stride / self.input_scale
            centroids, values = centroid_slots(points, vals, samples, cms.shape[0], self.max_instances)
        eff = torch.as_tensor(np.asarray(out.eff_scale), dtype=torch.float32)
        return centroids.cpu() / eff[:, None, None], values.cpu()

    def with_spread(self, out: ModelOutput) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """:meth:`__call__` on host maps, plus each centroid's refinement spread (B, I, 2) in
        original pixels (``host_peaks.refinement_spread``, scaled as the centroids are)."""
        return self._host(out.heads[self.head], out.eff_scale, spread=True)

    def _host(self, cms: np.ndarray, eff_scale: Any, *, spread: bool = False) -> Any:
        points, vals, samples, channels, spreads = host_peaks.find_local_peaks_and_spread(
            cms, self.peaks.threshold, refinement=self.peaks.refinement,
            patch_size=self.peaks.patch_size, spread=spread)
        if spread:
            # The spread rides along as two more columns: scaled, capped and slotted with its
            # point (float32, so the points' arithmetic is unchanged).
            points = np.concatenate([points, spreads.astype(points.dtype)], axis=1)
        points, vals, samples, _ = cap_host_peaks(points, vals, samples, channels,
                                                  MAX_CENTROIDS_PER_FRAME, n_channels=cms.shape[1],
                                                  what="centroid candidates in a frame")
        points = points * self.output_stride / self.input_scale
        centroids, values = host_crops.centroid_slots(points, vals, samples, cms.shape[0],
                                                      self.max_instances)
        eff = np.asarray(eff_scale, dtype=np.float32)
        centroids = centroids / eff[:, None, None]
        if spread:
            return centroids[..., :2], values, centroids[..., 2:]
        return centroids, values


def _crop_sets(model_input: ModelInput, centroids: Any, values: Any,
               crop_size: int, centroid_maps: Any = None) -> list[CropSet]:
    """Cut one crop per valid centroid from the size-matched frames, grouped per frame (with
    numpy arrays throughout when the centroids are numpy)."""
    if isinstance(centroids, np.ndarray):
        eff = np.asarray(model_input.eff_scale, dtype=np.float32)
        sized = centroids * eff[:, None, None]
        frame_inds, slot_inds = np.nonzero(~np.isnan(sized[..., 0]))
        top_left, origins = host_crops.crop_windows(sized[frame_inds, slot_inds], crop_size)
        crops = host_crops.extract_crops(model_input.raw, frame_inds, origins, crop_size)
        tensors = False
    else:
        eff = torch.as_tensor(np.asarray(model_input.eff_scale), dtype=torch.float32)
        sized = centroids * eff[:, None, None]
        valid = ~torch.isnan(sized[..., 0])
        frame_inds, slot_inds = torch.nonzero(valid, as_tuple=True)
        top_left, origins = crop_windows(sized[frame_inds, slot_inds], crop_size)
        crops = extract_crops(model_input.raw, frame_inds, origins, crop_size)
        tensors = True
    sets = []
    for b, info in enumerate(model_input.frames):
        mine = (torch.nonzero(frame_inds == b, as_tuple=True) if tensors else
                np.nonzero(frame_inds == b))[0]
        # Parts of at most MAX_CROPS_PER_PART crops, so the instance model's batches stay
        # bounded however many centroids a frame has; InstancePeaks joins them again.
        bounds = list(range(0, len(mine), MAX_CROPS_PER_PART)) or [0]
        for k, start in enumerate(bounds):
            part = mine[start:start + MAX_CROPS_PER_PART]
            sets.append(CropSet(seq=info.seq, frame=info, eff_scale=float(eff[b]),
                                centroids=np.asarray(centroids[b]),
                                centroid_vals=np.asarray(values[b]),
                                crops=crops[part], slots=np.asarray(slot_inds[part]),
                                offsets=top_left[part],
                                centroid_map=None if centroid_maps is None else centroid_maps[b],
                                last=k == len(bounds) - 1))
    return sets


#: Centroids closer than this (pixels of the size-matched frame) to a crop-origin rounding
#: boundary are found again from torch's fp32 maps when another runtime ran the centroid model
#: and returned only its peaks (the fused export): that runtime's small difference from torch
#: would otherwise move such a crop a whole pixel.
CROP_BOUNDARY_EPS = 1e-3
#: On host maps the margin is each centroid's own: a bound on how much two fp32 runtimes'
#: centroid map values differ (measured at most 1.3e-6 for sleap-nn's test centroid model and
#: 3.6e-7 for a 2 M-parameter one, ONNX Runtime against torch on an AVX2 CPU; 15x that)
#: times the centroid's refinement spread, plus a few float32 steps of its coordinate for the
#: rounding of the coordinate arithmetic (the runtimes' centroids differed by one step at most).
RUNTIME_MAP_DIFFERENCE = 2e-5
COORDINATE_STEPS = 4


def boundary_margin(centers: np.ndarray, spread: np.ndarray) -> np.ndarray:
    """Per-coordinate margin (..., 2) within which another fp32 runtime's centroid may lie on
    the other side of a crop-rounding boundary (see :data:`RUNTIME_MAP_DIFFERENCE`)."""
    steps = np.spacing(np.abs(centers).astype(np.float32)).astype(np.float64)
    return RUNTIME_MAP_DIFFERENCE * spread.astype(np.float64) + COORDINATE_STEPS * steps


def _widen_slots(t: Any, slots: int) -> Any:
    if t.shape[1] >= slots:
        return t
    if isinstance(t, np.ndarray):
        pad = np.full((t.shape[0], slots - t.shape[1], *t.shape[2:]), np.nan, dtype=t.dtype)
        return np.concatenate([t, pad], axis=1)
    pad = t.new_full((t.shape[0], slots - t.shape[1], *t.shape[2:]), float("nan"))
    return torch.cat([t, pad], dim=1)


class CentroidCrops:
    """Centroid model output → one CropSet per frame (the crop step of top-down).

    ``exact`` (torch fp32 maps of a uint8 batch) is given when the centroid model runs on
    another runtime: frames with a centroid on a crop-rounding boundary are then decided by
    torch's arithmetic, so every runtime cuts the crops the reference cuts.
    """

    def __init__(self, finder: CentroidFinder, crop_size: int, *, keep_maps: bool = False,
                 exact: Callable[[Any], dict[str, Any]] | None = None) -> None:
        self.finder = finder
        self.crop_size = crop_size
        self.keep_maps = keep_maps
        self.exact = exact

    def __call__(self, out: ModelOutput) -> list[CropSet]:
        head = self.finder.head
        if (self.exact is not None and out.head_peaks(head) is None
                and isinstance(out.heads.get(head), np.ndarray)):
            # Host arrays never keep maps (the raw dicts run on torch's path).
            centroids, values, spread = self.finder.with_spread(out)
            if centroids.size:
                centroids, values = self._recheck_host(out, centroids, values, spread)
            return _crop_sets(out.input, centroids, values, self.crop_size)
        centroids, values = self.finder(out)
        if isinstance(centroids, np.ndarray):
            return _crop_sets(out.input, centroids, values, self.crop_size)
        maps = out.heads[self.finder.head].float().cpu() if self.keep_maps else None
        if self.exact is not None and centroids.numel():
            centroids, values, maps = self._recheck_boundaries(out, centroids, values, maps)
        return _crop_sets(out.input, centroids, values, self.crop_size, maps)

    def _recheck_host(self, out: ModelOutput, centroids: np.ndarray, values: np.ndarray,
                      spread: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`_recheck_boundaries` on numpy arrays, with each centroid's own margin
        (:func:`boundary_margin`): torch loads only if a frame needs it, which a well-defined
        peak rarely does (a constant 1e-3 px re-ran 6 of the 1100 frames of sleap-nn's test clip)."""
        assert self.exact is not None
        eff_scale = np.asarray(out.input.eff_scale)
        eff = eff_scale.astype(np.float32)
        sized = centroids * eff[:, None, None]
        margin = boundary_margin(sized, spread * eff[:, None, None])
        near = host_crops.near_crop_boundary(sized, self.crop_size, margin).any(axis=1)
        frames = np.nonzero(near)[0]
        if frames.size == 0:
            return centroids, values
        heads = self.exact(out.input.tensor[frames])
        sub_input = ModelInput(seq=out.input.seq, frames=tuple(out.input.frames[i] for i in frames),
                               tensor=None, eff_scale=eff_scale[frames])
        again, again_vals = self.finder(ModelOutput(seq=out.seq, heads=heads, input=sub_input))
        slots = max(centroids.shape[1], again.shape[1])
        centroids = _widen_slots(centroids, slots).copy()
        values = _widen_slots(values, slots).copy()
        centroids[frames] = _widen_slots(again, slots)
        values[frames] = _widen_slots(again_vals, slots)
        return centroids, values

    def _recheck_boundaries(self, out: ModelOutput, centroids: Any, values: Any,
                            maps: Any | None
                            ) -> tuple[Any, Any, Any | None]:
        assert self.exact is not None
        eff_scale = np.asarray(out.input.eff_scale)
        eff = torch.as_tensor(eff_scale, dtype=torch.float32)
        near = near_crop_boundary(centroids * eff[:, None, None], self.crop_size,
                                  CROP_BOUNDARY_EPS).any(dim=1)
        frames = torch.nonzero(near).flatten()
        if frames.numel() == 0:
            return centroids, values, maps
        idx = frames.tolist()
        heads = self.exact(out.input.tensor[frames])
        sub_input = ModelInput(seq=out.input.seq, frames=tuple(out.input.frames[i] for i in idx),
                               tensor=None, eff_scale=eff_scale[idx])
        again, again_vals = self.finder(ModelOutput(seq=out.seq, heads=heads, input=sub_input))
        slots = max(centroids.shape[1], again.shape[1])
        with torch.inference_mode():
            # Copies: the finder's tensors may share memory with the batch's maps.
            centroids = _widen_slots(centroids, slots).clone()
            values = _widen_slots(values, slots).clone()
            centroids[frames] = _widen_slots(again, slots)
            values[frames] = _widen_slots(again_vals, slots)
            if maps is not None:
                maps = maps.clone()
                maps[frames] = heads[self.finder.head].float().cpu()
        return centroids, values, maps


class GroundTruthCrops:
    """Ground-truth centroids (anchor node, else mean of visible nodes) → CropSets; value 1.0."""

    def __init__(self, anchor_ind: int | None, crop_size: int) -> None:
        self.anchor_ind = anchor_ind
        self.crop_size = crop_size

    def __call__(self, batch: ModelInput) -> list[CropSet]:
        gt = batch.gt_points or (None,) * len(batch.frames)
        slots = max([1, *(0 if g is None else g.shape[0] for g in gt)])
        centroids = torch.full((len(batch.frames), slots, 2), float("nan"))
        values = torch.full((len(batch.frames), slots), float("nan"))
        np.asarray(batch.eff_scale)
        for b, points in enumerate(gt):
            if points is None or points.shape[0] == 0:
                continue
            c = gt_centroids(points, self.anchor_ind)
            centroids[b, : c.shape[0]] = torch.as_tensor(c, dtype=torch.float32)
            values[b, : c.shape[0]] = 1.0
        return _crop_sets(batch, centroids, values, self.crop_size)


def crop_weight(crop_set: CropSet) -> int:
    """Crops, not frames, fill the instance model's batches."""
    return crop_set.n_crops


def make_crop_batch(seq: int, sets: list[CropSet]) -> CropBatch:
    return CropBatch(seq=seq, sets=tuple(sets), tensor=None)


class CropPreprocessor:
    """Stack a batch's crops, apply the instance model's input scale and stride padding only."""

    def __init__(self, scale: float, max_stride: int) -> None:
        self.scale = scale
        self.max_stride = max_stride

    def __call__(self, batch: CropBatch) -> CropBatch:
        crops = [s.crops for s in batch.sets if s.n_crops]
        if not crops:
            return batch
        if isinstance(crops[0], np.ndarray):
            x = np.concatenate(crops)
            if self.scale != 1.0:
                size = (int(x.shape[2] * self.scale), int(x.shape[3] * self.scale))
                x = host_resize.resize_uint8(x, size)
            pad_h, pad_w = (-x.shape[2]) % self.max_stride, (-x.shape[3]) % self.max_stride
            if pad_h or pad_w:
                x = np.pad(x, ((0, 0), (0, 0), (0, pad_h), (0, pad_w)))
            return CropBatch(seq=batch.seq, sets=batch.sets, tensor=np.ascontiguousarray(x))
        x = torch.cat(crops)
        x = prep.apply_input_scale(x, self.scale)
        x = prep.pad_to_stride(x, self.max_stride)
        return CropBatch(seq=batch.seq, sets=batch.sets, tensor=x.contiguous())


ClassAssigner = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]


class InstancePeaks:
    """Centered-instance maps → keypoints mapped back to frame pixels, one prediction per frame.

    Keypoints are ``(crop_peak + crop_top_left) / eff_scale``; the instance score is the
    centroid's value. With a class-vector head, crops are assigned to classes per frame.
    """

    def __init__(self, head: str, output_stride: int, input_scale: float, peaks: PeakSettings,
                 n_nodes: int, *, class_head: str | None = None,
                 class_names: tuple[str, ...] = (), assign: ClassAssigner | None = None) -> None:
        self.head = head
        self.output_stride = output_stride
        self.input_scale = input_scale
        self.peaks = peaks
        self.n_nodes = n_nodes
        self.class_head = class_head
        self.class_names = class_names
        self.assign = assign
        #: A frame whose crops came in several parts, waiting for its last part (the parts
        #: arrive in order: this stage runs one worker behind the forward's reorder).
        self._pending: tuple[int, np.ndarray, np.ndarray, list[Any], list[Any]] | None = None

    def fused_peaks(self) -> FusedPeaks:
        """This stage's peak finding (one global peak per part of each crop) for a runtime's graph."""
        return FusedPeaks((self.peaks.head(self.head, local=False, output_stride=self.output_stride,
                                           input_scale=self.input_scale),))

    def __call__(self, out: ModelOutput) -> list[FramePrediction]:
        batch: CropBatch = out.input
        total = sum(s.n_crops for s in batch.sets)
        keypoints = np.zeros((0, self.n_nodes, 2), dtype=np.float32)
        values = np.zeros((0, self.n_nodes), dtype=np.float32)
        probs = None
        found = out.head_peaks(self.head)
        if total and found is not None:  # the runtime found them inside its graph
            offsets_np = np.concatenate([np.asarray(s.offsets) for s in batch.sets if s.n_crops])
            keypoints = found.points + offsets_np[:, None, :]
            values = found.vals
            if self.class_head is not None:
                probs = out.heads[self.class_head].float().cpu().numpy()
        elif total and isinstance(out.heads[self.head], np.ndarray):
            # ONNX Runtime's maps on the CPU (no class head there: see graphs.common).
            points, values = host_peaks.find_global_peaks(out.heads[self.head], self.peaks.threshold,
                                                          refinement=self.peaks.refinement,
                                                          patch_size=self.peaks.patch_size)
            points = points * self.output_stride / self.input_scale
            offsets = np.concatenate([s.offsets for s in batch.sets if s.n_crops])
            keypoints = points + offsets[:, None, :]
        elif total:
            with torch.inference_mode():
                points, vals = find_global_peaks(out.heads[self.head], self.peaks.threshold,
                                                 refinement=self.peaks.refinement,
                                                 patch_size=self.peaks.patch_size)
                points = points * self.output_stride / self.input_scale
                if self.class_head is not None:
                    probs = out.heads[self.class_head].float().cpu().numpy()
            offsets = torch.cat([s.offsets for s in batch.sets if s.n_crops]).to(points.device)
            keypoints = (points + offsets[:, None, :]).cpu().numpy()
            values = vals.cpu().numpy()
        preds = []
        start = 0
        for s in batch.sets:
            n = s.n_crops
            slots = s.centroid_vals.shape[0]
            if self._pending is not None and self._pending[0] == s.seq:
                _, pts, scores, part_probs, part_slots = self._pending  # a later part
            else:
                pts = np.full((slots, self.n_nodes, 2), np.nan)
                scores = np.full((slots, self.n_nodes), np.nan)
                part_probs, part_slots = [], []
            eff = np.float32(s.eff_scale)
            pts[s.slots] = keypoints[start:start + n] / eff
            scores[s.slots] = values[start:start + n]
            if probs is not None:
                part_probs.append(probs[start:start + n])
                part_slots.append(s.slots)
            start += n
            if not s.last:
                self._pending = (s.seq, pts, scores, part_probs, part_slots)
                continue
            self._pending = None
            track_names = tracking = None
            if probs is not None and self.assign is not None:
                frame_probs = np.concatenate(part_probs)
                frame_slots = np.concatenate(part_slots)
                m = frame_probs.shape[0]
                class_inds, class_scores = self.assign(frame_probs, np.zeros(m, dtype=int))
                names: list[str | None] = [None] * slots
                tracking = np.full(slots, np.nan)
                for crop, slot in enumerate(frame_slots):
                    # An unassigned crop (more crops than classes) has class -1, which the
                    # reference uses as a list index: it gets the last class, with a NaN score.
                    names[slot] = self.class_names[class_inds[crop]]
                    tracking[slot] = class_scores[crop]
                track_names = tuple(names)
            preds.append(FramePrediction.of(s.frame, points=pts,
                point_scores=scores, instance_scores=s.centroid_vals.astype(np.float64),
                track_names=track_names, tracking_scores=tracking,
                centroids=s.centroids, centroid_scores=s.centroid_vals))
        return preds


class CentroidOnlyPredictions:
    """Centroid-only output: one-node ``centroid`` instances, or, on labeled frames, the matched
    ground-truth instance's keypoints (each centroid takes the nearest ground-truth instance)."""

    def __init__(self, finder: CentroidFinder, anchor_ind: int | None) -> None:
        self.finder = finder
        self.anchor_ind = anchor_ind

    def __call__(self, out: ModelOutput) -> list[FramePrediction]:
        centroids, values = self.finder(out)
        centroids_np = centroids.numpy().astype(np.float64)
        values_np = values.numpy().astype(np.float64)
        gt_all = out.input.gt_points or (None,) * len(out.frames)
        preds = []
        for b, info in enumerate(out.frames):
            c, v = centroids_np[b], values_np[b]
            keep = ~np.isnan(c[:, 0])
            c, v = c[keep], v[keep]
            gt = gt_all[b]
            if gt is not None and gt.shape[0] and c.shape[0]:
                gt_c = gt_centroids(gt, self.anchor_ind)
                d = np.linalg.norm(c[:, None] - gt_c[None], axis=-1)
                nearest = np.nanargmin(np.where(np.isnan(d), np.inf, d), axis=1)
                points = gt[nearest]
                point_scores = np.where(np.isnan(points[..., 0]), np.nan, v[:, None])
                preds.append(FramePrediction.of(info, points=points,
                                             point_scores=point_scores, instance_scores=v,
                                             centroids=c, centroid_scores=v))
            else:
                preds.append(FramePrediction.of(info, points=c[:, None, :],
                                             point_scores=v[:, None], instance_scores=v,
                                             centroids=c, centroid_scores=v, centroid_only=True))
        return preds


# --------------------------------------------------------------------------------------------
# --centroid_every K: the centroid model on key frames only, crops from the last poses between
# --------------------------------------------------------------------------------------------


class KeyFrames:
    """Which frames run the centroid model under ``--centroid_every K``: every K-th frame of
    the stream (``seq % K == 0``), the first one seen (a resumed run may start between) and
    the first of each new video (a many-video run: no crop follows an animal across videos).

    As a map stage's function it keeps only the key frames' rows of a batch's tensor, so the
    centroid model computes nothing for the others; the frames themselves all pass on. The
    crop step asks :meth:`is_key` of its own instance: both see the same frames in order.
    """

    def __init__(self, every: int) -> None:
        self.every = every
        self._first: int | None = None
        #: The video of the last frame asked about, and the first seq seen in it.
        self._video: int | None = None
        self._video_start = 0

    def is_key(self, frame: FrameInfo) -> bool:
        if self._first is None:
            self._first = frame.seq
        if frame.video_id != self._video:
            self._video, self._video_start = frame.video_id, frame.seq
        return frame.seq in (self._first, self._video_start) or frame.seq % self.every == 0

    def __call__(self, batch: ModelInput) -> ModelInput:
        rows = [b for b, f in enumerate(batch.frames) if self.is_key(f)]
        if len(rows) == len(batch.frames):
            return batch
        tensor = batch.tensor[torch.as_tensor(rows, dtype=torch.long)]
        return msgspec.structs.replace(batch, tensor=tensor)


class PoseMemory:
    """Each frame's poses as the instance step makes them, for the crop step of the next frame.

    Called with each prediction (:meth:`record`), it is a map stage's function on the event
    loop (it only stores arrays), placed after the instance peaks; :meth:`wait_for` is awaited
    by :class:`FollowCrops`. Only the
    newest two frames are kept: the crop step asks for frame t-1 before frame t exists.
    """

    def __init__(self, anchor_ind: int | None) -> None:
        self.anchor_ind = anchor_ind
        self._poses: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self._arrived: dict[int, anyio.Event] = {}

    def record(self, pred: FramePrediction) -> FramePrediction:
        points = np.asarray(pred.points, dtype=np.float64)
        centroids = (gt_centroids(points, self.anchor_ind) if points.shape[0]
                     else np.zeros((0, 2)))
        if pred.centroids is not None and points.shape[0]:
            # An animal whose crop found no node keeps that crop's centre until the next key
            # frame, rather than vanishing for the frames up to it.
            lost = np.isnan(centroids[:, 0])
            centroids[lost] = np.asarray(pred.centroids, dtype=np.float64)[lost]
        self._poses[pred.seq] = (centroids, np.asarray(pred.instance_scores, dtype=np.float64))
        for old in [k for k in self._poses if k < pred.seq - 1]:
            del self._poses[old]
        event = self._arrived.pop(pred.seq, None)
        if event is not None:
            event.set()
        return pred

    def __call__(self, pred: FramePrediction) -> FramePrediction:
        return self.record(pred)

    async def wait_for(self, seq: int) -> tuple[np.ndarray, np.ndarray]:
        """Frame ``seq``'s animal centres (n, 2) in frame pixels (NaN: nothing found) and
        scores (n,), once its poses are made."""
        if seq not in self._poses:
            event = self._arrived.setdefault(seq, anyio.Event())
            await event.wait()
        return self._poses.pop(seq)


class FollowCrops:
    """The crop step of ``--centroid_every K``: key frames are cut around the centroid
    model's peaks (as :class:`CentroidCrops` cuts them); every other frame around the centres
    of the previous frame's poses, each crop keeping its animal's score.

    Written by hand, not a map stage: a frame between key frames waits (on the event loop, no
    thread held) for the previous frame's poses, which the stages after this one make. So the
    frames between key frames go through the instance model one after another; the instance
    step's batching must not hold a frame's crops back waiting for more (the graph batches
    crops one frame at a time under this option).
    """

    role: Role = "stage"
    preserves_order = True
    requires_order = True
    restores_order = False
    #: Frames' crop sets, one or more per batch that came in.
    emits = "items"

    def __init__(self, crops: CentroidCrops, keys: KeyFrames, memory: PoseMemory, *,
                 name: str = "crop", limiter: anyio.CapacityLimiter | None = None) -> None:
        self.name = name
        self.crops = crops
        self.keys = keys
        self.memory = memory
        self.limiter = limiter

    def key_sets(self, out: ModelOutput) -> dict[int, list[CropSet]]:
        """The key frames' crop sets, by frame ``seq``."""
        model_input: ModelInput = out.input
        rows = [b for b, f in enumerate(model_input.frames) if self.keys.is_key(f)]
        if not rows:
            return {}
        index = torch.as_tensor(rows, dtype=torch.long)
        sub = ModelInput(seq=model_input.seq, frames=tuple(model_input.frames[b] for b in rows),
                         tensor=model_input.tensor,
                         eff_scale=np.asarray(model_input.eff_scale)[rows],
                         raw=model_input.raw[index])
        by_seq: dict[int, list[CropSet]] = {f.seq: [] for f in sub.frames}
        for crop_set in self.crops(ModelOutput(seq=out.seq, heads=out.heads, input=sub,
                                                  peaks=out.peaks)):
            by_seq[crop_set.seq].append(crop_set)
        return by_seq

    def follow_sets(self, model_input: ModelInput, b: int, centres: np.ndarray,
                    scores: np.ndarray) -> list[CropSet]:
        """Frame ``b``'s crops, centred on the previous frame's animals."""
        sub = ModelInput(seq=model_input.seq, frames=(model_input.frames[b],), tensor=None,
                         eff_scale=np.asarray(model_input.eff_scale)[b:b + 1],
                         raw=model_input.raw[b:b + 1])
        keep = ~np.isnan(centres[:, 0]) if centres.shape[0] else np.zeros(0, dtype=bool)
        slots = max(1, int(keep.sum()))
        centroids = torch.full((1, slots, 2), float("nan"))
        values = torch.full((1, slots), float("nan"))
        if keep.any():
            centroids[0, : keep.sum()] = torch.as_tensor(centres[keep], dtype=torch.float32)
            values[0, : keep.sum()] = torch.as_tensor(scores[keep], dtype=torch.float32)
        return _crop_sets(sub, centroids, values, self.crops.crop_size)

    async def run(self, inbox: Any, outbox: Any, *,
                  task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        async with inbox, outbox:
            task_status.started()
            async for out in inbox:
                keyed = await anyio.to_thread.run_sync(self.key_sets, out, limiter=self.limiter)
                for b, info in enumerate(out.input.frames):
                    sets = keyed.get(info.seq)
                    if sets is None:
                        centres, scores = await self.memory.wait_for(info.seq - 1)
                        sets = await anyio.to_thread.run_sync(self.follow_sets, out.input, b,
                                                              centres, scores,
                                                              limiter=self.limiter)
                    for crop_set in sets:
                        await outbox.send(crop_set)

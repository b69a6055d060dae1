"""Frozen messages passed between stages (arrays inside are never mutated after sending), and
the plain data of what a run reads (the input plan)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec
import numpy as np
import sleap_io as sio

__all__ = (
    "CropBatch", "CropSet", "Frame", "FrameBatch", "FrameInfo", "FramePrediction", "HeadPeaks", "InputPlan",
    "ModelInput", "ModelOutput", "WorkItem",
)



class Frame(msgspec.Struct, frozen=True):
    """One decoded frame: ``image`` is (H, W, C) uint8."""

    seq: int
    video_id: int
    frame_idx: int
    image: Any
    #: Ground-truth instances ((n, N, 2) float, NaN = missing) for modes that need them.
    gt_points: Any = None
    #: Live sources only (None otherwise), wall-clock seconds (``time.time()``): when the
    #: camera took the frame (its stream timestamp mapped onto the wall clock) and when it
    #: was decoded here; ``pts`` is the stream timestamp itself, in seconds.
    capture_time: float | None = None
    arrival_time: float | None = None
    pts: float | None = None


class FrameInfo(msgspec.Struct, frozen=True):
    """Identity of a frame inside a batch, without its pixels."""

    seq: int
    video_id: int
    frame_idx: int
    height: int
    width: int
    #: The decoded frame, kept only when a later stage needs pixels (optical-flow tracking).
    image: Any = None
    #: A live frame's times, as on :class:`Frame` (None for files).
    capture_time: float | None = None
    arrival_time: float | None = None
    pts: float | None = None


class FrameBatch(msgspec.Struct, frozen=True):
    """Up to ``batch_size`` frames of one shape, in sequence order."""

    seq: int
    frames: tuple[Frame, ...]


class ModelInput(msgspec.Struct, frozen=True):
    """A preprocessed batch: ``tensor`` is uint8 (B, C, H, W), padded to the model's stride.

    ``eff_scale`` (B,) is the size matcher's scale; ``raw`` keeps the size-matched uint8 frames
    that the top-down crop step cuts from.
    """

    seq: int
    frames: tuple[FrameInfo, ...]
    tensor: Any
    eff_scale: Any
    raw: Any = None
    gt_points: tuple[Any, ...] | None = None


class HeadPeaks(msgspec.Struct, frozen=True):
    """One confidence-map head's peaks for a batch, found inside the runtime; host numpy arrays.

    Global (one per channel): ``points`` (B, C, 2) float32, NaN below the threshold, ``vals``
    (B, C). Local: ``points`` (B, C, K, 2), ``vals``/``valid``/``index`` (B, C, K), highest
    first, ``index`` the peak's raster position ``y * W + x`` in the map, ``counts`` (B, C) the
    local peaks each channel had. Points are already in the units the peak stage works in (see
    :class:`sleapflow.backends.fused.PeakHead`).
    """

    points: Any
    vals: Any
    valid: Any = None
    index: Any = None
    counts: Any = None


class ModelOutput(msgspec.Struct, frozen=True):
    """Head outputs of one batch, still on the model's device, with the input they came from.

    Which form a head arrives in is fixed when the graph is built: as maps in ``heads``, or,
    when the runtime runs the peak finding itself (a fused ONNX / TensorRT export), as
    :class:`HeadPeaks` in ``peaks`` (that head is then absent from ``heads``). A batch whose
    peaks overflowed the fused top-k comes as maps only (``peaks`` None).
    """

    seq: int
    heads: dict[str, Any]
    input: Any
    peaks: dict[str, HeadPeaks] | None = None

    def head_peaks(self, head: str) -> HeadPeaks | None:
        """``head``'s peaks when the runtime found them, else None (read its maps)."""
        return None if self.peaks is None else self.peaks.get(head)

    @property
    def frames(self) -> tuple[FrameInfo, ...]:
        return self.input.frames

    @property
    def eff_scale(self) -> Any:
        return self.input.eff_scale


class CropSet(msgspec.Struct, frozen=True):
    """The instance crops of one frame (top-down), cut from its size-matched pixels.

    ``centroids`` (I, 2) / ``centroid_vals`` (I,) are every centroid slot in original pixels
    (NaN-padded); ``slots`` (n,) says which slot each of the n crops belongs to; ``offsets``
    (n, 2) is each crop's float top-left in size-matched pixels, added back to its keypoints.
    """

    seq: int
    frame: FrameInfo
    eff_scale: float
    centroids: Any
    centroid_vals: Any
    crops: Any
    slots: Any
    offsets: Any
    #: The frame's centroid confidence map, kept only for raw (``make_labels=False``) output.
    centroid_map: Any = None
    #: False for all but the last part of a frame whose crops travel in several parts
    #: (:data:`sleapflow.ops.caps.MAX_CROPS_PER_PART`); the parts are re-joined after the model.
    last: bool = True

    @property
    def n_crops(self) -> int:
        return int(self.crops.shape[0])


class CropBatch(msgspec.Struct, frozen=True):
    """Crops of several frames stacked for one forward pass; ``tensor`` is preprocessed uint8."""

    seq: int
    sets: tuple[CropSet, ...]
    tensor: Any

    @property
    def frames(self) -> tuple[FrameInfo, ...]:
        return tuple(s.frame for s in self.sets)


class FramePrediction(msgspec.Struct, frozen=True):
    """Everything predicted for one frame, in original-image pixels, on the host.

    ``points`` (I, N, 2) with NaN for missing nodes, ``point_scores`` (I, N), ``instance_scores``
    (I,). ``track_names`` / ``tracking_scores`` are set by identity models and by the tracker.
    """

    seq: int
    video_id: int
    frame_idx: int
    points: Any
    point_scores: Any
    instance_scores: Any
    track_names: tuple[str | None, ...] | None = None
    tracking_scores: Any = None
    centroids: Any = None
    centroid_scores: Any = None
    image: Any = None
    #: True for one-node centroid instances (centroid-only mode on input without ground truth).
    centroid_only: bool = False
    raw: dict[str, Any] | None = None
    #: Track-only runs: the sio instances the arrays were stacked from, one per instance row,
    #: whether each is a user instance, and instances passed through untouched (listed first).
    source_instances: tuple[Any, ...] | None = None
    is_user: Any = None
    untouched: tuple[Any, ...] = ()
    #: A live frame's times (as on :class:`Frame`), and when its poses were ready (set as the
    #: prediction leaves the graph for the writer and any publisher); None for files.
    capture_time: float | None = None
    arrival_time: float | None = None
    pts: float | None = None
    result_time: float | None = None
    #: (I, D) float32 appearance (re-ID) vectors from an embedding model, NaN rows for instances
    #: it could not crop; None when the run has no embedding model.
    embeddings: Any = None

    _PER_INSTANCE = ("points", "point_scores", "instance_scores", "tracking_scores", "centroids",
                     "centroid_scores", "is_user", "embeddings")

    @classmethod
    def of(cls, info: FrameInfo, **fields: Any) -> FramePrediction:
        """A prediction for the frame ``info`` describes (its image rides along if kept)."""
        return cls(seq=info.seq, video_id=info.video_id, frame_idx=info.frame_idx,
                   image=info.image, capture_time=info.capture_time,
                   arrival_time=info.arrival_time, pts=info.pts, **fields)

    @property
    def n_instances(self) -> int:
        return int(self.points.shape[0])

    def subset(self, indices: Any, **changes: Any) -> FramePrediction:
        """The instances at ``indices`` (in that order), every per-instance field kept aligned."""
        import numpy as np

        idx = np.asarray(indices, dtype=np.int64)
        fields: dict[str, Any] = {}
        for name in self._PER_INSTANCE:
            value = getattr(self, name)
            fields[name] = None if value is None else np.asarray(value)[idx]
        if self.track_names is not None:
            fields["track_names"] = tuple(self.track_names[i] for i in idx.tolist())
        if self.source_instances is not None:
            fields["source_instances"] = tuple(self.source_instances[i] for i in idx.tolist())
        fields.update(changes)
        return msgspec.structs.replace(self, **fields)


# What a run reads: the planned frames and the videos they come from (plain data).
@dataclass(frozen=True)
class WorkItem:
    """One frame to process: which video, which index, and ground truth when a mode needs it."""

    video_id: int
    frame_idx: int
    gt_points: np.ndarray | None = None


@dataclass
class InputPlan:
    """What a run reads: the videos (for the output file), the frames, and the source labels.

    ``source_path`` is the path the user gave (None for in-memory inputs); ``video_index`` is set
    when a single video of a ``.slp`` was selected (it names the default output file).
    """

    kind: str  # "video", "slp", "hdf5", "images"
    source_path: str | None
    videos: list[sio.Video]
    items: Sequence[WorkItem]
    labels: sio.Labels | None = None
    frame_selection_method: str = "all"
    video_index: int | None = None
    video_readers: dict[int, Any] = field(default_factory=dict)

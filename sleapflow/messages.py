"""Frozen messages passed between stages; arrays inside are never mutated after sending."""

from __future__ import annotations

from typing import Any

import msgspec


class Frame(msgspec.Struct, frozen=True):
    """One decoded frame: ``image`` is (H, W, C) uint8."""

    seq: int
    video_id: int
    frame_idx: int
    image: Any
    #: Ground-truth instances ((n, N, 2) float, NaN = missing) for modes that need them.
    gt_points: Any = None


class FrameInfo(msgspec.Struct, frozen=True):
    """Identity of a frame inside a batch, without its pixels."""

    seq: int
    video_id: int
    frame_idx: int
    height: int
    width: int


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


class ModelOutput(msgspec.Struct, frozen=True):
    """Head outputs of one batch, still on the model's device."""

    seq: int
    frames: tuple[FrameInfo, ...]
    heads: dict[str, Any]
    eff_scale: Any
    raw: Any = None
    extra: dict[str, Any] = msgspec.field(default_factory=dict)


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

"""Preprocessing stage functions: batches of frames → model-ready uint8 tensors."""

from __future__ import annotations

import msgspec
import numpy as np

from sleapflow.messages import FrameBatch, FrameInfo, ModelInput
from sleapflow.ops import preprocess as ops

__all__ = ("PreprocessPlan", "Preprocessor", "frame_shape_key", "make_frame_batch",
           "network_input_size")



class PreprocessPlan(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The resolved preprocessing of one model (training config + user overrides)."""

    ensure_rgb: bool = False
    ensure_grayscale: bool = False
    max_height: int | None = None
    max_width: int | None = None
    scale: float = 1.0
    max_stride: int = 1


def network_input_size(plan: PreprocessPlan, height: int, width: int) -> tuple[int, int]:
    """The (height, width) a ``height`` x ``width`` frame has when it reaches the network under
    ``plan`` (the size match to max_height/max_width, then the input scale), computed without
    touching a pixel: what :class:`Preprocessor` will allocate."""
    target_h, target_w = plan.max_height or height, plan.max_width or width
    if (plan.max_height or plan.max_width) and (height, width) != (target_h, target_w):
        ratio = min(target_h / height, target_w / width)
        height = max(target_h, round(height * ratio))
        width = max(target_w, round(width * ratio))
    if plan.scale != 1.0:
        height, width = int(height * plan.scale), int(width * plan.scale)
    return height, width


def make_frame_batch(seq: int, frames: list) -> FrameBatch:
    return FrameBatch(seq=seq, frames=tuple(frames))


def frame_shape_key(frame: object) -> tuple[int, ...]:
    """Frames of different shapes never share a batch."""
    return tuple(frame.image.shape)  # type: ignore[attr-defined]


class Preprocessor:
    """Channels → size matcher → input scale → stride padding, all on uint8, as the reference.

    With ``keep_raw`` the size-matched frames (before scaling) ride along for the crop step.
    """

    def __init__(self, plan: PreprocessPlan, *, keep_raw: bool = False,
                 keep_images: bool = False) -> None:
        self.plan = plan
        self.keep_raw = keep_raw
        self.keep_images = keep_images

    def __call__(self, batch: FrameBatch) -> ModelInput:
        plan = self.plan
        images = [f.image for f in batch.frames]
        x = ops.frames_to_tensor(images)
        infos = tuple(FrameInfo(seq=f.seq, video_id=f.video_id, frame_idx=f.frame_idx,
                                height=f.image.shape[0], width=f.image.shape[1],
                                image=f.image if self.keep_images else None,
                                capture_time=f.capture_time, arrival_time=f.arrival_time,
                                pts=f.pts)
                      for f in batch.frames)
        raw = x
        x = ops.ensure_channels(x, ensure_rgb=plan.ensure_rgb, ensure_grayscale=plan.ensure_grayscale)
        x, eff = ops.size_match(x, plan.max_height, plan.max_width)
        if self.keep_raw:
            raw, _ = ops.size_match(raw, plan.max_height, plan.max_width)
        x = ops.apply_input_scale(x, plan.scale)
        x = ops.pad_to_stride(x, plan.max_stride)
        gt = tuple(f.gt_points for f in batch.frames)
        return ModelInput(seq=batch.seq, frames=infos, tensor=x.contiguous(),
                          eff_scale=np.full(len(infos), eff, dtype=np.float64),
                          raw=raw if self.keep_raw else None,
                          gt_points=gt if any(g is not None for g in gt) else None)

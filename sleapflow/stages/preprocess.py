"""Preprocessing stage functions: batches of frames → model-ready uint8 tensors."""

from __future__ import annotations

from typing import Any

import msgspec
import numpy as np

from sleapflow.messages import FrameBatch, FrameInfo, ModelInput
from sleapflow.ops import host_resize
from sleapflow.ops import preprocess as ops

__all__ = ("NUMPY_RESIZE_BUDGET", "PreprocessPlan", "Preprocessor", "fitted_size", "frame_shape_key",
           "make_frame_batch", "network_input_size")



#: Input values (pixels x channels) the numpy resize may handle in one preprocessor before
#: torch's kernel takes over. The numpy kernel costs at most ~2 ms per million values more than
#: torch's (3-channel halving of channels-last frames; on par for grayscale), so importing torch
#: (1.3-1.7 s, once) pays off only after ~700 million; half that, for margin: 300 million
#: (~560 frames of 3 x 320 x 560, 300 frames of 1024 x 1024). See benchmarks/bench_resize.py.
NUMPY_RESIZE_BUDGET = 300_000_000


class PreprocessPlan(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The resolved preprocessing of one model (training config + user overrides)."""

    ensure_rgb: bool = False
    ensure_grayscale: bool = False
    max_height: int | None = None
    max_width: int | None = None
    scale: float = 1.0
    max_stride: int = 1

    @property
    def may_use_torch(self) -> bool:
        """Whether some frame may go through torch's kernels on the numpy path: a resize (an
        input scale, or a size match: a size of 0 or None is none) or a grayscale conversion.
        A plan without either never needs torch there."""
        return (self.scale != 1.0 or bool(self.max_height or self.max_width)
                or self.ensure_grayscale)


def fitted_size(plan: PreprocessPlan, height: int, width: int) -> tuple[int, int]:
    """The size a ``height`` x ``width`` frame is resized to before the size match pads it to
    max_height x max_width (unchanged when no size match applies)."""
    target_h, target_w = plan.max_height or height, plan.max_width or width
    if (plan.max_height or plan.max_width) and (height, width) != (target_h, target_w):
        ratio = min(target_h / height, target_w / width)
        return round(height * ratio), round(width * ratio)
    return height, width


def network_input_size(plan: PreprocessPlan, height: int, width: int) -> tuple[int, int]:
    """The (height, width) a ``height`` x ``width`` frame has when it reaches the network under
    ``plan`` (the size match to max_height/max_width, then the input scale), computed without
    touching a pixel: what :class:`Preprocessor` will allocate."""
    fit_h, fit_w = fitted_size(plan, height, width)
    # The size match pads the fitted frame up to max_height x max_width.
    height, width = max(plan.max_height or height, fit_h), max(plan.max_width or width, fit_w)
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
                 keep_images: bool = False, numpy: bool = False,
                 numpy_resize_budget: int | None = None, resize_threads: int | None = None) -> None:
        self.plan = plan
        #: With ``numpy``: torch's thread count (process-wide) from the first time its kernels
        #: run here, when torch runs nothing else beside them (ONNX Runtime runs the network).
        #: Set at first use, so it comes after every stage's set-up (loading a torch model for
        #: an export or the crop recheck sets the network's count).
        self.resize_threads = resize_threads
        #: Pixels the numpy resize takes before torch's kernel does (None:
        #: :data:`NUMPY_RESIZE_BUDGET`; 0: torch's from the first frame).
        self.numpy_resize_budget = (NUMPY_RESIZE_BUDGET if numpy_resize_budget is None
                                    else numpy_resize_budget)
        self.keep_raw = keep_raw
        self.keep_images = keep_images
        #: Emit numpy arrays (ONNX Runtime on the CPU) instead of torch tensors.
        self.numpy = numpy
        #: Pixels resized by the numpy kernel so far (see NUMPY_RESIZE_BUDGET).
        self._resized = 0

    def _tensors(self, images: list[np.ndarray]) -> tuple[Any, Any, float]:
        plan = self.plan
        x = ops.frames_to_tensor(images)
        raw = x
        x = ops.ensure_channels(x, ensure_rgb=plan.ensure_rgb, ensure_grayscale=plan.ensure_grayscale)
        x, eff = ops.size_match(x, plan.max_height, plan.max_width)
        if self.keep_raw:
            raw, _ = ops.size_match(raw, plan.max_height, plan.max_width)
        x = ops.apply_input_scale(x, plan.scale)
        x = ops.pad_to_stride(x, plan.max_stride)
        return x.contiguous(), raw, eff

    def _arrays(self, images: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray | None, float]:
        """The same steps on numpy arrays, bit for bit. A resize uses the numpy copy of torch's
        kernel until :data:`NUMPY_RESIZE_BUDGET` pixels went through it (a short run never
        imports torch); after that, and for a grayscale conversion, torch's kernels run (the
        import is then repaid by their speed) and the result comes back as numpy."""
        plan = self.plan
        arr = np.stack(images)
        if arr.ndim == 3:
            arr = arr[..., None]
        height, width, channels = arr.shape[1], arr.shape[2], arr.shape[3]
        to_rgb = plan.ensure_rgb and channels != 3
        to_gray = not to_rgb and plan.ensure_grayscale and channels != 1
        target_h, target_w = plan.max_height or height, plan.max_width or width
        fitted, eff = (height, width), 1.0
        if (plan.max_height or plan.max_width) and (height, width) != (target_h, target_w):
            eff = min(target_h / height, target_w / width)
            fitted = (round(height * eff), round(width * eff))
            target_h, target_w = max(target_h, fitted[0]), max(target_w, fitted[1])
        resizes = fitted != (height, width) or plan.scale != 1.0
        if to_gray or (resizes and self._resized >= self.numpy_resize_budget):
            if self.resize_threads is not None:
                import torch

                torch.set_num_threads(self.resize_threads)
                self.resize_threads = None
            tensor, raw, eff = self._tensors(images)
            return tensor.numpy(), raw.contiguous().numpy() if self.keep_raw else None, eff
        if resizes:
            self._resized += arr.size
        x = arr.transpose(0, 3, 1, 2)
        if to_rgb:
            x = np.tile(x, (1, 3, 1, 1))
        x = self._fit(x, fitted, (target_h, target_w))
        raw = self._fit(arr.transpose(0, 3, 1, 2), fitted, (target_h, target_w)) \
            if self.keep_raw else None
        if plan.scale != 1.0:
            x = host_resize.resize_uint8(x, (int(x.shape[2] * plan.scale), int(x.shape[3] * plan.scale)))
        stride = plan.max_stride
        pad_h, pad_w = (-x.shape[2]) % stride, (-x.shape[3]) % stride
        if pad_h or pad_w:
            x = np.pad(x, ((0, 0), (0, 0), (0, pad_h), (0, pad_w)))
        return np.ascontiguousarray(x), raw, eff

    @staticmethod
    def _fit(x: np.ndarray, fitted: tuple[int, int], target: tuple[int, int]) -> np.ndarray:
        """size_match's resize to ``fitted`` and zero padding (bottom, right) to ``target``."""
        x = host_resize.resize_uint8(x, fitted) if tuple(x.shape[2:]) != fitted else x
        pad_h, pad_w = target[0] - x.shape[2], target[1] - x.shape[3]
        if pad_h or pad_w:
            x = np.pad(x, ((0, 0), (0, 0), (0, pad_h), (0, pad_w)))
        return x

    def __call__(self, batch: FrameBatch) -> ModelInput:
        images = [f.image for f in batch.frames]
        infos = tuple(FrameInfo(seq=f.seq, video_id=f.video_id, frame_idx=f.frame_idx,
                                height=f.image.shape[0], width=f.image.shape[1],
                                image=f.image if self.keep_images else None,
                                capture_time=f.capture_time, arrival_time=f.arrival_time,
                                pts=f.pts)
                      for f in batch.frames)
        x, raw, eff = (self._arrays if self.numpy else self._tensors)(images)
        gt = tuple(f.gt_points for f in batch.frames)
        return ModelInput(seq=batch.seq, frames=infos, tensor=x,
                          eff_scale=np.full(len(infos), eff, dtype=np.float64),
                          raw=raw if self.keep_raw else None,
                          gt_points=gt if any(g is not None for g in gt) else None)

"""Frozen msgspec configs for every inference option; the one place user input is validated."""

from __future__ import annotations

import re
from typing import Any, Literal

import msgspec
import torch

from sleapflow.errors import ConfigError
from sleapflow.tracking.config import TrackerConfig

Refinement = Literal["integral"] | None


class InferenceConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Every option of ``sleapflow track`` / ``run_inference``, with sleap-nn's defaults."""

    data_path: str | None = None
    model_paths: tuple[str, ...] = ()
    output_path: str | None = None
    device: str = "auto"
    batch_size: int = 4
    queue_maxsize: int = 32
    peak_threshold: float | tuple[float, float] = 0.2
    integral_refinement: str | None = "integral"
    integral_patch_size: int = 5
    max_instances: int | None = None
    # Preprocessing overrides; None falls back to the training config.
    max_height: int | None = None
    max_width: int | None = None
    input_scale: float | None = None
    ensure_rgb: bool | None = None
    ensure_grayscale: bool | None = None
    crop_size: int | None = None
    anchor_part: str | None = None
    backbone_ckpt_path: str | None = None
    head_ckpt_path: str | None = None
    # Input selection.
    frames: tuple[int, ...] | None = None
    video_index: int | None = None
    video_dataset: str | None = None
    video_input_format: str = "channels_last"
    only_labeled_frames: bool = False
    only_suggested_frames: bool = False
    exclude_user_labeled: bool = False
    only_predicted_frames: bool = False
    no_empty_frames: bool = False
    # Bottom-up grouping.
    max_edge_length_ratio: float = 0.25
    dist_penalty_weight: float = 1.0
    n_points: int = 10
    min_instance_peaks: float = 0
    min_line_scores: float = 0.25
    # Post-filters.
    filter_overlapping: bool = False
    filter_overlapping_method: str = "iou"
    filter_overlapping_threshold: float = 0.8
    filter_min_visible_nodes: int = 0
    filter_min_visible_node_fraction: float = 0.0
    filter_min_mean_node_score: float = 0.0
    filter_min_instance_score: float = 0.0
    # Tracking.
    tracking: bool = False
    tracker: TrackerConfig = msgspec.field(default_factory=TrackerConfig)
    # Runtime.
    graph: str | None = None
    postprocess_workers: int = 1
    torch_threads: int | None = None
    #: Batches each model computes at once on the CPU (default: an equal share of the cores).
    forward_workers: int | None = None
    #: Faster CPU convolutions in channels-last memory; not bit-identical to the reference.
    channels_last: bool = False
    #: Network runtime: auto, torch, onnx or tensorrt (see sleapflow.runtimes).
    runtime: str = "auto"
    #: fp32, or fp16/bf16 on CUDA (torch autocast, or TensorRT's fp16).
    precision: str = "fp32"

    def __post_init__(self) -> None:
        _check_positive("batch_size", self.batch_size)
        _check_positive("queue_maxsize", self.queue_maxsize)
        _check_positive("integral_patch_size", self.integral_patch_size)
        _check_positive("n_points", self.n_points)
        _check_positive("postprocess_workers", self.postprocess_workers)
        if self.max_instances is not None:
            _check_positive("max_instances", self.max_instances)
        for name in ("max_height", "max_width", "crop_size"):
            value = getattr(self, name)
            if value is not None:
                _check_positive(name, value)
        if self.input_scale is not None and not self.input_scale > 0:
            raise ConfigError(f"--input_scale must be > 0 (got {self.input_scale})")
        if self.integral_refinement not in ("integral", None):
            raise ConfigError(
                f"--integral_refinement must be 'integral' or 'none' (got {self.integral_refinement!r})"
            )
        if self.filter_overlapping_method not in ("iou", "oks"):
            raise ConfigError(
                "--filter_overlapping_method must be 'iou' or 'oks' "
                f"(got {self.filter_overlapping_method!r})"
            )
        if self.video_input_format not in ("channels_last", "channels_first"):
            raise ConfigError(
                "--video_input_format must be 'channels_last' or 'channels_first' "
                f"(got {self.video_input_format!r})"
            )
        if self.ensure_rgb and self.ensure_grayscale:
            raise ConfigError("--ensure_rgb and --ensure_grayscale cannot both be set")
        if self.only_labeled_frames and self.exclude_user_labeled:
            raise ConfigError(
                "--only_labeled_frames and --exclude_user_labeled are mutually exclusive "
                "(together they select no frames)"
            )
        resolve_device(self.device)
        from sleapflow.runtimes.select import PRECISIONS, RUNTIMES

        if self.runtime not in RUNTIMES:
            raise ConfigError(f"--runtime must be one of {', '.join(RUNTIMES)} (got {self.runtime!r})")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"--precision must be one of {', '.join(PRECISIONS)} "
                              f"(got {self.precision!r})")

    @property
    def centroid_threshold(self) -> float:
        pt = self.peak_threshold
        return float(pt[0]) if isinstance(pt, tuple) else float(pt)

    @property
    def instance_threshold(self) -> float:
        pt = self.peak_threshold
        return float(pt[1]) if isinstance(pt, tuple) else float(pt)

    def to_dict(self) -> dict[str, Any]:
        return msgspec.to_builtins(self)


def _check_positive(name: str, value: int) -> None:
    if isinstance(value, bool) or value < 1:
        raise ConfigError(f"--{name} must be a positive integer (got {value!r})")


_RANGE = re.compile(r"^\s*(\d+)\s*-\s*(\d+)\s*$")
_SINGLE = re.compile(r"^\s*(\d+)\s*$")


def parse_frames(text: str | None) -> tuple[int, ...] | None:
    """Parse ``"0-100,200-300"`` / ``"1,5,9"`` / ``"3-7,12"``: inclusive ranges and single indices.

    An empty string means every frame. Order is kept here; input planning drops repeats (a frame
    is predicted once) and frames the video does not have.
    """
    if text is None or not text.strip():
        return None
    frames: list[int] = []
    for part in text.split(","):
        if not part.strip():
            continue
        if match := _RANGE.match(part):
            start, end = int(match[1]), int(match[2])
            if end < start:
                raise ConfigError(f"--frames: range {part.strip()!r} ends before it starts")
            frames.extend(range(start, end + 1))
        elif match := _SINGLE.match(part):
            frames.append(int(match[1]))
        else:
            raise ConfigError(
                f"--frames: cannot parse {part.strip()!r} in {text!r}; use comma-separated frame "
                "indices and inclusive ranges, e.g. '0-100,200-300' or '1,5,9'"
            )
    if not frames:
        raise ConfigError(f"--frames: {text!r} selects no frames")
    return tuple(frames)


def resolve_device(device: str) -> str:
    """``auto`` → cuda, mps or cpu; otherwise check the device exists here."""
    if device == "auto":
        if torch.cuda.is_available():
            return "cuda"
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return "mps"
        return "cpu"
    match = re.fullmatch(r"(cpu|cuda|mps)(:(\d+))?", device)
    if not match:
        raise ConfigError(f"--device: unknown device {device!r}; use auto, cpu, cuda, cuda:N or mps")
    kind = match[1]
    if kind == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"--device {device}: CUDA is not available on this machine; use cpu")
        if match[3] is not None and int(match[3]) >= torch.cuda.device_count():
            raise ConfigError(f"--device {device}: only {torch.cuda.device_count()} CUDA device(s)")
    if kind == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise ConfigError(f"--device {device}: MPS is not available on this machine; use cpu")
    return device

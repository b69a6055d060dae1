"""Frozen msgspec configs for every inference option, and the sub-configs each part reads.

No torch and no tracker here: this module is imported by everything that takes options.
"""

from __future__ import annotations

import re
from typing import Any, Literal

import msgspec

from sleapflow.errors import ConfigError
from sleapflow.options.frames import parse_frames as _parse_frames
from sleapflow.options.tracker import TrackerConfig
from sleapflow.options.validation import check_numbers

__all__ = (
    "PRECISIONS", "RUNTIMES", "ExecutionOptions", "FilterOptions", "GroupingOptions", "InferenceConfig",
    "InputOptions", "OutputOptions", "PeakOptions", "PreprocessingOptions", "Refinement", "TrackingOptions",
    "parse_frames",
)


#: What ``--runtime`` and ``--precision`` accept (sleapflow.backends.select resolves them).
RUNTIMES = ("auto", "torch", "onnx", "tensorrt")
PRECISIONS = ("fp32", "fp16", "bf16")

#: ``auto``, or a device kind with an optional index; whether it exists here is checked when a
#: run is prepared (:func:`sleapflow.backends.device.resolve_device`), which needs torch.
_DEVICE = re.compile(r"auto|(cpu|cuda|mps)(:\d+)?")

Refinement = Literal["integral"] | None


# --------------------------------------------------------------------------------------------
# Sub-configs: what each part of the system reads. InferenceConfig keeps the flat option names
# users type; each builder takes the one view it needs (cfg.preprocessing, cfg.filters, ...).
# --------------------------------------------------------------------------------------------


class _Sub(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    @classmethod
    def of(cls, cfg: Any) -> Any:
        return cls(**{name: getattr(cfg, name) for name in cls.__struct_fields__})


class InputOptions(_Sub, frozen=True, kw_only=True):
    """Which frames of which input are read (input planning). Several inputs per call would be
    one more plain field here (a tuple of paths) beside ``data_path``."""

    data_path: str | None
    #: Several inputs in one run (videos, in order); each gets its own output.
    inputs: tuple[str, ...]
    #: ``(I, N)``: the I-th of N slices of ``inputs``, or of the frames of a single input.
    shard: tuple[int, int] | None
    #: Frame indices and inclusive ``(start, end)`` ranges (:mod:`sleapflow.options.frames`).
    frames: tuple[int | tuple[int, int], ...] | None
    video_index: int | None
    video_dataset: str | None
    video_input_format: str
    only_labeled_frames: bool
    only_suggested_frames: bool
    exclude_user_labeled: bool
    only_predicted_frames: bool
    #: Frames that may fail to decode (corrupt packets) before the run fails; None: no limit.
    max_failed_frames: int | None


class PreprocessingOptions(_Sub, frozen=True, kw_only=True):
    """Overrides of the models' preprocessing and crops; None falls back to the training config."""

    max_height: int | None
    max_width: int | None
    input_scale: float | None
    ensure_rgb: bool | None
    ensure_grayscale: bool | None
    crop_size: int | None
    anchor_part: str | None


class PeakOptions(_Sub, frozen=True, kw_only=True):
    """Peak finding on confidence maps."""

    peak_threshold: float | tuple[float, float]
    integral_refinement: str | None
    integral_patch_size: int
    max_instances: int | None

    @property
    def centroid_threshold(self) -> float:
        pt = self.peak_threshold
        return float(pt[0]) if isinstance(pt, tuple) else float(pt)

    @property
    def instance_threshold(self) -> float:
        pt = self.peak_threshold
        return float(pt[1]) if isinstance(pt, tuple) else float(pt)


class GroupingOptions(_Sub, frozen=True, kw_only=True):
    """Bottom-up grouping with part affinity fields."""

    max_edge_length_ratio: float
    dist_penalty_weight: float
    n_points: int
    min_instance_peaks: float
    min_line_scores: float


class FilterOptions(_Sub, frozen=True, kw_only=True):
    """The post-inference instance filters."""

    filter_overlapping: bool
    filter_overlapping_method: Literal["iou", "oks"]
    filter_overlapping_threshold: float
    filter_min_visible_nodes: int
    filter_min_visible_node_fraction: float
    filter_min_mean_node_score: float
    filter_min_instance_score: float


class TrackingOptions(_Sub, frozen=True, kw_only=True):
    """Whether to track, and the tracker's own options."""

    tracking: bool
    tracker: TrackerConfig


class OutputOptions(_Sub, frozen=True, kw_only=True):
    """Where the labels go and what they keep."""

    output_path: str | None
    no_empty_frames: bool
    skip_existing: bool
    #: Continue an interrupted single-output run from its journal beside the output.
    resume: bool


class ExecutionOptions(_Sub, frozen=True, kw_only=True):
    """What runs and how: the models and weight overrides, device, batching, queues, parallelism.

    ``runtime``/``precision`` choose what runs the network (torch, ONNX Runtime, TensorRT);
    :func:`sleapflow.graphs.build.prepare` resolves them per device into the forward stage.
    """

    model_paths: tuple[str, ...]
    device: str
    batch_size: int
    queue_maxsize: int
    graph: str | None
    postprocess_workers: int
    torch_threads: int | None
    forward_workers: int | None
    channels_last: bool
    backbone_ckpt_path: str | None
    head_ckpt_path: str | None
    max_batch_delay_ms: float | None
    #: Network runtime: auto, torch, onnx or tensorrt (resolved per device in graphs.build).
    runtime: str
    #: fp32, or fp16/bf16 on CUDA.
    precision: str


class InferenceConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Every option of ``sleapflow track`` / ``run_inference``, with sleap-nn's defaults."""

    data_path: str | None = None
    inputs: tuple[str, ...] = ()
    shard: tuple[int, int] | None = None
    #: Many-input runs: leave a video whose output exists and is complete alone.
    skip_existing: bool = False
    #: Continue an interrupted run of the same command from its journal (one output only).
    resume: bool = False
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
    # Input selection: frame indices and inclusive (start, end) ranges (see frame_ranges).
    frames: tuple[int | tuple[int, int], ...] | None = None
    video_index: int | None = None
    video_dataset: str | None = None
    video_input_format: str = "channels_last"
    only_labeled_frames: bool = False
    only_suggested_frames: bool = False
    exclude_user_labeled: bool = False
    only_predicted_frames: bool = False
    no_empty_frames: bool = False
    #: Frames that may fail to decode (corrupt packets) before the run fails; None: no limit.
    max_failed_frames: int | None = None
    # Bottom-up grouping.
    max_edge_length_ratio: float = 0.25
    dist_penalty_weight: float = 1.0
    n_points: int = 10
    min_instance_peaks: float = 0
    min_line_scores: float = 0.25
    # Post-filters.
    filter_overlapping: bool = False
    filter_overlapping_method: Literal["iou", "oks"] = "iou"
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
    #: Longest a batch waits for more frames after its first one, in ms; None waits until the
    #: batch is full or the input ends (files), a server needs a bound (pushed frames trickle).
    max_batch_delay_ms: float | None = None
    #: Network runtime: auto, torch, onnx or tensorrt (see sleapflow.backends).
    runtime: str = "auto"
    #: fp32, or fp16/bf16 on CUDA (torch autocast, or TensorRT's fp16).
    precision: str = "fp32"

    def __post_init__(self) -> None:
        check_numbers(self)
        _check_positive("batch_size", self.batch_size)
        _check_positive("queue_maxsize", self.queue_maxsize)
        _check_positive("integral_patch_size", self.integral_patch_size)
        _check_positive("n_points", self.n_points)
        _check_positive("postprocess_workers", self.postprocess_workers)
        if self.max_instances is not None:
            _check_positive("max_instances", self.max_instances)
        if self.max_failed_frames is not None and self.max_failed_frames < 0:
            raise ConfigError(f"--max_failed_frames must be >= 0 (got {self.max_failed_frames})")
        for name in ("max_height", "max_width", "crop_size"):
            value = getattr(self, name)
            if value is not None:
                _check_positive(name, value)
        if self.max_batch_delay_ms is not None and not self.max_batch_delay_ms >= 0:
            raise ConfigError(f"--max_batch_delay_ms must be >= 0 (got {self.max_batch_delay_ms})")
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
        if not _DEVICE.fullmatch(self.device):
            raise ConfigError(f"--device: unknown device {self.device!r}; use auto, cpu, cuda, "
                              "cuda:N or mps")
        if self.runtime not in RUNTIMES:
            raise ConfigError(f"--runtime must be one of {', '.join(RUNTIMES)} (got {self.runtime!r})")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"--precision must be one of {', '.join(PRECISIONS)} "
                              f"(got {self.precision!r})")

    @property
    def centroid_threshold(self) -> float:
        return self.peaks.centroid_threshold

    @property
    def instance_threshold(self) -> float:
        return self.peaks.instance_threshold

    # The sub-configs: each part of the system reads the one it needs.

    @property
    def input(self) -> InputOptions:
        return InputOptions.of(self)

    @property
    def preprocessing(self) -> PreprocessingOptions:
        return PreprocessingOptions.of(self)

    @property
    def peaks(self) -> PeakOptions:
        return PeakOptions.of(self)

    @property
    def grouping(self) -> GroupingOptions:
        return GroupingOptions.of(self)

    @property
    def filters(self) -> FilterOptions:
        return FilterOptions.of(self)

    @property
    def tracking_options(self) -> TrackingOptions:
        return TrackingOptions.of(self)

    @property
    def output(self) -> OutputOptions:
        return OutputOptions.of(self)

    @property
    def execution(self) -> ExecutionOptions:
        return ExecutionOptions.of(self)

    def to_dict(self) -> dict[str, Any]:
        return msgspec.to_builtins(self)


def _check_positive(name: str, value: int) -> None:
    if isinstance(value, bool) or value < 1:
        raise ConfigError(f"--{name} must be a positive integer (got {value!r})")


def parse_frames(text: str | None) -> tuple[int | tuple[int, int], ...] | None:
    """``--frames`` text → indices and inclusive ranges; see :func:`sleapflow.options.frames.parse_frames`."""
    return _parse_frames(text)

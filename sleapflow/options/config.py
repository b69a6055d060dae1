"""Frozen msgspec configs for every inference option (each declared once, here), and the sub-configs.

No torch and no tracker here: this module is imported by everything that takes options.
"""

import re
from typing import Annotated, Any, Literal, get_args

import msgspec

from sleapflow.errors import ConfigError
from sleapflow.options.frames import parse_frames as _parse_frames
from sleapflow.options.role import SLEAP_NN, SLEAPFLOW, TRACK_ONLY, Role
from sleapflow.options.spelling import opt
from sleapflow.options.tracker import TrackerConfig
from sleapflow.options.validation import check_numbers

# No ``from __future__ import annotations`` here: the fields' Annotated markers are then built
# once, when the class is, and every reader of the type hints sees the same objects.

__all__ = (
    "PRECISIONS", "RUNTIMES", "ExecutionOptions", "FilterOptions", "GroupingOptions", "InferenceConfig",
    "InputOptions", "OutputOptions", "OverlapMethod", "PeakOptions", "Precision", "PreprocessingOptions",
    "Refinement", "Runtime", "SaveEmbeddings", "TrackingOptions", "VideoLayout", "parse_frames",
)


#: What ``--runtime`` and ``--precision`` accept (sleapflow.backends.select resolves them).
Runtime = Literal["auto", "torch", "onnx", "tensorrt"]
Precision = Literal["fp32", "fp16", "bf16", "int8"]
RUNTIMES: tuple[str, ...] = get_args(Runtime)
PRECISIONS: tuple[str, ...] = get_args(Precision)
VideoLayout = Literal["channels_last", "channels_first"]
OverlapMethod = Literal["iou", "oks"]
SaveEmbeddings = Literal["none", "slp"]

#: ``auto``, or a device kind with an optional index; whether it exists here is checked when a
#: run is prepared (:func:`sleapflow.backends.device.resolve_device`), which needs torch.
_DEVICE = re.compile(r"auto|(cpu|cuda|mps)(:\d+)?")

#: ``"integral"`` or None (no refinement); the command line spells None ``none``.
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
    #: Live sources: latency mode (None: on for live sources), stop after ``duration`` seconds,
    #: end of stream after ``stream_timeout`` seconds without a frame.
    live: bool | None
    duration: float | None
    stream_timeout: float


class PreprocessingOptions(_Sub, frozen=True, kw_only=True):
    """Overrides of the models' preprocessing and crops; None falls back to the training config."""

    max_height: int | None
    max_width: int | None
    input_scale: float | None
    ensure_rgb: bool | None
    ensure_grayscale: bool | None
    crop_size: int | None
    anchor_part: str | None
    centroid_every: int


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
    #: Where each frame's poses are sent as they are made (sleapflow.outputs.publish).
    publish: tuple[str, ...]
    skip_existing: bool
    #: Continue an interrupted single-output run from its journal beside the output.
    resume: bool
    #: ``slp``: the embedding model's re-ID vectors are written on the output's instances.
    save_embeddings: str


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
    #: fp32, or fp16/bf16 on CUDA, or int8 (ONNX Runtime on the CPU).
    precision: str
    #: Find peaks on the host from whole maps, not inside the ONNX Runtime / TensorRT graph.
    host_peaks: bool
    #: int8: the video or .slp whose first frames calibrate the quantization (None: the run's own).
    calibration_frames: str | None


class InferenceConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Every option of ``sleapflow track`` / ``run_inference``, with sleap-nn's defaults.

    Each field is declared once, here: its type, default, command-line spelling and help
    (:func:`~sleapflow.options.spelling.opt`), and its :class:`~sleapflow.options.role.Role`. Every
    front end's options, the provenance record and the resume check are derived from these
    (:mod:`sleapflow.options.declared`). Fields are in sleap-nn ``run_inference``'s keyword
    order (its signature is derived from it); sleapflow's own options sit beside their kin.
    ``data_path``, ``inputs`` and ``tracker`` carry no marker: each front end names its input its
    own way, and the tracker's options are the :class:`TrackerConfig` fields, flat.
    """

    data_path: str | None = None
    #: Several inputs in one run (videos, in order); each gets its own output.
    inputs: tuple[str, ...] = ()
    shard: Annotated[tuple[int, int] | None, opt(
        "shard", help="I/N: only the I-th of N slices of the inputs (of the frames, for one video)."),
        Role("input", fronts=TRACK_ONLY, cli_type=str | None)] = None
    model_paths: Annotated[tuple[str, ...], opt(
        "model_paths", "-m", consume_multiple=True,
        help="A trained model folder (from SLEAP or sleap-nn training). Top-down needs two: give "
             "the centroid and the centered-instance model, in either order, as -m A -m B or "
             "-m A B. Leave out to only re-track an existing .slp."),
        Role("execution", fronts=SLEAP_NN | {"serve"}, defaults={"run_inference": None})] = ()
    backbone_ckpt_path: Annotated[str | None, opt(
        "backbone_ckpt_path", help="Take the backbone weights from this other checkpoint (.ckpt)."),
        Role("execution")] = None
    head_ckpt_path: Annotated[str | None, opt(
        "head_ckpt_path", help="Take the head weights from this other checkpoint (.ckpt)."),
        Role("execution")] = None
    max_instances: Annotated[int | None, opt(
        "max_instances", "-n", help="Keep at most this many animals per frame (the best scoring "
                                    "ones). Default: no limit."),
        Role("peaks", provenance=11, fronts=SLEAP_NN | {"serve"}, bounds=(1, 10_000))] = None
    max_width: Annotated[int | None, opt(
        "max_width", help="Pad or resize frames to this width before the network (default: the "
                          "model's training setting)."),
        Role("preprocessing", bounds=(1, 32_768))] = None
    max_height: Annotated[int | None, opt(
        "max_height", help="Pad or resize frames to this height before the network (default: the "
                           "model's training setting)."),
        Role("preprocessing", bounds=(1, 32_768))] = None
    ensure_rgb: Annotated[bool | None, opt(
        "ensure_rgb", negative=True, help="Convert frames to 3-channel colour before the network "
                                          "(default: as the model was trained)."),
        Role("preprocessing")] = None
    input_scale: Annotated[float | None, opt(
        "input_scale", help="Scale frames by this factor before the network (default: the model's "
                            "training setting)."),
        Role("preprocessing", provenance=13, bounds=(0.001, 100.0))] = None
    ensure_grayscale: Annotated[bool | None, opt(
        "ensure_grayscale", negative=True, help="Convert frames to 1-channel grayscale before the "
                                                "network (default: as the model was trained)."),
        Role("preprocessing")] = None
    anchor_part: Annotated[str | None, opt(
        "anchor_part", help="Top-down: the body part crops are centred on (default: the model's "
                            "anchor, or the middle of the animal's box)."),
        Role("preprocessing", provenance=14)] = None
    only_labeled_frames: Annotated[bool, opt(
        "only_labeled_frames", help="With a .slp input: only frames that have user labels."),
        Role("input")] = False
    only_suggested_frames: Annotated[bool, opt(
        "only_suggested_frames", help="With a .slp input: only the frames suggested for labeling."),
        Role("input")] = False
    exclude_user_labeled: Annotated[bool, opt(
        "exclude_user_labeled", help="With a .slp input: skip frames that already have user labels."),
        Role("input")] = False
    only_predicted_frames: Annotated[bool, opt(
        "only_predicted_frames", help="With a .slp input: only frames that already have "
                                      "predictions."),
        Role("input")] = False
    no_empty_frames: Annotated[bool, opt(
        "no_empty_frames", help="Leave frames where nothing was found out of the output."),
        Role("output")] = False
    #: Frames that may fail to decode (corrupt packets) before the run fails; None: no limit.
    max_failed_frames: Annotated[int | None, opt(
        "max_failed_frames", help="Fail when more frames than this cannot be decoded (default: "
                                  "skip them all, and report them)."),
        Role("input", changes_results=False, fronts=SLEAPFLOW, bounds=(0, None))] = None
    #: Latency mode: None is on for live sources (cameras, network streams, stdin) and off for
    #: files; with an http(s) URL, True also says the URL is a stream, not a file to download.
    live: Annotated[bool | None, opt(
        "live", negative=True, help="Latency mode for live sources (on by default for "
        "/dev/video*, rtsp/udp/tcp/srt URLs and -i -): frames the graph cannot take yet are "
        "dropped, oldest first, and counted; --no-live queues every frame instead. With an "
        "http(s) URL, either flag reads it as a stream instead of downloading a file."),
        Role("input", fronts=SLEAPFLOW)] = None
    #: A live source's run ends after this many seconds of stream (None: at its end or Ctrl-C).
    duration: Annotated[float | None, opt(
        "duration", help="Live sources: stop after this many seconds and write what was "
                         "predicted (default: at the end of the stream, or Ctrl-C)."),
        Role("input", fronts=SLEAPFLOW, bounds=(0.0, None))] = None
    #: A live stream that sends nothing for this long has ended (UDP has no end-of-stream).
    stream_timeout: Annotated[float, opt(
        "stream_timeout", help="Live sources: seconds without a frame after which the stream "
                               "counts as ended (UDP streams have no other end)."),
        Role("input", changes_results=False, fronts=SLEAPFLOW, bounds=(0.05, 86_400.0))] = 10.0
    batch_size: Annotated[int, opt(
        "batch_size", "-b", help="Frames sent through the network at once. Larger is faster on a "
                                 "GPU and uses more memory."),
        Role("execution", provenance=10, fronts=SLEAP_NN | {"serve"}, defaults={"serve": 8},
             bounds=(1, 4096))] = 4
    queue_maxsize: Annotated[int, opt(
        "queue_maxsize", help="Items each stage may hold waiting for the next one; bounds memory."),
        Role("execution", changes_results=False, provenance=15, fronts=SLEAP_NN | {"serve"},
             defaults={"serve": 16}, bounds=(1, 65_536))] = 32
    video_index: Annotated[int | None, opt(
        "video_index", help="With a multi-video .slp input: predict on this video only (0-based)."),
        Role("input", bounds=(0, None))] = None
    video_dataset: Annotated[str | None, opt(
        "video_dataset", help="With an HDF5 video input: the dataset that holds the frames."),
        Role("input")] = None
    video_input_format: Annotated[VideoLayout, opt(
        "video_input_format", help="With an HDF5 video input: the frames' layout, channels_last "
                                   "(frames, height, width, channels) or channels_first."),
        Role("input")] = "channels_last"
    #: Frame indices and inclusive ``(start, end)`` ranges (:mod:`sleapflow.options.frames`).
    frames: Annotated[tuple[int | tuple[int, int], ...] | None, opt(
        "frames", help="Which frames to predict, e.g. '0-100,200-300' or '1,5,9' (inclusive "
                       "ranges). Default: every frame. With a .slp input and no --video_index, "
                       "positions count labeled frames."),
        Role("input", cli_type=str | None)] = None
    crop_size: Annotated[int | None, opt(
        "crop_size", help="Top-down: side of the square crop around each animal, in pixels "
                          "(default: the model's training setting)."),
        Role("preprocessing", provenance=12, bounds=(1, 32_768))] = None
    #: Top-down: the centroid model runs on every K-th frame only; the frames between are
    #: cropped around the previous frame's poses (DLC-Live's skip-frames idea). Not in serve:
    #: its graph interleaves the frames of many streams, so "the previous frame" would be
    #: another client's.
    centroid_every: Annotated[int, opt(
        "centroid_every", help="Top-down: run the centroid model on every K-th frame only and "
                               "crop the frames between around the previous frame's poses. "
                               "K > 1 saves up to (K-1)/K of the centroid model's time, but an "
                               "animal that enters, or that a crop loses, is found only at the "
                               "next K-th frame, and frames between are predicted one after "
                               "another (no batching of their crops). 1 = off."),
        Role("preprocessing", fronts=SLEAPFLOW, bounds=(1, 10_000))] = 1
    peak_threshold: Annotated[float | tuple[float, float], opt(
        "peak_threshold", help="Confidence (0-1) a body part needs to be reported; lower finds "
                               "more points, including wrong ones."),
        Role("peaks", provenance=0, fronts=SLEAP_NN | {"serve"}, cli_type=float, bounds=(0.0, 1.0))] = 0.2
    filter_overlapping: Annotated[bool, opt(
        "filter_overlapping", help="Remove duplicate detections of the same animal."),
        Role("filters", provenance=1)] = False
    filter_overlapping_method: Annotated[OverlapMethod, opt(
        "filter_overlapping_method", help="How duplicates are measured: iou (box overlap) or oks "
                                          "(keypoint similarity)."),
        Role("filters", provenance=2)] = "iou"
    filter_overlapping_threshold: Annotated[float, opt(
        "filter_overlapping_threshold", help="Overlap above which the lower scoring of two "
                                             "detections is removed."),
        Role("filters", provenance=3, bounds=(0.0, 1.0))] = 0.8
    filter_min_visible_nodes: Annotated[int, opt(
        "filter_min_visible_nodes", help="Drop animals with fewer found body parts than this."),
        Role("filters", provenance=4, bounds=(0, None))] = 0
    filter_min_visible_node_fraction: Annotated[float, opt(
        "filter_min_visible_node_fraction", help="Drop animals with a smaller fraction of their "
                                                 "body parts found than this (0-1)."),
        Role("filters", provenance=5, bounds=(0.0, 1.0))] = 0.0
    filter_min_mean_node_score: Annotated[float, opt(
        "filter_min_mean_node_score", help="Drop animals whose body parts' mean confidence is "
                                           "below this."),
        Role("filters", provenance=6, bounds=(0.0, None))] = 0.0
    filter_min_instance_score: Annotated[float, opt(
        "filter_min_instance_score", help="Drop animals whose overall score is below this."),
        Role("filters", provenance=7, bounds=(0.0, None))] = 0.0
    integral_refinement: Annotated[Refinement, opt(
        "integral_refinement", help="Sub-pixel refinement of each body part: integral (finer) or "
                                    "none."),
        Role("peaks", provenance=8, fronts=SLEAP_NN | {"serve"},
             cli_type=Literal["integral", "none"])] = "integral"
    integral_patch_size: Annotated[int, opt(
        "integral_patch_size", help="Pixels around each peak used by the integral refinement."),
        Role("peaks", provenance=9, bounds=(1, 101))] = 5
    max_edge_length_ratio: Annotated[float, opt(
        "max_edge_length_ratio", help="Bottom-up: the longest a body edge may be, as a fraction "
                                      "of the frame's larger side."),
        Role("grouping", bounds=(0.0, None))] = 0.25
    dist_penalty_weight: Annotated[float, opt(
        "dist_penalty_weight", help="Bottom-up: how strongly long edges are penalised when "
                                    "joining body parts into animals."),
        Role("grouping", bounds=(0.0, None))] = 1.0
    n_points: Annotated[int, opt(
        "n_points", help="Bottom-up: points sampled along each candidate edge to score it."),
        Role("grouping", bounds=(1, 1000))] = 10
    min_instance_peaks: Annotated[float, opt(
        "min_instance_peaks", help="Bottom-up: an animal needs at least this many body parts (or "
                                   "this fraction when below 1)."),
        Role("grouping", bounds=(0.0, None))] = 0
    min_line_scores: Annotated[float, opt(
        "min_line_scores", help="Bottom-up: the lowest score an edge may have to join two body "
                                "parts."),
        Role("grouping", bounds=(-1.0, 1.0))] = 0.25
    output_path: Annotated[str | None, opt(
        "output_path", "-o", help="Where to write the predictions (.slp). Default: next to the "
                                  "input, named INPUT.predictions.slp. With several inputs, a "
                                  "folder (ending in /) to put every INPUT.predictions.slp in."),
        Role("output", changes_results=False, fronts=frozenset({"track", "run_inference"}))] = None
    #: Each frame's poses sent as they are made: ``-`` (NDJSON on stdout) and/or ZeroMQ PUB
    #: addresses (``tcp://127.0.0.1:5555``); see docs/LIVE.md for the messages.
    publish: Annotated[tuple[str, ...], opt(
        "publish", help="Send each frame's poses as they are made: - (or ndjson:-) for NDJSON "
                        "lines on stdout, tcp://HOST:PORT for a ZeroMQ PUB socket (needs the "
                        "live extra); repeat for several."),
        Role("output", changes_results=False, fronts=TRACK_ONLY)] = ()
    #: Many-input runs: leave a video whose output exists and is complete alone.
    skip_existing: Annotated[bool, opt(
        "skip_existing", help="Skip videos whose output exists and is complete."),
        Role("output", changes_results=False, fronts=TRACK_ONLY)] = False
    #: Continue an interrupted run of the same command from its journal (with several inputs,
    #: each video's; finished videos are skipped).
    resume: Annotated[bool, opt(
        "resume", help="Continue an interrupted run of the same command from its journal (kept "
                       "beside the output after a crash, a full disk or Ctrl-C)."),
        Role("output", changes_results=False, fronts=TRACK_ONLY)] = False
    save_embeddings: Annotated[SaveEmbeddings, opt(
        "save_embeddings", help="With an embedding (re-ID) model among -m: slp writes each "
                                "instance's appearance vector into the output .slp (sleap-io's "
                                "Embedding on the instance); none (default) does not."),
        Role("output", fronts=SLEAPFLOW)] = "none"
    device: Annotated[str, opt(
        "device", "-d", help="Where the network runs: auto (a GPU if there is one), cpu, cuda, "
                             "cuda:N or mps."),
        Role("execution", changes_results=False, fronts=SLEAP_NN | {"serve"})] = "auto"
    tracking: Annotated[bool, opt(
        "tracking", "-t", help="Follow each animal from frame to frame and give it a track "
                               "(identity)."),
        Role("tracking", fronts=SLEAP_NN | {"serve"})] = False
    tracker: TrackerConfig = msgspec.field(default_factory=TrackerConfig)
    graph: Annotated[str | None, opt(
        "graph", help="Run this named graph instead of the one chosen from the model types (see "
                      "sleapflow graphs)."),
        Role("execution", fronts=SLEAPFLOW)] = None
    postprocess_workers: Annotated[int, opt(
        "postprocess_workers", help="Threads that join bottom-up body parts into animals."),
        Role("execution", changes_results=False, fronts=SLEAPFLOW, bounds=(1, 64))] = 1
    torch_threads: Annotated[int | None, opt(
        "torch_threads", help="CPU threads the network may use (default: torch's choice)."),
        Role("execution", changes_results=False, fronts=SLEAPFLOW | {"serve"}, bounds=(1, 1024))] = None
    #: Batches each model computes at once on the CPU (default: an equal share of the cores).
    forward_workers: Annotated[int | None, opt(
        "forward_workers", help="On the CPU: batches in flight per model at once (default: one "
                                "per core)."),
        Role("execution", changes_results=False, fronts=SLEAPFLOW | {"serve"}, bounds=(1, 64))] = None
    #: Faster CPU convolutions in channels-last memory; not bit-identical to the reference.
    channels_last: Annotated[bool, opt(
        "channels_last", help="Faster CPU convolutions; results differ from sleap-nn in the last "
                              "digits."),
        Role("execution", fronts=SLEAPFLOW)] = False
    #: Longest a batch waits for more frames after its first one, in ms; None waits until the
    #: batch is full or the input ends (files), a server needs a bound (pushed frames trickle).
    max_batch_delay_ms: Annotated[float | None, opt(
        "max_batch_delay_ms", help="Longest a batch waits for more frames after its first one, "
                                   "in milliseconds (default: until it is full)."),
        Role("execution", fronts=frozenset({"serve", "open_graph"}), defaults={"serve": 5.0},
             bounds=(0.0, 60_000.0))] = None
    #: Network runtime: auto, torch, onnx or tensorrt (see sleapflow.backends).
    runtime: Annotated[Runtime, opt(
        "runtime", help="How the network is run: auto (the fastest runtime that matches the "
                        "reference for this device and model: ONNX Runtime on CPU, torch "
                        "elsewhere; the choice is logged and kept in the output's provenance), "
                        "torch, onnx or tensorrt (NVIDIA GPUs, extra sleapflow[tensorrt])."),
        Role("execution", provenance=16, fronts=SLEAP_NN | {"serve"})] = "auto"
    #: fp32, or fp16/bf16 on CUDA (torch autocast, or TensorRT's fp16).
    precision: Annotated[Precision, opt(
        "precision", help="Number format of the network: fp32 (exact), bf16 (CUDA, or a CPU with "
                          "AMX / AVX512-BF16: about 2x faster there), fp16 (CUDA) or int8 (ONNX "
                          "Runtime on the CPU, calibrated; fast with VNNI / AMX); the reduced "
                          "ones give slightly different maps."),
        Role("execution", provenance=17, fronts=SLEAP_NN | {"serve"})] = "fp32"
    #: Peak finding runs inside the exported graph (onnx, tensorrt) unless this is set.
    host_peaks: Annotated[bool, opt(
        "host_peaks", help="With --runtime onnx or tensorrt: return whole confidence maps from "
                           "the runtime and find peaks outside it (by default the runtime finds "
                           "them and returns only peaks)."),
        Role("execution", fronts=SLEAPFLOW | {"serve"})] = False
    #: int8 only: what calibrates the quantization (None: the run's own first frames).
    calibration_frames: Annotated[str | None, opt(
        "calibration_frames", help="With --precision int8: a video or .slp whose first frames "
                                   "calibrate the quantization (default: the run's own first "
                                   "frames, which then wait for it)."),
        Role("execution", fronts=SLEAPFLOW)] = None

    def __post_init__(self) -> None:
        check_numbers(self)
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
        if self.save_embeddings not in ("none", "slp"):
            raise ConfigError(f"--save_embeddings must be 'none' or 'slp' (got {self.save_embeddings!r})")
        if self.runtime not in RUNTIMES:
            raise ConfigError(f"--runtime must be one of {', '.join(RUNTIMES)} (got {self.runtime!r})")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"--precision must be one of {', '.join(PRECISIONS)} "
                              f"(got {self.precision!r})")
        if self.calibration_frames is not None and self.precision != "int8":
            raise ConfigError("--calibration_frames calibrates --precision int8; add --precision "
                              f"int8 or leave it out (got --precision {self.precision})")
        if self.calibration_frames is not None and not self.calibration_frames.strip():
            raise ConfigError("--calibration_frames: give a video or .slp path")

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


def parse_frames(text: str | None) -> tuple[int | tuple[int, int], ...] | None:
    """``--frames`` text → indices and inclusive ranges; see :func:`sleapflow.options.frames.parse_frames`."""
    return _parse_frames(text)

"""``run_inference(...)``: the sleap-nn compatible Python entry point.

Same keywords, defaults and return shapes as ``sleap_nn.legacy_predict.run_inference`` (0.3.5):
``make_labels=True`` returns an ``sio.Labels`` and writes it (to ``output_path``, or beside the
input as ``<input>.predictions.slp``, as the reference does); ``make_labels=False`` returns the
reference's list of per-batch dicts of numpy arrays and writes nothing.

Both are the job ``sleapflow track`` runs (:func:`sleapflow.jobs.job.plan_job` /
:func:`~sleapflow.jobs.job.run_job`), not journaled: ``make_labels=True`` writes and returns the
labels; ``make_labels=False`` runs the graph's raw-array variant (its declaration builds it, see
:func:`sleapflow.graphs.build.build_graph`): the post-forward stages end in a *raw-dict stage*
that packs each batch the way the reference's ``make_labels=False`` does. A graph without one
refuses ``make_labels=False`` clearly.

``run_inference`` is synchronous (it calls ``anyio.run``); from async code use
:func:`arun_inference` or :func:`sleapflow.session.open_graph`.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any

import anyio
import anyio.lowlevel
import numpy as np
import sleap_io as sio

from sleapflow.errors import ConfigError, EventLoopError
from sleapflow.graphs.build import RawOptions
from sleapflow.jobs.job import Job, plan_job, run_job
from sleapflow.options.boundary import build_config
from sleapflow.options.config import InferenceConfig

__all__ = ("RawOptions", "arun_inference", "build_config", "run_inference")


# --------------------------------------------------------------------------------------------
# The entry points
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Call:
    """One resolved call: the config, the raw-array options and what to do with the result."""

    cfg: InferenceConfig
    raw: RawOptions
    make_labels: bool
    output_path: str | None
    input_labels: sio.Labels | None
    input_video: sio.Video | None


def _plan(call: _Call) -> Job:
    """The job of one call, planned and its output checked (as every front end's output is)
    before any weights load. The reference always saves: to ``output_path``, beside the input,
    or ./results.predictions.slp."""
    for name, obj, kind in (("input_labels", call.input_labels, sio.Labels),
                            ("input_video", call.input_video, sio.Video)):
        if obj is not None and not isinstance(obj, kind):
            raise ConfigError(f"{name} must be a sleap_io.{kind.__name__} (got {type(obj).__name__})")
    return plan_job(call.cfg, output=call.output_path if call.make_labels else None,
                    name_output=call.make_labels, raw=None if call.make_labels else call.raw,
                    input_labels=call.input_labels, input_video=call.input_video)


async def _execute(call: _Call) -> sio.Labels | list[dict[str, np.ndarray]]:
    # Planning reads configs, opens the video, may load a .slp and checks the output on the
    # file system: off the event loop.
    job = await anyio.to_thread.run_sync(_plan, call)
    result = await run_job(job)
    if result.raw is not None:
        return result.raw
    assert result.labels is not None
    return result.labels


def _in_event_loop() -> bool:
    try:
        anyio.lowlevel.current_token()
    except RuntimeError:  # anyio's NoEventLoopError: no loop runs in this thread
        return False
    return True


def run_inference(
    data_path: str | None = None,
    input_labels: sio.Labels | None = None,
    input_video: sio.Video | None = None,
    model_paths: list[str] | None = None,
    backbone_ckpt_path: str | None = None,
    head_ckpt_path: str | None = None,
    max_instances: int | None = None,
    max_width: int | None = None,
    max_height: int | None = None,
    ensure_rgb: bool | None = None,
    input_scale: float | None = None,
    ensure_grayscale: bool | None = None,
    anchor_part: str | None = None,
    only_labeled_frames: bool = False,
    only_suggested_frames: bool = False,
    exclude_user_labeled: bool = False,
    only_predicted_frames: bool = False,
    no_empty_frames: bool = False,
    batch_size: int = 4,
    queue_maxsize: int = 32,
    video_index: int | None = None,
    video_dataset: str | None = None,
    video_input_format: str = "channels_last",
    frames: list[int] | str | None = None,
    crop_size: int | None = None,
    peak_threshold: float | list[float] = 0.2,
    filter_overlapping: bool = False,
    filter_overlapping_method: str = "iou",
    filter_overlapping_threshold: float = 0.8,
    filter_min_visible_nodes: int = 0,
    filter_min_visible_node_fraction: float = 0.0,
    filter_min_mean_node_score: float = 0.0,
    filter_min_instance_score: float = 0.0,
    integral_refinement: str | None = "integral",
    integral_patch_size: int = 5,
    return_confmaps: bool = False,
    return_pafs: bool = False,
    return_paf_graph: bool = False,
    max_edge_length_ratio: float = 0.25,
    dist_penalty_weight: float = 1.0,
    n_points: int = 10,
    min_instance_peaks: int | float = 0,
    min_line_scores: float = 0.25,
    return_class_maps: bool = False,
    return_class_vectors: bool = False,
    make_labels: bool = True,
    output_path: str | None = None,
    device: str = "auto",
    tracking: bool = False,
    tracking_window_size: int = 5,
    min_new_track_points: int = 0,
    candidates_method: str = "fixed_window",
    min_match_points: int = 0,
    features: str = "keypoints",
    scoring_method: str = "oks",
    scoring_reduction: str = "mean",
    robust_best_instance: float = 1.0,
    oks_stddev: float | None = None,
    track_matching_method: str = "hungarian",
    max_tracks: int | None = None,
    use_flow: bool = False,
    of_img_scale: float = 1.0,
    of_window_size: int = 21,
    of_max_levels: int = 3,
    use_kalman: bool = False,
    kf_track_features: str = "centroid",
    kf_init_frame_count: int = 10,
    kf_node_indices: list[int] | None = None,
    kf_reset_gap_size: int = 5,
    post_connect_single_breaks: bool = False,
    tracking_target_instance_count: int | None = None,
    tracking_pre_cull_to_target: int = 0,
    tracking_pre_cull_iou_threshold: float = 0,
    tracking_clean_instance_count: int = 0,
    tracking_clean_iou_threshold: float = 0,
    gui: bool = False,
    runtime: str = "auto",
    precision: str = "fp32",
) -> sio.Labels | list[dict[str, np.ndarray]]:
    """Run pose inference; sleap-nn's ``run_inference`` keywords, defaults and return values.

    Returns an ``sio.Labels`` (also written to ``output_path``, default
    ``<data_path without suffix>.predictions.slp``) when ``make_labels`` is true; otherwise a list
    with one dict of numpy arrays per batch (the reference's keys and dtypes) and nothing is
    written. Inputs: ``input_labels`` wins over ``input_video``, which wins over
    ``data_path``. ``gui`` is accepted and ignored (sleapflow prints no progress here).
    ``runtime`` (auto, torch, onnx, tensorrt) and ``precision`` are sleapflow's own.

    Raises :class:`EventLoopError` when called from a running event loop: use
    ``await arun_inference(...)`` or :func:`sleapflow.session.open_graph` there.
    """
    call = _resolve_call(dict(locals()))
    if _in_event_loop():
        raise EventLoopError(
            "run_inference() cannot run inside a running event loop (it starts its own); from "
            "async code use `await sleapflow.predict.arun_inference(...)` with the same arguments, "
            "or stream frames with `async with sleapflow.session.open_graph(...)`"
        )
    return anyio.run(partial(_execute, call))


async def arun_inference(**kwargs: Any) -> sio.Labels | list[dict[str, np.ndarray]]:
    """:func:`run_inference` for async callers (same keywords); runs in the caller's event loop."""
    unknown = sorted(set(kwargs) - set(_RUN_INFERENCE_DEFAULTS))
    if unknown:
        raise ConfigError(f"arun_inference: unknown argument(s) {', '.join(unknown)}")
    return await _execute(_resolve_call({**_RUN_INFERENCE_DEFAULTS, **kwargs}))


def _run_inference_defaults() -> dict[str, Any]:
    import inspect

    return {name: p.default for name, p in inspect.signature(run_inference).parameters.items()}


_RUN_INFERENCE_DEFAULTS = _run_inference_defaults()

_RAW_KEYS = ("return_confmaps", "return_pafs", "return_paf_graph", "return_class_maps",
             "return_class_vectors")
#: Keywords that are not options of the graph: what to do with it and its result.
_NOT_CONFIG = {"input_labels", "input_video", "make_labels", "gui", *_RAW_KEYS}


def _resolve_call(args: dict[str, Any]) -> _Call:
    """Validate the keywords (the reference's checks, in its order) and build the config."""
    make_labels = bool(args["make_labels"])
    tracking = bool(args["tracking"])
    if not args["model_paths"] and not tracking:
        raise ConfigError(
            "Neither tracker nor path to trained models specified. Use `model_paths` to specify "
            "models to use. To retrack on predictions, set `tracking` to True."
        )
    if not make_labels and args["no_empty_frames"]:
        raise ConfigError("no_empty_frames needs make_labels=True (it removes empty frames from "
                          "the output Labels)")
    if not make_labels and tracking:
        raise ConfigError("tracking needs make_labels=True (it links instances in the output "
                          "Labels)")
    if args["data_path"] is None and args["input_labels"] is None and args["input_video"] is None:
        raise ConfigError("pass data_path (a video, .slp, HDF5 or image folder), input_labels or "
                          "input_video")
    cfg = build_config(**{k: v for k, v in args.items() if k not in _NOT_CONFIG})
    return _Call(cfg=cfg, raw=RawOptions(**{k: bool(args[k]) for k in _RAW_KEYS}),
                 make_labels=make_labels, output_path=args["output_path"],
                 input_labels=args["input_labels"], input_video=args["input_video"])

"""One path from options to a running graph, shared by the CLI, run_inference, the async API and
the benchmark harness, so what is measured is what users run."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import msgspec
import sleap_io as sio
import structlog

from sleapflow.config import InferenceConfig, resolve_device
from sleapflow.errors import ConfigError
from sleapflow.graphs import GRAPHS, select_graph
from sleapflow.graphs.common import (
    BuildContext,
    GraphDecl,
    default_cpu_parallelism,
    output_skeleton,
    resolve_models,
)
from sleapflow.graphs.track_only import LabelsTrackSource
from sleapflow.inputs import InputPlan, WorkItem, plan_input
from sleapflow.inputs import default_output_path as inputs_default_output_path
from sleapflow.provenance import inference_provenance
from sleapflow.runtime import GraphRunner, GraphSpec, GraphStats, MapStage, chain
from sleapflow.runtimes import resolve_runtime
from sleapflow.stages.decode import DecodeSource
from sleapflow.stages.filter import InstanceFilter
from sleapflow.stages.track import CleanUpTracks, TrackFrames
from sleapflow.stages.write import LabelsBuilder, SlpWriter
from sleapflow.tracking import TrackerConfig

log = structlog.get_logger(__name__)

#: Graphs whose models need ground-truth instances from a .slp input.
GT_GRAPHS = {"centered_instance", "multiclass_centered_instance"}

INFERENCE_CONFIG_KEYS = (
    "peak_threshold", "filter_overlapping", "filter_overlapping_method",
    "filter_overlapping_threshold", "filter_min_visible_nodes", "filter_min_visible_node_fraction",
    "filter_min_mean_node_score", "filter_min_instance_score", "integral_refinement",
    "integral_patch_size", "batch_size", "max_instances", "crop_size", "input_scale", "anchor_part",
    "queue_maxsize", "runtime", "precision",
)


@dataclass
class PreparedRun:
    """A run whose models, input and graph are resolved, before any weights load."""

    cfg: InferenceConfig
    graph: GraphDecl
    ctx: BuildContext
    plan: InputPlan

    @property
    def graph_name(self) -> str:
        return self.graph.name

    def primary_config(self) -> Any:
        # The model whose skeleton labels the output: the instance model when there is one.
        for kind in ("centered_instance", "multi_class_topdown", "single_instance", "bottomup",
                     "multi_class_bottomup", "centroid"):
            if kind in self.ctx.models:
                return self.ctx.models[kind].config
        raise ConfigError("no model given")


def prepare(cfg: InferenceConfig, *, plan: InputPlan | None = None,
            input_labels: sio.Labels | None = None,
            input_video: sio.Video | None = None) -> PreparedRun:
    """Resolve device, models, graph and input; everything here fails fast with a clear error.

    ``plan`` lets a caller that supplies its own source (frames pushed by an embedding service)
    skip input planning, which needs ``cfg.data_path``. ``input_labels`` / ``input_video`` are
    ``run_inference``'s in-memory inputs (they win over ``cfg.data_path``, in that order).
    """
    if not cfg.model_paths:
        if not cfg.tracking:
            raise ConfigError("no models given: pass --model_paths/-m to run inference, or "
                              "--tracking/-t to track the instances of an existing .slp")
        return prepare_track_only(cfg, labels=input_labels)
    device = resolve_device(cfg.device)
    models = resolve_models(cfg.model_paths)
    graph_name = select_graph(list(models), cfg.graph)
    if plan is None:
        plan = plan_input(cfg, need_ground_truth=graph_name in GT_GRAPHS, labels=input_labels,
                          video=input_video)
    workers, threads = default_cpu_parallelism(len(models))
    if cfg.torch_threads is not None:
        threads = cfg.torch_threads
    if cfg.forward_workers is not None:
        workers = cfg.forward_workers
    runtime = resolve_runtime(cfg.runtime, device, precision=cfg.precision,
                              channels_last=cfg.channels_last,
                              graph=("legacy_" if any(m.config.is_legacy for m in models.values())
                                     else "") + graph_name)
    log.info("runtime selected", runtime=runtime.name, requested=runtime.requested,
             reason=runtime.reason, precision=runtime.precision, device=device)
    ctx = BuildContext(cfg=cfg, models=models, plan=plan, device=device,
                       torch_threads=threads if device == "cpu" else None,
                       forward_workers=workers if device == "cpu" else 1, runtime=runtime)
    graph = GRAPHS[graph_name]
    tracker = inference_tracker_config(cfg, graph)
    ctx.extra["tracker"] = tracker
    ctx.extra["keep_images"] = tracker is not None and tracker.needs_image
    return PreparedRun(cfg=cfg, graph=graph, ctx=ctx, plan=plan)


#: Graphs whose identities come from the model's classes: the reference does not re-track them.
IDENTITY_GRAPHS = {"multiclass_bottomup", "multiclass_topdown", "multiclass_centered_instance"}


def inference_tracker_config(cfg: InferenceConfig, graph: GraphDecl) -> TrackerConfig | None:
    """The tracker for inference + tracking, with the reference's defaults from --max_instances."""
    if not cfg.tracking:
        return None
    if graph.name in IDENTITY_GRAPHS:
        log.info("tracking skipped: identities come from the model's classes", graph=graph.name)
        return None
    tracker = cfg.tracker
    needs_target = tracker.post_connect_single_breaks or tracker.tracking_pre_cull_to_target
    if needs_target and tracker.tracking_target_instance_count is None:
        if cfg.max_instances is None:
            raise ConfigError(
                "--post_connect_single_breaks and --tracking_pre_cull_to_target require "
                "--tracking_target_instance_count or --max_instances to be set; add "
                "--tracking_target_instance_count N (the expected animals per frame)")
        tracker = msgspec.structs.replace(tracker, tracking_target_instance_count=cfg.max_instances)
    return tracker


def prepare_track_only(cfg: InferenceConfig, *, labels: sio.Labels | None = None) -> PreparedRun:
    """Track the instances already in a .slp (or in ``labels``, from the Python API): no models,
    the ``track_only`` graph."""
    from sleapflow.tracking.track_only import resolve_track_only_config, select_frames

    if labels is None:
        if not cfg.data_path or not str(cfg.data_path).endswith(".slp"):
            raise ConfigError("tracking without models needs a .slp input (its instances are "
                              f"tracked); got {cfg.data_path!r}. Pass --model_paths to run "
                              "inference and tracking on a video")
        if not Path(cfg.data_path).exists():
            raise ConfigError(f"input not found: {cfg.data_path!r}")
        try:
            labels = sio.load_slp(str(cfg.data_path))
        except Exception as exc:
            raise ConfigError(f"cannot read labels file {cfg.data_path!r}: {exc}") from exc
    tracker = resolve_track_only_config(cfg.tracker, cfg.max_instances)
    video_ids = {id(v): i for i, v in enumerate(labels.videos)}
    items = [WorkItem(video_ids[id(lf.video)], lf.frame_idx)
             for lf in select_frames(labels, video_index=cfg.video_index, frames=cfg.frames)]
    plan = InputPlan(kind="slp", source_path=str(cfg.data_path) if cfg.data_path else None,
                     videos=list(labels.videos),
                     items=items, labels=labels,
                     frame_selection_method="specified" if cfg.frames is not None else "all")
    ctx = BuildContext(cfg=cfg, models={}, plan=plan, device="cpu")
    ctx.extra["tracker"] = tracker
    return PreparedRun(cfg=cfg, graph=GRAPHS["track_only"], ctx=ctx, plan=plan)


def post_stages(run: PreparedRun) -> list[Any]:
    """Filtering and tracking, shared by every graph, after its own stages."""
    cfg = run.cfg
    track_only = run.graph_name == "track_only"
    stages: list[Any] = []
    filt = InstanceFilter(
        overlap_method=cfg.filter_overlapping_method if cfg.filter_overlapping else None,
        overlap_threshold=cfg.filter_overlapping_threshold,
        min_visible_nodes=cfg.filter_min_visible_nodes,
        min_visible_node_fraction=cfg.filter_min_visible_node_fraction,
        min_mean_node_score=cfg.filter_min_mean_node_score,
        min_instance_score=cfg.filter_min_instance_score,
        order="track_only" if track_only else "inference")
    tracker = run.ctx.extra.get("tracker")
    # The tracker must only see real instances, so empty slots are dropped before it even when
    # no filter is asked for.
    if filt.active or tracker is not None:
        stages.append(MapStage("filter", filt, limiter=run.ctx.cpu_limiter))
    if tracker is not None:
        track = TrackFrames(tracker, feed_empty_frames=run.graph.keep_empty_frames,
                            prefer_user=track_only)
        stages.append(MapStage("track", track, requires_order=True))
        cleanup = CleanUpTracks(tracker)
        if cleanup.enabled:
            stages.append(MapStage("track_cleanup", cleanup, requires_order=True))
    return stages


def make_source(run: PreparedRun) -> Any:
    """The graph's source: the decoder, or the labels' frames for track-only."""
    if run.graph_name == "track_only":
        assert run.plan.labels is not None
        return LabelsTrackSource(run.plan.labels, run.ctx.extra["tracker"],
                                 video_index=run.cfg.video_index, frames=run.cfg.frames)
    return DecodeSource(run.plan, limiter=run.ctx.cpu_limiter)


def build_spec(run: PreparedRun, source: Any, sink: Any) -> GraphSpec:
    """Chain the source, the graph's own stages, the shared post stages and the sink."""
    middle, sizes = run.graph.build(run.ctx)
    post = post_stages(run)
    middle = [*middle, *post]
    sizes = [*sizes, *([run.cfg.queue_maxsize] * len(post))]
    meta = {"model_types": sorted(run.ctx.models), "device": run.ctx.device,
            "runtime": run.ctx.runtime.name if run.ctx.runtime is not None else None}
    return chain(run.graph_name, [source, *middle, sink], sizes, description=run.graph.description,
                 meta=meta)


def make_writer(run: PreparedRun, *, output_path: str | None,
                on_frame: Callable[[int], None] | None = None) -> SlpWriter:
    if run.graph_name == "track_only":
        return _track_only_writer(run, output_path=output_path, on_frame=on_frame)
    primary = run.primary_config()
    builder = LabelsBuilder(run.plan.videos, output_skeleton(primary),
                            keep_empty_frames=run.graph.keep_empty_frames,
                            track_order=run.graph.track_order(run.ctx))
    started = datetime.now()
    tracker = run.ctx.extra.get("tracker")

    def provenance(labels: sio.Labels) -> dict[str, Any]:
        cfg_dict = run.cfg.to_dict()
        return inference_provenance(
            started=started, finished=datetime.now(),
            model_paths=[m.path for m in run.ctx.models.values()], graph=run.graph_name,
            source_file=run.plan.source_path, input_labels=run.plan.labels,
            frame_selection_method=run.plan.frame_selection_method,
            frames_processed=len(labels.labeled_frames),
            inference_config={k: cfg_dict.get(k) for k in INFERENCE_CONFIG_KEYS},
            tracking_config=tracker.legacy_provenance() if tracker is not None else None,
            device=run.ctx.device,
            runtime=run.ctx.runtime.as_dict() if run.ctx.runtime is not None else None)

    return SlpWriter(builder, output_path=output_path, provenance=provenance,
                     no_empty_frames=run.cfg.no_empty_frames, on_frame=on_frame,
                     input_path=run.plan.source_path)


def _track_only_writer(run: PreparedRun, *, output_path: str | None,
                       on_frame: Callable[[int], None] | None) -> SlpWriter:
    from sleapflow.tracking.track_only import tracking_only_provenance

    labels = run.plan.labels
    assert labels is not None
    builder = LabelsBuilder(list(labels.videos), labels.skeletons[0], keep_empty_frames=True,
                            extra_skeletons=list(labels.skeletons[1:]))
    started = datetime.now()

    def provenance(out: sio.Labels) -> dict[str, Any]:
        return tracking_only_provenance(labels, run.ctx.extra["tracker"], start=started,
                                        end=datetime.now(),
                                        frames_processed=len(out.labeled_frames),
                                        source_file=run.plan.source_path)

    return SlpWriter(builder, output_path=output_path, provenance=provenance,
                     no_empty_frames=run.cfg.no_empty_frames, on_frame=on_frame,
                     input_path=run.plan.source_path)


def default_output_path(cfg: InferenceConfig, plan: InputPlan | None = None) -> str:
    """``<input without its last suffix>.predictions.slp``, as ``sleap-nn track`` names it
    (``<labels>.<video>.predictions.slp`` with ``--video_index``); see
    :func:`sleapflow.inputs.default_output_path`."""
    return inputs_default_output_path(cfg, plan)


@dataclass
class RunResult:
    labels: sio.Labels
    stats: GraphStats
    output_path: str | None


async def run_to_file(cfg: InferenceConfig, *, output_path: str | None,
                      on_frame: Callable[[int], None] | None = None,
                      prepared: PreparedRun | None = None) -> RunResult:
    """Run inference over the whole input and write (or only return) the labels."""
    run = prepared or prepare(cfg)
    writer = make_writer(run, output_path=output_path, on_frame=on_frame)
    source = make_source(run)
    runner = GraphRunner(build_spec(run, source, writer))
    stats = await runner.run()
    assert writer.result is not None
    return RunResult(labels=writer.result, stats=stats, output_path=output_path)

"""From a config to a complete, validated GraphSpec: models, input, source, stages, sink.

This is the one place a graph is assembled. A graph declaration (:class:`GraphDecl`) gives its
model stages; here they are framed by the source its input needs, the shared filter and tracker
stages, and the sink, with every edge bounded by what the stage before it emits. The CLI,
``run_inference``, the service and the benchmark all build through :func:`build_graph`, and
``sleapflow graphs`` prints what :func:`dry_spec` builds the same way without loading weights.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import msgspec
import sleap_io as sio

from sleapflow.backends import RuntimeChoice, resolve_runtime
from sleapflow.backends.device import resolve_device
from sleapflow.errors import ConfigError
from sleapflow.graphs import GRAPHS, select_graph
from sleapflow.graphs.common import (
    BuildContext,
    GraphDecl,
    ModelRef,
    default_cpu_parallelism,
    live_cpu_parallelism,
    output_skeleton,
    preprocess_plan,
    resolve_embedding,
    resolve_models,
)
from sleapflow.graphs.track_only import LabelsTrackSource, labels_have_vectors
from sleapflow.inputs import InputPlan, WorkItem, plan_input
from sleapflow.inputs.expand import ManyPlan, VideoTask, plan_many, shard_frames_plan, single_config
from sleapflow.inputs.media_faults import DecodeFailures
from sleapflow.logs import get_logger
from sleapflow.messages import FramePrediction
from sleapflow.models.export_folder import is_network_folder
from sleapflow.options.config import InferenceConfig
from sleapflow.options.declared import provenance_keys
from sleapflow.options.tracker import TrackerConfig
from sleapflow.outputs.journal import ResumedFrames
from sleapflow.outputs.provenance import add_seed_names, inference_provenance, tracking_only_provenance
from sleapflow.outputs.publish import check_targets
from sleapflow.outputs.slp_read import read_slp
from sleapflow.runtime import GraphSpec, MapStage, chain
from sleapflow.runtime.adapters import CollectSink
from sleapflow.runtime.chaining import chain_maps
from sleapflow.runtime.graph import edge_bounds
from sleapflow.runtime.latency import LatencyMeter
from sleapflow.stages.decode import DecodeSource
from sleapflow.stages.filter import InstanceFilter
from sleapflow.stages.live import FrameWindow, LiveSource, ResultTap
from sleapflow.stages.preprocess import fitted_size, network_input_size
from sleapflow.stages.raw import RawOptions
from sleapflow.stages.track import CleanUpTracks, LinkGapsStage, LinkIdentities, StreamTracking, TrackFrames
from sleapflow.stages.write import LabelsBuilder, SlpWriter

__all__ = (
    "INFERENCE_CONFIG_KEYS",
    "MAX_NETWORK_PIXELS",
    "PreparedRun",
    "RawOptions",
    "TrackingStages",
    "build_graph",
    "check_embedding_options",
    "check_network_inputs",
    "check_node_options",
    "dry_spec",
    "inference_tracker_config",
    "make_source",
    "make_writer",
    "prepare",
    "run_provenance",
    "select_runtime",
    "stream_tracking",
    "tracking_stages",
)

log = get_logger(__name__)

#: The options provenance records in ``inference_config``, in sleap-nn's order (their roles say).
INFERENCE_CONFIG_KEYS = provenance_keys()

#: The model whose skeleton labels the output: the instance model when there is one.
_PRIMARY_ORDER = ("centered_instance", "multi_class_topdown", "single_instance", "bottomup",
                  "multi_class_bottomup", "centroid")


@dataclass
class PreparedRun:
    """A run whose models, input and graph are resolved, before any weights load."""

    cfg: InferenceConfig
    graph: GraphDecl
    ctx: BuildContext
    plan: InputPlan
    #: The run's record of undecodable frames, shared by the decoder, the provenance and the
    #: journal (``--max_failed_frames`` bounds it).
    decode_failures: DecodeFailures = field(default_factory=DecodeFailures)
    #: A live source's latency and dropped frames (None for files), filled as the run goes.
    latency: LatencyMeter | None = None
    #: Latency mode: the live source's frames in the graph at once, given back by the tap.
    window: FrameWindow | None = None

    def __post_init__(self) -> None:
        if self.decode_failures.max_failed is None:
            self.decode_failures.max_failed = self.cfg.input.max_failed_frames
        if self.latency is None and self.is_live:
            self.latency = LatencyMeter()
        if self.window is None and self.is_live and self.ctx.latency_mode:
            # A batch per forward worker: enough to keep the network busy; more would only
            # wait in the graph's queues behind the batches before it.
            self.window = FrameWindow(max(1, self.ctx.forward_workers))

    @property
    def is_live(self) -> bool:
        """Whether the input is a camera or stream (:mod:`sleapflow.inputs.live`)."""
        return self.plan.kind == "live"

    @property
    def graph_name(self) -> str:
        return self.graph.name

    def primary_config(self) -> Any:
        for kind in _PRIMARY_ORDER:
            if kind in self.ctx.models:
                return self.ctx.models[kind].config
        raise ConfigError("no model given")


def prepare(cfg: InferenceConfig, *, plan: InputPlan | None = None,
            input_labels: sio.Labels | None = None,
            input_video: sio.Video | None = None,
            model_loader: Callable[..., Any] | None = None) -> PreparedRun:
    """Resolve device, models, graph and input; everything here fails fast with a clear error.

    ``plan`` lets a caller that supplies its own source (frames pushed by an embedding service)
    skip input planning, which needs ``cfg.data_path``. ``input_labels`` / ``input_video`` are
    ``run_inference``'s in-memory inputs (they win over ``cfg.data_path``, in that order).
    ``model_loader`` replaces ``load_model`` for the forward stages (a worker's model cache).
    """
    check_targets(cfg.publish)  # a bad address or a missing pyzmq fails before any model loads
    if not cfg.model_paths:
        if not cfg.tracking:
            raise ConfigError("no models given: pass --model_paths/-m to run inference, or "
                              "--tracking/-t to track the instances of an existing .slp")
        return _prepare_track_only(cfg, labels=input_labels)
    models = resolve_models(cfg.model_paths)
    embedding = resolve_embedding(cfg.model_paths)
    check_embedding_options(cfg, embedding is not None, bool(models))
    graph = GRAPHS[select_graph(list(models), cfg.graph)]
    # Only a graph with both a centroid and an instance model has a centroid step to skip.
    if cfg.centroid_every > 1 and not ("centroid" in graph.model_types
                                        and len(graph.model_types) > 1):
        raise ConfigError(f"--centroid_every {cfg.centroid_every} is for top-down models (a "
                          f"centroid and a centered-instance model); the {graph.name} graph has "
                          "no centroid step to skip")
    if plan is None:
        if cfg.inputs:
            plan = plan_many(cfg, need_ground_truth=graph.needs_ground_truth)
        else:
            plan = plan_input(cfg, need_ground_truth=graph.needs_ground_truth, labels=input_labels,
                              video=input_video)
        if cfg.shard is not None and not cfg.inputs:
            plan = shard_frames_plan(plan, cfg.shard)  # one video: the I-th of N frame ranges
    ctx = _context(cfg, graph, models, plan)
    if embedding is not None:
        ctx = dataclasses.replace(ctx, embedding=embedding)
    if cfg.calibration_frames is not None:
        from sleapflow.graphs.calibration import plan_calibration

        ctx.calibration = plan_calibration(cfg, need_ground_truth=graph.needs_ground_truth)
    if model_loader is not None:
        ctx = dataclasses.replace(ctx, model_loader=model_loader)
    run = PreparedRun(cfg=cfg, graph=graph, ctx=ctx, plan=plan)
    check_node_options(cfg, tuple(run.primary_config().skeleton.node_names))
    check_network_inputs(cfg, models, plan)
    return run


#: The most pixels one network input may have (4096 x 4096; a 4K UHD frame at scale 1 has
#: 8.3 M): a network's full-resolution layers take a few hundred bytes per input pixel (5 GB
#: for the smallest test UNet at 16 M), so what --input_scale, --max_height/--max_width or
#: --crop_size make beyond it is refused before any weights load.
MAX_NETWORK_PIXELS = 1 << 24


def check_network_inputs(cfg: InferenceConfig, models: dict[str, ModelRef],
                         plan: InputPlan) -> None:
    """Each model's network input, sized from the input's frames and the preprocessing options,
    within :data:`MAX_NETWORK_PIXELS` (the options' declared ranges cannot know the frame)."""
    def refuse(what: str, h: int, w: int) -> None:
        raise ConfigError(
            f"{what} would make each network input {h} x {w} pixels ({h * w / 1e6:.0f} M); "
            f"the most sleapflow runs is {MAX_NETWORK_PIXELS / 1e6:.0f} M "
            "(e.g. 4096 x 4096): lower --input_scale, --max_height / --max_width or --crop_size")

    def refuse_empty(what: str, h: int, w: int, made: str = "each network input") -> None:
        raise ConfigError(
            f"{what} would make {made} {h} x {w} pixels, and a network needs at least one pixel "
            "each way: raise --max_height / --max_width, --input_scale or --crop_size")

    shapes = set()
    for video in plan.videos:
        try:
            shape = video.shape
        except Exception:  # a backend that cannot say before decoding: checked as frames arrive
            shape = None
        if shape is not None and len(shape) >= 3:
            shapes.add((int(shape[1]), int(shape[2])))
    pre = cfg.preprocessing
    for kind, ref in models.items():
        if "centered_instance" in kind:
            crop = pre.crop_size or ref.config.preprocessing.crop_size
            scale = pre.input_scale if pre.input_scale is not None else ref.config.preprocessing.scale
            if crop:
                side = int(crop * (scale or 1.0))
                if side < 1:
                    refuse_empty(f"--crop_size {crop} at input scale {scale:g}", side, side)
                if side * side > MAX_NETWORK_PIXELS:
                    refuse(f"--crop_size {crop} at input scale {scale:g}", side, side)
            continue
        network_plan = preprocess_plan(pre, ref.config)
        for height, width in sorted(shapes):
            h, w = network_input_size(network_plan, height, width)
            what = (f"a {height} x {width} frame with input scale {network_plan.scale:g}, "
                    f"max height {network_plan.max_height} and max width {network_plan.max_width}")
            fit_h, fit_w = fitted_size(network_plan, height, width)
            if min(fit_h, fit_w) < 1:
                refuse_empty(what, fit_h, fit_w, "the frame's resize before padding")
            if min(h, w) < 1:
                refuse_empty(what, h, w)
            if h * w > MAX_NETWORK_PIXELS:
                refuse(what, h, w)


def check_embedding_options(cfg: InferenceConfig, has_embedding: bool, has_pose: bool) -> None:
    """The options that need an embedding (re-ID) model, checked before anything loads."""
    if has_embedding and not has_pose:
        raise ConfigError("an embedding (re-ID) model embeds the instances a pose model finds: "
                          "pass it with -m beside the pose models (e.g. -m centroid -m "
                          "centered_instance -m embedding)")
    if has_embedding:
        return
    if cfg.save_embeddings == "slp":
        raise ConfigError("--save_embeddings slp needs an embedding (re-ID) model to compute the "
                          "vectors: add its folder with -m beside the pose models")
    tracker = cfg.tracker
    if cfg.tracking and tracker.uses_appearance:
        what = (f"--appearance_weight {tracker.appearance_weight:g}" if tracker.appearance_weight
                else f"--tracker {tracker.tracker}")
        raise ConfigError(f"{what} compares appearance vectors, and no embedding (re-ID) model was "
                          "given: add its folder with -m beside the pose models")


def check_node_options(cfg: InferenceConfig, nodes: tuple[str, ...]) -> None:
    """Options that name nodes, checked against the skeleton as soon as it is read (before any
    weights load): an unknown one would otherwise be ignored without a word."""
    if cfg.anchor_part is not None and cfg.anchor_part not in nodes:
        raise ConfigError(f"--anchor_part {cfg.anchor_part!r} is not a node of the skeleton; its "
                          f"nodes are {', '.join(nodes)}")
    indices = cfg.tracker.kf_node_indices
    if cfg.tracking and indices and max(indices) >= len(nodes):
        raise ConfigError(f"--kf_node_indices {','.join(map(str, indices))}: the skeleton has "
                          f"{len(nodes)} nodes (indices 0 to {len(nodes) - 1})")


def _context(cfg: InferenceConfig, graph: GraphDecl, models: dict[str, ModelRef],
             plan: InputPlan | None) -> BuildContext:
    device = resolve_device(cfg.device)
    live = plan is not None and plan.kind == "live" and cfg.live is not False
    workers, threads = (live_cpu_parallelism(len(models)) if live else
                        default_cpu_parallelism(len(models)))
    if cfg.torch_threads is not None:
        threads = cfg.torch_threads
    if cfg.forward_workers is not None:
        workers = cfg.forward_workers
    return BuildContext(cfg=cfg, models=models, plan=plan, device=device,
                        torch_threads=threads if device == "cpu" else None,
                        forward_workers=workers if device == "cpu" else 1,
                        tracker=inference_tracker_config(cfg, graph),
                        runtime=select_runtime(cfg, graph, models, device))


def select_runtime(cfg: InferenceConfig, graph: GraphDecl, models: dict[str, ModelRef],
                   device: str) -> RuntimeChoice:
    """``--runtime``/``--precision`` checked against the device and resolved (``auto`` per
    device and graph: legacy SLEAP models are looked up as ``legacy_<graph>``); logged."""
    execution = cfg.execution
    legacy = any(m.config.is_legacy for m in models.values())
    if any(is_network_folder(m.path) for m in models.values()):
        # An export folder's networks are ONNX graphs: ONNX Runtime in fp32 is the only way to
        # run them, and provenance must say so.
        if execution.runtime not in ("auto", "onnx") or execution.precision != "fp32":
            raise ConfigError(f"--runtime {execution.runtime} --precision {execution.precision}: "
                              "an export folder's networks run on ONNX Runtime in fp32; use "
                              "--runtime auto or onnx, or pass the checkpoint folder")
        runtime = RuntimeChoice(name="onnx", requested=execution.runtime,
                                reason="an export folder holds ONNX networks")
        log.info("runtime selected", runtime=runtime.name, requested=runtime.requested,
                 reason=runtime.reason, precision=runtime.precision, device=device)
        return runtime
    runtime = resolve_runtime(execution.runtime, device, precision=execution.precision,
                              channels_last=execution.channels_last,
                              graph=("legacy_" if legacy else "") + graph.name)
    log.info("runtime selected", runtime=runtime.name, requested=runtime.requested,
             reason=runtime.reason, precision=runtime.precision, device=device)
    return runtime


def inference_tracker_config(cfg: InferenceConfig, graph: GraphDecl) -> TrackerConfig | None:
    """The tracker for inference + tracking, with the reference's defaults from --max_instances."""
    if not cfg.tracking:
        return None
    if graph.identity_classes:
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


def _prepare_track_only(cfg: InferenceConfig, *, labels: sio.Labels | None = None) -> PreparedRun:
    """Track the instances already in a .slp (or in ``labels``, from the Python API): no models,
    the ``track_only`` graph."""
    from sleapflow.tracking.track_only import resolve_track_only_config, select_frames

    if labels is None:
        if not cfg.data_path or not str(cfg.data_path).endswith(".slp"):
            raise ConfigError("tracking without models needs a .slp input (its instances are "
                              f"tracked); got {cfg.data_path!r}. Pass --model_paths to run "
                              "inference and tracking on a video")
        labels = read_slp(cfg.data_path, "input")
    tracker = resolve_track_only_config(cfg.tracker, cfg.max_instances)
    if (tracker.uses_appearance or cfg.save_embeddings == "slp") and not labels_have_vectors(labels):
        what = ("--save_embeddings slp" if not tracker.uses_appearance else
                f"--appearance_weight {tracker.appearance_weight:g}" if tracker.appearance_weight
                else f"--tracker {tracker.tracker}")
        raise ConfigError(f"{what} needs appearance (re-ID) vectors, and the instances of the "
                          "input .slp carry none: run the pose models with an embedding model "
                          "(-m ... --save_embeddings slp) first")
    if labels.skeletons:
        check_node_options(cfg, tuple(labels.skeletons[0].node_names))
    video_ids = {id(v): i for i, v in enumerate(labels.videos)}
    items = [WorkItem(video_ids[id(lf.video)], lf.frame_idx)
             for lf in select_frames(labels, video_index=cfg.video_index, frames=cfg.frames)]
    plan = InputPlan(kind="slp", source_path=str(cfg.data_path) if cfg.data_path else None,
                     videos=list(labels.videos),
                     items=items, labels=labels,
                     frame_selection_method="specified" if cfg.frames is not None else "all")
    ctx = BuildContext(cfg=cfg, models={}, plan=plan, device="cpu", tracker=tracker)
    return PreparedRun(cfg=cfg, graph=GRAPHS["track_only"], ctx=ctx, plan=plan)


# --------------------------------------------------------------------------------------------
# The one assembly
# --------------------------------------------------------------------------------------------


def _post_stages(run: PreparedRun,
                 tracker_inputs: Callable[[FramePrediction], None] | None = None) -> list[Any]:
    """Filtering and tracking, shared by every graph, after its own stages."""
    from_labels = run.graph.from_labels
    stages: list[Any] = []
    filt = _instance_filter(run)
    tracker = run.ctx.tracker
    # The tracker must only see real instances, so empty slots are dropped before it even when
    # no filter is asked for.
    if filt.active or tracker is not None:
        stages.append(MapStage("filter", filt, limiter=run.ctx.cpu_limiter))
    if run.ctx.embedding is not None and not from_labels:
        from sleapflow.graphs.embedding import embedding_stages

        stages.extend(embedding_stages(run.ctx, tuple(run.primary_config().skeleton.node_names)))
    if tracker is not None:
        per_video = isinstance(run.plan, ManyPlan)
        track = TrackFrames(tracker, feed_empty_frames=run.graph.keep_empty_frames,
                            prefer_user=from_labels, per_video=per_video, on_input=tracker_inputs)
        stages.append(track)
        cleanup = CleanUpTracks(tracker, per_video=per_video)
        if cleanup.enabled:
            stages.append(cleanup)
        if tracker.link_tracklets:
            stages.append(LinkIdentities(tracker))
        if tracker.max_gap or tracker.fill_gaps:
            stages.append(LinkGapsStage(tracker.max_gap, tracker.fill_gaps,
                                        tracker.min_match_similarity))
    if run.latency is not None or run.cfg.publish:
        # Last before the writer: the poses (and tracks) are final here.
        stages.append(ResultTap(run.latency if run.latency is not None else LatencyMeter(),
                                targets=check_targets(run.cfg.publish), source=run.plan.source_path or "",
                                nodes=_node_names(run), window=run.window))
    return stages


def _instance_filter(run: PreparedRun) -> InstanceFilter:
    opts = run.cfg.filters
    return InstanceFilter(
        overlap_method=opts.filter_overlapping_method if opts.filter_overlapping else None,
        overlap_threshold=opts.filter_overlapping_threshold,
        min_visible_nodes=opts.filter_min_visible_nodes,
        min_visible_node_fraction=opts.filter_min_visible_node_fraction,
        min_mean_node_score=opts.filter_min_mean_node_score,
        min_instance_score=opts.filter_min_instance_score,
        order="track_only" if run.graph.from_labels else "inference")


def stream_tracking(run: PreparedRun, cfg: InferenceConfig) -> StreamTracking | None:
    """The filter, tracker and clean-up the graph of ``run`` would end in under ``cfg``'s
    tracking options, as one callable with its own state (None when ``cfg`` does not track, or
    the graph's identities come from the model), for a caller that tracks several streams
    through one untracked graph: serve makes one per websocket stream. Gap linking looks ahead
    at later frames, so it is refused here."""
    tracker = inference_tracker_config(cfg, run.graph)
    if tracker is None:
        return None
    if tracker.max_gap or tracker.fill_gaps or tracker.link_tracklets:
        raise ConfigError("gap and identity linking (max_gap, fill_gaps, link_tracklets) hold "
                          "frames back to look ahead; a stream answered frame by frame cannot "
                          "use them")
    cleanup = CleanUpTracks(tracker)
    return StreamTracking(_instance_filter(run),
                          TrackFrames(tracker, feed_empty_frames=run.graph.keep_empty_frames),
                          cleanup if cleanup.enabled else None)


def _node_names(run: PreparedRun) -> tuple[str, ...]:
    if run.graph.from_labels:
        labels = run.plan.labels
        return tuple(labels.skeletons[0].node_names) if labels is not None and labels.skeletons \
            else ()
    return tuple(output_skeleton(run.primary_config()).node_names)


@dataclass(frozen=True)
class TrackingStages:
    """A built graph's tracking stages (a resume feeds the journaled tracker inputs to them)."""

    track: TrackFrames | None
    cleanup: CleanUpTracks | None
    link: LinkGapsStage | None
    identity: LinkIdentities | None = None


def tracking_stages(spec: GraphSpec) -> TrackingStages:
    """The tracker, clean-up and gap-linking stages of ``spec``, where it has them."""
    def first(kind: type) -> Any:
        return next((s for s in spec.stages if isinstance(s, kind)), None)

    return TrackingStages(track=first(TrackFrames), cleanup=first(CleanUpTracks),
                          link=first(LinkGapsStage), identity=first(LinkIdentities))


def make_source(run: PreparedRun, *, start: int = 0, start_seq: int = 0) -> Any:
    """The source the graph's input needs: the decoder, or the labels' frames for track-only.
    A resumed run's decoder starts at plan position ``start``, numbering frames from
    ``start_seq``."""
    if run.graph.from_labels:
        assert run.plan.labels is not None and run.ctx.tracker is not None
        return LabelsTrackSource(run.plan.labels, run.ctx.tracker,
                                 video_index=run.cfg.video_index, frames=run.cfg.frames)
    if run.is_live:
        assert run.latency is not None and run.plan.source_path is not None
        cfg = run.cfg
        path = "-" if run.plan.source_path == "<stdin>" else run.plan.source_path
        # Latency mode keeps a batch's worth of frames waiting (what goes in as one batch when
        # the graph is behind); otherwise a queue's worth. On the CPU a batch costs about its
        # frames' time, so a bigger one makes every frame in it wait without predicting more:
        # there only the newest frame waits, and frames go in one at a time (top-down at 30 fps
        # on two cores: p50 78 ms against 268 ms with batches of 4, RESULTS.md).
        if not run.ctx.latency_mode:
            capacity = cfg.queue_maxsize
        else:
            capacity = 1 if run.ctx.device == "cpu" else cfg.batch_size
        return LiveSource(path, live=run.ctx.latency_mode, capacity=capacity, meter=run.latency,
                          video=run.plan.videos[0], duration=cfg.duration,
                          idle_timeout_s=cfg.stream_timeout, window=run.window)
    return DecodeSource(run.plan, limiter=run.ctx.cpu_limiter, failures=run.decode_failures,
                        start=start, start_seq=start_seq)


def build_graph(run: PreparedRun, *, source: Any = None, sink: Any = None,
                raw: RawOptions | None = None, output_path: str | None = None,
                on_frame: Callable[[int], None] | None = None,
                tracker_inputs: Callable[[FramePrediction], None] | None = None,
                chained: bool | None = None) -> GraphSpec:
    """The complete graph of ``run``: its source, model stages, post stages and sink.

    ``source`` / ``sink`` replace the defaults (the input's source; the ``.slp`` writer to
    ``output_path``, or with ``raw`` a sink that keeps the raw-array dicts). ``raw`` builds the
    graph's raw-array variant, which ends at the raw dicts (no filter, no tracker).
    ``tracker_inputs`` is given every frame the tracker takes (the journal keeps them, so a
    resumed run can rebuild the tracker's state). ``chained``: runs of map stages run as one
    (:func:`~sleapflow.runtime.chaining.chain_maps`), for graphs that take one frame at a
    time; by default in latency mode only.
    """
    if raw is not None and not run.graph.has_raw:
        raise ConfigError(
            f"make_labels=False is not available for the {run.graph_name} graph yet; use "
            "make_labels=True (the default) to get sio.Labels"
        )
    if source is None:
        source = make_source(run)
    if sink is None:
        sink = (CollectSink("collect") if raw is not None else
                make_writer(run, output_path=output_path, on_frame=on_frame))
    middle = run.graph.build(run.ctx, raw)
    if run.ctx.calibration is not None:
        from sleapflow.backends.quantize import CALIBRATION_FRAMES
        from sleapflow.graphs.calibration import wire_calibration

        wire_calibration(run.ctx.calibration, middle, CALIBRATION_FRAMES)
    if raw is None:
        middle = [*middle, *_post_stages(run, tracker_inputs)]
    if run.ctx.latency_mode if chained is None else chained:
        # A frame alone in its part of the graph gains nothing from stages that overlap: the
        # hand-overs between its map stages are pure cost (about 0.4 ms each at the median;
        # RESULTS.md, "Chained map stages"), so they run as one.
        middle = chain_maps(middle)
    stages = [source, *middle, sink]
    if run.ctx.latency_mode:
        # Frames wait in the live source, which drops the oldest, not in queues: a batch is
        # formed from the newest frames and leaves at once; the source's own edge holds one.
        sizes = edge_bounds(stages, items=run.ctx.execution.batch_size, batches=1)
        sizes[0] = 1
    else:
        sizes = edge_bounds(stages, items=run.ctx.execution.queue_maxsize,
                            batches=run.ctx.batch_maxsize)
    description = run.graph.description + (" (raw arrays)" if raw is not None else "")
    meta = {"model_types": sorted(run.ctx.models), "device": run.ctx.device,
            "runtime": run.ctx.runtime.name if run.ctx.runtime is not None else None}
    # A live run's frames are stamped at every seam, so its latency can be split by stage.
    return chain(run.graph_name, stages, sizes, description=description, meta=meta,
                 seams=run.latency)


def run_provenance(run: PreparedRun, labels: sio.Labels, *, started: datetime,
                   frames_processed: int) -> dict[str, Any]:
    """The provenance an inference run's output records (sleap-nn's keys and the seed's names;
    ``labels`` is the output, or a ``Labels`` of the run's videos where no file is written)."""
    cfg_dict = run.cfg.to_dict()
    tracker = run.ctx.tracker
    plan = run.plan
    return add_seed_names(inference_provenance(
        started=started, finished=datetime.now(),
        model_paths=[m.path for m in run.ctx.models.values()], graph=run.graph_name,
        source_file=plan.source_path, input_labels=plan.labels,
        frame_selection_method=plan.frame_selection_method,
        frames_processed=frames_processed,
        inference_config={k: cfg_dict.get(k) for k in INFERENCE_CONFIG_KEYS},
        tracking_config=tracker.legacy_provenance() if tracker is not None else None,
        device=run.ctx.device,
        runtime=run.ctx.runtime.as_dict() if run.ctx.runtime is not None else None)
        | run.decode_failures.provenance() | _shard_provenance(run.cfg)
        | _centroid_every_provenance(run.cfg), labels)


def _centroid_every_provenance(cfg: InferenceConfig) -> dict[str, Any]:
    """A run whose frames between key frames were cropped from the last poses says so (K > 1
    only: the default changes nothing, and sleap-nn's keys stay as they are)."""
    return {"centroid_every": cfg.centroid_every} if cfg.centroid_every > 1 else {}


def _shard_provenance(cfg: InferenceConfig) -> dict[str, Any]:
    """A frame-range shard of one video records which (``merge`` checks the set is whole)."""
    if cfg.shard is None or cfg.inputs:
        return {}
    return {"shard": list(cfg.shard)}


def make_writer(run: PreparedRun, *, output_path: str | None,
                on_frame: Callable[[int], None] | None = None, journal: Any = None,
                resumed: ResumedFrames | None = None, stream: bool = False) -> Any:
    """The ``.slp`` sink of ``run``, with the provenance its graph records (with several
    inputs: one writer per video, each output written as its video ends)."""
    started = datetime.now()
    plan = run.plan
    if isinstance(plan, ManyPlan):
        from sleapflow.stages.write_many import ManyWriter

        def writer_for(task: VideoTask) -> SlpWriter:
            assert task.plan is not None  # only planned videos get a writer
            return make_writer(
                dataclasses.replace(run, plan=task.plan, cfg=single_config(run.cfg, task),
                                    decode_failures=run.decode_failures.of_video(task.video_id)),
                output_path=task.output)

        # Several inputs: ``journal`` is the run's VideoJournals (one journal per video).
        return ManyWriter(plan, make_writer_for=writer_for, on_frame=on_frame, journals=journal)
    tracker: TrackerConfig | None = run.ctx.tracker
    if run.graph.from_labels:
        labels = plan.labels
        assert labels is not None and tracker is not None
        builder = LabelsBuilder(list(labels.videos), labels.skeletons[0], keep_empty_frames=True,
                                extra_skeletons=list(labels.skeletons[1:]),
                                save_embeddings=run.cfg.save_embeddings == "slp")

        def provenance(out: sio.Labels) -> dict[str, Any]:
            return add_seed_names(tracking_only_provenance(
                labels, tracker.legacy_provenance(), start=started, end=datetime.now(),
                frames_processed=len(out.labeled_frames), source_file=plan.source_path), out)
    else:
        builder = LabelsBuilder(plan.videos, output_skeleton(run.primary_config()),
                                keep_empty_frames=run.graph.keep_empty_frames,
                                track_order=run.graph.track_order(run.ctx),
                                save_embeddings=run.cfg.save_embeddings == "slp")

        def provenance(out: sio.Labels) -> dict[str, Any]:
            return run_provenance(run, out, started=started, frames_processed=len(out.labeled_frames))

    return SlpWriter(builder, output_path=output_path, provenance=provenance,
                     no_empty_frames=run.cfg.no_empty_frames, on_frame=on_frame,
                     input_path=plan.source_path, journal=journal, resumed=resumed, stream=stream)


# --------------------------------------------------------------------------------------------
# The dry build behind `sleapflow graphs NAME`
# --------------------------------------------------------------------------------------------


def dry_spec(name: str, cfg: InferenceConfig | None = None) -> GraphSpec:
    """The spec ``name`` runs with ``cfg``'s options, built by :func:`build_graph` without an
    input or weights. With ``cfg.model_paths`` the models' configs are read (nothing is
    loaded); without, each model type gets a placeholder config: a graph's stages and edges
    depend on the options, never on the trained model."""
    from sleapflow.models.placeholder import placeholder_model_config

    cfg = cfg or InferenceConfig()
    if name not in GRAPHS:
        raise ConfigError(f"unknown graph {name!r}; known graphs: {', '.join(GRAPHS)}")
    graph = GRAPHS[name]
    embedding = None
    if cfg.model_paths:
        models = resolve_models(cfg.model_paths)
        embedding = resolve_embedding(cfg.model_paths)
        check_embedding_options(cfg, embedding is not None, bool(models))
        select_graph(list(models), name)
    else:
        models = {kind: ModelRef(path=Path(f"<{kind} model>"),
                                 config=placeholder_model_config(kind))
                  for kind in graph.model_types}
    plan = InputPlan(kind="dry", source_path=None, videos=[], items=[])
    ctx = _context(cfg, graph, models, plan)
    if embedding is not None:
        ctx = dataclasses.replace(ctx, embedding=embedding)
    if graph.from_labels:
        from sleapflow.tracking.track_only import resolve_track_only_config

        ctx = BuildContext(cfg=cfg, models={}, plan=plan, device="cpu",
                           tracker=resolve_track_only_config(cfg.tracker, cfg.max_instances))
        plan.labels = sio.Labels(skeletons=[sio.Skeleton(["node"])])
    return build_graph(PreparedRun(cfg=cfg, graph=graph, ctx=ctx, plan=plan))

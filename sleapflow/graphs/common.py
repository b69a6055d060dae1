"""What every graph declaration shares: resolved models, preprocessing plans, stage factories."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import anyio
import sleap_io as sio

from sleapflow.backends import RuntimeChoice
from sleapflow.backends.fused import FusedPeaks
from sleapflow.errors import ConfigError
from sleapflow.inputs import InputPlan
from sleapflow.models import ModelConfig, load_model, read_model_config, resolve_model_dir
from sleapflow.models.embedding_config import EmbeddingModelConfig, is_embedding_folder, read_embedding_config
from sleapflow.models.export_folder import is_network_folder
from sleapflow.options.config import (
    ExecutionOptions,
    GroupingOptions,
    InferenceConfig,
    PeakOptions,
    PreprocessingOptions,
)
from sleapflow.options.tracker import TrackerConfig
from sleapflow.runtime import BatchStage, MapStage, ReorderStage
from sleapflow.stages.forward import forward_stage, is_forward
from sleapflow.stages.peaks import PeakSettings
from sleapflow.stages.preprocess import Preprocessor, PreprocessPlan, frame_shape_key, make_frame_batch
from sleapflow.stages.raw import RawOptions

#: ``build(ctx, raw)``: the model stages between the source and the shared post stages; with
#: ``raw`` (the reference's ``return_*`` flags) the last one emits the raw-array dicts instead.
ModelStages = Callable[["BuildContext", "RawOptions | None"], list[Any]]


@dataclass(frozen=True)
class GraphDecl:
    """A named graph, declared once: its models, its model stages and how the rest is framed.

    :func:`sleapflow.graphs.build.build_graph` turns it into the complete, validated
    :class:`~sleapflow.runtime.GraphSpec` (source, these stages, filter, tracker, sink, edge
    bounds); nothing else adds stages, so the spec ``sleapflow graphs`` prints is the one that
    runs.
    """

    name: str
    description: str
    model_types: tuple[str, ...]
    keep_empty_frames: bool
    build: ModelStages
    track_order: Callable[[BuildContext], tuple[str, ...]] = lambda ctx: ()
    #: Whether ``build`` has a raw-array (``make_labels=False``) variant.
    has_raw: bool = False
    #: Whether the models read ground-truth instances from a .slp input.
    needs_ground_truth: bool = False
    #: Identities come from the model's classes: the reference does not re-track them.
    identity_classes: bool = False
    #: True for the track-only graph: frames come from a .slp's instances, not from models.
    from_labels: bool = False


__all__ = (
    "HOST_ARRAY_MODELS", "BuildContext", "EmbeddingRef", "GraphDecl", "ModelRef", "ModelStages",
    "batch_stage", "batch_timeout", "default_cpu_parallelism", "forward_stages", "host_arrays",
    "is_forward", "live_cpu_parallelism", "model_forward_stage", "output_skeleton",
    "preprocess_plan", "preprocess_stage", "resolve_embedding", "resolve_models",
)


@dataclass(frozen=True)
class ModelRef:
    """A model folder and its decoded config; weights load inside the forward stage."""

    path: Path
    config: ModelConfig


@dataclass(frozen=True)
class EmbeddingRef:
    """An embedding (re-ID) model folder and its decoded config; weights load in its forward."""

    path: Path
    config: EmbeddingModelConfig


def resolve_embedding(model_paths: tuple[str, ...]) -> EmbeddingRef | None:
    """The one embedding model among ``model_paths`` (None without one; two is an error: each
    instance has one appearance-vector slot)."""
    found = [p for p in model_paths if is_embedding_folder(p)]
    if len(found) > 1:
        raise ConfigError(f"{len(found)} embedding models given ({', '.join(map(str, found))}); pass "
                          "one: each instance has a single appearance-vector slot")
    if not found:
        return None
    config = read_embedding_config(found[0])
    return EmbeddingRef(path=Path(config.path), config=config)


def resolve_models(model_paths: tuple[str, ...]) -> dict[str, ModelRef]:
    """Pose model folders keyed by model type; two models of one type is an error. An export
    folder (``sleapflow export``) stands for the networks it holds. Embedding models are left
    out (:func:`resolve_embedding` reads them)."""
    from sleapflow.models.export_folder import exported_network_dirs, is_exported_folder

    paths = [p for raw in model_paths if not is_embedding_folder(raw)
             for p in (exported_network_dirs(raw) if is_exported_folder(raw) else [raw])]
    models: dict[str, ModelRef] = {}
    for raw in paths:
        path = resolve_model_dir(raw)
        config = read_model_config(path)
        if config.model_type in models:
            raise ConfigError(
                f"two {config.model_type} models given ({models[config.model_type].path} and "
                f"{path}); pass one model per type"
            )
        models[config.model_type] = ModelRef(path=path, config=config)
    return models


@dataclass
class BuildContext:
    """Everything a graph declaration needs to build its stages."""

    cfg: InferenceConfig
    models: dict[str, ModelRef]
    plan: InputPlan | None
    device: str
    torch_threads: int | None = None
    #: Concurrent forward passes per model (CPU); 1 on an accelerator.
    forward_workers: int = 1
    cpu_limiter: anyio.CapacityLimiter = field(default_factory=lambda: anyio.CapacityLimiter(2))
    device_limiter: anyio.CapacityLimiter = field(default_factory=lambda: anyio.CapacityLimiter(1))
    #: The resolved tracker (defaults filled in), or None when the run does not track.
    tracker: TrackerConfig | None = None
    #: The resolved network runtime (None: torch, e.g. a dry build or a track-only run).
    runtime: RuntimeChoice | None = None
    #: ``--calibration_frames``, planned (int8 only); None: calibrate on the run's own inputs.
    calibration: InputPlan | None = None
    #: What loads a model for a forward stage (``load_model``; a worker that keeps its models
    #: loaded passes a :class:`~sleapflow.models.loader.ModelCache`).
    model_loader: Callable[..., Any] = load_model
    #: The embedding (re-ID) model run on each instance's crop, if one was given.
    embedding: EmbeddingRef | None = None

    @property
    def latency_mode(self) -> bool:
        """A live source read in latency mode (``--live``, the default for live sources):
        batches take what is waiting instead of waiting to fill."""
        return self.plan is not None and self.plan.kind == "live" and self.cfg.live is not False

    @property
    def keep_images(self) -> bool:
        """Frames keep their pixels past preprocessing when the tracker reads them (flow) or
        the embedding branch crops them."""
        return (self.tracker is not None and self.tracker.needs_image) or self.embedding is not None

    # The sub-configs the builders read; each builder takes only the one it uses.

    @cached_property
    def preprocessing(self) -> PreprocessingOptions:
        return self.cfg.preprocessing

    @cached_property
    def peak_options(self) -> PeakOptions:
        return self.cfg.peaks

    @cached_property
    def grouping(self) -> GroupingOptions:
        return self.cfg.grouping

    @cached_property
    def execution(self) -> ExecutionOptions:
        return self.cfg.execution

    def peaks(self, threshold: float) -> PeakSettings:
        opts = self.peak_options
        return PeakSettings(threshold, opts.integral_refinement, opts.integral_patch_size)

    def fuse(self, stage: Any, raw: RawOptions | None = None) -> FusedPeaks | None:
        """``stage``'s peak finding to offer the forward stage's runtime, or None: the raw-output
        path keeps maps (it returns them), and so does ``--host_peaks``."""
        if raw is not None or self.execution.host_peaks:
            return None
        return stage.fused_peaks()

    @property
    def batch_maxsize(self) -> int:
        """Queue bound for edges that carry batches: about ``queue_maxsize`` frames."""
        return max(2, self.execution.queue_maxsize // self.execution.batch_size)


def default_cpu_parallelism(n_models: int) -> tuple[int, int]:
    """(forward workers per model, torch threads per worker) for the CPU.

    Tiny pose networks cannot use many threads, so cores are spent first on batches in flight:
    each model may compute up to ``cores`` batches at once (capped at 4) on one thread each —
    the models of a top-down graph rarely need the CPU at the same moment, so they share cores
    rather than split them. Threads per worker grow only when cores are plentiful.
    """
    cores = os.cpu_count() or 1
    workers = min(4, cores)
    return workers, max(1, cores // (workers * max(1, n_models)))


def live_cpu_parallelism(n_models: int) -> tuple[int, int]:
    """(forward workers per model, threads per worker) for a live source in latency mode.

    A live frame is alone in the graph while the graph keeps up, so batches in flight buy
    nothing but a wait for their turn: one forward pass per model at a time. Its threads are
    a file run's (:func:`default_cpu_parallelism`), not every core: a convolution's sums run
    in another order on another thread count, and the poses of a stream must equal those of
    the same frames read from a file (``--torch_threads`` trades that for speed)."""
    return 1, default_cpu_parallelism(n_models)[1]


def preprocess_plan(cfg: PreprocessingOptions, primary: ModelConfig,
                    fallback: ModelConfig | None = None) -> PreprocessPlan:
    """User overrides first, then the primary model's training config, then the fallback's."""
    def pick(user: Any, name: str) -> Any:
        if user is not None:
            return user
        value = getattr(primary.preprocessing, name)
        if value is None and fallback is not None:
            value = getattr(fallback.preprocessing, name)
        return value

    return PreprocessPlan(
        ensure_rgb=bool(pick(cfg.ensure_rgb, "ensure_rgb")),
        ensure_grayscale=bool(pick(cfg.ensure_grayscale, "ensure_grayscale")),
        max_height=pick(cfg.max_height, "max_height"),
        max_width=pick(cfg.max_width, "max_width"),
        scale=float(cfg.input_scale if cfg.input_scale is not None else primary.preprocessing.scale),
        max_stride=primary.max_stride,
    )


def batch_timeout(execution: ExecutionOptions) -> float | None:
    """The batch stages' flush deadline in seconds (``max_batch_delay_ms``), None for none."""
    return None if execution.max_batch_delay_ms is None else execution.max_batch_delay_ms / 1000.0


def batch_stage(ctx: BuildContext, name: str = "batch") -> BatchStage:
    return BatchStage(name, ctx.execution.batch_size, key=frame_shape_key, make_batch=make_frame_batch,
                      timeout=batch_timeout(ctx.execution), greedy=ctx.latency_mode)


#: Model types whose post-processing runs on numpy arrays (see :func:`host_arrays`). Heads that
#: end in an activation (class maps, class vectors) leave it to torch, so multi-class models
#: are not here.
HOST_ARRAY_MODELS = ("single_instance", "centroid", "centered_instance", "bottomup")


def host_arrays(ctx: BuildContext, ref: ModelRef) -> bool:
    """Whether ``ref``'s batches stay numpy arrays from preprocessing to peaks: ONNX Runtime
    in fp32 on the CPU, from a checkpoint folder, for a model type whose post-processing has a
    numpy form. Such a run imports torch only for an export cache miss, a grayscale conversion,
    resizes past the preprocessor's numpy budget or a top-down crop-rounding recheck."""
    runtime = ctx.runtime
    return (runtime is not None and runtime.name == "onnx" and runtime.precision == "fp32"
            and ctx.device == "cpu" and ref.config.model_type in HOST_ARRAY_MODELS
            and not ref.config.is_legacy and not is_network_folder(ref.path))


def preprocess_stage(ctx: BuildContext, plan: PreprocessPlan, *, keep_raw: bool = False,
                     name: str = "preprocess", numpy: bool = False) -> MapStage:
    budget, threads = None, None
    if ctx.latency_mode and numpy and plan.may_use_torch:
        # Live on ONNX Runtime on the CPU: one resize kernel for the whole stream, imported
        # now, before the stream opens (importing torch mid-stream stalls a frame for 1.3-2 s).
        # torch's, on one thread: 3-4x faster than the numpy copy, and without a thread pool
        # spinning beside the forward pass (single instance at 30 fps on two cores, p99: one
        # thread 13.1-14.7 ms, numpy 15.0-17.3, two threads 20.5-21.1; benchmarks/RESULTS.md).
        import torch  # noqa: F401

        budget, threads = 0, 1
    pre = Preprocessor(plan, keep_raw=keep_raw, keep_images=ctx.keep_images, numpy=numpy,
                       numpy_resize_budget=budget, resize_threads=threads)
    return MapStage(name, pre, limiter=ctx.cpu_limiter)


def model_forward_stage(ctx: BuildContext, ref: ModelRef, *, name: str = "forward",
                  overrides: bool = True, fuse: FusedPeaks | None = None,
                  numpy: bool = False, exact_early: bool = False) -> MapStage:
    cfg = ctx.execution
    device = ctx.device

    def load() -> Any:
        return ctx.model_loader(ref.path, device,
                                backbone_ckpt_path=cfg.backbone_ckpt_path if overrides else None,
                                head_ckpt_path=cfg.head_ckpt_path if overrides else None)

    # One forward at a time per accelerator; on the CPU each model gets its own slots, so a
    # top-down graph's two models, and several batches of one model, run on different cores.
    workers = ctx.forward_workers if device == "cpu" else 1
    limiter = ctx.device_limiter if device != "cpu" else anyio.CapacityLimiter(workers)
    files = None
    if numpy:
        from sleapflow.backends.numpy_onnx import model_files

        files = model_files(ref.path,
                            backbone_ckpt_path=cfg.backbone_ckpt_path if overrides else None,
                            head_ckpt_path=cfg.head_ckpt_path if overrides else None)
    return forward_stage(load, device=device, name=name, limiter=limiter,
                              torch_threads=ctx.torch_threads, channels_last=cfg.channels_last,
                              workers=workers, runtime=ctx.runtime, max_batch=cfg.batch_size,
                              fuse=fuse, files=files, ready_first=ctx.latency_mode,
                              exact_early=exact_early and ctx.latency_mode)


def forward_stages(ctx: BuildContext, ref: ModelRef, *, name: str = "forward",
                   overrides: bool = True, fuse: FusedPeaks | None = None,
                   numpy: bool = False, exact_early: bool = False) -> list[Any]:
    """The forward stage, followed by a reorder when several batches are in flight at once;
    ``fuse`` (:meth:`BuildContext.fuse`) lets an exporting runtime return peaks, not maps;
    ``numpy``: batches are numpy arrays (see :func:`host_arrays`), maps read on the host;
    under int8, preceded by its calibration node. ``exact_early``: in latency mode, the torch
    model behind :meth:`~sleapflow.stages.forward.ModelForward.exact_maps` loads before the
    first frame instead of when a frame first needs it."""
    stage = model_forward_stage(ctx, ref, name=name, overrides=overrides, fuse=fuse, numpy=numpy,
                                exact_early=exact_early)
    before: list[Any] = []
    if ctx.runtime is not None and ctx.runtime.precision == "int8":
        from sleapflow.backends.quantize import CALIBRATION_FRAMES
        from sleapflow.stages.calibrate import calibrate_stage

        before = [calibrate_stage(stage, frames=CALIBRATION_FRAMES)]
    if stage.preserves_order:
        return [*before, stage]
    return [*before, stage, ReorderStage(f"{name}_reorder")]


def output_skeleton(config: ModelConfig) -> sio.Skeleton:
    """The training skeleton; points are written in head-channel order, by position."""
    sk = config.skeleton
    skeleton = sio.Skeleton(nodes=list(sk.node_names), name=sk.name)
    for src, dst in sk.edges:
        skeleton.add_edge(src, dst)
    for a, b in sk.symmetries:
        skeleton.add_symmetry(a, b)
    return skeleton

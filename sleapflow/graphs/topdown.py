"""Top-down graphs: centroid → crop → centered instance, their multi-class and single-model modes.

The crop step emits each frame's crops; a weighted batch stage re-batches crops (not frames) so
the instance model's forward pass sees full batches while the centroid model runs ahead.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sleapflow.errors import ConfigError
from sleapflow.graphs.common import (
    BuildContext,
    GraphDecl,
    ModelRef,
    batch_stage,
    batch_timeout,
    forward_stages,
    host_arrays,
    is_forward,
    preprocess_plan,
    preprocess_stage,
)
from sleapflow.models import ModelConfig
from sleapflow.runtime import BatchStage, MapStage
from sleapflow.stages.raw import RawOptions, TopDownRawDict
from sleapflow.stages.topdown import (
    CentroidCrops,
    CentroidFinder,
    CentroidOnlyPredictions,
    CropPreprocessor,
    FollowCrops,
    GroundTruthCrops,
    InstancePeaks,
    KeyFrames,
    PoseMemory,
    crop_weight,
    make_crop_batch,
)

__all__ = ("GRAPHS", "anchor_index", "build_centered_instance", "build_centroid", "build_topdown")



def _instance_ref(ctx: BuildContext) -> ModelRef:
    for kind in ("centered_instance", "multi_class_topdown"):
        if kind in ctx.models:
            return ctx.models[kind]
    raise ConfigError("top-down needs a centered_instance or multi_class_topdown model")


def anchor_index(ctx: BuildContext, config: ModelConfig) -> int | None:
    """``--anchor_part``, else the instance model's anchor, else the centroid model's."""
    name = ctx.preprocessing.anchor_part
    if name is None:
        for kind in ("centered_instance", "multi_class_topdown", "centroid"):
            ref = ctx.models.get(kind)
            if ref is not None and ref.config.confmaps.anchor_part:
                name = ref.config.confmaps.anchor_part
                break
    if name is None:
        return None
    nodes = config.skeleton.node_names
    if name not in nodes:
        raise ConfigError(f"--anchor_part {name!r} is not a node of the skeleton {list(nodes)}")
    return nodes.index(name)


def _crop_size(ctx: BuildContext, ref: ModelRef) -> int:
    size = ctx.preprocessing.crop_size or ref.config.preprocessing.crop_size
    if size is None:
        raise ConfigError(f"no crop size: {ref.path} has no preprocessing.crop_size; pass --crop_size")
    return int(size)


def _centroid_finder(ctx: BuildContext, ref: ModelRef, scale: float) -> CentroidFinder:
    return CentroidFinder(ref.config.head_names[0], ref.config.confmaps.output_stride, scale,
                          ctx.peaks(ctx.peak_options.centroid_threshold), ctx.peak_options.max_instances)


def _instance_stages(ctx: BuildContext, ref: ModelRef, raw: RawOptions | None = None, *,
                     numpy: bool = False, one_frame_batches: bool = False) -> list[Any]:
    config = ref.config
    user_scale = ctx.preprocessing.input_scale
    scale = user_scale if user_scale is not None else config.preprocessing.scale
    class_head = None
    classes: tuple[str, ...] = ()
    assign: Callable[..., Any] | None = None
    if config.class_vectors is not None:
        from sleapflow.ops.identity import assign_classes_topdown

        assign = assign_classes_topdown

        class_head = config.head_names[1]
        classes = config.class_vectors.classes
    peaks = InstancePeaks(config.head_names[0], config.confmaps.output_stride, scale,
                          ctx.peaks(ctx.peak_options.instance_threshold),
                          len(config.confmaps.part_names or ()), class_head=class_head,
                          class_names=classes, assign=assign)
    last = (MapStage("raw", TopDownRawDict(peaks, _crop_size(ctx, ref), raw), flatten=True,
                     limiter=ctx.cpu_limiter) if raw is not None else
            MapStage("instance_peaks", peaks, flatten=True, limiter=ctx.cpu_limiter))
    # Under --centroid_every the next frame's crops wait for this frame's poses, so a frame's
    # crops must not wait for another frame's to fill a batch.
    crop_batch = (BatchStage("crop_batch", 1, make_batch=make_crop_batch) if one_frame_batches else
                  BatchStage("crop_batch", ctx.execution.batch_size, weight=crop_weight,
                             make_batch=make_crop_batch, timeout=batch_timeout(ctx.execution),
                             greedy=ctx.latency_mode))
    return [
        crop_batch,
        MapStage("crop_preprocess", CropPreprocessor(scale, config.max_stride), limiter=ctx.cpu_limiter),
        *forward_stages(ctx, ref, name="instance_forward", numpy=numpy,
                        fuse=None if numpy else ctx.fuse(peaks, raw)),
        last,
    ]


def build_topdown(ctx: BuildContext, raw: RawOptions | None = None) -> list[Any]:
    centroid = ctx.models["centroid"]
    instance = _instance_ref(ctx)
    plan = preprocess_plan(ctx.preprocessing, centroid.config, instance.config)
    finder = _centroid_finder(ctx, centroid, plan.scale)
    # Numpy arrays end to end (ONNX Runtime on the CPU) unless the raw dicts want torch's; off
    # that path the exporting runtime may return the centroid peaks itself.
    # --centroid_every's pose hand-back works on torch tensors: it keeps the torch path.
    every = ctx.preprocessing.centroid_every
    numpy = (raw is None and every == 1 and host_arrays(ctx, centroid)
             and host_arrays(ctx, instance))
    centroid_forward = forward_stages(ctx, centroid, name="centroid_forward", overrides=False,
                                      numpy=numpy, fuse=None if numpy else ctx.fuse(finder, raw),
                                      exact_early=True)
    model = next(s.fn for s in centroid_forward if is_forward(s))  # int8 puts a calibrator first
    crops = CentroidCrops(finder, _crop_size(ctx, instance),
                          keep_maps=raw is not None and raw.return_confmaps,
                          exact=model.exact_maps if model.approximates_torch else None)
    if every > 1:
        return _follow_stages(ctx, plan, centroid_forward, crops, instance, raw, every)
    stages = [
        batch_stage(ctx),
        preprocess_stage(ctx, plan, keep_raw=True, numpy=numpy),
        *centroid_forward,
        MapStage("crop", crops, flatten=True, limiter=ctx.cpu_limiter),
        *_instance_stages(ctx, instance, raw, numpy=numpy),
    ]
    return stages


def _follow_stages(ctx: BuildContext, plan: Any, centroid_forward: list[Any], crops: CentroidCrops,
                   instance: ModelRef, raw: RawOptions | None, every: int) -> list[Any]:
    """Top-down with ``--centroid_every K``: the centroid model sees every K-th frame only; the
    crop step cuts the others around the previous frame's poses, which the last stage here
    hands back to it (:class:`~sleapflow.stages.topdown.PoseMemory`)."""
    if raw is not None:
        raise ConfigError("--centroid_every needs poses to crop the next frame from; it does not "
                          "work with make_labels=False (raw maps): leave it at 1")
    memory = PoseMemory(anchor_index(ctx, instance.config))
    return [
        batch_stage(ctx),
        preprocess_stage(ctx, plan, keep_raw=True),
        MapStage("key_frames", KeyFrames(every), limiter=ctx.cpu_limiter),
        *centroid_forward,
        FollowCrops(crops, KeyFrames(every), memory, limiter=ctx.cpu_limiter),
        *_instance_stages(ctx, instance, one_frame_batches=True),
        MapStage("remember_poses", memory, offload=False),
    ]


def build_centered_instance(ctx: BuildContext, raw: RawOptions | None = None) -> list[Any]:
    instance = _instance_ref(ctx)
    plan = preprocess_plan(ctx.preprocessing, instance.config)
    crops = GroundTruthCrops(anchor_index(ctx, instance.config), _crop_size(ctx, instance))
    stages = [
        batch_stage(ctx),
        preprocess_stage(ctx, plan, keep_raw=True),
        MapStage("gt_crop", crops, flatten=True, limiter=ctx.cpu_limiter),
        *_instance_stages(ctx, instance, raw),
    ]
    return stages


def build_centroid(ctx: BuildContext, raw: RawOptions | None = None) -> list[Any]:
    centroid = ctx.models["centroid"]
    plan = preprocess_plan(ctx.preprocessing, centroid.config)
    finder = _centroid_finder(ctx, centroid, plan.scale)
    stages = [
        batch_stage(ctx),
        preprocess_stage(ctx, plan),
        *forward_stages(ctx, centroid, fuse=ctx.fuse(finder, raw)),
        MapStage("centroids", CentroidOnlyPredictions(finder, anchor_index(ctx, centroid.config)),
                 flatten=True, limiter=ctx.cpu_limiter),
    ]
    return stages


def _classes(ctx: BuildContext) -> tuple[str, ...]:
    ref = ctx.models.get("multi_class_topdown")
    if ref is None or ref.config.class_vectors is None:
        return ()
    return ref.config.class_vectors.classes


GRAPHS = [
    GraphDecl("topdown", "centroid model → crops → centered-instance model",
              ("centroid", "centered_instance"), False, build_topdown, has_raw=True),
    GraphDecl("multiclass_topdown", "top-down with identity classes from class vectors",
              ("centroid", "multi_class_topdown"), False, build_topdown, track_order=_classes,
              has_raw=True, identity_classes=True),
    GraphDecl("centered_instance", "centered-instance model on ground-truth centroids (.slp input)",
              ("centered_instance",), False, build_centered_instance, has_raw=True,
              needs_ground_truth=True),
    GraphDecl("multiclass_centered_instance",
              "multi-class centered-instance model on ground-truth centroids (.slp input)",
              ("multi_class_topdown",), False, build_centered_instance, track_order=_classes,
              has_raw=True, needs_ground_truth=True, identity_classes=True),
    GraphDecl("centroid", "centroid model alone: one-node centroid instances",
              ("centroid",), True, build_centroid),
]

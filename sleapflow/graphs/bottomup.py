"""Bottom-up graphs: part affinity field grouping, and multi-class bottom-up with class maps."""

from __future__ import annotations

from typing import Any

from sleapflow.errors import ConfigError
from sleapflow.graphs.common import (
    BuildContext,
    GraphDecl,
    batch_stage,
    forward_stages,
    host_arrays,
    preprocess_plan,
    preprocess_stage,
)
from sleapflow.models import ModelConfig
from sleapflow.runtime import MapStage, ReorderStage
from sleapflow.stages.raw import BottomUpRawDict, MultiClassBottomUpRawDict, RawOptions

__all__ = ("GRAPHS", "build_bottomup", "build_multiclass_bottomup", "paf_edges")



def paf_edges(config: ModelConfig) -> list[tuple[int, int]]:
    """PAF edges as node indices into the confidence-map channels (``part_names``)."""
    assert config.pafs is not None
    parts = list(config.confmaps.part_names or ())
    try:
        return [(parts.index(src), parts.index(dst)) for src, dst in config.pafs.edges]
    except ValueError as exc:
        raise ConfigError(f"{config.path}: a PAF edge names a part not in {parts}: {exc}") from exc


def build_bottomup(ctx: BuildContext, raw: RawOptions | None = None) -> list[Any]:
    # Imported here: graphs that never group need not load scipy's matching or these stages.
    from sleapflow.stages.bottomup import PafGrouping, PafPeaks

    ref = ctx.models["bottomup"]
    config = ref.config
    assert config.pafs is not None
    plan = preprocess_plan(ctx.preprocessing, config)
    edges = paf_edges(config)
    peaks = PafPeaks(config.head_names[0], config.head_names[1], config.confmaps.output_stride,
                     config.pafs.output_stride, edges, ctx.peaks(ctx.peak_options.instance_threshold),
                     n_points=ctx.grouping.n_points, max_edge_length_ratio=ctx.grouping.max_edge_length_ratio,
                     dist_penalty_weight=ctx.grouping.dist_penalty_weight)
    grouping = PafGrouping(edges, len(config.confmaps.part_names or ()), plan.scale,
                           min_line_scores=ctx.grouping.min_line_scores,
                           min_instance_peaks=ctx.grouping.min_instance_peaks,
                           max_instances=ctx.peak_options.max_instances)
    workers = ctx.execution.postprocess_workers
    # Numpy arrays end to end (ONNX Runtime on the CPU, no torch) unless the raw dicts want
    # torch's; off that path the exporting runtime may find the peaks itself.
    numpy = raw is None and host_arrays(ctx, ref)
    stages: list[Any] = [batch_stage(ctx), preprocess_stage(ctx, plan, numpy=numpy),
                         *forward_stages(ctx, ref, numpy=numpy,
                                         fuse=None if numpy else ctx.fuse(peaks, raw))]
    if raw is not None:
        stages.append(MapStage("raw", BottomUpRawDict(peaks, grouping, raw), limiter=ctx.cpu_limiter))
        return stages
    stages += [
        MapStage("paf_peaks", peaks, limiter=ctx.cpu_limiter),
        MapStage("group", grouping, flatten=True, workers=workers),
    ]
    if workers > 1:
        stages.append(ReorderStage("reorder"))
    return stages


def build_multiclass_bottomup(ctx: BuildContext, raw: RawOptions | None = None) -> list[Any]:
    from sleapflow.stages.bottomup import ClassMapGrouping

    ref = ctx.models["multi_class_bottomup"]
    config = ref.config
    assert config.class_maps is not None
    plan = preprocess_plan(ctx.preprocessing, config)
    grouping = ClassMapGrouping(config.head_names[0], config.head_names[1],
                                config.confmaps.output_stride, config.class_maps.output_stride,
                                config.class_maps.classes, len(config.confmaps.part_names or ()),
                                plan.scale, ctx.peaks(ctx.peak_options.instance_threshold),
                                ctx.peak_options.max_instances)
    stages = [
        batch_stage(ctx),
        preprocess_stage(ctx, plan),
        *forward_stages(ctx, ref, fuse=ctx.fuse(grouping, raw)),
        MapStage("classify", grouping, flatten=True, limiter=ctx.cpu_limiter) if raw is None else
        MapStage("raw", MultiClassBottomUpRawDict(grouping, raw), limiter=ctx.cpu_limiter),
    ]
    return stages


def _classes(ctx: BuildContext) -> tuple[str, ...]:
    config = ctx.models["multi_class_bottomup"].config
    return config.class_maps.classes if config.class_maps is not None else ()


GRAPHS = [
    GraphDecl("bottomup", "all parts at once, grouped into animals with part affinity fields",
              ("bottomup",), True, build_bottomup, has_raw=True),
    GraphDecl("multiclass_bottomup", "bottom-up with identity classes from class maps",
              ("multi_class_bottomup",), True, build_multiclass_bottomup, track_order=_classes,
              has_raw=True, identity_classes=True),
]

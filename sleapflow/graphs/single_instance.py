"""Single-instance graph: decode → batch → preprocess → forward → global peaks → sink."""

from __future__ import annotations

from typing import Any

from sleapflow.graphs.common import (
    BuildContext,
    GraphDecl,
    batch_stage,
    edge_bounds,
    forward_stages,
    preprocess_plan,
    preprocess_stage,
)
from sleapflow.runtime import MapStage
from sleapflow.stages.peaks import SingleInstancePeaks


def build(ctx: BuildContext) -> tuple[list[Any], list[int]]:
    ref = ctx.models["single_instance"]
    plan = preprocess_plan(ctx.cfg, ref.config)
    peaks = SingleInstancePeaks(ref.config.head_names[0], ref.config.confmaps.output_stride,
                                plan.scale, ctx.peaks(ctx.cfg.instance_threshold))
    stages = [
        batch_stage(ctx),
        preprocess_stage(ctx, plan),
        *forward_stages(ctx, ref),
        MapStage("peaks", peaks, flatten=True, limiter=ctx.cpu_limiter),
    ]
    return stages, edge_bounds(ctx, stages)


GRAPH = GraphDecl(
    name="single_instance", description="one animal per frame: global peak per part",
    model_types=("single_instance",), keep_empty_frames=False, build=build,
    stage_names=("batch", "preprocess", "forward", "peaks"),
)

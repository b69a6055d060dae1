"""Single-instance graph: decode → batch → preprocess → forward → global peaks → sink."""

from __future__ import annotations

from typing import Any

from sleapflow.graphs.common import (
    BuildContext,
    batch_stage,
    forward_stage,
    preprocess_plan,
    preprocess_stage,
)
from sleapflow.runtime import MapStage
from sleapflow.stages.peaks import SingleInstancePeaks

NAME = "single_instance"
DESCRIPTION = "one animal per frame: global peak per part"
MODEL_TYPES = ("single_instance",)
KEEP_EMPTY_FRAMES = False


def build(ctx: BuildContext) -> tuple[list[Any], list[int]]:
    ref = ctx.models["single_instance"]
    plan = preprocess_plan(ctx.cfg, ref.config)
    peaks = SingleInstancePeaks(ref.config.head_names[0], ref.config.confmaps.output_stride,
                                plan.scale, ctx.peaks(ctx.cfg.instance_threshold))
    stages = [
        batch_stage(ctx),
        preprocess_stage(ctx, plan),
        forward_stage(ctx, ref),
        MapStage("peaks", peaks, flatten=True, limiter=ctx.cpu_limiter),
    ]
    q, qb = ctx.cfg.queue_maxsize, ctx.batch_maxsize
    # edges: source→batch, batch→preprocess, preprocess→forward, forward→peaks, peaks→next
    return stages, [q, qb, qb, qb, q]

"""Single-instance graph: decode → batch → preprocess → forward → global peaks → sink."""

from __future__ import annotations

from typing import Any

from sleapflow.graphs.common import (
    BuildContext,
    GraphDecl,
    batch_stage,
    forward_stages,
    host_arrays,
    preprocess_plan,
    preprocess_stage,
)
from sleapflow.runtime import MapStage
from sleapflow.stages.peaks import SingleInstancePeaks
from sleapflow.stages.raw import RawOptions, SingleInstanceRawDict

__all__ = ("GRAPH", "build")



def build(ctx: BuildContext, raw: RawOptions | None = None) -> list[Any]:
    ref = ctx.models["single_instance"]
    plan = preprocess_plan(ctx.preprocessing, ref.config)
    head = ref.config.head_names[0]
    peaks = SingleInstancePeaks(head, ref.config.confmaps.output_stride, plan.scale,
                                ctx.peaks(ctx.peak_options.instance_threshold))
    last = (MapStage("raw", SingleInstanceRawDict(peaks, head, raw), limiter=ctx.cpu_limiter)
            if raw is not None else
            MapStage("peaks", peaks, flatten=True, limiter=ctx.cpu_limiter))
    # The raw dicts hand torch's arrays to the caller as the reference does: torch path. The
    # numpy path (no torch) reads maps on the host; peaks fused into the export need torch's
    # exporting runner, so they are offered only off that path.
    numpy = raw is None and host_arrays(ctx, ref)
    fuse = None if numpy else ctx.fuse(peaks, raw)
    return [batch_stage(ctx), preprocess_stage(ctx, plan, numpy=numpy),
            *forward_stages(ctx, ref, numpy=numpy, fuse=fuse), last]


GRAPH = GraphDecl(
    name="single_instance", description="one animal per frame: global peak per part",
    model_types=("single_instance",), keep_empty_frames=False, build=build, has_raw=True,
)

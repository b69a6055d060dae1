"""One path from options to a running graph, shared by the CLI, run_inference, the async API and
the benchmark harness, so what is measured is what users run."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sleap_io as sio

from sleapflow.config import InferenceConfig, resolve_device
from sleapflow.errors import ConfigError
from sleapflow.graphs import GRAPHS, select_graph
from sleapflow.graphs.common import (
    BuildContext,
    GraphDecl,
    default_torch_threads,
    output_skeleton,
    resolve_models,
)
from sleapflow.inputs import InputPlan, plan_input
from sleapflow.inputs import default_output_path as inputs_default_output_path
from sleapflow.provenance import inference_provenance
from sleapflow.runtime import GraphRunner, GraphSpec, GraphStats, chain
from sleapflow.stages.decode import DecodeSource
from sleapflow.stages.write import LabelsBuilder, SlpWriter

#: Graphs whose models need ground-truth instances from a .slp input.
GT_GRAPHS = {"centered_instance", "multiclass_centered_instance"}

INFERENCE_CONFIG_KEYS = (
    "peak_threshold", "filter_overlapping", "filter_overlapping_method",
    "filter_overlapping_threshold", "filter_min_visible_nodes", "filter_min_visible_node_fraction",
    "filter_min_mean_node_score", "filter_min_instance_score", "integral_refinement",
    "integral_patch_size", "batch_size", "max_instances", "crop_size", "input_scale", "anchor_part",
    "queue_maxsize",
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


def prepare(cfg: InferenceConfig, *, plan: InputPlan | None = None) -> PreparedRun:
    """Resolve device, models, graph and input; everything here fails fast with a clear error.

    ``plan`` lets a caller that supplies its own source (frames pushed by an embedding service)
    skip input planning, which needs ``cfg.data_path``.
    """
    if not cfg.model_paths:
        raise ConfigError("no models given: pass --model_paths/-m (or --tracking to track an "
                          "existing .slp)")
    device = resolve_device(cfg.device)
    models = resolve_models(cfg.model_paths)
    graph_name = select_graph(list(models), cfg.graph)
    if plan is None:
        plan = plan_input(cfg, need_ground_truth=graph_name in GT_GRAPHS)
    threads = cfg.torch_threads if cfg.torch_threads is not None else (
        default_torch_threads() if device == "cpu" else None)
    ctx = BuildContext(cfg=cfg, models=models, plan=plan, device=device, torch_threads=threads)
    return PreparedRun(cfg=cfg, graph=GRAPHS[graph_name], ctx=ctx, plan=plan)


def build_spec(run: PreparedRun, source: Any, sink: Any) -> GraphSpec:
    """Chain the source, the graph's own stages, the shared post stages and the sink."""
    middle, sizes = run.graph.build(run.ctx)
    meta = {"model_types": sorted(run.ctx.models), "device": run.ctx.device}
    return chain(run.graph_name, [source, *middle, sink], sizes, description=run.graph.description,
                 meta=meta)


def make_writer(run: PreparedRun, *, output_path: str | None,
                on_frame: Callable[[int], None] | None = None) -> SlpWriter:
    primary = run.primary_config()
    builder = LabelsBuilder(run.plan.videos, output_skeleton(primary),
                            keep_empty_frames=run.graph.keep_empty_frames,
                            track_order=run.graph.track_order(run.ctx))
    started = datetime.now()

    def provenance(labels: sio.Labels) -> dict[str, Any]:
        cfg_dict = run.cfg.to_dict()
        return inference_provenance(
            started=started, finished=datetime.now(),
            model_paths=[m.path for m in run.ctx.models.values()], graph=run.graph_name,
            source_file=run.plan.source_path, input_labels=run.plan.labels,
            frame_selection_method=run.plan.frame_selection_method,
            frames_processed=len(labels.labeled_frames),
            inference_config={k: cfg_dict.get(k) for k in INFERENCE_CONFIG_KEYS},
            tracking_config=None, device=run.ctx.device)

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
    source = DecodeSource(run.plan, limiter=run.ctx.cpu_limiter)
    runner = GraphRunner(build_spec(run, source, writer))
    stats = await runner.run()
    assert writer.result is not None
    return RunResult(labels=writer.result, stats=stats, output_path=output_path)

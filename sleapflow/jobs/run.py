"""Run a prepared graph to a ``.slp``: the path the CLI, run_inference and the benchmark share.

Graphs are assembled in one place, :mod:`sleapflow.graphs.build`; this module only runs them
and hands back what the writer made, so what is measured is what users run.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import sleap_io as sio

from sleapflow.graphs.build import PreparedRun, build_graph, make_writer, prepare
from sleapflow.inputs import InputPlan
from sleapflow.jobs.progress import announce as announce_start
from sleapflow.options.config import InferenceConfig
from sleapflow.outputs.naming import default_output_path as inputs_default_output_path
from sleapflow.runtime import GraphSpec, GraphStats, run_graph

__all__ = (
    "PreparedRun", "RunResult", "build_spec", "default_output_path", "make_writer", "prepare", "prepare_job",
    "run_to_file",
)


def prepare_job(cfg: InferenceConfig, *, announce: bool = True, **inputs: Any) -> PreparedRun:
    """:func:`prepare` a run (models, graph, input; no weights load) and log its start line, as
    every front end does before its first frame (``inputs``: ``plan``, ``input_labels``,
    ``input_video``, as ``prepare`` takes them)."""
    run = prepare(cfg, **inputs)
    if announce:
        announce_start(graph=run.graph_name, device=run.ctx.device,
                       runtime=run.ctx.runtime.name if run.ctx.runtime is not None else None)
    return run


def build_spec(run: PreparedRun, source: Any, sink: Any) -> GraphSpec:
    """``run``'s complete graph with this source and sink (see :func:`build_graph`)."""
    return build_graph(run, source=source, sink=sink)


def default_output_path(cfg: InferenceConfig, plan: InputPlan | None = None) -> str:
    """``<input without its last suffix>.predictions.slp``, as ``sleap-nn track`` names it
    (``<labels>.<video>.predictions.slp`` with ``--video_index``); see
    :func:`sleapflow.inputs.default_output_path`."""
    return inputs_default_output_path(cfg, plan)


@dataclass
class RunResult:
    #: None only for a journaled run that wrote its ``.slp`` from the journal (no ``Labels``
    #: was built: ``sleapflow.jobs.resume.run_journaled(keep_labels=False)``).
    labels: sio.Labels | None
    stats: GraphStats
    output_path: str | None


async def run_to_file(cfg: InferenceConfig, *, output_path: str | None,
                      on_frame: Callable[[int], None] | None = None,
                      prepared: PreparedRun | None = None) -> RunResult:
    """Run inference over the whole input and write (or only return) the labels."""
    run = prepared or prepare(cfg)
    spec = build_graph(run, output_path=output_path, on_frame=on_frame)
    stats = await run_graph(spec)
    writer = spec.stages[-1]
    assert writer.result is not None
    return RunResult(labels=writer.result, stats=stats, output_path=output_path)

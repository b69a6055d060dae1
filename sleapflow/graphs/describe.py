"""Describe a named graph's stages and edges without loading any model or input."""

from __future__ import annotations

from pathlib import Path

from sleapflow.config import InferenceConfig
from sleapflow.graphs import GRAPHS
from sleapflow.graphs.common import BuildContext, ModelRef
from sleapflow.models import read_model_config
from sleapflow.runtime import chain
from sleapflow.testing import ListSink, ListSource

#: Stand-in model folders for describing a graph: the shipped test models, when present.
_EXAMPLE_MODELS = Path(__file__).resolve().parents[2].parent / "shared" / "assets" / "model_ckpts"


def describe_graph(name: str) -> str:
    """The graph's stages in flow order and its bounded edges (with the default queue sizes)."""
    decl = GRAPHS[name]
    lines = [f"graph {name}: {decl.description}", f"  model types: {', '.join(decl.model_types)}"]
    if decl.stage_names:
        lines.append("  stages: " + " -> ".join(["decode", *decl.stage_names, "write"]))
    return "\n".join(lines)


def describe_built(name: str, models: dict[str, ModelRef]) -> str:
    ctx = BuildContext(cfg=InferenceConfig(), models=models, plan=None, device="cpu")
    middle, sizes = GRAPHS[name].build(ctx)
    spec = chain(name, [ListSource([], name="decode"), *middle, ListSink(name="write")], sizes,
                 description=GRAPHS[name].description)
    return spec.describe()


__all__ = ["describe_built", "describe_graph", "read_model_config"]

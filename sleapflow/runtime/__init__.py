"""How graphs execute: graph declarations, the runner, metered streams and statistics."""

from sleapflow.runtime.adapters import BatchStage, MapStage, ReorderStage
from sleapflow.runtime.graph import Edge, GraphSpec, Stage, chain, validate
from sleapflow.runtime.runner import GraphRunner, run_graph
from sleapflow.runtime.stats import GraphStats, StageStats

__all__ = [
    "BatchStage",
    "Edge",
    "GraphRunner",
    "GraphSpec",
    "GraphStats",
    "MapStage",
    "ReorderStage",
    "Stage",
    "StageStats",
    "chain",
    "run_graph",
    "validate",
]

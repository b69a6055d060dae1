"""How graphs execute: graph declarations, the runner, metered streams and statistics."""

from sleapflow.runtime.adapters import (
    BatchStage,
    CollectSink,
    KeyedStage,
    MapStage,
    ReorderStage,
    video_key,
)
from sleapflow.runtime.graph import Edge, GraphSpec, Stage, chain, edge_bounds, validate
from sleapflow.runtime.runner import GraphRunner, ItemFailure, RunSpec, run_graph
from sleapflow.runtime.scope import RunningGraph, running_graph
from sleapflow.runtime.serial import run_serial
from sleapflow.runtime.stats import GraphStats, StageStats

__all__ = (
    "BatchStage", "CollectSink", "Edge", "GraphRunner", "GraphSpec", "GraphStats", "ItemFailure",
    "KeyedStage", "MapStage", "ReorderStage", "RunSpec", "RunningGraph", "Stage", "StageStats", "chain",
    "edge_bounds",
    "run_graph", "run_serial", "running_graph", "validate", "video_key",
)

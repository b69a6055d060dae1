"""Describe a named graph's stages and bounded edges without loading any model or input."""

from __future__ import annotations

import itertools

from sleapflow.graphs import GRAPHS

#: Stages whose output is a batch, and stages that turn batches back into frames.
_MAKES_BATCHES = {"batch", "crop_batch"}
_SPLITS_BATCHES = {"peaks", "crop", "gt_crop", "instance_peaks", "group", "centroids", "classify"}


def describe_graph(name: str, *, queue_maxsize: int = 32, batch_size: int = 4) -> str:
    """The graph's stages in flow order and its edges with their bounds."""
    decl = GRAPHS[name]
    source = "labels" if name == "track_only" else "decode"
    stages = [source, *decl.stage_names, "write"]
    lines = [f"graph {name}: {decl.description}",
             f"  model types: {', '.join(decl.model_types) or '(none)'}",
             "  stages: " + " -> ".join(stages),
             f"  edges (--queue_maxsize {queue_maxsize}, --batch_size {batch_size}):"]
    frames, batches = queue_maxsize, max(2, queue_maxsize // batch_size)
    carrying_batches = False
    for src, dst in itertools.pairwise(stages):
        if src in _MAKES_BATCHES:
            carrying_batches = True
        elif src in _SPLITS_BATCHES:
            carrying_batches = False
        bound = f"{batches} batches" if carrying_batches else f"{frames} frames"
        lines.append(f"    {src} -> {dst}  (bounded: {bound})")
    return "\n".join(lines)

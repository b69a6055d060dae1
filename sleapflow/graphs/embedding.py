"""The embedding (re-ID) branch any pose graph can carry: instance crops → batched forward →
appearance vectors on each frame's instances, ahead of the tracker."""

from __future__ import annotations

from typing import Any

import anyio

from sleapflow.errors import ConfigError
from sleapflow.graphs.common import BuildContext, EmbeddingRef, batch_timeout
from sleapflow.models.embedding import load_embedding_model
from sleapflow.runtime import BatchStage, MapStage, ReorderStage
from sleapflow.stages.embed import EmbedCrops, attach_embeddings, embed_weight, make_embed_batch
from sleapflow.stages.forward import forward_stage

__all__ = ("embedding_anchor", "embedding_stages")


def embedding_anchor(ref: EmbeddingRef, node_names: tuple[str, ...]) -> int | None:
    """The node the embedding model centres its crops on, in the pose skeleton (None: the mean
    of the visible nodes)."""
    name = ref.config.anchor_part
    if name is None:
        return None
    if name not in node_names:
        raise ConfigError(f"the embedding model {ref.path} centres crops on node {name!r}, which "
                          f"the pose skeleton lacks (its nodes: {', '.join(node_names)})")
    return node_names.index(name)


def embedding_stages(ctx: BuildContext, node_names: tuple[str, ...]) -> list[Any]:
    """Stages from filtered predictions to predictions carrying ``embeddings``."""
    ref = ctx.embedding
    assert ref is not None
    device = ctx.device

    def load() -> Any:
        return load_embedding_model(ref.path, device)

    workers = ctx.forward_workers if device == "cpu" else 1
    limiter = ctx.device_limiter if device != "cpu" else anyio.CapacityLimiter(workers)
    # torch runs the embedder: its per-crop standardisation is part of the module, and the
    # reference's vectors come from torch too.
    forward = forward_stage(load, device=device, name="embed_forward", limiter=limiter,
                            torch_threads=ctx.torch_threads, workers=workers,
                            max_batch=ctx.execution.batch_size)
    stages: list[Any] = [
        MapStage("embed_crop", EmbedCrops(ref.config, embedding_anchor(ref, node_names)),
                 limiter=ctx.cpu_limiter),
        BatchStage("embed_batch", ctx.execution.batch_size, weight=embed_weight,
                   make_batch=make_embed_batch, timeout=batch_timeout(ctx.execution)),
        forward,
    ]
    if not forward.preserves_order:
        stages.append(ReorderStage("embed_forward_reorder"))
    stages.append(MapStage("embed_attach", attach_embeddings, flatten=True, limiter=ctx.cpu_limiter))
    return stages

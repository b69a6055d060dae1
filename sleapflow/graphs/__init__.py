"""Graph declarations, one module per model type, and the registry of named graphs."""

from __future__ import annotations

from sleapflow.errors import ConfigError
from sleapflow.graphs import bottomup, single_instance, topdown, track_only
from sleapflow.graphs.common import GraphDecl

__all__ = ("GRAPHS", "select_graph")


#: The named graphs, a plain dict: name → declaration.
GRAPHS: dict[str, GraphDecl] = {
    decl.name: decl for decl in [single_instance.GRAPH, *topdown.GRAPHS, *bottomup.GRAPHS,
                                 track_only.GRAPH]
}

#: Which graph runs for a set of model types (sleap-nn's dispatch).
_BY_TYPES: dict[frozenset[str], str] = {
    frozenset({"single_instance"}): "single_instance",
    frozenset({"centroid", "centered_instance"}): "topdown",
    frozenset({"centroid", "multi_class_topdown"}): "multiclass_topdown",
    frozenset({"centroid"}): "centroid",
    frozenset({"centered_instance"}): "centered_instance",
    frozenset({"multi_class_topdown"}): "multiclass_centered_instance",
    frozenset({"bottomup"}): "bottomup",
    frozenset({"multi_class_bottomup"}): "multiclass_bottomup",
}


def select_graph(model_types: list[str], forced: str | None = None) -> str:
    """The graph for these model types, or a clear error naming what was given and expected."""
    types = frozenset(model_types)
    chosen = _BY_TYPES.get(types)
    if forced is not None:
        if forced not in GRAPHS:
            raise ConfigError(f"--graph: unknown graph {forced!r}; known graphs: {', '.join(GRAPHS)}")
        needed = frozenset(GRAPHS[forced].model_types)
        if needed != types:
            raise ConfigError(
                f"--graph {forced} needs models of type {sorted(needed)}, got {sorted(types)}"
            )
        return forced
    if chosen is None:
        raise ConfigError(
            f"cannot run models of types {sorted(model_types)} together; expected one of: a single "
            "model (single_instance, centroid, centered_instance, bottomup, multi_class_bottomup, "
            "multi_class_topdown), or a centroid model plus a centered_instance or "
            "multi_class_topdown model"
        )
    if chosen not in GRAPHS:
        raise ConfigError(f"graph {chosen!r} for models {sorted(model_types)} is not available yet")
    return chosen

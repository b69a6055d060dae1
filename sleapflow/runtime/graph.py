"""Graph declarations as data: stages, bounded edges, and their validation before anything runs."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

import msgspec
from anyio.abc import TaskStatus

from sleapflow.errors import ConfigError

__all__ = ("Edge", "Emits", "GraphSpec", "Role", "Stage", "chain", "edge_bounds", "validate")


Role = Literal["source", "stage", "sink"]
#: What a stage sends on: single items (frames, crops' frames) or batches of them. A stage
#: without an ``emits`` sends what it receives (one result per item, same unit).
Emits = Literal["items", "batches"]


@runtime_checkable
class Stage(Protocol):
    """A long-lived coroutine that owns its inbox and outbox.

    ``run`` loads its resources, calls ``task_status.started()``, consumes its inbox to the end,
    flushes what it holds and returns, closing both streams on every path.
    """

    name: str
    role: Role
    #: False when items may leave in another order than they came (parallel workers).
    preserves_order: bool
    #: True when the stage must see items in sequence order (tracker, writer).
    requires_order: bool
    #: True for a stage that restores sequence order.
    restores_order: bool

    async def run(self, inbox: Any, outbox: Any, *, task_status: TaskStatus[None]) -> None: ...


class Edge(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A bounded queue from one stage to the next."""

    src: str
    dst: str
    maxsize: int


@dataclass(frozen=True)
class GraphSpec:
    """A named graph: its stages in flow order and the bounded edges between them."""

    name: str
    stages: tuple[Any, ...]
    edges: tuple[Edge, ...]
    description: str = ""
    meta: dict[str, Any] = field(default_factory=dict)
    #: Told each frame's passage through each stage (``passed(stage, item, sent=...)``): a
    #: live run's :class:`~sleapflow.runtime.latency.LatencyMeter`; None stamps nothing.
    seams: Any = None

    def stage(self, name: str) -> Any:
        for s in self.stages:
            if s.name == name:
                return s
        raise KeyError(name)

    def describe(self) -> str:
        """A human-readable listing of the stages and edges."""
        lines = [f"graph {self.name}" + (f": {self.description}" if self.description else "")]
        for s in self.stages:
            flags = []
            if not getattr(s, "preserves_order", True):
                flags.append("unordered")
            if getattr(s, "restores_order", False):
                flags.append("reorders")
            if getattr(s, "requires_order", False):
                flags.append("order-sensitive")
            workers = getattr(s, "workers", 1)
            if workers > 1:
                flags.append(f"{workers} workers")
            lines.append(f"  [{s.role:<6}] {s.name}" + (f"  ({', '.join(flags)})" if flags else ""))
        for e in self.edges:
            lines.append(f"  {e.src} -> {e.dst}  (maxsize {e.maxsize})")
        return "\n".join(lines)

    def mermaid(self) -> str:
        """The graph as Mermaid flowchart text: one node per stage, edges labelled by bound."""
        ids = {s.name: f"s{i}" for i, s in enumerate(self.stages)}
        lines = ["flowchart LR"]
        for s in self.stages:
            shape = ("([", "])") if s.role != "stage" else ("[", "]")
            lines.append(f'  {ids[s.name]}{shape[0]}"{s.name}"{shape[1]}')
        for e in self.edges:
            lines.append(f"  {ids[e.src]} -->|{e.maxsize}| {ids[e.dst]}")
        return "\n".join(lines)


def edge_bounds(stages: Sequence[Any], *, items: int, batches: int) -> list[int]:
    """The bound of each edge of a linear graph, from what the stage before it emits: ``items``
    where single items flow, ``batches`` (about as many items' worth) where batches flow. A
    source emits items."""
    sizes: list[int] = []
    unit: Emits = "items"
    for stage in stages[:-1]:
        unit = getattr(stage, "emits", None) or unit
        sizes.append(batches if unit == "batches" else items)
    return sizes


def chain(name: str, stages: Sequence[Any], maxsize: int | Sequence[int], *,
          description: str = "", meta: dict[str, Any] | None = None,
          seams: Any = None) -> GraphSpec:
    """A linear graph: each stage feeds the next through a queue of ``maxsize`` items."""
    sizes = [maxsize] * (len(stages) - 1) if isinstance(maxsize, int) else list(maxsize)
    if len(sizes) != len(stages) - 1:
        raise ConfigError(f"graph {name}: {len(stages)} stages need {len(stages) - 1} edge sizes")
    edges = tuple(
        Edge(src=a.name, dst=b.name, maxsize=size)
        for a, b, size in zip(stages[:-1], stages[1:], sizes)
    )
    spec = GraphSpec(name=name, stages=tuple(stages), edges=edges, description=description,
                     meta=dict(meta or {}), seams=seams)
    validate(spec)
    return spec


def validate(spec: GraphSpec) -> None:
    """Reject a malformed graph before it runs: names, bounds, shape and order constraints."""
    names = [s.name for s in spec.stages]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ConfigError(f"graph {spec.name}: duplicate stage names {duplicates}")
    known = set(names)
    for e in spec.edges:
        if e.src not in known or e.dst not in known:
            raise ConfigError(f"graph {spec.name}: edge {e.src}->{e.dst} names an unknown stage")
        if isinstance(e.maxsize, bool) or not isinstance(e.maxsize, int) or e.maxsize < 1 \
                or e.maxsize == math.inf:
            raise ConfigError(
                f"graph {spec.name}: edge {e.src}->{e.dst} must be bounded by a positive integer "
                f"maxsize (got {e.maxsize!r}); unbounded queues are not allowed"
            )
    outgoing = {n: [e for e in spec.edges if e.src == n] for n in names}
    incoming = {n: [e for e in spec.edges if e.dst == n] for n in names}
    for s in spec.stages:
        want_in = 0 if s.role == "source" else 1
        want_out = 0 if s.role == "sink" else 1
        if len(incoming[s.name]) != want_in or len(outgoing[s.name]) != want_out:
            raise ConfigError(
                f"graph {spec.name}: {s.role} {s.name!r} needs {want_in} input and {want_out} "
                f"output edge(s), has {len(incoming[s.name])} and {len(outgoing[s.name])}"
            )
    sources = [s for s in spec.stages if s.role == "source"]
    if len(sources) != 1:
        raise ConfigError(f"graph {spec.name}: needs exactly one source, has {len(sources)}")
    # Walk the chain from the source, checking that order-sensitive stages see ordered items.
    ordered = True
    current = sources[0]
    seen = 0
    while True:
        seen += 1
        if getattr(current, "requires_order", False) and not ordered:
            raise ConfigError(
                f"graph {spec.name}: stage {current.name!r} needs items in order but follows an "
                "unordered stage; put a reorder stage before it"
            )
        if getattr(current, "restores_order", False):
            ordered = True
        elif not getattr(current, "preserves_order", True):
            ordered = False
        nxt = outgoing[current.name]
        if not nxt:
            break
        current = spec.stage(nxt[0].dst)
    if seen != len(spec.stages):
        raise ConfigError(f"graph {spec.name}: not every stage is reachable from the source")

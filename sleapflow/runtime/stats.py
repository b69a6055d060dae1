"""Per-stage counters recorded at the stream seams, and their immutable snapshots."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType

import msgspec

from sleapflow.runtime.latency import LatencyFigures

__all__ = ("Clock", "GraphStats", "StageMeter", "StageStats")


Clock = Callable[[], float]


class StageStats(msgspec.Struct, frozen=True):
    """Cumulative counters of one stage at one instant."""

    name: str
    items_in: int = 0
    items_out: int = 0
    wall_s: float = 0.0
    busy_s: float = 0.0
    starved_s: float = 0.0
    blocked_s: float = 0.0
    peak_inbox_depth: int = 0

    @property
    def busy_fraction(self) -> float:
        return self.busy_s / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def starved_fraction(self) -> float:
        return self.starved_s / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def blocked_fraction(self) -> float:
        return self.blocked_s / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def items_per_s(self) -> float:
        count = max(self.items_in, self.items_out)
        return count / self.wall_s if self.wall_s > 0 else 0.0

    def minus(self, earlier: StageStats) -> StageStats:
        """The counters accumulated since ``earlier`` (peak depth is kept, it is not additive)."""
        return StageStats(
            name=self.name,
            items_in=self.items_in - earlier.items_in,
            items_out=self.items_out - earlier.items_out,
            wall_s=self.wall_s - earlier.wall_s,
            busy_s=self.busy_s - earlier.busy_s,
            starved_s=self.starved_s - earlier.starved_s,
            blocked_s=self.blocked_s - earlier.blocked_s,
            peak_inbox_depth=self.peak_inbox_depth,
        )


class GraphStats(msgspec.Struct, frozen=True):
    """A snapshot of every stage of a graph, in graph order."""

    graph: str
    stages: tuple[StageStats, ...]
    wall_s: float
    #: A live source's capture-to-pose latency and dropped frames (None for files).
    latency: LatencyFigures | None = None

    def by_name(self) -> Mapping[str, StageStats]:
        return MappingProxyType({s.name: s for s in self.stages})

    @property
    def bottleneck(self) -> str | None:
        """The stage with the highest busy fraction: the one that paces the graph."""
        if not self.stages:
            return None
        return max(self.stages, key=lambda s: s.busy_fraction).name

    def minus(self, earlier: GraphStats) -> GraphStats:
        prior = earlier.by_name()
        return GraphStats(
            graph=self.graph,
            stages=tuple(s.minus(prior[s.name]) if s.name in prior else s for s in self.stages),
            wall_s=self.wall_s - earlier.wall_s,
            latency=self.latency,
        )

    def table(self) -> str:
        """A fixed-width per-stage table for terminals and RESULTS.md."""
        header = (f"{'stage':<26}{'in':>8}{'out':>8}{'items/s':>10}{'busy%':>8}"
                  f"{'starved%':>10}{'blocked%':>10}{'peak q':>8}")
        rows = [header, "-" * len(header)]
        for s in self.stages:
            rows.append(
                f"{s.name:<26}{s.items_in:>8}{s.items_out:>8}{s.items_per_s:>10.1f}"
                f"{100 * s.busy_fraction:>8.1f}{100 * s.starved_fraction:>10.1f}"
                f"{100 * s.blocked_fraction:>10.1f}{s.peak_inbox_depth:>8}"
            )
        rows.append(f"bottleneck: {self.bottleneck}   wall: {self.wall_s:.3f} s")
        if self.latency is not None:
            rows.append(f"live: {self.latency.frames} frames timed, {self.latency.line()}")
            if self.latency.segments:
                rows += ["", self.latency.segment_table()]
        return "\n".join(rows)


class StageMeter:
    """Mutable counters of one stage; only the metered streams and the runner write them."""

    __slots__ = ("_clock", "blocked_s", "items_in", "items_out", "last_item", "name",
                 "peak_inbox_depth", "receivers", "senders", "started_at", "starved_s", "stopped_at")

    def __init__(self, name: str, clock: Clock) -> None:
        self.name = name
        self._clock = clock
        self.items_in = 0
        self.items_out = 0
        self.starved_s = 0.0
        self.blocked_s = 0.0
        self.peak_inbox_depth = 0
        #: Worker handles that have used the inbox / outbox: waits are averaged over them, so
        #: busy, starved and blocked are shares of the stage's whole capacity.
        self.receivers = 0
        self.senders = 0
        #: The item most recently received, so an error can say which frame it was on.
        self.last_item: object = None
        self.started_at: float | None = None
        self.stopped_at: float | None = None

    def snapshot(self) -> StageStats:
        now = self._clock()
        start = self.started_at if self.started_at is not None else now
        end = self.stopped_at if self.stopped_at is not None else now
        wall = max(0.0, end - start)
        return StageStats(
            name=self.name,
            items_in=self.items_in,
            items_out=self.items_out,
            wall_s=wall,
            busy_s=max(0.0, wall - self.starved_s - self.blocked_s),
            starved_s=self.starved_s,
            blocked_s=self.blocked_s,
            peak_inbox_depth=self.peak_inbox_depth,
        )

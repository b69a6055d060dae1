"""Capture-to-pose latency and dropped frames of a live run: a meter and its immutable figures."""

from __future__ import annotations

import math

import msgspec
import numpy as np

__all__ = ("LatencyFigures", "LatencyMeter")


class LatencyFigures(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """What a live run's latency was: frames timed, frames dropped, percentiles in ms.

    Latency is a frame's result time minus its capture time (the stream timestamp on the
    wall clock); the percentiles are None before the first frame has a result."""

    frames: int = 0
    dropped: int = 0
    p50_ms: float | None = None
    p95_ms: float | None = None
    p99_ms: float | None = None
    max_ms: float | None = None

    def line(self) -> str:
        """``latency p50 12.1 ms, p95 15.0 ms, p99 18.2 ms; 3 frames dropped``."""
        if self.p50_ms is None:
            timed = "no frame timed"
        else:
            timed = (f"latency p50 {self.p50_ms:.1f} ms, p95 {self.p95_ms:.1f} ms, "
                     f"p99 {self.p99_ms:.1f} ms")
        return f"{timed}; {self.dropped} frame{'s' * (self.dropped != 1)} dropped"


class LatencyMeter:
    """Mutable record of one live source's frames: latencies (seconds) and drops.

    Written on the event loop by the live source (drops) and the result tap (latencies); read
    through :meth:`figures` at any time (``serve``'s per-stream stats, the end-of-run summary).
    """

    __slots__ = ("_latencies", "dropped")

    def __init__(self) -> None:
        self._latencies: list[float] = []
        self.dropped = 0

    def add(self, capture_time: float, result_time: float) -> None:
        self._latencies.append(result_time - capture_time)

    def drop(self, n: int = 1) -> None:
        self.dropped += n

    @property
    def frames(self) -> int:
        return len(self._latencies)

    def figures(self) -> LatencyFigures:
        if not self._latencies:
            return LatencyFigures(dropped=self.dropped)
        ms = np.asarray(self._latencies, dtype=np.float64) * 1000.0
        p50, p95, p99 = (float(v) for v in np.percentile(ms, (50, 95, 99)))

        def r(v: float) -> float:
            return round(v, 3) if math.isfinite(v) else v

        return LatencyFigures(frames=int(ms.size), dropped=self.dropped, p50_ms=r(p50),
                              p95_ms=r(p95), p99_ms=r(p99), max_ms=r(float(ms.max())))

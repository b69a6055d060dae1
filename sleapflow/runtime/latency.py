"""Capture-to-pose latency and dropped frames of a live run: a meter and its immutable figures."""

from __future__ import annotations

import math
import time
from array import array
from collections.abc import Callable
from typing import Any

import msgspec
import numpy as np

__all__ = ("LatencyFigures", "LatencyMeter", "SegmentFigures", "frame_seqs")


def _r(v: float) -> float:
    return round(v, 3) if math.isfinite(v) else v


class SegmentFigures(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Where a frame's time goes between two seams of the graph, in ms.

    ``name`` is a stage (from taking the frame to handing it on), ``"<stage> queue"`` (handed
    on by the stage before, not yet taken by this one), ``"stream"`` (capture to decoded here)
    or ``"live"`` (decoded, waiting in the live source for room in the graph). ``tail_ms`` is
    the segment's mean over the frames whose whole latency was at or above the p99: what the
    slowest frames are made of."""

    name: str
    p50_ms: float
    p99_ms: float
    mean_ms: float
    tail_ms: float


class LatencyFigures(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """What a live run's latency was: frames timed, frames dropped, percentiles in ms.

    Latency is a frame's result time minus its capture time (the stream timestamp on the
    wall clock); the percentiles are None before the first frame has a result. ``stale``
    frames arrived while the graph was still warming up (models loading, the first forward
    pass): they are dropped, counted apart from ``dropped`` and never timed. ``segments``
    splits the latency at the graph's seams (see :class:`SegmentFigures`), in flow order."""

    frames: int = 0
    dropped: int = 0
    p50_ms: float | None = None
    p95_ms: float | None = None
    p99_ms: float | None = None
    max_ms: float | None = None
    stale: int = 0
    segments: tuple[SegmentFigures, ...] = ()

    def line(self) -> str:
        """``latency p50 12.1 ms, p95 15.0 ms, p99 18.2 ms; 3 frames dropped``."""
        if self.p50_ms is None:
            timed = "no frame timed"
        else:
            timed = (f"latency p50 {self.p50_ms:.1f} ms, p95 {self.p95_ms:.1f} ms, "
                     f"p99 {self.p99_ms:.1f} ms")
        line = f"{timed}; {self.dropped} frame{'s' * (self.dropped != 1)} dropped"
        if self.stale:
            line += f" ({self.stale} more arrived during warm-up)"
        return line

    def segment_table(self) -> str:
        """One row per segment: p50, p99, mean and the p99 frames' mean, in ms."""
        if not self.segments:
            return ""
        width = max(26, *(len(s.name) + 2 for s in self.segments))
        header = f"{'latency segment':<{width}}{'p50 ms':>9}{'p99 ms':>9}{'mean ms':>9}{'p99 frames':>12}"
        rows = [header, "-" * len(header)]
        rows += [f"{s.name:<{width}}{s.p50_ms:>9.2f}{s.p99_ms:>9.2f}{s.mean_ms:>9.2f}"
                 f"{s.tail_ms:>12.2f}" for s in self.segments]
        return "\n".join(rows)


def frame_seqs(item: Any) -> tuple[int, ...]:
    """The ``seq`` of every frame an item between stages carries: a frame or a prediction
    (its own), a batch (its frames'; a batch's own ``seq`` numbers batches) or a frame's
    crops (their frame's); none for anything else."""
    frames = getattr(item, "frames", None)
    if isinstance(frames, tuple):
        return tuple(f.seq for f in frames)
    frame = getattr(item, "frame", None)
    if frame is not None:
        return (frame.seq,)
    if hasattr(item, "frame_idx"):
        return (item.seq,)
    return ()


class LatencyMeter:
    """Mutable record of one live source's frames: latencies (seconds), drops and, when the
    runner stamps each frame at the graph's seams (:meth:`passed`), where the time went.

    Written on the event loop by the live source (drops), the runner's metered streams
    (seams) and the result tap (latencies); read through :meth:`figures` at any time
    (``serve``'s per-stream stats, the end-of-run summary). ``clock`` must be the clock of
    the frames' capture and arrival times (``time.time``)."""

    __slots__ = ("_clock", "_columns", "_latencies", "_open", "_totals", "dropped", "stale",
                 "untimed_below")

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._latencies: list[float] = []
        self.dropped = 0
        self.stale = 0
        #: Frames numbered below this warmed the graph up: their results are not timed.
        self.untimed_below = 0
        #: Frames in the graph: their seam stamps so far (seam -> time), in passing order.
        self._open: dict[int, dict[str, float]] = {}
        #: Per segment, its duration (s) for every timed frame that has stamps, NaN where a
        #: frame did not pass it; all columns are as long as the frames timed with stamps.
        self._columns: dict[str, array[float]] = {}
        #: The whole latency (s) of each frame with a row in ``_columns``.
        self._totals: array[float] = array("d")

    def add(self, capture_time: float, result_time: float, *, seq: int | None = None,
            arrival_time: float | None = None) -> None:
        """Frame ``seq``'s result is out: its latency, and its segments when it was stamped
        (a warm-up frame's, below :attr:`untimed_below`, is not counted)."""
        stamps = self._open.pop(seq, None) if seq is not None else None
        if seq is not None and seq < self.untimed_below:
            return
        self._latencies.append(result_time - capture_time)
        if seq is not None and self._open:
            # Results come in order: an older frame still open left no result; forget it.
            for old in [s for s in self._open if s < seq]:
                del self._open[old]
        if stamps is None:
            return
        segments: list[tuple[str, float]] = []
        prev = capture_time
        if arrival_time is not None:
            segments.append(("stream", arrival_time - capture_time))
            prev = arrival_time
        for seam, t in stamps.items():
            stage, side = seam[:-1], seam[-1]
            segments.append((stage if side == ">" else f"{stage} queue", t - prev))
            prev = t
        if stamps:
            # The stage that took the frame last (the result tap) up to its result time.
            last = next(reversed(stamps))[:-1]
            segments.append((last, result_time - prev))
        self._record(segments, result_time - capture_time)

    def _record(self, segments: list[tuple[str, float]], total: float) -> None:
        rows = len(self._totals)
        self._totals.append(total)
        seen: dict[str, float] = {}
        for name, dt in segments:
            # A stage a frame passes twice (crops in parts) adds up.
            seen[name] = seen.get(name, 0.0) + max(0.0, dt)
        for name, dt in seen.items():
            column = self._columns.get(name)
            if column is None:
                column = self._columns[name] = array("d", [math.nan] * rows)
            column.append(dt)
        for name, column in self._columns.items():
            if name not in seen:
                column.append(math.nan)

    def passed(self, stage: str, item: Any, *, sent: bool) -> None:
        """Stamp the frames of ``item`` as taken by ``stage`` (``sent=False``) or handed on by
        it: the first take and the last hand-on count (a frame's crops may travel in parts)."""
        seqs = frame_seqs(item)
        if not seqs:
            return
        now = self._clock()
        seam = f"{stage}{'>' if sent else '<'}"
        for seq in seqs:
            stamps = self._open.get(seq)
            if stamps is None:
                stamps = self._open[seq] = {}
            if sent:
                stamps.pop(seam, None)  # re-inserted last: the order stays the order of passing
                stamps[seam] = now
            elif seam not in stamps:
                stamps[seam] = now

    def drop(self, n: int = 1) -> None:
        self.dropped += n

    def drop_stale(self, n: int = 1) -> None:
        """Frames that arrived before the graph was warm, dropped without being timed."""
        self.stale += n

    @property
    def frames(self) -> int:
        return len(self._latencies)

    def figures(self) -> LatencyFigures:
        if not self._latencies:
            return LatencyFigures(dropped=self.dropped, stale=self.stale)
        ms = np.asarray(self._latencies, dtype=np.float64) * 1000.0
        p50, p95, p99 = (float(v) for v in np.percentile(ms, (50, 95, 99)))
        return LatencyFigures(frames=int(ms.size), dropped=self.dropped, p50_ms=_r(p50),
                              p95_ms=_r(p95), p99_ms=_r(p99), max_ms=_r(float(ms.max())),
                              stale=self.stale, segments=self._segments(p99))

    def _segments(self, p99: float) -> tuple[SegmentFigures, ...]:
        if not self._columns:
            return ()
        tail = np.frombuffer(self._totals, dtype=np.float64) * 1000.0 >= p99
        out = []
        for name, column in self._columns.items():
            seg = np.frombuffer(column, dtype=np.float64) * 1000.0
            have = ~np.isnan(seg)
            if not have.any():
                continue
            vals = seg[have]
            slow = seg[tail & have]
            out.append(SegmentFigures(
                name=name, p50_ms=_r(float(np.percentile(vals, 50))),
                p99_ms=_r(float(np.percentile(vals, 99))), mean_ms=_r(float(vals.mean())),
                tail_ms=_r(float(slow.mean())) if slow.size else 0.0))
        return tuple(out)

"""The end-of-run summary every run reports: frames, instances, tracks, empty and failed
frames, seconds (one line in the log, a total under the many-input table)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import msgspec

__all__ = ("RunSummary", "read_summary", "total")


class RunSummary(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """What one output holds, counted as it was written (a streamed ``.slp`` never holds its
    frames, so nothing is read back)."""

    #: Frames predicted (each decoded frame that reached the writer, resumed ones included).
    frames: int = 0
    #: Instances written.
    instances: int = 0
    #: Distinct tracks (or classes) the instances carry; 0 for an untracked run.
    tracks: int = 0
    #: Frames predicted with no instance in them.
    empty_frames: int = 0
    #: Frames that could not be decoded (as the output's provenance ``frames_failed``).
    failed_frames: int = 0
    seconds: float = 0.0
    #: Live sources: frames dropped because the graph fell behind, and the capture-to-pose
    #: latency percentiles in milliseconds (None for files).
    dropped_frames: int = 0
    latency_p50_ms: float | None = None
    latency_p95_ms: float | None = None
    latency_p99_ms: float | None = None
    #: Live sources: frames dropped because they arrived while the graph warmed up.
    stale_frames: int = 0

    def with_latency(self, latency: Any) -> RunSummary:
        """This summary with a live run's :class:`~sleapflow.runtime.latency.LatencyFigures`."""
        return msgspec.structs.replace(self, dropped_frames=latency.dropped,
                                       latency_p50_ms=latency.p50_ms,
                                       latency_p95_ms=latency.p95_ms,
                                       latency_p99_ms=latency.p99_ms,
                                       stale_frames=latency.stale)

    def fields(self) -> dict[str, int | float]:
        """The counts as log fields (seconds rounded for reading)."""
        out: dict[str, int | float] = msgspec.structs.asdict(self)
        out["seconds"] = round(self.seconds, 2)
        if self.latency_p50_ms is None and not self.dropped_frames and not self.stale_frames:
            # A file's run: the live figures would be empty noise in its log line.
            for key in ("dropped_frames", "latency_p50_ms", "latency_p95_ms", "latency_p99_ms",
                        "stale_frames"):
                del out[key]
        return out

    def line(self) -> str:
        """One sentence for a person: ``1100 frames (3 empty, 0 failed), 2195 instances,
        2 tracks in 41.2 s``."""
        tracks = f", {self.tracks} track{'s' * (self.tracks != 1)}" if self.tracks else ""
        live = ""
        if self.latency_p50_ms is not None:
            live = (f"; latency p50 {self.latency_p50_ms:.1f} ms, p95 {self.latency_p95_ms:.1f} "
                    f"ms, p99 {self.latency_p99_ms:.1f} ms, {self.dropped_frames} dropped")
        elif self.dropped_frames:
            live = f"; {self.dropped_frames} dropped"
        return (f"{self.frames} frame{'s' * (self.frames != 1)} ({self.empty_frames} empty, "
                f"{self.failed_frames} failed), {self.instances} instance"
                f"{'s' * (self.instances != 1)}{tracks} in {self.seconds:.1f} s{live}")


def total(summaries: Iterable[RunSummary], seconds: float) -> RunSummary:
    """Several outputs' summaries added up (tracks too: each output numbers its own), over the
    whole run's ``seconds``."""
    items = list(summaries)
    return RunSummary(frames=sum(s.frames for s in items),
                      instances=sum(s.instances for s in items),
                      tracks=sum(s.tracks for s in items),
                      empty_frames=sum(s.empty_frames for s in items),
                      failed_frames=sum(s.failed_frames for s in items), seconds=seconds)


def read_summary(path: str | Path, seconds: float) -> RunSummary:
    """The summary of a written ``.slp``, from its tables and provenance (no points read): for
    outputs a run did not write itself (a Ray driver's merged chunks)."""
    import h5py
    import numpy as np

    with h5py.File(path, "r") as f:
        frames = f["frames"][:]
        instances = f["instances"]["track"] if len(f["instances"]) else None
        provenance = json.loads(f["metadata"].attrs["json"]).get("provenance") or {}
    nonempty = int(np.count_nonzero(frames["instance_id_end"] > frames["instance_id_start"]))
    # The frames predicted, empty ones included even where the output leaves them out.
    predicted = int(provenance.get("frames_predicted") or len(frames))
    tracks = 0 if instances is None else len(np.unique(instances[instances >= 0]))
    return RunSummary(frames=predicted, instances=0 if instances is None else len(instances),
                      tracks=tracks, empty_frames=max(predicted - nonempty, 0),
                      failed_frames=int(provenance.get("frames_failed") or 0), seconds=seconds)

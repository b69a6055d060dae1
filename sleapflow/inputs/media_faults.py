"""Corrupt and truncated media: per-frame decode failures, their summary, and open advice."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sleapflow.errors import VideoDecodeError

__all__ = ("DecodeFailures", "open_advice", "summarize_indices")



def open_advice(exc: BaseException, path: str = "") -> str:
    """Advice for a video that cannot be opened at all, by what FFmpeg said and the container."""
    text = str(getattr(exc, "strerror", None) or exc).replace(path, "").lower()
    mp4 = path.lower().endswith((".mp4", ".mov", ".m4v"))
    if "moov" in text or (mp4 and "invalid data" in text):
        return ("; an MP4 without its index (the moov atom, written last) is usually a recording "
                "that was interrupted or a copy still in progress: finish or redo the copy, or "
                "recover the file (e.g. with untrunc and a good file from the same camera)")
    if "invalid data" in text or "end of file" in text:
        return ("; the file is not a readable video or is badly truncated: check that it plays, "
                "or re-mux it (ffmpeg -i IN -c copy OUT.mkv)")
    return ""


def summarize_indices(indices: Iterable[int], limit: int = 20) -> str:
    """Sorted indices as ranges, e.g. ``"100-101,150,200"`` (the first ``limit`` runs)."""
    runs: list[list[int]] = []
    for i in sorted(set(indices)):
        if runs and runs[-1][1] == i - 1:
            runs[-1][1] = i
        else:
            runs.append([i, i])
    text = ",".join(f"{a}-{b}" if b > a else f"{a}" for a, b in runs[:limit])
    return text + (f",... ({len(runs) - limit} more runs)" if len(runs) > limit else "")


class DecodeFailures:
    """The frames a run could not decode, shared by the decode source and the provenance."""

    #: Indices kept for provenance; beyond this only the count grows (bounded memory).
    KEEP = 10_000

    def __init__(self, max_failed: int | None = None) -> None:
        self.max_failed = max_failed
        self.count = 0
        self.frames: list[tuple[int, int]] = []
        self.first_error: str | None = None
        #: Called as ``on_add(video_id, frame_idx)`` for each failure (the journal records them).
        self.on_add: Any = None

    def restore(self, frames: list[tuple[int, int]]) -> None:
        """Failures recorded by an interrupted run (``--resume``), before its resume point."""
        self.count += len(frames)
        self.frames.extend(frames[: max(0, self.KEEP - len(self.frames))])

    def add(self, video_id: int, frame_idx: int, exc: BaseException, source: Any = None) -> None:
        if self.on_add is not None:
            self.on_add(video_id, frame_idx)
        self.count += 1
        if len(self.frames) < self.KEEP:
            self.frames.append((video_id, frame_idx))
        if self.first_error is None:
            self.first_error = " ".join(str(exc).split())[:300]
        if self.max_failed is not None and self.count > self.max_failed:
            raise VideoDecodeError(
                f"more than --max_failed_frames {self.max_failed} frames could not be decoded "
                f"({self.count} so far, e.g. {self.summary()}); the input looks badly broken. "
                f"First error: {self.first_error}")

    def of_video(self, video_id: int | None) -> DecodeFailures:
        """A view for one video of a many-input run (its output's provenance), renumbered as
        video 0; read when that video's output is written, after its frames were decoded."""
        return _VideoFailures(self, video_id)

    def summary(self) -> str:
        by_video: dict[int, list[int]] = {}
        for v, f in self.frames:
            by_video.setdefault(v, []).append(f)
        if len(by_video) <= 1:
            return summarize_indices(next(iter(by_video.values()), []))
        return "; ".join(f"video {v}: {summarize_indices(fs)}" for v, fs in sorted(by_video.items()))

    def provenance(self) -> dict[str, Any]:
        if len({v for v, _ in self.frames}) <= 1:
            indices: Any = [f for _, f in self.frames]
        else:
            indices = [[v, f] for v, f in self.frames]
        return {"frames_failed": self.count, "frames_failed_indices": indices}


class _VideoFailures(DecodeFailures):
    """One video's failures out of a shared :class:`DecodeFailures` (read-only)."""

    def __init__(self, parent: DecodeFailures, video_id: int | None) -> None:
        super().__init__(parent.max_failed)
        self._parent = parent
        self._video_id = video_id

    def provenance(self) -> dict[str, Any]:
        frames = [f for v, f in self._parent.frames if v == self._video_id]
        return {"frames_failed": len(frames), "frames_failed_indices": frames}

"""Candidate makers: what the tracker remembers and which stored instances each track offers.

Two memories, as in sleap-nn:

* :class:`FixedWindowCandidates` keeps the last ``window_size`` *processed frames*. A track that
  does not appear in them is forgotten (a returning animal gets a new id). The track columns are
  ``list(set(ids in the window))`` — CPython's set order, ``None`` included when an instance was
  left without an id — rebuilt exactly as sleap-nn builds it so equal costs break the same way.
* :class:`LocalQueueCandidates` keeps the last ``window_size`` instances *of every track*; tracks
  never expire, so the columns are every id ever issued, ``0..k-1`` (optionally capped by
  ``max_tracks``).

Both hand the tracker a :class:`CandidateSet`: the stored instances flattened into arrays, the
column each one is a candidate for, and the groups that share a reference image (for optical
flow). Memory is bounded by the window: a fixed number of frames, or of instances per track.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

__all__ = ("CandidateSet", "FixedWindowCandidates", "FrameRecord", "LocalQueueCandidates", "QueueEntry")



@dataclass(slots=True)
class FrameRecord:
    """One processed frame in the fixed window (mutable: ids are filled in after matching)."""

    points: np.ndarray  # (n, n_nodes, 2) float64
    features: np.ndarray  # (n, ...) feature rows
    valid: np.ndarray  # (n,) valid point counts
    track_ids: list[int | None]
    tracking_scores: list[float | None]
    frame_idx: int
    image: np.ndarray | None  # prepared flow image; None when flow is off
    appearance: np.ndarray | None = None  # (n, D) re-ID vectors; None without an appearance blend


@dataclass(slots=True)
class QueueEntry:
    """One stored instance of a local-queue track."""

    points: np.ndarray  # (n_nodes, 2)
    feature: np.ndarray
    valid: int
    frame_idx: int
    image: np.ndarray | None
    tracking_score: float
    appearance: np.ndarray | None = None  # (D,) re-ID vector


@dataclass(slots=True)
class CandidateSet:
    """Stored instances as flat arrays, ready for one vectorised similarity computation."""

    columns: list[int | None]  # track id per score-matrix column
    points: np.ndarray  # (m, n_nodes, 2) source points (flow shifts these)
    features: np.ndarray  # (m, ...) stored features
    valid: np.ndarray  # (m,) valid points of the *source* instance (min_match_points test)
    column_of: np.ndarray  # (m,) column index, -1 when the instance is not a candidate
    groups: list[tuple[int, int, np.ndarray | None]]  # (start, stop, reference image) runs
    appearance: np.ndarray | None = None  # (m, D) stored re-ID vectors (NaN rows: none)


def _appearance_rows(blocks: list[np.ndarray | None], sizes: list[int]) -> np.ndarray | None:
    """Stored re-ID vectors stacked, NaN rows where an instance had none (or a vector of
    another length); None when no stored instance has one."""
    dims = [b.shape[-1] for b in blocks if b is not None and np.isfinite(b).any()]
    if not dims:
        return None
    dim = dims[-1]
    return np.concatenate([b if b is not None and b.shape[-1] == dim else np.full((n, dim), np.nan)
                           for b, n in zip(blocks, sizes)])


def _stack(arrays: list[np.ndarray], empty_shape: tuple[int, ...]) -> np.ndarray:
    return np.stack(arrays) if arrays else np.empty(empty_shape)


class FixedWindowCandidates:
    """The last ``window_size`` processed frames (sleap-nn's ``FixedWindowCandidates``)."""

    def __init__(self, window_size: int, min_new_track_points: int) -> None:
        self.window_size = window_size
        self.min_new_track_points = min_new_track_points
        #: processed frames, oldest first; the deque's maxlen is the only thing bounding memory
        self.records: deque[FrameRecord] = deque(maxlen=window_size)
        #: next id to issue: ids are never reused (sleap-nn: max(every id issued) + 1)
        self.next_id = 0

    @property
    def is_empty(self) -> bool:
        return not self.records

    def columns(self) -> list[int | None]:
        """``list(set(...))`` of the stored ids, built in sleap-nn's insertion order.

        The same insertion sequence gives the same hash-table layout and so the same iteration
        order on the same interpreter, including where ``None`` lands.
        """
        ids: set[int | None] = set()
        for record in self.records:
            ids.update(record.track_ids)
        return list(ids)

    def add_new_tracks(self, record: FrameRecord, respawn: frozenset[int] = frozenset()) -> bool:
        """Give a new id (score 1.0) to every instance with enough valid points that has no id,
        or whose match is in ``respawn`` (matched through an infinite cost)."""
        created = False
        for i, count in enumerate(record.valid.tolist()):
            if count > self.min_new_track_points and (record.track_ids[i] is None or i in respawn):
                record.track_ids[i] = self.next_id
                record.tracking_scores[i] = 1.0
                self.next_id += 1
                created = True
        return created

    def candidates(self, columns: list[int | None], *, flow: bool) -> CandidateSet:
        """Flatten the window; each record offers its first instance of a track, or all of them.

        sleap-nn's base tracker takes the first position of a track in each frame; its flow
        tracker shifts and offers every stored instance (which only differs for the ``None``
        column, the one id that can repeat within a frame). Each record is one flow group.
        """
        col_index = {tid: j for j, tid in enumerate(columns)}
        points, feats, valid, column_of = [], [], [], []
        groups: list[tuple[int, int, np.ndarray | None]] = []
        start = 0
        for record in self.records:
            n = len(record.track_ids)
            if n == 0:
                continue
            seen: set[int | None] = set()
            for tid in record.track_ids:
                if flow or tid not in seen:
                    column_of.append(col_index[tid])
                else:
                    column_of.append(-1)
                seen.add(tid)
            points.append(record.points)
            feats.append(record.features)
            valid.append(record.valid)
            groups.append((start, start + n, record.image))
            start += n
        if not points:
            return CandidateSet(columns, np.empty((0, 0, 2)), np.empty((0,)),
                                np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64), [])
        kept = [r for r in self.records if len(r.track_ids)]
        appearance = _appearance_rows([r.appearance for r in kept], [len(r.track_ids) for r in kept])
        return CandidateSet(columns, np.concatenate(points), np.concatenate(feats),
                            np.concatenate(valid), np.asarray(column_of, dtype=np.int64), groups,
                            appearance)

    def stored_instances(self) -> int:
        return sum(len(r.track_ids) for r in self.records)

    def stored_images(self) -> int:
        return len({id(r.image) for r in self.records if r.image is not None})


class LocalQueueCandidates:
    """The last ``window_size`` instances of every track (sleap-nn's ``LocalQueueCandidates``)."""

    def __init__(self, window_size: int, min_new_track_points: int,
                 max_tracks: int | None) -> None:
        self.window_size = window_size
        self.min_new_track_points = min_new_track_points
        self.max_tracks = max_tracks
        #: track id -> its most recent instances; ids are 0..k-1 in creation order
        self.queues: dict[int, deque[QueueEntry]] = {}

    @property
    def is_empty(self) -> bool:
        return not self.queues

    def columns(self) -> list[int]:
        return list(self.queues)

    def new_track_id(self) -> int | None:
        """Next id, or ``None`` once ``max_tracks`` ids exist (the first id is always granted)."""
        if not self.queues:
            new_id = 0
        else:
            new_id = max(self.queues) + 1
            if self.max_tracks is not None and new_id >= self.max_tracks:
                return None
        self.queues[new_id] = deque(maxlen=self.window_size)
        return new_id

    def push(self, track_id: int, entry: QueueEntry) -> None:
        self.queues[track_id].append(entry)

    def candidates(self, columns: list[int], *, flow: bool) -> CandidateSet:
        """Every stored instance of every track (in track order, oldest first).

        For the flow tracker, sleap-nn shifts stored instances per frame index with the image of
        the first instance of that group and lists each track's candidates in group order; the
        entries are reordered the same way so that each group is one contiguous run.
        """
        entries: list[QueueEntry] = []
        column_of: list[int] = []
        for j, tid in enumerate(columns):
            queue = self.queues[tid]
            entries.extend(queue)
            column_of.extend([j] * len(queue))
        if not entries:
            return CandidateSet(list(columns), np.empty((0, 0, 2)), np.empty((0,)),
                                np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64), [])
        column_arr = np.asarray(column_of, dtype=np.int64)
        groups: list[tuple[int, int, np.ndarray | None]] = []
        if flow:
            # Stable sort by first appearance of the frame index: each group becomes contiguous.
            first_seen: dict[int, int] = {}
            for e in entries:
                first_seen.setdefault(e.frame_idx, len(first_seen))
            order = sorted(range(len(entries)), key=lambda i: first_seen[entries[i].frame_idx])
            entries = [entries[i] for i in order]
            column_arr = column_arr[order]
            start = 0
            for i in range(1, len(entries) + 1):
                if i == len(entries) or entries[i].frame_idx != entries[start].frame_idx:
                    groups.append((start, i, entries[start].image))
                    start = i
        return CandidateSet(
            list(columns),
            _stack([e.points for e in entries], (0, 0, 2)),
            _stack([e.feature for e in entries], (0,)),
            np.asarray([e.valid for e in entries], dtype=np.int64),
            column_arr,
            groups,
            _appearance_rows([None if e.appearance is None else e.appearance[None]
                              for e in entries], [1] * len(entries)),
        )

    def stored_instances(self) -> int:
        return sum(len(q) for q in self.queues.values())

    def stored_images(self) -> int:
        return len({id(e.image) for q in self.queues.values() for e in q if e.image is not None})

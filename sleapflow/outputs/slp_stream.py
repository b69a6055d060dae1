"""The final ``.slp`` written from the journal in slices, so memory stays flat in the frame count.

sleap-io writes everything but the three per-row tables (videos, skeletons, tracks, provenance,
metadata, the empty ``points`` table) from a :class:`sleap_io.Labels` that holds no frames; the
``frames``, ``instances`` and ``pred_points`` tables are then replaced by tables of the same
dtypes and layout (contiguous, their final size known from the writer's counts) and filled a
few thousand frames at a time from the journal's records. The result reads back equal to what
``sleap_io.save_slp`` writes for the same predictions.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from sleapflow.messages import FramePrediction

__all__ = (
    "CHUNK_FRAMES", "CHUNK_INSTANCES", "FRAME_DTYPE", "INSTANCE_DTYPE", "PREDICTED", "PRED_POINT_DTYPE",
    "FrameTally", "kept_instances", "video_row_ids", "write_tables",
)


#: The row types of sleap-io's ``write_lfs`` (sleap-io 0.9.x; ``format_id`` 1.4 and later).
INSTANCE_DTYPE = np.dtype([
    ("instance_id", "i8"), ("instance_type", "u1"), ("frame_id", "u8"), ("skeleton", "u4"),
    ("track", "i4"), ("from_predicted", "i8"), ("score", "f4"), ("point_id_start", "u8"),
    ("point_id_end", "u8"), ("tracking_score", "f4")])
FRAME_DTYPE = np.dtype([("frame_id", "u8"), ("video", "u4"), ("frame_idx", "u8"),
                        ("instance_id_start", "u8"), ("instance_id_end", "u8")])
PRED_POINT_DTYPE = np.dtype([("x", "f8"), ("y", "f8"), ("visible", "?"), ("complete", "?"),
                             ("score", "f8")])
#: sleap-io's ``InstanceType.PREDICTED``.
PREDICTED = 1
#: A slice is written once it holds this many frames or instances (a few MiB of rows: a frame
#: may hold up to a thousand instances at a threshold near 0).
CHUNK_FRAMES = 4096
CHUNK_INSTANCES = 32768


def video_row_ids(videos: list[Any]) -> list[int]:
    """The id sleap-io's writer puts in a frame row for each video: its index, except for a
    video embedded in a ``.slp`` (``videoN/video``), whose ``N`` is kept."""
    ids = []
    for i, video in enumerate(videos):
        dataset = getattr(getattr(video, "backend", None), "dataset", None)
        group = dataset.split("/")[0] if isinstance(dataset, str) else ""
        ids.append(int(group[5:]) if group.startswith("video") and group[5:].isdigit() else i)
    return ids


def kept_instances(pred: FramePrediction) -> np.ndarray:
    """The rows the writer keeps: an instance with every node missing is not written."""
    points = np.asarray(pred.points, dtype=np.float64)
    if points.shape[0] == 0:
        return np.empty(0, dtype=np.int64)
    return np.flatnonzero(~np.isnan(points.reshape(points.shape[0], -1)).all(axis=1))


class FrameTally:
    """The final file's row counts, kept while frames arrive instead of the frames."""

    def __init__(self) -> None:
        self.frames = 0
        self.nonempty_frames = 0
        self.instances = 0
        self.points = 0
        self.max_nodes = 1

    def add(self, pred: FramePrediction, kept: np.ndarray) -> None:
        self.frames += 1
        if len(kept):
            self.nonempty_frames += 1
            n_nodes = int(np.asarray(pred.points).shape[1])
            self.instances += len(kept)
            self.points += len(kept) * n_nodes
            self.max_nodes = max(self.max_nodes, n_nodes)


class _Tables:
    """Pending rows of the three tables, flushed into their datasets slice by slice."""

    def __init__(self, f: Any, n_frames: int, n_instances: int, n_points: int) -> None:
        for name in ("frames", "instances", "pred_points"):
            del f[name]  # sleap-io's empty tables; same names, dtypes and contiguous layout
        self.frames = f.create_dataset("frames", shape=(n_frames,), dtype=FRAME_DTYPE)
        self.instances = f.create_dataset("instances", shape=(n_instances,),
                                          dtype=INSTANCE_DTYPE)
        self.points = f.create_dataset("pred_points", shape=(n_points,), dtype=PRED_POINT_DTYPE)
        self.done = [0, 0, 0]  # rows written per table
        self.pending: list[list[np.ndarray]] = [[], [], []]

    def flush(self) -> None:
        for i, dset in enumerate((self.frames, self.instances, self.points)):
            if not self.pending[i]:
                continue
            rows = np.concatenate(self.pending[i])
            start = self.done[i]
            if start + len(rows) > dset.shape[0]:
                raise RuntimeError(f"more {dset.name} rows than counted: the journal changed "
                                   "while the output was written")
            if len(rows):
                dset[start:start + len(rows)] = rows
            self.done[i] = start + len(rows)
            self.pending[i] = []


def write_tables(path: str, frames: Iterable[FramePrediction], tally: FrameTally, *,
                 track_index: dict[str, int], video_ids: list[int], keep_empty_frames: bool,
                 no_empty_frames: bool) -> None:
    """Replace the empty tables of the ``.slp`` at ``path`` (just written by sleap-io from a
    frameless ``Labels``) with ``frames``' rows; ``tally`` counted the same frames."""
    import h5py

    n_frames = tally.nonempty_frames if no_empty_frames else tally.frames
    with h5py.File(path, "a") as f:
        tables = _Tables(f, n_frames, tally.instances, tally.points)
        frame_id = instance_id = point_id = 0
        in_chunk = pending_instances = 0
        for pred in frames:
            kept = kept_instances(pred)
            if len(kept) == 0 and (no_empty_frames or not keep_empty_frames):
                continue
            n_inst = len(kept)
            if n_inst:
                points = np.asarray(pred.points, dtype=np.float64)[kept]
                n_nodes = points.shape[1]
                pts = np.zeros(n_inst * n_nodes, dtype=PRED_POINT_DTYPE)
                flat = points.reshape(-1, 2)
                pts["x"], pts["y"] = flat[:, 0], flat[:, 1]
                pts["visible"] = ~np.isnan(flat[:, 0])  # sleap-io's rule: x is NaN = not visible
                pts["score"] = np.asarray(pred.point_scores, dtype=np.float64)[kept].reshape(-1)
                inst = np.zeros(n_inst, dtype=INSTANCE_DTYPE)
                inst["instance_id"] = np.arange(instance_id, instance_id + n_inst)
                inst["instance_type"] = PREDICTED
                inst["frame_id"] = frame_id
                inst["from_predicted"] = -1
                inst["score"] = np.asarray(pred.instance_scores, dtype=np.float64)[kept]
                starts = point_id + n_nodes * np.arange(n_inst)
                inst["point_id_start"], inst["point_id_end"] = starts, starts + n_nodes
                names = pred.track_names
                inst["track"] = [-1 if names is None or names[i] is None
                                 else track_index[names[i]] for i in kept.tolist()]
                inst["tracking_score"] = (np.nan if pred.tracking_scores is None else
                                          np.asarray(pred.tracking_scores, np.float64)[kept])
                tables.pending[1].append(inst)
                tables.pending[2].append(pts)
                point_id += n_inst * n_nodes
            row = np.zeros(1, dtype=FRAME_DTYPE)
            row["frame_id"], row["frame_idx"] = frame_id, pred.frame_idx
            row["video"] = video_ids[pred.video_id]
            row["instance_id_start"], row["instance_id_end"] = instance_id, instance_id + n_inst
            tables.pending[0].append(row)
            frame_id += 1
            instance_id += n_inst
            in_chunk += 1
            pending_instances += n_inst
            if in_chunk >= CHUNK_FRAMES or pending_instances >= CHUNK_INSTANCES:
                tables.flush()
                in_chunk = pending_instances = 0
        tables.flush()
        if tables.done != [n_frames, tally.instances, tally.points]:
            raise RuntimeError("fewer rows than counted: the journal changed while the output "
                               "was written")

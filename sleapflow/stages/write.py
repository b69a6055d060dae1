"""The writer sink: per-frame predictions → sleap-io objects → an atomically written .slp."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import numpy as np
import sleap_io as sio
from anyio.abc import TaskStatus

from sleapflow.errors import OutputWriteError
from sleapflow.messages import FramePrediction
from sleapflow.outputs.files import (
    check_output_path,
    estimate_slp_rows_bytes,
    save_h5_safely,
    save_slp_safely,
    write_atomically,
)
from sleapflow.outputs.journal import ResumedFrames
from sleapflow.outputs.slp_stream import FrameTally, kept_instances, video_row_ids, write_tables
from sleapflow.outputs.summary import RunSummary
from sleapflow.runtime.graph import Role
from sleapflow.tracking.track_only import copy_instance

__all__ = (
    "LabelsBuilder", "SlpWriter", "check_output_path", "save_labels_atomically",
    "write_atomically",
)


def save_labels_atomically(labels: sio.Labels, path: str | Path, *,
                           save_embedding_vectors: bool = False) -> None:
    """Write to a temporary file beside ``path`` (beside a symlink's target) and rename it into
    place only on success; see :func:`sleapflow.outputs.files.save_slp_safely`."""
    save_slp_safely(labels, path, save_embedding_vectors=save_embedding_vectors)


class LabelsBuilder:
    """Turns FramePredictions into LabeledFrames; tracks are created once per name."""

    def __init__(self, videos: list[sio.Video], skeleton: sio.Skeleton, *,
                 keep_empty_frames: bool, track_order: tuple[str, ...] = (),
                 extra_skeletons: list[sio.Skeleton] | None = None,
                 save_embeddings: bool = False) -> None:
        self.videos = videos
        #: Write each instance's appearance vector (``FramePrediction.embeddings``) on it.
        self.save_embeddings = save_embeddings
        self.skeleton = skeleton
        self.extra_skeletons = list(extra_skeletons or [])
        self.keep_empty_frames = keep_empty_frames
        self.centroid_skeleton: sio.Skeleton | None = None
        self.tracks: dict[str, sio.Track] = {name: sio.Track(name=name) for name in track_order}
        self.used_tracks: set[str] = set()
        self.frames: list[sio.LabeledFrame] = []
        #: Predictions received, kept or not (an empty frame may be dropped).
        self.added = 0
        #: What :meth:`count` saw: the rows a streamed write will hold.
        self.tally = FrameTally()
        #: Instances received and frames without any (kept or not): the run's summary.
        self.instances_seen = 0
        self.empty_seen = 0

    def _note(self, n_instances: int) -> None:
        self.instances_seen += n_instances
        self.empty_seen += n_instances == 0

    def _track(self, name: str | None) -> sio.Track | None:
        if name is None:
            return None
        track = self.tracks.get(name)
        if track is None:
            track = self.tracks[name] = sio.Track(name=name)
        self.used_tracks.add(name)
        return track

    def _skeleton_for(self, pred: FramePrediction) -> sio.Skeleton:
        if not pred.centroid_only:
            return self.skeleton
        if self.centroid_skeleton is None:
            self.centroid_skeleton = sio.Skeleton(nodes=["centroid"], name="centroid")
        return self.centroid_skeleton

    def _retracked(self, pred: FramePrediction) -> list[sio.Instance]:
        """Track-only frames: copies of the source instances with their new tracks."""
        out = [copy_instance(inst) for inst in pred.untouched]
        for i, inst in enumerate(pred.source_instances or ()):
            inst = copy_instance(inst)
            name = pred.track_names[i] if pred.track_names is not None else None
            if name is not None and (inst.track is None or inst.track.name != name):
                inst.track = self._track(name)
                score = pred.tracking_scores[i] if pred.tracking_scores is not None else None
                if isinstance(inst, sio.PredictedInstance) and score is not None \
                        and not np.isnan(score):
                    inst.tracking_score = float(score)
            elif inst.track is not None:
                inst.track = self._track(inst.track.name)
            out.append(inst)
        for inst in out[: len(pred.untouched)]:
            if inst.track is not None:
                inst.track = self._track(inst.track.name)
        return out

    def add(self, pred: FramePrediction) -> sio.LabeledFrame | None:
        self.added += 1
        if pred.source_instances is not None:
            lf = sio.LabeledFrame(video=self.videos[pred.video_id], frame_idx=pred.frame_idx,
                                  instances=self._retracked(pred))
            self._note(len(lf.instances))
            self.frames.append(lf)
            return lf
        points = np.asarray(pred.points, dtype=np.float64)
        skeleton = self._skeleton_for(pred)
        instances = []
        for i in kept_instances(pred).tolist():
            kwargs: dict[str, Any] = {}
            if pred.track_names is not None and pred.track_names[i] is not None:
                kwargs["track"] = self._track(pred.track_names[i])
            if pred.tracking_scores is not None and not np.isnan(pred.tracking_scores[i]):
                kwargs["tracking_score"] = float(pred.tracking_scores[i])
            inst = sio.PredictedInstance.from_numpy(
                points_data=points[i], skeleton=skeleton,
                point_scores=np.asarray(pred.point_scores[i], dtype=np.float64),
                score=float(pred.instance_scores[i]), **kwargs)
            if self.save_embeddings and pred.embeddings is not None:
                vector = np.asarray(pred.embeddings[i], dtype=np.float32)
                if np.isfinite(vector).all():
                    inst.identity_embedding = sio.Embedding(vector)
            instances.append(inst)
        self._note(len(instances))
        if not instances and not self.keep_empty_frames:
            return None
        lf = sio.LabeledFrame(video=self.videos[pred.video_id], frame_idx=pred.frame_idx,
                              instances=instances)
        self.frames.append(lf)
        return lf

    def count(self, pred: FramePrediction) -> None:
        """:meth:`add` without keeping the frame: only its tracks, skeleton and row counts
        (for a ``.slp`` written from the journal, see :mod:`sleapflow.outputs.slp_stream`)."""
        self.added += 1
        kept = kept_instances(pred)
        self._note(len(kept))
        if len(kept) == 0 and not self.keep_empty_frames:
            return
        self._skeleton_for(pred)
        if pred.track_names is not None:
            for i in kept.tolist():
                if pred.track_names[i] is not None:
                    self._track(pred.track_names[i])
        self.tally.add(pred, kept)

    def summary(self, provenance: dict[str, Any] | None, seconds: float) -> RunSummary:
        """What was written, with the failed frames ``provenance`` records."""
        failed = (provenance or {}).get("frames_failed") or 0
        return RunSummary(frames=self.added, instances=self.instances_seen,
                          tracks=len(self.used_tracks), empty_frames=self.empty_seen,
                          failed_frames=int(failed), seconds=seconds)

    def track_index(self) -> dict[str, int]:
        """Each used track's row in the output's track list (as :meth:`labels` orders it)."""
        return {name: i for i, name in enumerate(self._used_track_names())}

    def _used_track_names(self) -> list[str]:
        return [name for name in self.tracks if name in self.used_tracks]

    def labels(self, provenance: dict[str, Any] | None = None) -> sio.Labels:
        skeletons = [self.skeleton] if self.centroid_skeleton is None else [self.centroid_skeleton]
        skeletons += self.extra_skeletons
        tracks = [self.tracks[name] for name in self._used_track_names()]
        return sio.Labels(labeled_frames=self.frames, videos=list(self.videos), skeletons=skeletons,
                          tracks=tracks, provenance=dict(provenance or {}))


class _Counted:
    """Stands in for the output ``Labels`` where provenance reads only its videos and frame
    count (a streamed write never holds the frames)."""

    def __init__(self, labels: sio.Labels, n_frames: int) -> None:
        self.videos = labels.videos
        self.labeled_frames = range(n_frames)


class SlpWriter:
    """Collects predictions in order and writes the ``.slp`` once, atomically, at a clean end.

    A run that fails or is cancelled never reaches the write, so an existing output survives.
    The output holds only the new predictions: the input's videos, the model's skeleton, no
    user instances and no suggestions. ``input_path`` (the input file) is checked up front so a
    run never ends by failing to write over its own input.
    """

    role: Role = "sink"
    preserves_order = True
    requires_order = True
    restores_order = False

    def __init__(self, builder: LabelsBuilder, *, output_path: str | Path | None,
                 provenance: Callable[[sio.Labels], dict[str, Any]] | None = None,
                 no_empty_frames: bool = False, on_frame: Callable[[int], None] | None = None,
                 input_path: str | Path | None = None, name: str = "write",
                 journal: Any = None, resumed: ResumedFrames | None = None,
                 stream: bool = False) -> None:
        if output_path is not None:
            check_output_path(output_path, input_path=input_path)
        self.name = name
        self.builder = builder
        self.output_path = output_path
        self.provenance = provenance
        self.no_empty_frames = no_empty_frames
        self.on_frame = on_frame
        self.result: sio.Labels | None = None
        #: The provenance the output was written with (its ``frames_failed`` is the summary's).
        self.written_provenance: dict[str, Any] | None = None
        #: Crash-safe output (``sleapflow.jobs.resume``): every frame is journaled before it is kept,
        #: and ``resumed`` frames (read back from a journal) come first.
        self.journal: Any = journal
        self.resumed: Any = resumed.frames if resumed is not None else ()
        self.n_resumed = resumed.count if resumed is not None else 0
        #: A resumed run's last journaled seq: frames up to it that arrive again (a gap linker
        #: rebuilt from the journal lets them go) are already in the journal.
        self.skip_through = resumed.last_seq if resumed is not None else -1
        #: With a journal: count the frames instead of keeping them, and write the ``.slp``
        #: from the journal at the end (flat memory; ``result`` is then None).
        if stream and journal is None:
            raise ValueError("a streamed .slp is written from its journal: pass journal=")
        self.stream = stream

    def finish(self) -> sio.Labels | None:
        """The end-of-run work (blocking: call it in a worker thread): build the ``Labels`` and
        write the file; None when the ``.slp`` is streamed from the journal."""
        if self.builder.added == 0 and self.output_path is not None:
            # Nothing was predicted (every frame past the end, or undecodable): writing would
            # replace an existing output with an empty file.
            raise OutputWriteError(f"no frames were processed, so {str(self.output_path)!r} was "
                                   "not written (an existing file is unchanged); check --frames "
                                   "and the input")
        if self.stream:
            self._finish_streamed()
            return None
        labels = self.builder.labels()
        if self.provenance is not None:
            labels.provenance = self.written_provenance = self.provenance(labels)
        if self.no_empty_frames:
            # After provenance, as the reference: frames_processed counts the empty frames too.
            labels.labeled_frames = [lf for lf in labels.labeled_frames if len(lf.instances) > 0]
        if self.output_path is not None:
            save_labels_atomically(labels, self.output_path,
                                   save_embedding_vectors=self.builder.save_embeddings)
        if self.journal is not None:
            self.journal.close()
            self.journal.path.unlink(missing_ok=True)  # the output now holds every frame
            self.journal = None
        return labels

    def summary(self, seconds: float) -> RunSummary:
        """The end-of-run summary of what this writer wrote."""
        return self.builder.summary(self.written_provenance, seconds)

    def _take(self, pred: FramePrediction, keep: Callable[[FramePrediction], Any]) -> None:
        """Journal one frame (a file write, an fsync when one is due) and keep it: file I/O and
        per-instance object work, so it runs in a worker thread, one frame at a time, in order."""
        if self.journal is not None and self.journal.add(pred):
            self.journal.sync()
        keep(pred)

    def _take_resumed(self, keep: Callable[[FramePrediction], Any]) -> None:
        for pred in self.resumed:
            keep(pred)

    def _finish_streamed(self) -> None:
        from sleapflow.outputs.journal import journal_frames

        builder, journal = self.builder, self.journal
        assert journal is not None and self.output_path is not None
        meta = builder.labels()  # videos, skeleton, used tracks: no frames
        tally = builder.tally
        if self.provenance is not None:
            meta.provenance = self.written_provenance = self.provenance(_Counted(meta, tally.frames))
        journal.sync()  # every frame on disk before it is read back
        rows = tally.nonempty_frames if self.no_empty_frames else tally.frames

        def write(tmp: str) -> None:
            sio.save_slp(meta, tmp, restore_original_videos=False, verbose=False)
            write_tables(tmp, journal_frames(journal.path), tally,
                         track_index=builder.track_index(),
                         video_ids=video_row_ids(meta.videos),  # after sleap-io opened them
                         keep_empty_frames=builder.keep_empty_frames,
                         no_empty_frames=self.no_empty_frames)

        save_h5_safely(self.output_path, write,
                       estimate_slp_rows_bytes(rows, tally.instances, tally.max_nodes))
        journal.close()
        journal.path.unlink(missing_ok=True)  # the output now holds every frame
        self.journal = None
        return None

    async def run(self, inbox: Any, outbox: None, *,
                  task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        async with inbox:
            task_status.started()
            keep = self.builder.count if self.stream else self.builder.add
            if self.n_resumed:
                # Read back from the journal (a file read: in a worker thread).
                await anyio.to_thread.run_sync(self._take_resumed, keep)
                if self.on_frame is not None:
                    self.on_frame(self.n_resumed)
            self.resumed = ()
            async for pred in inbox:
                if pred.seq <= self.skip_through:
                    continue
                await anyio.to_thread.run_sync(self._take, pred, keep)
                if self.on_frame is not None:
                    self.on_frame(1)
            self.result = await anyio.to_thread.run_sync(self.finish)

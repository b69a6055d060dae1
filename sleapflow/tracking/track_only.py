"""Track-only workflow (``sleap-nn track -i predictions.slp -t``): retrack an existing ``.slp``.

A thin driver over the per-frame pieces: it selects and orders frames, picks the instances to
track in each frame, calls :class:`~sleapflow.tracking.tracker.Tracker` and
:class:`~sleapflow.tracking.cleanup.PostTrackingCleanup` one frame at a time and assembles the
output ``Labels``. A streaming graph can run the same per-frame logic.

Not done here: sleap-nn's track-only overlap NMS, node-count and confidence filters. Pass
``instance_filter`` to apply such a filter to each frame's instances before tracking.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

import msgspec
import numpy as np
import sleap_io as sio

from sleapflow.errors import ConfigError
from sleapflow.logs import get_logger
from sleapflow.options.tracker import TrackerConfig
from sleapflow.outputs.provenance import add_seed_names, tracking_only_provenance
from sleapflow.tracking.cleanup import PostTrackingCleanup
from sleapflow.tracking.tracker import UNASSIGNED

__all__ = (
    "InstanceFilter", "copy_instance", "instance_score", "make_tracker", "resolve_track_only_config",
    "select_frames", "track_labels",
)


log = get_logger(__name__)

#: sleapflow.tracking.motion.UNTRACKED, repeated to keep this module import-light.
_UNTRACKED = -2

InstanceFilter = Callable[[list[sio.Instance]], list[sio.Instance]]


def resolve_track_only_config(cfg: TrackerConfig, max_instances: int | None = None) -> TrackerConfig:
    """Apply the track-only defaults that depend on ``--max_instances``.

    ``post_connect_single_breaks`` without ``max_tracks`` caps tracks at ``max_instances``; the
    post-connect / pre-cull steps need a target count, which defaults to ``max_instances``.
    """
    changes: dict[str, Any] = {}
    if cfg.post_connect_single_breaks and cfg.max_tracks is None and max_instances is not None:
        changes["max_tracks"] = max_instances
    if cfg.post_connect_single_breaks or cfg.tracking_pre_cull_to_target:
        if cfg.tracking_target_instance_count is None and max_instances is None:
            raise ConfigError(
                "post_connect_single_breaks and tracking_pre_cull_to_target require "
                "tracking_target_instance_count to be set (or max_instances): add "
                "--tracking_target_instance_count N where N is the expected number of "
                "instances per frame."
            )
        if cfg.tracking_target_instance_count is None:
            changes["tracking_target_instance_count"] = max_instances
    return msgspec.structs.replace(cfg, **changes) if changes else cfg


def select_frames(labels: sio.Labels, *, video_index: int | None = None,
                  frames: Iterable[Any] | None = None) -> list[sio.LabeledFrame]:
    """The labeled frames to track, sorted by frame index.

    The sort is stable and by frame index only, so frames of different videos interleave as in
    sleap-nn's track-only mode; ``frames`` are frame indices (not positions).
    """
    lfs = list(labels.labeled_frames)
    if video_index is not None:
        if not -len(labels.videos) <= video_index < len(labels.videos):
            raise ConfigError(f"video_index {video_index} is out of range: the labels have "
                              f"{len(labels.videos)} video(s).")
        video = labels.videos[video_index]
        lfs = [lf for lf in lfs if lf.video is video]
    lfs.sort(key=lambda lf: lf.frame_idx)
    if frames is not None:
        from sleapflow.options.frames import as_spans

        spans = as_spans(frames)  # ranges stay ranges: "--frames 0-99999999" costs nothing
        lfs = [lf for lf in lfs if any(a <= lf.frame_idx < b for a, b in spans)]
    return lfs


def _stack_points(instances: list[sio.Instance]) -> np.ndarray:
    if not instances:
        return np.empty((0, 0, 2))
    return np.stack([inst.numpy() for inst in instances]).astype(np.float64, copy=False)


def copy_instance(inst: sio.Instance) -> sio.Instance:
    """A copy that shares nothing mutable with the input (the input Labels stay untouched)."""
    out = copy.copy(inst)
    out.points = inst.points.copy()
    return out


def instance_score(inst: sio.Instance) -> float:
    # User instances have no score; sleap-nn's track-only NMS counts them as 1.0.
    return float(getattr(inst, "score", 1.0))


def make_tracker(cfg: TrackerConfig) -> Any:
    """The classic or motion-model tracker (imported here: motion imports this module's peers)."""
    from sleapflow.tracking.motion import make_tracker as make

    return make(cfg)


def track_labels(labels: sio.Labels, cfg: TrackerConfig | None = None, *,
                 video_index: int | None = None, frames: Iterable[int] | None = None,
                 max_instances: int | None = None,
                 instance_filter: InstanceFilter | None = None,
                 source_file: str | None = None) -> sio.Labels:
    """Assign new tracks to the instances of ``labels``; the input is not modified.

    In each frame the user instances are tracked if there are any (predicted instances are then
    kept unchanged, listed first), otherwise the predicted ones. Retracked instances get new
    ``sio.Track`` objects named ``track_{id}``; untouched instances keep their tracks. The output
    holds only the tracked frames (empty ones included), every input video and skeleton, and a
    tracking-only provenance record.
    """
    cfg = resolve_track_only_config(cfg or TrackerConfig(), max_instances)
    start_wall, start = datetime.now(), time.perf_counter()
    lfs = select_frames(labels, video_index=video_index, frames=frames)
    tracker = make_tracker(cfg)
    cleanup = PostTrackingCleanup(cfg)
    log.info("tracking.start", frames=len(lfs))
    tracks: dict[int, sio.Track] = {}

    def track_object(track_id: int) -> sio.Track:
        if track_id not in tracks:
            tracks[track_id] = sio.Track(name=f"track_{track_id}")
        return tracks[track_id]

    out_frames: list[sio.LabeledFrame] = []
    for lf in lfs:
        instances = list(lf.instances)
        if instance_filter is not None:
            instances = list(instance_filter(instances))
        user = [inst for inst in instances if not isinstance(inst, sio.PredictedInstance)]
        predicted = [inst for inst in instances if isinstance(inst, sio.PredictedInstance)]
        to_track, untouched = (user, predicted) if user else (predicted, [])
        result = tracker.track(
            _stack_points(to_track),
            np.array([instance_score(inst) for inst in to_track]),
            frame_idx=lf.frame_idx,
            image=lf.image if cfg.needs_image else None,
        )
        frame_instances = [copy_instance(inst) for inst in untouched]
        for idx, track_id, score in zip(result.indices.tolist(), result.track_ids.tolist(),
                                        result.tracking_scores.tolist()):
            inst = copy_instance(to_track[idx])
            if track_id == _UNTRACKED:
                inst.track = None
            elif track_id != UNASSIGNED:
                inst.track = track_object(track_id)
                inst.tracking_score = score
            frame_instances.append(inst)
        if cleanup.enabled and frame_instances:
            keep, keys = cleanup(
                _stack_points(frame_instances),
                np.array([instance_score(inst) for inst in frame_instances]),
                np.array([isinstance(inst, sio.PredictedInstance) for inst in frame_instances]),
                [inst.track for inst in frame_instances],
            )
            kept = [frame_instances[i] for i in keep.tolist()]
            for inst, key in zip(kept, keys):
                inst.track = key
            frame_instances = kept
        out_frames.append(sio.LabeledFrame(video=lf.video, frame_idx=lf.frame_idx,
                                           instances=frame_instances))

    end_wall = datetime.now()
    log.info("tracking.finished", frames=len(out_frames), tracks=len(tracks),
             seconds=round(time.perf_counter() - start, 3))
    provenance = tracking_only_provenance(
        labels, cfg.legacy_provenance(), start=start_wall, end=end_wall, frames_processed=len(out_frames),
        source_file=source_file,
    )
    out = sio.Labels(labeled_frames=out_frames, videos=list(labels.videos),
                     skeletons=list(labels.skeletons))
    out.provenance = add_seed_names(provenance, out)
    return out

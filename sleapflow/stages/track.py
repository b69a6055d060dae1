"""Tracking stages: the stateful tracker, the streaming post-tracking clean-up and gap linking."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Hashable
from functools import partial
from typing import Any

import msgspec
import numpy as np

from sleapflow.messages import FramePrediction
from sleapflow.runtime.adapters import KeyedStage, video_key
from sleapflow.tracking import UNASSIGNED, PostTrackingCleanup, TrackerConfig
from sleapflow.tracking.identity import TrackletLinker, link_params
from sleapflow.tracking.linking import GapLinker
from sleapflow.tracking.motion import UNTRACKED, make_tracker
from sleapflow.tracking.track_only import copy_instance

__all__ = ("CleanUpTracks", "LinkGapsStage", "LinkIdentities", "StreamTracking", "TrackFrames")


def _whole_stream(item: Any) -> Hashable:
    """One key for every item: the state lives as long as the stream (a one-video run, or a
    .slp input whose videos are tracked as one stream, as the reference does)."""
    return None


class TrackFrames(KeyedStage[Any]):
    """Assigns ``track_{id}`` tracks to each frame's instances, in frame order.

    A keyed stage whose state is a tracker (bounded by its window). Frames without instances
    are fed only when ``feed_empty_frames`` (the reference's top-down runs never feed them).
    With ``prefer_user`` (track-only), a frame's user instances are tracked when it has any,
    its predicted ones then pass through untouched. Motion-model trackers report detections
    they leave without a track as ``UNTRACKED``: those leave with no track (a track-only
    input's old track is cleared), never dropped. With ``per_video`` (many-input runs, whose
    videos follow one another) the tracker starts afresh at each new ``video_id``, so no track
    crosses from one video to the next; without it one tracker sees the whole stream.
    """

    def __init__(self, config: TrackerConfig, *, feed_empty_frames: bool,
                 prefer_user: bool = False, per_video: bool = False, name: str = "track",
                 on_input: Callable[[FramePrediction], None] | None = None) -> None:
        super().__init__(name, partial(make_tracker, config), self.track,
                         key=video_key if per_video else _whole_stream)
        self.config = config
        self.feed_empty_frames = feed_empty_frames
        self.prefer_user = prefer_user
        self.per_video = per_video
        self.current()  # made now, as the first frame's: a bad tracker config fails the build
        #: Called with each frame as it arrives (the journal keeps the tracker's inputs this
        #: way: ``--resume`` feeds them back through a fresh tracker).
        self.on_input = on_input

    def __call__(self, pred: FramePrediction) -> FramePrediction:
        """One frame through the tracker of its video, outside a graph (a resume replays the
        journaled frames this way before the graph goes on)."""
        (out,) = self.push(pred)
        return out

    def track(self, tracker: Any, pred: FramePrediction) -> FramePrediction:
        """The keyed work: ``pred`` tracked by ``tracker``, its video's tracker."""
        if self.on_input is not None:
            self.on_input(pred)
        untouched: tuple = ()
        if self.prefer_user and pred.is_user is not None and np.asarray(pred.is_user).any():
            is_user = np.asarray(pred.is_user)
            if pred.source_instances is not None:
                untouched = tuple(pred.source_instances[i] for i in np.flatnonzero(~is_user))
            pred = pred.subset(np.flatnonzero(is_user))
        if pred.n_instances == 0 and not self.feed_empty_frames:
            return pred
        image = pred.image if self.config.needs_image else None
        extra = {}
        if self.config.uses_appearance:
            extra["embeddings"] = self._embeddings(pred)
        result = tracker.track(np.asarray(pred.points, dtype=np.float64),
                               np.asarray(pred.instance_scores, dtype=np.float64),
                               frame_idx=pred.frame_idx, image=image, **extra)
        names: list[str | None] = []
        for track_id, old in zip(result.track_ids.tolist(), self._old_names(pred, result.indices)):
            if track_id == UNTRACKED:
                names.append(None)
            else:
                names.append(old if track_id == UNASSIGNED else f"track_{track_id}")
        scores = np.where(result.track_ids < 0, np.nan, result.tracking_scores)
        out = pred.subset(result.indices, track_names=tuple(names),
                          tracking_scores=scores.astype(np.float64), untouched=untouched,
                          image=None)
        if out.source_instances is not None and (result.track_ids == UNTRACKED).any():
            sources = list(out.source_instances)
            for i in np.flatnonzero(result.track_ids == UNTRACKED).tolist():
                if sources[i].track is not None:
                    sources[i] = copy_instance(sources[i])
                    sources[i].track = None
            out = msgspec.structs.replace(out, source_instances=tuple(sources))
        return out

    @staticmethod
    def _embeddings(pred: FramePrediction) -> np.ndarray:
        """The frame's re-ID vectors; a frame without them (an input .slp's instances that
        carry none) gets NaN rows, which the trackers read as "no appearance evidence"."""
        if pred.embeddings is not None:
            return np.asarray(pred.embeddings, dtype=np.float64)
        return np.full((pred.n_instances, 1), np.nan)

    @staticmethod
    def _old_names(pred: FramePrediction, indices: np.ndarray) -> list[str | None]:
        if pred.track_names is None:
            return [None] * len(indices)
        return [pred.track_names[i] for i in indices.tolist()]


class CleanUpTracks(KeyedStage[PostTrackingCleanup]):
    """sleap-nn's post-tracking cull and single-break repair, applied frame by frame in order.

    A keyed stage whose state is the clean-up's memory of recent frames; with ``per_video`` it
    starts afresh at each new ``video_id``, like the tracker before it.
    """

    def __init__(self, config: TrackerConfig, *, per_video: bool = False,
                 name: str = "track_cleanup") -> None:
        super().__init__(name, partial(PostTrackingCleanup, config), self.clean_up,
                         key=video_key if per_video else _whole_stream)
        self.config = config
        self.per_video = per_video
        #: Whether any step runs (the stage is left out of the graph otherwise); making the
        #: first state here also fails the build on a bad config.
        self.enabled: bool = self.current().enabled

    def __call__(self, pred: FramePrediction) -> FramePrediction:
        """One frame through the clean-up of its video, outside a graph (a resume)."""
        (out,) = self.push(pred)
        return out

    def clean_up(self, cleanup: PostTrackingCleanup, pred: FramePrediction) -> FramePrediction:
        """The keyed work: ``pred`` culled and repaired by ``cleanup``, its video's clean-up."""
        n_untouched = len(pred.untouched)
        if pred.n_instances + n_untouched == 0:
            return pred
        points = np.asarray(pred.points, dtype=np.float64)
        scores = np.asarray(pred.instance_scores, dtype=np.float64)
        keys: list = list(pred.track_names or [None] * pred.n_instances)
        is_predicted = (~np.asarray(pred.is_user) if pred.is_user is not None
                        else np.ones(pred.n_instances, dtype=bool))
        if n_untouched:
            # Untouched predicted instances of a track-only frame take part as they are.
            extra = np.stack([inst.numpy()[:, :2] for inst in pred.untouched])
            points = np.concatenate([extra, points])
            scores = np.concatenate([[float(getattr(i, "score", 1.0)) for i in pred.untouched], scores])
            keys = [i.track.name if i.track else None for i in pred.untouched] + keys
            is_predicted = np.concatenate([np.ones(n_untouched, dtype=bool), is_predicted])
        kept, new_keys = cleanup(points, scores, is_predicted, keys)
        kept = np.asarray(kept, dtype=np.int64)
        untouched_kept = tuple(pred.untouched[i] for i in kept.tolist() if i < n_untouched)
        mine = kept[kept >= n_untouched] - n_untouched
        names = tuple(k for i, k in zip(kept.tolist(), new_keys) if i >= n_untouched)
        return pred.subset(mine, track_names=names, untouched=untouched_kept)


class StreamTracking:
    """One stream's filter, tracker and clean-up, called frame by frame outside a graph.

    The stages are the graph's own (their ``__call__`` works one frame outside a graph), so a
    stream tracked this way gets what a tracked run of the same frames writes. Each instance
    holds one stream's state: make one per stream. Frames must come in order, one at a time.
    """

    def __init__(self, filt: Callable[[FramePrediction], FramePrediction], track: TrackFrames,
                 cleanup: CleanUpTracks | None) -> None:
        self.steps: tuple[Callable[[FramePrediction], FramePrediction], ...] = tuple(
            step for step in (filt, track, cleanup) if step is not None)
        #: Whether the tracker reads the frame's pixels (optical flow, image features): the
        #: caller then sets ``image`` on each prediction.
        self.needs_image: bool = track.config.needs_image

    def __call__(self, pred: FramePrediction) -> FramePrediction:
        for step in self.steps:
            pred = step(pred)
        return pred


class LinkGapsStage(KeyedStage[GapLinker]):
    """The streaming stage around :class:`GapLinker`: order in, order out; the frames a video's
    linker holds back leave when the next video starts (no link crosses videos) and at the end
    of the stream."""

    def __init__(self, max_gap: int, fill_gaps: int, min_similarity: float = 0.3, *,
                 name: str = "link_gaps") -> None:
        super().__init__(name, partial(GapLinker, max_gap, fill_gaps, min_similarity),
                         GapLinker.push, flush=GapLinker.flush, flatten=True)


class LinkIdentities(KeyedStage[TrackletLinker]):
    """The streaming stage around :class:`TrackletLinker` (``--link_tracklets``): order in,
    order out, frames held back in blocks of ``--link_window`` (the whole video with 0). Its
    name carries the window, so ``--stats`` shows what it holds."""

    def __init__(self, config: TrackerConfig, *, name: str | None = None) -> None:
        params = link_params(config)
        held = f"window={params.window}" if params.window else "whole video"
        # One numbering for the stream: each video's linker names new identities from it.
        numbers = itertools.count()
        super().__init__(name or f"link_tracklets({held})",
                         partial(TrackletLinker, params, numbers),
                         TrackletLinker.push, flush=TrackletLinker.flush, flatten=True)
        self.params = params

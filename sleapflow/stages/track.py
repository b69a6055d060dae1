"""Tracking stage functions: the stateful tracker and the streaming post-tracking clean-up."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from sleapflow.messages import FramePrediction
from sleapflow.tracking import UNASSIGNED, PostTrackingCleanup, Tracker, TrackerConfig


class TrackFrames:
    """Assigns ``track_{id}`` tracks to each frame's instances, in frame order.

    State lives in the :class:`Tracker` (bounded by its window). Frames without instances are
    fed only when ``feed_empty_frames`` (the reference's top-down runs never feed them). With
    ``prefer_user`` (track-only), a frame's user instances are tracked when it has any, its
    predicted ones then pass through untouched.
    """

    def __init__(self, config: TrackerConfig, *, feed_empty_frames: bool,
                 prefer_user: bool = False) -> None:
        self.tracker = Tracker(config)
        self.config = config
        self.feed_empty_frames = feed_empty_frames
        self.prefer_user = prefer_user
        #: Called as ``on_tracked(seq, tracker)`` after each tracked frame (the journal keeps
        #: the tracker's window this way, for ``--resume``).
        self.on_tracked: Callable[[int, Tracker], None] | None = None

    def __call__(self, pred: FramePrediction) -> FramePrediction:
        untouched: tuple = ()
        if self.prefer_user and pred.is_user is not None and np.asarray(pred.is_user).any():
            is_user = np.asarray(pred.is_user)
            if pred.source_instances is not None:
                untouched = tuple(pred.source_instances[i] for i in np.flatnonzero(~is_user))
            pred = pred.subset(np.flatnonzero(is_user))
        if pred.n_instances == 0 and not self.feed_empty_frames:
            return pred
        image = pred.image if self.config.needs_image else None
        result = self.tracker.track(np.asarray(pred.points, dtype=np.float64),
                                    np.asarray(pred.instance_scores, dtype=np.float64),
                                    frame_idx=pred.frame_idx, image=image)
        if self.on_tracked is not None:
            self.on_tracked(pred.seq, self.tracker)
        names: list[str | None] = []
        for track_id, old in zip(result.track_ids.tolist(), self._old_names(pred, result.indices)):
            names.append(old if track_id == UNASSIGNED else f"track_{track_id}")
        scores = np.where(result.track_ids == UNASSIGNED, np.nan, result.tracking_scores)
        return pred.subset(result.indices, track_names=tuple(names),
                           tracking_scores=scores.astype(np.float64), untouched=untouched,
                           image=None)

    @staticmethod
    def _old_names(pred: FramePrediction, indices: np.ndarray) -> list[str | None]:
        if pred.track_names is None:
            return [None] * len(indices)
        return [pred.track_names[i] for i in indices.tolist()]


class CleanUpTracks:
    """sleap-nn's post-tracking cull and single-break repair, applied frame by frame in order."""

    def __init__(self, config: TrackerConfig) -> None:
        self.cleanup = PostTrackingCleanup(config)

    @property
    def enabled(self) -> bool:
        return self.cleanup.enabled

    def __call__(self, pred: FramePrediction) -> FramePrediction:
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
        kept, new_keys = self.cleanup(points, scores, is_predicted, keys)
        kept = np.asarray(kept, dtype=np.int64)
        untouched_kept = tuple(pred.untouched[i] for i in kept.tolist() if i < n_untouched)
        mine = kept[kept >= n_untouched] - n_untouched
        names = tuple(k for i, k in zip(kept.tolist(), new_keys) if i >= n_untouched)
        return pred.subset(mine, track_names=names, untouched=untouched_kept)

"""Instance culling before tracking and the post-tracking clean-up, frame by frame.

sleap-nn runs its post-tracking clean-up over the whole list of tracked frames at the end. Both
steps only look at one frame at a time (culling) or carry a few sets of track keys forward
(connecting single breaks), so here they are small stateful callables fed one frame at a time, in
order, and can run as a streaming stage right after the tracker with the same result as the
batch version on frames sorted by frame index.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import numpy as np

from sleapflow.errors import ConfigError
from sleapflow.logs import get_logger
from sleapflow.options.tracker import TrackerConfig
from sleapflow.tracking.features import bboxes

__all__ = (
    "InstanceCuller", "PostTrackingCleanup", "SingleBreakConnector", "nms_fast", "nms_instances", "pre_cull",
)


log = get_logger(__name__)


def nms_fast(boxes: np.ndarray, scores: np.ndarray, threshold: float,
             target_count: int | None = None) -> list[int]:
    """Greedy box suppression (SLEAP's port of pyimagesearch's ``non_max_suppression_fast``).

    Repeatedly keeps the highest-scoring remaining box and suppresses every other remaining box
    whose overlap ``intersection / area(other)`` (+1 pixel convention, not IoU) exceeds
    ``threshold``. With ``target_count``: fewer boxes than the target are all kept, and if
    suppression leaves fewer than ``target_count`` boxes, the best suppressed ones are added back
    until the target is reached. (SLEAP and sleap-nn compute the add-back count as
    ``len(picked) - target``, which is negative and adds back the wrong number; this adds back
    ``target - len(picked)``, the documented intent.) Returns indices in pick order, then
    added-back ones.
    """
    n = len(boxes)
    if n == 0:
        return []
    if target_count and n < target_count:
        return list(range(n))
    boxes = np.asarray(boxes, dtype=np.float64)
    x1, y1, x2, y2 = boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3]
    area = (x2 - x1 + 1) * (y2 - y1 + 1)
    # numpy's default argsort, as sleap-nn, so equal scores break ties the same way.
    idxs = np.argsort(scores)
    picked: list[int] = []
    suppressed: list[int] = []
    with np.errstate(invalid="ignore", divide="ignore"):
        while len(idxs) > 0:
            best = int(idxs[-1])
            picked.append(best)
            rest = idxs[:-1]
            w = np.maximum(0, np.minimum(x2[best], x2[rest]) - np.maximum(x1[best], x1[rest]) + 1)
            h = np.maximum(0, np.minimum(y2[best], y2[rest]) - np.maximum(y1[best], y1[rest]) + 1)
            overlap = (w * h) / area[rest]
            hit = np.where(overlap > threshold)[0]
            suppressed.extend(int(i) for i in rest[hit])
            idxs = np.delete(idxs, hit)[:-1]
    if target_count and suppressed and len(picked) < target_count:
        suppressed.sort(key=lambda i: -scores[i])
        picked.extend(suppressed[: target_count - len(picked)])
    return picked


def nms_instances(points: np.ndarray, scores: np.ndarray, threshold: float,
                  target_count: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Split instances into (kept, removed) index arrays, each in input order."""
    picks = set(nms_fast(bboxes(points), np.asarray(scores), threshold, target_count))
    keep = np.array([i for i in range(len(points)) if i in picks], dtype=np.int64)
    drop = np.array([i for i in range(len(points)) if i not in picks], dtype=np.int64)
    return keep, drop


def _lowest_scoring(candidates: Sequence[int], scores: np.ndarray, keep_count: int) -> list[int]:
    """All but the ``keep_count`` highest-scoring candidates (Python's stable sort, as sleap-nn)."""
    ranked = sorted(candidates, key=lambda i: scores[i])
    return ranked[:-keep_count] if keep_count > 0 else ranked


def pre_cull(points: np.ndarray, scores: np.ndarray, target_count: int,
             iou_threshold: float = 0.0) -> np.ndarray:
    """Indices (input order) of the instances kept by the pre-tracking cull.

    Only frames with more than ``target_count`` instances are touched: instances suppressed by
    :func:`nms_instances` (when ``iou_threshold`` is set) are removed, then, while more than
    ``target_count`` remain, the lowest-scoring ones. This is SLEAP's behaviour; sleap-nn's
    ``cull_frame_instances`` instead keeps the *lowest*-scoring extras (duplicating instances when
    several are suppressed) and crashes on empty frames, both documented as accidental.
    """
    n = len(points)
    keep = np.arange(n)
    if n <= target_count:
        return keep
    if iou_threshold:
        keep, _ = nms_instances(points, scores, iou_threshold, target_count)
    if len(keep) > target_count:
        extra = set(_lowest_scoring(keep.tolist(), scores, target_count))
        keep = np.array([i for i in keep.tolist() if i not in extra], dtype=np.int64)
    return keep


def _same_pose(points: np.ndarray, other: np.ndarray) -> np.ndarray:
    """For each instance in ``points``, whether its pose equals ``other`` exactly (NaN == NaN)."""
    same = (points == other) | (np.isnan(points) & np.isnan(other))
    return same.reshape(len(points), -1).all(axis=1)


class InstanceCuller:
    """Post-tracking ``cull_instances`` for one frame at a time (stateless).

    In a frame with more than ``instance_count`` predicted instances, predicted instances
    suppressed by box NMS (when ``iou_threshold`` is set) are marked, then, while more than
    ``instance_count`` remain, all but the highest-scoring ones. Every instance of the frame, user
    or predicted, whose pose equals a marked one is removed.
    """

    def __init__(self, instance_count: int, iou_threshold: float = 0.0) -> None:
        self.instance_count = int(instance_count)
        self.iou_threshold = float(iou_threshold or 0.0)

    def __call__(self, points: np.ndarray, scores: np.ndarray,
                 is_predicted: np.ndarray | None = None) -> np.ndarray:
        """Boolean mask of the instances to keep."""
        points = np.asarray(points, dtype=np.float64)
        n = len(points)
        keep_mask = np.ones(n, dtype=bool)
        predicted = np.arange(n) if is_predicted is None else np.flatnonzero(is_predicted)
        if len(predicted) <= self.instance_count:
            return keep_mask
        scores = np.asarray(scores, dtype=np.float64)
        kept = predicted
        marked: list[int] = []
        if self.iou_threshold:
            local_keep, local_drop = nms_instances(
                points[predicted], scores[predicted], self.iou_threshold, self.instance_count
            )
            marked.extend(predicted[local_drop].tolist())
            kept = predicted[local_keep]
        if len(kept) > self.instance_count:
            marked.extend(_lowest_scoring(kept.tolist(), scores, self.instance_count))
        for i in marked:
            keep_mask &= ~_same_pose(points, points[i])
        return keep_mask


class SingleBreakConnector:
    """Post-tracking ``connect_single_breaks``, one frame at a time, in frame order.

    When a frame has exactly one track key that the last "good" frame did not have and that frame
    had exactly one key this frame lacks, the first instance with the new key is moved to the lost
    key and the replacement is remembered: later instances carrying the new key are moved too, as
    long as the lost key is not already in their frame. Keys are any hashables (track ids, track
    objects, ``None`` for untracked instances, which take part like any other key).
    """

    def __init__(self) -> None:
        #: new track key -> the lost key it continues
        self.fix_map: dict[Hashable, Hashable] = {}
        #: track keys of the last frame that had at least as many tracks as the one before it;
        #: starting empty is equivalent to sleap-nn seeding it with the first frame's keys.
        self.last_good: set[Hashable] = set()

    def __call__(self, track_keys: Sequence[Hashable]) -> list[Hashable]:
        """The frame's track keys after repair (same length and order as the input)."""
        keys = list(track_keys)
        frame = set(keys)
        if frame & self.fix_map.keys():
            for i, key in enumerate(keys):
                if key in self.fix_map and self.fix_map[key] not in frame:
                    keys[i] = self.fix_map[key]
                    frame = set(keys)
        extra = frame - self.last_good
        missing = self.last_good - frame
        if len(extra) == 1 and len(missing) == 1:
            (new,), (lost,) = extra, missing
            i = keys.index(new)
            keys[i] = lost
            self.fix_map[new] = lost
        elif len(frame) >= len(self.last_good):
            self.last_good = frame
        return keys

    @property
    def state_size(self) -> int:
        """Number of stored keys (bounded by the number of tracks, not by the video length)."""
        return len(self.fix_map) + len(self.last_good)


class PostTrackingCleanup:
    """The post-tracking steps a config asks for, in sleap-nn's order, applied per frame.

    ``tracking_clean_instance_count > 0`` culls each frame, then connects single breaks unless
    ``post_connect_single_breaks`` is set; ``post_connect_single_breaks`` connects single breaks
    (and needs ``tracking_target_instance_count``, the caller may default it from
    ``max_instances``).
    """

    def __init__(self, config: TrackerConfig) -> None:
        self.culler: InstanceCuller | None = None
        self.connector: SingleBreakConnector | None = None
        if config.tracking_clean_instance_count > 0:
            self.culler = InstanceCuller(config.tracking_clean_instance_count,
                                         config.tracking_clean_iou_threshold)
            if not config.post_connect_single_breaks:
                self.connector = SingleBreakConnector()
        if config.post_connect_single_breaks:
            if not config.tracking_target_instance_count:
                hint = (f"Add --tracking_target_instance_count {config.max_tracks} (your "
                        "--max_tracks value)." if config.max_tracks is not None else
                        "Add --tracking_target_instance_count N where N is the expected number "
                        "of instances per frame.")
                raise ConfigError(
                    "post_connect_single_breaks requires tracking_target_instance_count to be "
                    f"set. {hint}"
                )
            self.connector = SingleBreakConnector()

    @property
    def enabled(self) -> bool:
        """Whether any step runs (a stage can be left out of the graph otherwise)."""
        return self.culler is not None or self.connector is not None

    def __call__(self, points: np.ndarray, scores: np.ndarray, is_predicted: np.ndarray,
                 track_keys: Sequence[Hashable]) -> tuple[np.ndarray, list[Hashable]]:
        """Return (indices of the kept instances, their repaired track keys)."""
        n = len(track_keys)
        keep = np.arange(n)
        if self.culler is not None:
            keep = np.flatnonzero(self.culler(points, scores, is_predicted))
        keys = [track_keys[i] for i in keep.tolist()]
        if self.connector is not None:
            keys = self.connector(keys)
        return keep, keys

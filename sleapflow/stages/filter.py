"""Instance filter stage function: node count, confidence and overlap NMS, per frame."""

from __future__ import annotations

from typing import Literal

import numpy as np

from sleapflow.messages import FramePrediction
from sleapflow.ops.filters import confidence_keep, nms_overlapping, node_count_keep

__all__ = ("InstanceFilter",)



class InstanceFilter:
    """Drops empty instance slots, then applies the filters a run asked for.

    ``order="inference"`` is what ``sleap-nn track`` does after inference (node count →
    confidence → overlap); ``order="track_only"`` is its track-only order (overlap → node count
    → confidence), where user instances take part with a score of 1.0.
    """

    def __init__(self, *, overlap_method: Literal["iou", "oks"] | None, overlap_threshold: float,
                 min_visible_nodes: int, min_visible_node_fraction: float,
                 min_mean_node_score: float, min_instance_score: float,
                 order: Literal["inference", "track_only"] = "inference") -> None:
        self.overlap_method = overlap_method
        self.overlap_threshold = overlap_threshold
        self.min_visible_nodes = min_visible_nodes
        self.min_visible_node_fraction = min_visible_node_fraction
        self.min_mean_node_score = min_mean_node_score
        self.min_instance_score = min_instance_score
        self.order = order

    @property
    def active(self) -> bool:
        return bool(self.overlap_method or self.min_visible_nodes or self.min_visible_node_fraction
                    or self.min_mean_node_score or self.min_instance_score)

    def _counts_and_confidence(self, pred: FramePrediction, idx: np.ndarray) -> np.ndarray:
        points = np.asarray(pred.points)[idx]
        keep = node_count_keep(points, min_visible_nodes=self.min_visible_nodes,
                               min_visible_node_fraction=self.min_visible_node_fraction)
        scores = np.asarray(pred.instance_scores, dtype=np.float32)[idx]
        point_scores = None if pred.point_scores is None else np.asarray(pred.point_scores)[idx]
        keep &= confidence_keep(scores, point_scores, points,
                                min_mean_node_score=self.min_mean_node_score,
                                min_instance_score=self.min_instance_score)
        return idx[keep]

    def _overlap(self, pred: FramePrediction, idx: np.ndarray) -> np.ndarray:
        if not self.overlap_method or idx.size < 2:
            return idx
        # sleap-io stores instance scores as float32; comparing in that dtype keeps the
        # reference's tie order and threshold tests.
        scores = np.asarray(pred.instance_scores, dtype=np.float32)[idx]
        if pred.is_user is not None:
            scores = np.where(np.asarray(pred.is_user)[idx], np.float32(1.0), scores)
        kept = nms_overlapping(np.asarray(pred.points)[idx], scores,
                               threshold=self.overlap_threshold, method=self.overlap_method)
        return idx[np.asarray(kept, dtype=np.int64)]

    def __call__(self, pred: FramePrediction) -> FramePrediction:
        points = np.asarray(pred.points)
        present = np.flatnonzero(~np.isnan(points).all(axis=(1, 2))) if points.size else \
            np.zeros(0, dtype=np.int64)
        idx = present
        if self.active:
            if self.order == "inference":
                idx = self._overlap(pred, self._counts_and_confidence(pred, idx))
            else:
                idx = self._counts_and_confidence(pred, self._overlap(pred, idx))
        if idx.size == points.shape[0] and np.array_equal(idx, np.arange(idx.size)):
            return pred
        return pred.subset(idx)

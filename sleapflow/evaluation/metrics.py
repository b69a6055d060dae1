"""The metric families of sleap-nn 0.3.5's ``eval``, computed once the instances are matched.

VOC precision/recall over OKS and PCK match scores, mean OKS, keypoint distance percentiles, PCK
and node-visibility counts; ``match_method="centroid"`` reports detection and distance metrics
of single-point (centroid) predictions instead.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import sleap_io as sio

from sleapflow.errors import ConfigError
from sleapflow.evaluation.matching import (
    find_frame_pairs,
    match_oks,
    pred_centroids,
    stack_side,
    user_centroids,
    video_key,
)
from sleapflow.logs import get_logger
from sleapflow.ops.instances import gt_centroids

__all__ = ("VOC_KEYS", "Evaluator")


logger = get_logger(__name__)

_EPS = np.spacing(1)
_PERCENTILES = (50, 75, 90, 95, 99)
VOC_KEYS = (
    "match_score_thresholds",
    "recall_thresholds",
    "match_scores",
    "precisions",
    "recalls",
    "AP",
    "AR",
    "mAP",
    "mAR",
)


class Evaluator:
    """Match ground truth and predictions once, then compute sleap-nn's metric families.

    Args:
        ground_truth_instances: Ground-truth labels.
        predicted_instances: Predicted labels.
        oks_stddev: OKS spread (OKS mode).
        oks_scale: OKS scale; None uses each ground-truth bounding-box area (OKS mode).
        match_threshold: OKS mode: a pair needs OKS strictly above it. Centroid mode: maximum
            pixel distance of a match (inclusive).
        user_labels_only: Only user instances of the ground truth count (see
            ``find_frame_pairs``).
        match_method: ``"oks"`` or ``"centroid"``.
        anchor_ind: Centroid mode: ground-truth node used as the centroid when visible.
        video_map: Optional precomputed ``labels_gt.match(labels_pr).video_map``.

    Attributes:
        frame_pairs: ``(frame_gt, frame_pr)`` pairs from ``find_frame_pairs``.
        positive_pairs: ``(instance_gt, instance_pr, score)`` per match, in the reference's
            order; score is the OKS (centroid mode: the pixel distance). *[differs]* The
            instances are the sleap-io objects themselves, not sleap-nn's ``MatchInstance``
            wrappers (frame index and video path are in ``dists_dict``).
        false_negatives: Unmatched ground-truth instances.
        false_positives: Unmatched predictions (centroid mode only; OKS mode ignores them).
        dists_dict: ``{"dists", "frame_idxs", "video_paths"}`` of the matched pairs.

    Raises:
        ConfigError: No frame of the two files pairs up, the method is unknown, or the two
            skeletons differ in node count (OKS mode).
    """

    def __init__(
        self,
        ground_truth_instances: sio.Labels,
        predicted_instances: sio.Labels,
        oks_stddev: float = 0.025,
        oks_scale: float | None = None,
        match_threshold: float = 0,
        user_labels_only: bool = True,
        match_method: str = "oks",
        anchor_ind: int | None = None,
        *,
        video_map: dict[sio.Video, sio.Video | None] | None = None,
    ) -> None:
        if match_method not in ("oks", "centroid"):
            raise ConfigError(
                f"Evaluator match_method must be 'oks' or 'centroid', not {match_method!r}."
            )
        self.ground_truth_instances = ground_truth_instances
        self.predicted_instances = predicted_instances
        self.oks_stddev = oks_stddev
        self.oks_scale = oks_scale
        self.match_threshold = match_threshold
        self.user_labels_only = user_labels_only
        self.match_method = match_method
        self.anchor_ind = anchor_ind
        self.false_positives: list[Any] = []

        self.frame_pairs = find_frame_pairs(
            ground_truth_instances,
            predicted_instances,
            user_labels_only,
            keep_user_centroid_frames=match_method == "centroid",
            video_map=video_map,
        )
        if not self.frame_pairs:
            raise ConfigError(
                "Empty Frame Pairs: no frame of the ground truth matches a frame of the "
                "predictions (no video of the two files could be paired, or they share no "
                "labeled frame index with user instances). Check that both files label the "
                "same video."
            )
        self._frame_idxs = [lf.frame_idx for lf, _ in self.frame_pairs]
        keys: dict[int, str] = {}
        self._frame_videos = [
            keys.setdefault(id(lf.video), video_key(lf.video)) for lf, _ in self.frame_pairs
        ]
        if match_method == "centroid":
            self._process_centroid()
        else:
            self._process_oks()

    # -- matching ------------------------------------------------------------------------------

    def _process_oks(self) -> None:
        gt = stack_side([lf.instances for lf, _ in self.frame_pairs], "ground-truth")
        pr = stack_side([lf.instances for _, lf in self.frame_pairs], "predicted")
        m = match_oks(gt, pr, self.oks_stddev, self.oks_scale, self.match_threshold)
        self._pair_gt = gt.points[m.gt_rows]
        self._pair_pr = pr.points[m.pr_rows]
        self._pair_scores = m.scores
        # *[differs]* The reference raises AttributeError when a matched prediction has no
        # score (a user instance in the prediction file); it ranks last here instead.
        self._detection_scores = pr.scores[m.pr_rows]
        self.positive_pairs = [
            (gt.instances[g], pr.instances[p], s)
            for g, p, s in zip(m.gt_rows.tolist(), m.pr_rows.tolist(), m.scores.tolist())
        ]
        self.false_negatives = [gt.instances[g] for g in m.unmatched_gt_rows.tolist()]
        self._n_false_negatives = m.n_false_negatives
        frame_pos = m.frame_pos.tolist()
        dists = (
            np.linalg.norm(self._pair_pr - self._pair_gt, axis=-1)
            if m.gt_rows.size
            else np.array([])  # shape (0,), as the reference's np.array([])
        )
        self.dists_dict = {
            "dists": dists,
            "frame_idxs": [self._frame_idxs[f] for f in frame_pos],
            "video_paths": [self._frame_videos[f] for f in frame_pos],
        }

    def _process_centroid(self) -> None:
        from scipy.optimize import linear_sum_assignment
        from scipy.spatial.distance import cdist

        self.positive_pairs = []
        self.false_negatives = []
        self.false_positives = []
        dists: list[float] = []
        frame_idxs: list[int] = []
        video_paths: list[str] = []
        for pos, (lf_gt, lf_pr) in enumerate(self.frame_pairs):
            gt_objs: list[Any] = list(lf_gt.instances)
            anchor = self.anchor_ind
            if not gt_objs and user_centroids(lf_gt):
                # Centroid annotations are already centroids; the pose anchor does not apply.
                gt_objs = user_centroids(lf_gt)
                gt_pts = np.array([[[float(c.x), float(c.y)]] for c in gt_objs])
                anchor = None
            else:
                gt_pts = stack_side([gt_objs], "ground-truth").points
            pr_objs = list(lf_pr.instances)
            pr_c = pred_centroids(stack_side([pr_objs], "predicted").points[..., :2])
            gt_c = gt_centroids(gt_pts[..., :2], anchor) if gt_objs else np.empty((0, 2))

            gt_ok = np.flatnonzero(~np.isnan(gt_c).any(axis=1))
            pr_ok = np.flatnonzero(~np.isnan(pr_c).any(axis=1))
            matched_gt: set[int] = set()
            matched_pr: set[int] = set()
            if gt_ok.size and pr_ok.size:
                cost = cdist(pr_c[pr_ok], gt_c[gt_ok])
                rows, cols = linear_sum_assignment(cost)
                for r, c in zip(rows.tolist(), cols.tolist()):
                    if cost[r, c] <= self.match_threshold:
                        p, g = int(pr_ok[r]), int(gt_ok[c])
                        matched_pr.add(p)
                        matched_gt.add(g)
                        d = float(np.linalg.norm(pr_c[p] - gt_c[g]))
                        self.positive_pairs.append((gt_objs[g], pr_objs[p], d))
                        dists.append(d)
                        frame_idxs.append(self._frame_idxs[pos])
                        video_paths.append(self._frame_videos[pos])
            # Unmatched valid GT first, then GT with no visible node (automatic misses).
            self.false_negatives += [gt_objs[g] for g in gt_ok.tolist() if g not in matched_gt]
            self.false_negatives += [
                gt_objs[g] for g in np.flatnonzero(np.isnan(gt_c).any(axis=1)).tolist()
            ]
            # A prediction with no usable point is not a detection, so never a false positive.
            self.false_positives += [pr_objs[p] for p in pr_ok.tolist() if p not in matched_pr]
        self._n_false_negatives = len(self.false_negatives)
        self.dists_dict = {
            "dists": np.array(dists, dtype=np.float64),
            "frame_idxs": frame_idxs,
            "video_paths": video_paths,
        }

    def _require_oks(self, what: str) -> None:
        if self.match_method != "oks":
            raise ConfigError(f"{what} is defined only for match_method='oks'.")

    # -- metrics -------------------------------------------------------------------------------

    def voc_metrics(
        self,
        match_score_by: str = "oks",
        match_score_thresholds: np.ndarray | None = None,
        recall_thresholds: np.ndarray | None = None,
    ) -> dict[str, Any]:
        """PASCAL-VOC style precision/recall of the matched pairs.

        Pairs are ranked by detection score; at each match-score threshold a pair is a true
        positive if its score reaches the threshold, else a false positive. *[as-implemented]*
        Unmatched predictions are never false positives (SLEAP's semantics, unlike COCO).

        Args:
            match_score_by: ``"oks"`` (pair OKS) or ``"pck"`` (mean PCK over nodes and
                thresholds).
            match_score_thresholds: Default ``linspace(0.5, 0.95, 10)``.
            recall_thresholds: Default ``linspace(0, 1, 101)``.

        Returns:
            ``{prefix + key}`` for the 9 VOC keys with prefix ``oks_voc.`` / ``pck_voc.``; every
            value is the integer 0 when nothing matched.
        """
        self._require_oks("voc_metrics")
        t = np.linspace(0.5, 0.95, 10) if match_score_thresholds is None else match_score_thresholds
        r = np.linspace(0, 1, 101) if recall_thresholds is None else recall_thresholds
        t = np.asarray(t)
        r = np.asarray(r)
        if match_score_by == "oks":
            name = "oks_voc"
            match_scores = self._pair_scores
        elif match_score_by == "pck":
            name = "pck_voc"
            match_scores = (
                self._pcks().mean(axis=-1).mean(axis=-1)
                if self._pair_scores.size
                else np.array([])
            )
        else:
            raise ConfigError(f"match_score_by must be 'oks' or 'pck', not {match_score_by!r}.")

        if match_scores.size == 0:
            return {f"{name}.{k}": 0 for k in VOC_KEYS}
        inds = np.argsort(-self._detection_scores, kind="mergesort")
        match_scores = match_scores[inds]
        npig = match_scores.size + self._n_false_negatives  # ground-truth instances in pairs

        # All thresholds at once: rows are thresholds, columns are ranked pairs.
        tp = np.cumsum(match_scores[None, :] >= t[:, None], axis=1)
        fp = np.cumsum(match_scores[None, :] < t[:, None], axis=1)
        rc = tp / npig
        pr = tp / (fp + tp + _EPS)
        recalls = rc[:, -1].copy()
        # Precision envelope: running maximum from the right.
        pr = np.maximum.accumulate(pr[:, ::-1], axis=1)[:, ::-1]
        precisions = np.zeros((t.size, r.size))
        for i in range(t.size):  # 10 thresholds; searchsorted is 1-D only
            idx = np.searchsorted(rc[i], r, side="left")
            ok = idx < pr.shape[1]
            precisions[i, ok] = pr[i, idx[ok]]
        values = (
            t,
            r,
            match_scores,
            precisions,
            recalls,
            precisions.mean(axis=1),
            recalls,
            precisions.mean(),
            recalls.mean(),
        )
        return {f"{name}.{k}": v for k, v in zip(VOC_KEYS, values)}

    def mOKS(self) -> dict[str, float]:
        """Mean OKS of the matched pairs (NaN when nothing matched)."""
        self._require_oks("mOKS")
        s = self._pair_scores
        return {"mOKS": float(s.mean()) if s.size else np.nan}

    def distance_metrics(self) -> dict[str, Any]:
        """Per-node keypoint distances of the matched pairs and their summary percentiles."""
        dists = self.dists_dict["dists"]
        finite = dists[~np.isnan(dists)]
        results: dict[str, Any] = {
            "frame_idxs": self.dists_dict["frame_idxs"],
            "video_paths": self.dists_dict["video_paths"],
            "dists": dists,
            # nanmean (not finite.mean()) keeps the reference's summation order bit for bit.
            "avg": float(np.nanmean(dists)) if finite.size else np.nan,
        }
        if finite.size:
            # One partition pass for all five percentiles; same linear interpolation.
            values = np.percentile(finite, _PERCENTILES)
            results.update({f"p{q}": values[i] for i, q in enumerate(_PERCENTILES)})
        else:
            results.update({f"p{q}": np.nan for q in _PERCENTILES})
        return results

    def _pcks(self, thresholds: np.ndarray | None = None) -> np.ndarray:
        th = np.linspace(1, 10, 10) if thresholds is None else np.asarray(thresholds)
        dists = np.where(np.isnan(self.dists_dict["dists"]), np.inf, self.dists_dict["dists"])
        # Kept in the reference's exact broadcast so an empty result has its (1, 0, T) shape.
        return np.expand_dims(dists, -1) < np.reshape(th, (1, 1, -1))

    def pck_metrics(self, thresholds: np.ndarray | None = None) -> dict[str, Any]:
        """Percentage of correct keypoints at pixel thresholds (default ``linspace(1, 10, 10)``).

        A node is correct when its distance is strictly below the threshold; missing nodes
        never are.
        """
        self._require_oks("pck_metrics")
        th = np.linspace(1, 10, 10) if thresholds is None else np.asarray(thresholds)
        pcks = self._pcks(th)
        if self.dists_dict["dists"].size == 0:
            parts: np.ndarray = np.array([])
            mpck = pck5 = pck10 = np.nan
        else:
            parts = pcks.mean(axis=0).mean(axis=-1)
            mpck = float(parts.mean())
            pck5 = float(pcks[:, :, np.argmin(np.abs(th - 5))].mean())
            pck10 = float(pcks[:, :, np.argmin(np.abs(th - 10))].mean())
        return {
            "thresholds": th,
            "pcks": pcks,
            "mPCK_parts": parts,
            "mPCK": mpck,
            "PCK@5": pck5,
            "PCK@10": pck10,
        }

    def visibility_metrics(self) -> dict[str, Any]:
        """Node-visibility confusion counts over the matched pairs, with precision and recall."""
        self._require_oks("visibility_metrics")
        if not self._pair_scores.size:
            # The reference's untouched accumulators: plain ints and NaN ratios.
            return {"tp": 0, "fp": 0, "tn": 0, "fn": 0, "precision": np.nan, "recall": np.nan}
        miss_gt = np.isnan(self._pair_gt).any(axis=-1)
        miss_pr = np.isnan(self._pair_pr).any(axis=-1)
        tp = (~miss_gt & ~miss_pr).sum()
        fp = (miss_gt & ~miss_pr).sum()
        tn = (miss_gt & miss_pr).sum()
        fn = (~miss_gt & miss_pr).sum()
        return {
            "tp": tp,
            "fp": fp,
            "tn": tn,
            "fn": fn,
            "precision": tp / (tp + fp) if tp + fp else np.nan,
            "recall": tp / (tp + fn) if tp + fn else np.nan,
        }

    def detection_metrics(self) -> dict[str, Any]:
        """Centroid-mode detection precision/recall/F1 and matched-distance percentiles."""
        n_tp = len(self.positive_pairs)
        n_fp = len(self.false_positives)
        n_fn = len(self.false_negatives)
        precision = n_tp / (n_tp + n_fp) if n_tp + n_fp else 0.0
        recall = n_tp / (n_tp + n_fn) if n_tp + n_fn else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        results: dict[str, Any] = {
            "precision": precision,
            "recall": recall,
            "f1": f1,
            "n_tp": n_tp,
            "n_fp": n_fp,
            "n_fn": n_fn,
        }
        dists = self.dists_dict["dists"]
        finite = dists[~np.isnan(dists)]
        results["avg"] = float(finite.mean()) if finite.size else np.nan
        values = np.percentile(finite, _PERCENTILES) if finite.size else None
        for i, q in enumerate(_PERCENTILES):
            results[f"p{q}"] = float(values[i]) if values is not None else np.nan
        return results

    def evaluate(self) -> dict[str, dict[str, Any]]:
        """Every metric family of the match method, keyed as sleap-nn 0.3.5 keys them."""
        if self.match_method == "centroid":
            return {
                "detection_metrics": self.detection_metrics(),
                "distance_metrics": self.distance_metrics(),
            }
        if not self.positive_pairs:
            logger.info(
                "0 matched instances: metrics undefined (the model predicted nothing usable, "
                "or training likely collapsed)"
            )
        voc = self.voc_metrics(match_score_by="oks")
        voc.update(self.voc_metrics(match_score_by="pck"))
        return {
            "voc_metrics": voc,
            "mOKS": self.mOKS(),
            "distance_metrics": self.distance_metrics(),
            "pck_metrics": self.pck_metrics(),
            "visibility_metrics": self.visibility_metrics(),
        }

"""The tracker: assigns integer track ids to one frame's instances at a time.

Pure synchronous code that works on arrays, so a streaming stage can feed it each frame's
predictions as they come out of the model. It reproduces sleap-nn 0.3.5's ``Tracker`` /
``FlowShiftTracker`` frame by frame, including the choices that look accidental but change
results (see ``docs/COMPATIBILITY.md``):

* fixed window: the track columns are ``list(set(ids))`` (``None`` included, see
  :mod:`~sleapflow.tracking.candidates`); an instance matched to the ``None`` column stays
  without id and is dropped from the frame unless another instance of the frame was left over,
  in which case it may spawn a new track;
* local queues: on the very first tracked frame an instance with too few points is returned
  unchanged (keeps whatever track it had), on later frames it is dropped;
* pairs matched through an unscorable (infinite) cost are kept, with tracking score ``-inf``.

Per frame the similarity between every instance and every stored candidate is one vectorised
numpy computation; candidates are then gathered per track into a padded array and reduced.
"""

from __future__ import annotations

import msgspec
import numpy as np

from sleapflow.logs import get_logger
from sleapflow.options.tracker import TrackerConfig
from sleapflow.tracking import features as feats
from sleapflow.tracking import flow, matching, scoring
from sleapflow.tracking.candidates import (
    CandidateSet,
    FixedWindowCandidates,
    FrameRecord,
    LocalQueueCandidates,
    QueueEntry,
)
from sleapflow.tracking.cleanup import pre_cull
from sleapflow.tracking.kalman import KalmanShift

__all__ = ("UNASSIGNED", "FrameTracks", "Tracker", "TrackerState")


log = get_logger(__name__)

#: Track id reported for an instance the tracker kept but did not assign (local queues, first
#: tracked frame, too few points): the caller leaves that instance's previous track untouched.
UNASSIGNED = -1


class FrameTracks(msgspec.Struct, frozen=True):
    """The tracker's answer for one frame, in sleap-nn's output order.

    ``indices`` are positions in the instance array given to :meth:`Tracker.track`; instances not
    listed were dropped from the frame. ``track_ids`` are integer ids (``track_{id}`` is the track
    name sleap-nn gives them) or :data:`UNASSIGNED`; ``tracking_scores`` are 1.0 for a new
    track, the matched similarity otherwise (``-inf`` for a match through an unscorable pair) and
    NaN for unassigned instances.
    """

    frame_idx: int
    indices: np.ndarray
    track_ids: np.ndarray
    tracking_scores: np.ndarray

    def __len__(self) -> int:
        return len(self.indices)


class TrackerState(msgspec.Struct, frozen=True):
    """How much the tracker holds: bounded by the window, never by the video length."""

    records: int  # stored frames (fixed window) or track queues (local queues)
    instances: int  # stored instances
    images: int  # distinct stored flow images
    tracks: int  # ids issued so far


def _frame_tracks(frame_idx: int, rows: list[tuple[int, int, float]],
                  index_map: np.ndarray) -> FrameTracks:
    if not rows:
        return FrameTracks(frame_idx, np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64),
                           np.empty(0, dtype=np.float64))
    local, ids, scores = zip(*rows)
    return FrameTracks(
        frame_idx,
        index_map[np.asarray(local, dtype=np.int64)],
        np.asarray(ids, dtype=np.int64),
        np.asarray(scores, dtype=np.float64),
    )


class Tracker:
    """Stateful tracker; feed it every frame in temporal order, one :meth:`track` call per frame.

    One tracker spans a whole run (all videos); nothing is reset between videos, as in sleap-nn.
    """

    def __init__(self, config: TrackerConfig | None = None) -> None:
        self.config = config if config is not None else TrackerConfig()
        cfg = self.config
        method = cfg.effective_candidates_method
        if method != cfg.candidates_method:
            # sleap-nn switches silently (its log line is never interpolated): only local
            # queues can cap the number of tracks.
            log.info("tracking.candidates_method_switched", requested=cfg.candidates_method,
                     using=method, max_tracks=cfg.max_tracks,
                     reason="max_tracks is only honoured by local_queues")
        self.is_local_queue = method == "local_queues"
        self._oks_stddev = cfg.effective_oks_stddev
        self._fixed: FixedWindowCandidates | None = None
        self._local: LocalQueueCandidates | None = None
        if self.is_local_queue:
            self._local = LocalQueueCandidates(cfg.window_size, cfg.min_new_track_points,
                                               cfg.max_tracks)
        else:
            self._fixed = FixedWindowCandidates(cfg.window_size, cfg.min_new_track_points)
        #: This frame's unit re-ID vectors (appearance blend only).
        self._appearance: np.ndarray | None = None
        self._kalman: KalmanShift | None = None
        if cfg.use_kalman:
            self._kalman = KalmanShift(features=cfg.kf_track_features,
                                       node_indices=cfg.kf_node_indices,
                                       init_frames=cfg.kf_init_frame_count,
                                       reset_gap=cfg.kf_reset_gap_size)

    # ----------------------------------------------------------------------------------------
    def track(self, points: np.ndarray, instance_scores: np.ndarray | None = None,
              frame_idx: int = 0, image: np.ndarray | None = None,
              embeddings: np.ndarray | None = None) -> FrameTracks:
        """Assign tracks to one frame's instances.

        Args:
            points: ``(n, n_nodes, 2)`` coordinates, NaN for missing nodes.
            instance_scores: ``(n,)`` instance scores; only the pre-tracking cull reads them
                (missing scores count as 1.0).
            frame_idx: the frame index, stored with the candidates.
            image: the frame, ``(H, W)`` or ``(H, W, C)``; required when ``use_flow`` or
                ``features="image"``, ignored otherwise.
            embeddings: ``(n, D)`` re-ID vectors (NaN rows: none); read when
                ``appearance_weight > 0``, where each pair's geometric similarity is blended
                with the vectors' cosine similarity (sleap-nn's blend).
        """
        cfg = self.config
        pts = np.asarray(points, dtype=np.float64)
        if pts.ndim != 3 or pts.shape[-1] != 2:
            if pts.size == 0:
                pts = pts.reshape(0, 0, 2)
            else:
                raise ValueError(f"points must be (n_instances, n_nodes, 2), got {pts.shape}")
        if cfg.needs_image and image is None:
            raise ValueError("this tracker configuration needs the frame image "
                             "(use_flow or features='image'); pass image=")
        index_map = np.arange(len(pts))
        if cfg.pre_cull_enabled:
            scores = (np.ones(len(pts)) if instance_scores is None
                      else np.asarray(instance_scores, dtype=np.float64))
            index_map = pre_cull(pts, scores, int(cfg.tracking_target_instance_count or 0),
                                 cfg.tracking_pre_cull_iou_threshold)
            pts = pts[index_map]
        self._appearance = None
        if cfg.appearance_weight > 0:
            if embeddings is None:
                raise ValueError("appearance_weight > 0 needs the instances' embeddings; pass "
                                 "embeddings=")
            vectors = np.asarray(embeddings, dtype=np.float64)[index_map]
            with np.errstate(invalid="ignore", divide="ignore"):
                self._appearance = vectors / np.linalg.norm(vectors, axis=-1, keepdims=True)
        features = feats.compute(cfg.features, pts, image)
        valid = feats.valid_point_counts(pts)
        flow_image = (flow.prepare_image(image, cfg.of_img_scale)
                      if cfg.use_flow and image is not None else None)
        if self._kalman is not None:
            self._kalman.begin_frame(int(frame_idx))
        if self._local is not None:
            rows = self._track_local(pts, features, valid, int(frame_idx), image, flow_image)
        else:
            rows = self._track_fixed(pts, features, valid, int(frame_idx), image, flow_image)
        if self._kalman is not None:
            self._kalman.observe([(tid, pts[i]) for i, tid, _ in rows if tid != UNASSIGNED],
                                 int(frame_idx))
        return _frame_tracks(int(frame_idx), rows, index_map)

    # ----------------------------------------------------------------------------------------
    def _track_fixed(self, pts: np.ndarray, features: np.ndarray, valid: np.ndarray,
                     frame_idx: int, image: np.ndarray | None,
                     flow_image: np.ndarray | None) -> list[tuple[int, int, float]]:
        fixed = self._fixed
        assert fixed is not None
        n = len(pts)
        record = FrameRecord(pts, features, valid, [None] * n, [None] * n, frame_idx, flow_image,
                             self._appearance)
        if fixed.is_empty:
            # Initialisation: the record is kept only if it started a track, so a frame whose
            # instances all lack points leaves the tracker uninitialised.
            if fixed.add_new_tracks(record):
                fixed.records.append(record)
        else:
            columns = fixed.columns()
            cands = fixed.candidates(columns, flow=self.config.use_flow)
            cost = self._cost_matrix(features, cands, image, flow_image)
            rows, cols = matching.match(self.config.track_matching_method, cost)
            for r, c in zip(rows.tolist(), cols.tolist()):
                record.track_ids[r] = columns[c]
                record.tracking_scores[r] = float(-cost[r, c])
            # Appended even when empty: once tracking started every frame uses a window slot.
            fixed.records.append(record)
            # sleap-nn 0.3.5 counts a pair matched through an infinite (unscorable) cost as
            # unmatched: such an instance starts a new track if it has enough points, otherwise
            # it keeps the match (tracking score -inf). Rows matched to the None column stay
            # without id unless this spawning pass runs and gives them one.
            finite = np.isfinite(cost[rows, cols])
            if int(finite.sum()) < n:
                fixed.add_new_tracks(record, respawn=frozenset(rows[~finite].tolist()))
        return [(i, tid, score) for i, (tid, score) in
                enumerate(zip(record.track_ids, record.tracking_scores)) if tid is not None]

    def _track_local(self, pts: np.ndarray, features: np.ndarray, valid: np.ndarray,
                     frame_idx: int, image: np.ndarray | None,
                     flow_image: np.ndarray | None) -> list[tuple[int, int, float]]:
        local = self._local
        assert local is not None
        min_new = self.config.min_new_track_points
        out: list[tuple[int, int, float]] = []

        appearance = self._appearance

        def entry(i: int, score: float) -> QueueEntry:
            return QueueEntry(pts[i], features[i], int(valid[i]), frame_idx, flow_image, score,
                              None if appearance is None else appearance[i])

        if local.is_empty:
            for i in range(len(pts)):
                if valid[i] > min_new:
                    tid = local.new_track_id()
                    if tid is None:
                        continue  # cap reached: the instance leaves the frame
                    local.push(tid, entry(i, 1.0))
                    out.append((i, tid, 1.0))
                else:
                    out.append((i, UNASSIGNED, float("nan")))
            return out

        columns = local.columns()
        cands = local.candidates(columns, flow=self.config.use_flow)
        cost = self._cost_matrix(features, cands, image, flow_image)
        rows, cols = matching.match(self.config.track_matching_method, cost)
        matched: dict[int, tuple[int, float]] = {}
        for r, c in zip(rows.tolist(), cols.tolist()):
            matched[r] = (columns[c], float(-cost[r, c]))
        # As for the fixed window, a match through an infinite cost counts as unmatched: the
        # instance gets a new track if it qualifies and the cap allows one, else keeps the match.
        spawned: dict[int, int] = {}
        for i in range(len(pts)):
            if i in matched and np.isfinite(matched[i][1]):
                continue
            if valid[i] <= min_new:
                continue
            tid = local.new_track_id()
            if tid is not None:
                spawned[i] = tid
        for r in sorted(matched):
            if r not in spawned:
                tid, score = matched[r]
                local.push(tid, entry(r, score))
        for i, tid in spawned.items():
            local.push(tid, entry(i, 1.0))
        out = [(r, *matched[r]) for r in rows.tolist() if r not in spawned]
        out.extend((i, tid, 1.0) for i, tid in spawned.items())
        return out

    # ----------------------------------------------------------------------------------------
    def _cost_matrix(self, features: np.ndarray, cands: CandidateSet, image: np.ndarray | None,
                     flow_image: np.ndarray | None) -> np.ndarray:
        """``-similarity`` per (instance, track column); unscorable pairs cost +inf."""
        cfg = self.config
        n, n_cols = len(features), len(cands.columns)
        selected = np.flatnonzero(cands.column_of >= 0)
        if n == 0 or n_cols == 0 or len(selected) == 0:
            return np.full((n, n_cols), np.inf)
        cand_features = cands.features
        if cfg.use_flow:
            cand_features = self._shifted_features(cands, image, flow_image)
        elif self._kalman is not None and self._kalman.active:
            # Each candidate moved rigidly to where its track's filter predicts it now.
            owners = [cands.columns[c] if c >= 0 else None for c in cands.column_of.tolist()]
            cand_features = feats.compute(cfg.features, self._kalman.shift(cands.points, owners),
                                          image)
        # Only score the stored instances that are candidates of some column.
        pair = scoring.similarity(cfg.scoring_method, features, cand_features[selected],
                                  self._oks_stddev)  # (n, s)
        if self._appearance is not None and cands.appearance is not None:
            pair = scoring.blend_appearance(pair, self._appearance, cands.appearance[selected],
                                            cfg.appearance_weight)
        column_of = cands.column_of[selected]
        usable = cands.valid[selected] > cfg.min_match_points
        # Pad each column's candidates into (n_cols, k) slots.
        order = np.argsort(column_of, kind="stable")
        counts = np.bincount(column_of, minlength=n_cols)
        k = int(counts.max())
        starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
        sorted_cols = column_of[order]
        slot = np.arange(len(order)) - starts[sorted_cols]
        gather = np.zeros((n_cols, k), dtype=np.int64)
        present = np.zeros((n_cols, k), dtype=bool)
        gather[sorted_cols, slot] = order
        present[sorted_cols, slot] = usable[order]
        values = pair[:, gather]  # (n, n_cols, k)
        similarity = scoring.reduce_scores(cfg.scoring_reduction, values, present,
                                           cfg.robust_best_instance)
        cost = -similarity
        cost[np.isnan(cost)] = np.inf
        return cost

    def _shifted_features(self, cands: CandidateSet, image: np.ndarray | None,
                          flow_image: np.ndarray | None) -> np.ndarray:
        """Features of the stored instances after optical flow into the current frame."""
        cfg = self.config
        assert flow_image is not None
        shifted = np.full(cands.points.shape, np.nan)
        for start, stop, ref_image in cands.groups:
            shifted[start:stop] = flow.shift_points(
                cands.points[start:stop], ref_image, flow_image, scale=cfg.of_img_scale,
                window_size=cfg.of_window_size, max_levels=cfg.of_max_levels,
            )
        return feats.compute(cfg.features, shifted, image)

    # ----------------------------------------------------------------------------------------
    def state(self) -> TrackerState:
        """Sizes of what the tracker currently stores (for tests and memory monitoring)."""
        if self._local is not None:
            return TrackerState(len(self._local.queues), self._local.stored_instances(),
                                self._local.stored_images(), len(self._local.queues))
        assert self._fixed is not None
        return TrackerState(len(self._fixed.records), self._fixed.stored_instances(),
                            self._fixed.stored_images(), self._fixed.next_id)

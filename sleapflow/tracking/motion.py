"""Motion-model trackers (``--tracker sort | bytetrack | ocsort``, and the appearance trackers
built on them, see :mod:`sleapflow.tracking.appearance`) and the constant-velocity filter.

Each track carries a constant-velocity Kalman filter on its centroid (``kf_track_features=
"centroid"``, the default) or on every node (``"keypoints"``). A track's predicted pose is its last
observed pose moved by the filter's predicted displacement (centroid mode) or the filter's
predicted nodes (keypoints mode). A detection and a track are compared by a Gaussian keypoint
similarity in [0, 1] whose spread grows with the filter's position uncertainty, so a track that
has been unseen for many frames accepts a detection further from its extrapolation.

The three trackers share the track life cycle: a track is *tentative* until it has been matched
``min_hits`` times in a row (its id is issued only then, so a spurious detection never gets one;
detections of a tentative track leave the stage without a track), *lost* while unmatched and
removed after ``track_buffer`` unmatched frames. They differ in association:

* ``sort``: one Hungarian stage between confirmed tracks and every detection above
  ``track_low_threshold``, then tentative tracks with what is left.
* ``bytetrack``: high-score detections (``>= track_high_threshold``) first, against every
  confirmed track; then the low-score ones against the confirmed tracks still unmatched that
  were seen on the previous frame (BYTE's second stage; low detections never start a track).
* ``ocsort``: SORT's stage with a direction-consistency bonus (observation-centric momentum),
  then a recovery stage matching left-over detections to lost tracks' *last observations*, and,
  whenever a lost track is matched again, observation-centric re-update: the filter is re-run
  over observations interpolated across the gap instead of keeping the drifted extrapolation.

Only unmatched detections with score ``>= new_track_threshold`` start tentative tracks. No
detection is ever dropped. Everything is numpy plus SciPy's Hungarian solver.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from sleapflow.options.mot import appearance_overrides
from sleapflow.options.tracker import TrackerConfig
from sleapflow.tracking.appearance import AppearanceMemory, AppearanceParams, base_tracker, unit_rows
from sleapflow.tracking.kalman import ConstantVelocity, visible_centroid
from sleapflow.tracking.tracker import FrameTracks, Tracker

__all__ = (
    "UNTRACKED", "MotionParams", "MotionTrack", "MotionTracker", "keypoint_similarity", "make_tracker",
    "pose_size",
)


#: Track id reported for a detection left without a track (tentative or unmatched): the stage
#: clears its track.
UNTRACKED = -2


def pose_size(points: np.ndarray) -> float:
    """Diagonal of the visible nodes' bounding box (px); NaN without two visible nodes."""
    ok = ~np.isnan(points).any(axis=-1)
    if ok.sum() < 2:
        return float("nan")
    pts = points if ok.all() else points[ok]
    w, h = np.maximum.reduce(pts, axis=0) - np.minimum.reduce(pts, axis=0)
    return float(np.hypot(w, h))


def keypoint_similarity(dets: np.ndarray, preds: np.ndarray, spread2: np.ndarray) -> np.ndarray:
    """``(n_dets, n_tracks)`` mean of ``exp(-d^2 / (2 spread^2))`` over nodes visible in both.

    ``spread2`` is ``(n_tracks,)``: each track's own squared tolerance. Pairs sharing no node
    score 0.
    """
    if len(dets) == 0 or len(preds) == 0:
        return np.zeros((len(dets), len(preds)))
    diff = dets[:, None, :, :] - preds[None, :, :, :]
    d2 = (diff * diff).sum(axis=-1)  # (n, t, nodes), NaN where either is missing
    both = ~np.isnan(d2)
    k = np.exp(np.where(both, d2, np.inf) * (-0.5 / spread2[None, :, None]))  # exp(-inf) = 0
    count = both.sum(axis=-1)
    return np.where(count > 0, k.sum(axis=-1) / np.maximum(count, 1), 0.0)


# ---------------------------------------------------------------------------------------------
# Tracks
# ---------------------------------------------------------------------------------------------
@dataclass
class MotionTrack:
    """One track: its filter, last observation and life-cycle counters."""

    filter: ConstantVelocity
    last_points: np.ndarray  # (n_nodes, 2) last observed pose
    last_frame: int
    size: float
    hits: int = 1
    track_id: int | None = None  # issued on confirmation
    #: recent observed centroids (frame, xy) for OC-SORT's momentum and re-update
    history: list[tuple[int, np.ndarray]] = field(default_factory=list)
    direction: np.ndarray | None = None  # unit vector of recent observed motion (OC-SORT)
    appearance: AppearanceMemory | None = None  # re-ID memory (appearance trackers)

    @property
    def confirmed(self) -> bool:
        return self.track_id is not None


@dataclass(frozen=True)
class MotionParams:
    """Association knobs shared by the motion-model trackers (see :class:`TrackerConfig`)."""

    tracker: str
    track_buffer: int
    min_hits: int
    high: float
    low: float
    new_track: float
    min_similarity: float
    kf_features: str
    kf_nodes: tuple[int, ...] | None
    #: tolerance as a fraction of the animal's size, before adding the filter's uncertainty
    size_fraction: float = 0.25
    q: float = 1.0
    r: float = 4.0
    momentum_weight: float = 0.2

    @property
    def base(self) -> str:
        """The motion tracker whose association this one follows (BoT-SORT: ByteTrack, ...)."""
        return base_tracker(self.tracker)

    @classmethod
    def from_config(cls, cfg: TrackerConfig) -> MotionParams:
        return cls(tracker=cfg.tracker, track_buffer=cfg.track_buffer, min_hits=cfg.min_hits,
                   high=cfg.track_high_threshold, low=cfg.track_low_threshold,
                   new_track=cfg.new_track_threshold, min_similarity=cfg.min_match_similarity,
                   kf_features=cfg.kf_track_features, kf_nodes=cfg.kf_node_indices)


class MotionTracker:
    """``sort`` / ``bytetrack`` / ``ocsort`` and their appearance variants (``deepsort`` /
    ``strongsort``, ``botsort``, ``deepocsort``): same :meth:`track` interface as the classic
    tracker."""

    def __init__(self, config: TrackerConfig) -> None:
        self.config = config
        self.params = MotionParams.from_config(config)
        #: The appearance tracker's rules; None for sort / bytetrack / ocsort.
        self.appearance = AppearanceParams.for_tracker(config.tracker, config.track_high_threshold,
                                                       appearance_overrides(config.mot_param))
        self.tracks: list[MotionTrack] = []
        self.next_id = 0
        self._nodes: np.ndarray | None = None

    # -- helpers --------------------------------------------------------------------------
    def _observation(self, points: np.ndarray) -> np.ndarray:
        if self.params.kf_features == "keypoints":
            return points.ravel()
        return visible_centroid(points, self._nodes)

    def _new_track(self, points: np.ndarray, frame_idx: int) -> MotionTrack:
        p = self.params
        kf = ConstantVelocity(self._observation(points), frame_idx, q=p.q, r=p.r)
        size = pose_size(points)
        track = MotionTrack(kf, points.copy(), frame_idx, size if np.isfinite(size) else 20.0)
        track.history.append((frame_idx, visible_centroid(points, self._nodes)))
        return track

    def _predicted_pose(self, track: MotionTrack) -> np.ndarray:
        pos = track.filter.position
        if self.params.kf_features == "keypoints":
            pred = pos.reshape(track.last_points.shape)
            # Nodes the filter never saw fall back to the last observation.
            return np.where(np.isnan(pred), track.last_points, pred)
        shift = pos - visible_centroid(track.last_points, self._nodes)
        return track.last_points + np.where(np.isnan(shift), 0.0, shift)

    def _similarity(self, points: np.ndarray, tracks: list[MotionTrack],
                    predicted: bool = True) -> np.ndarray:
        if not tracks or len(points) == 0:
            return np.zeros((len(points), len(tracks)))
        preds = np.stack([self._predicted_pose(t) if predicted else t.last_points for t in tracks])
        spread2 = np.array([(self.params.size_fraction * t.size) ** 2
                            + (t.filter.position_var if predicted else 0.0) for t in tracks])
        return keypoint_similarity(points, preds, spread2)

    def _momentum(self, points: np.ndarray, tracks: list[MotionTrack]) -> np.ndarray:
        """OC-SORT's direction consistency in [-1, 1]: cosine between each track's observed
        motion direction and the direction from its last observation to each detection."""
        out = np.zeros((len(points), len(tracks)))
        cols = [j for j, t in enumerate(tracks) if t.direction is not None]
        if not cols or not len(points):
            return out
        cents = np.stack([visible_centroid(p, self._nodes) for p in points])  # (n, 2)
        last = np.stack([tracks[j].history[-1][1] for j in cols])  # (k, 2)
        dirs = np.stack([tracks[j].direction for j in cols])  # type: ignore[misc]
        d = cents[:, None, :] - last[None, :, :]
        norm = np.hypot(d[..., 0], d[..., 1])
        with np.errstate(invalid="ignore", divide="ignore"):
            cos = (d * dirs[None]).sum(axis=-1) / norm
        out[:, cols] = np.where(np.isfinite(cos) & (norm > 1e-6), cos, 0.0)
        return out

    def _assign(self, sim: np.ndarray, threshold: float,
                bonus: np.ndarray | None = None) -> list[tuple[int, int, float]]:
        """Hungarian on ``sim (+ bonus)``; pairs whose plain similarity passes ``threshold``."""
        if sim.size == 0:
            return []
        from scipy.optimize import linear_sum_assignment

        score = sim if bonus is None else sim + bonus
        score = np.where(sim >= threshold, score, -1e6)
        rows, cols = linear_sum_assignment(-score)
        return [(int(r), int(c), float(sim[r, c])) for r, c in zip(rows, cols)
                if sim[r, c] >= threshold]

    @staticmethod
    def _assign_scored(sim: np.ndarray, score: np.ndarray,
                       ok: np.ndarray) -> list[tuple[int, int, float]]:
        """Hungarian on ``score`` over the pairs ``ok`` allows; each pair keeps its geometric
        similarity as its tracking score."""
        if sim.size == 0 or not ok.any():
            return []
        from scipy.optimize import linear_sum_assignment

        rows, cols = linear_sum_assignment(-np.where(ok, score, -1e6))
        return [(int(r), int(c), float(sim[r, c])) for r, c in zip(rows, cols) if ok[r, c]]

    def _update(self, track: MotionTrack, points: np.ndarray, frame_idx: int) -> None:
        gap = frame_idx - track.last_frame
        centroid = visible_centroid(points, self._nodes)
        obs = points.ravel() if self.params.kf_features == "keypoints" else centroid
        if self.params.base == "ocsort" and gap > 1:
            self._reupdate(track, obs, frame_idx)
        else:
            track.filter.update(obs)
        if track.hits % 4 == 0:
            # The body size changes slowly: refresh its running estimate every 4th match.
            size = pose_size(points)
            if size == size:  # not NaN
                track.size = 0.7 * track.size + 0.3 * size
        track.filter.cap_velocity(max(2.0, 0.5 * track.size))
        missing = np.isnan(points).any(axis=-1)
        if missing.any():
            # Keep nodes the detection misses from the last observation, moved with the animal.
            merged = points.copy()
            shift = centroid - visible_centroid(track.last_points, self._nodes)
            merged[missing] = track.last_points[missing] + np.where(np.isnan(shift), 0.0, shift)
            track.last_points = merged
        else:
            track.last_points = points
        track.last_frame = frame_idx
        track.history.append((frame_idx, centroid))
        if len(track.history) > 8:
            del track.history[0]
        if self.params.base == "ocsort":
            # Observed direction over the last (up to) three steps, for the momentum term.
            f0, c0 = track.history[max(0, len(track.history) - 4)]
            v = centroid - c0
            n = float(np.hypot(v[0], v[1]))
            track.direction = v / n if f0 != frame_idx and n > 1e-6 and n == n else None

    def _reupdate(self, track: MotionTrack, obs: np.ndarray, frame_idx: int) -> None:
        """Observation-centric re-update: restart the filter at the last observation and feed it
        observations interpolated linearly across the gap, ending with the new one."""
        p = self.params
        start = track.last_frame
        last_obs = self._observation(track.last_points)
        kf = ConstantVelocity(last_obs, start, q=p.q, r=p.r)
        # Carry the velocity the track had before the gap as the starting point.
        if len(track.filter.vel) == len(kf.vel):
            kf.vel = track.filter.vel.copy()
        span = frame_idx - start
        for step in range(1, span + 1):
            kf.predict_to(start + step)
            kf.update(last_obs + (obs - last_obs) * (step / span))
        track.filter = kf

    # -- the per-frame entry point -------------------------------------------------------
    def track(self, points: np.ndarray, instance_scores: np.ndarray | None = None,
              frame_idx: int = 0, image: np.ndarray | None = None,
              embeddings: np.ndarray | None = None) -> FrameTracks:
        """One frame; ``embeddings`` (n, D) are the detections' re-ID vectors (NaN rows: none),
        read by the appearance trackers only."""
        p = self.params
        app = self.appearance
        vectors = (unit_rows(embeddings) if app is not None and embeddings is not None
                   and len(embeddings) == len(points) else None)
        pts = np.asarray(points, dtype=np.float64)
        n = len(pts)
        if n == 0:
            pts = pts.reshape(0, pts.shape[1] if pts.ndim == 3 else 0, 2)
        if self._nodes is None and pts.ndim == 3 and pts.shape[1] and p.kf_nodes:
            self._nodes = np.asarray([i for i in p.kf_nodes if i < pts.shape[1]], dtype=np.int64)
        scores = (np.ones(n) if instance_scores is None
                  else np.nan_to_num(np.asarray(instance_scores, dtype=np.float64), nan=1.0))
        # Age out tracks unseen for longer than the buffer; tentative ones die on a miss.
        self.tracks = [t for t in self.tracks if frame_idx - t.last_frame <= p.track_buffer]
        for t in self.tracks:
            t.filter.predict_to(frame_idx)
        confirmed = [t for t in self.tracks if t.confirmed]
        tentative = [t for t in self.tracks if not t.confirmed]
        usable = np.flatnonzero((scores > p.low) & ~np.isnan(pts).all(axis=(1, 2)))
        byte = p.base == "bytetrack"
        high = usable[scores[usable] >= p.high] if byte else usable
        low = usable[scores[usable] < p.high] if byte else usable[:0]
        assigned: dict[int, tuple[MotionTrack, float]] = {}

        def stage(dets: np.ndarray, tracks: list[MotionTrack], predicted: bool = True,
                  momentum: bool = False, appearance: bool = False
                  ) -> tuple[np.ndarray, list[MotionTrack]]:
            if len(dets) == 0 or not tracks:
                return dets, tracks
            sim = self._similarity(pts[dets], tracks, predicted)
            bonus = p.momentum_weight * self._momentum(pts[dets], tracks) if momentum else None
            if appearance and app is not None and vectors is not None:
                cos = np.stack([t.appearance.cosine(vectors[dets], app) if t.appearance is not None
                                else np.full(len(dets), np.nan) for t in tracks], axis=1)
                score, ok = app.combine(sim, cos, p.min_similarity, bonus)
                pairs = self._assign_scored(sim, score, ok)
            else:
                pairs = self._assign(sim, p.min_similarity, bonus)
            used_d = {r for r, _, _ in pairs}
            used_t = {c for _, c, _ in pairs}
            for r, c, s in pairs:
                assigned[int(dets[r])] = (tracks[c], s)
            return (np.array([d for i, d in enumerate(dets) if i not in used_d], dtype=np.int64),
                    [t for j, t in enumerate(tracks) if j not in used_t])

        rest, left = stage(high, confirmed, momentum=p.base == "ocsort", appearance=True)
        if app is not None and app.geometric_second_stage and vectors is not None:
            # DeepSORT's cascade ends with geometry for the tracks seen on the previous frame.
            recent = [t for t in left if frame_idx - t.last_frame <= 1]
            rest, unmatched = stage(rest, recent)
            gone = {id(t) for t in recent} - {id(t) for t in unmatched}
            left = [t for t in left if id(t) not in gone]
        if byte:
            recent = [t for t in left if frame_idx - t.last_frame <= 1]
            _, _ = stage(low, recent)
        if p.base == "ocsort":
            # Observation-centric recovery: left-over detections vs lost tracks' last poses.
            rest, left = stage(rest, left, predicted=False)
        rest, _ = stage(rest, tentative)

        for d, (t, _s) in assigned.items():
            self._update(t, pts[d], frame_idx)
            if app is not None and vectors is not None and t.appearance is not None:
                t.appearance.update(vectors[d], float(scores[d]), app)
            t.hits += 1
            if not t.confirmed and t.hits >= p.min_hits:
                t.track_id = self.next_id
                self.next_id += 1
        # Tentative tracks must be matched on every frame until confirmed.
        matched = {id(t) for t, _ in assigned.values()}
        self.tracks = [t for t in self.tracks if t.confirmed or id(t) in matched]
        births: dict[int, MotionTrack] = {}
        for d in rest.tolist():
            if scores[d] >= p.new_track and (not byte or scores[d] >= p.high):
                t = self._new_track(pts[d], frame_idx)
                if app is not None:
                    t.appearance = AppearanceMemory.start(
                        None if vectors is None else vectors[d], app)
                if p.min_hits <= 1:
                    t.track_id = self.next_id
                    self.next_id += 1
                self.tracks.append(t)
                births[d] = t
        ids = np.full(n, UNTRACKED, dtype=np.int64)
        track_scores = np.full(n, np.nan)
        for d, (t, s) in assigned.items():
            if t.confirmed:
                ids[d], track_scores[d] = t.track_id, s
        for d, t in births.items():
            if t.confirmed:
                ids[d], track_scores[d] = t.track_id, 1.0
        return FrameTracks(int(frame_idx), np.arange(n, dtype=np.int64), ids, track_scores)



def make_tracker(config: TrackerConfig) -> Tracker | MotionTracker:
    """The tracker ``config.tracker`` names: the classic one or a motion-model one."""
    if config.tracker == "classic":
        return Tracker(config)
    return MotionTracker(config)

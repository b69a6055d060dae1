"""Constant-velocity Kalman filtering: the filter itself and the classic tracker's ``--use_kalman``.

:class:`KalmanShift` is sleapflow's reading of sleap-nn's ``KalmanShiftTracker`` flags: the
classic tracker runs unchanged for the first ``kf_init_frame_count`` frames; after that every
stored candidate of a track that has a filter is moved, rigidly, to where the filter predicts the
track now is (its centroid of ``kf_node_indices``, or every node with ``kf_track_features=
"keypoints"``) before it is scored against the frame's instances. A track unseen for more than
``kf_reset_gap_size`` frames loses its filter and starts a new one when it is matched again.
Unlike sleap-nn (pykalman, EM fit on the warm-up frames, 0.5x prediction blend, gates and caps
only reachable from Python) the filter here has fixed noise (white acceleration ``q`` = 1
px^2/frame^3, measurement ``r`` = 4 px^2), starts from the first observation and is updated by
every match; the speed is capped at half the animal's size per frame.
"""

from __future__ import annotations

import numpy as np

__all__ = ("ConstantVelocity", "KalmanShift", "visible_centroid")



class ConstantVelocity:
    """A constant-velocity Kalman filter on ``d`` coordinates, each with its own 2x2 covariance.

    Coordinates are independent (same motion model on x and y of every node), so a missing
    coordinate simply skips its own update. Process noise is white acceleration of spectral
    density ``q`` (px^2/frame^3); measurement noise ``r`` (px^2).
    """

    def __init__(self, z: np.ndarray, frame_idx: int, *, q: float, r: float,
                 p0_vel: float = 25.0) -> None:
        z = np.asarray(z, dtype=np.float64).ravel()
        d = len(z)
        self.q, self.r = q, r
        self.known = ~np.isnan(z)  # coordinates ever observed
        self.pos = np.where(self.known, z, 0.0)
        self.vel = np.zeros(d)
        # The symmetric 2x2 covariance of every coordinate, as three arrays (fast to update).
        self.p00 = np.full(d, r)
        self.p01 = np.zeros(d)
        self.p11 = np.full(d, p0_vel)
        self._all_known = bool(self.known.all())
        self.frame_idx = frame_idx

    def predict_to(self, frame_idx: int) -> None:
        """Advance the state to ``frame_idx`` (several frames at once if some were skipped)."""
        dt = float(frame_idx - self.frame_idx)
        if dt <= 0:
            return
        q = self.q
        self.pos = self.pos + dt * self.vel
        self.p00 = self.p00 + 2 * dt * self.p01 + dt * dt * self.p11 + q * dt**3 / 3
        self.p01 = self.p01 + dt * self.p11 + q * dt**2 / 2
        self.p11 = self.p11 + q * dt
        self.frame_idx = frame_idx

    def update(self, z: np.ndarray) -> None:
        """Correct with an observation at the current frame; NaN coordinates are skipped."""
        z = np.asarray(z, dtype=np.float64).ravel()
        seen = ~np.isnan(z)
        all_seen = bool(seen.all())
        if not (self._all_known and all_seen):
            fresh = seen & ~self.known
            if fresh.any():
                # A coordinate seen for the first time starts at its observation, at rest.
                self.pos = np.where(fresh, z, self.pos)
                self.vel = np.where(fresh, 0.0, self.vel)
                self.known |= seen
                self._all_known = bool(self.known.all())
            upd = seen & ~fresh
            z = np.where(upd, z, self.pos)  # no innovation where nothing is updated
        s = self.p00 + self.r
        k0 = self.p00 / s
        k1 = self.p01 / s
        if not (self._all_known and all_seen):
            k0 = np.where(upd, k0, 0.0)
            k1 = np.where(upd, k1, 0.0)
        innov = z - self.pos
        self.pos = self.pos + k0 * innov
        self.vel = self.vel + k1 * innov
        self.p11 = self.p11 - k1 * self.p01
        self.p01 = (1 - k0) * self.p01
        self.p00 = (1 - k0) * self.p00

    @property
    def position(self) -> np.ndarray:
        return np.where(self.known, self.pos, np.nan)

    @property
    def position_var(self) -> float:
        """Mean positional variance over the known coordinates (px^2)."""
        if self._all_known:
            return float(self.p00.sum()) / len(self.p00)
        known = self.p00[self.known]
        return float(known.mean()) if known.size else self.r

    def cap_velocity(self, max_speed: float) -> None:
        """Limit each coordinate's speed (px/frame): one noisy step must not fling a track."""
        np.clip(self.vel, -max_speed, max_speed, out=self.vel)


def visible_centroid(points: np.ndarray, nodes: np.ndarray | None = None) -> np.ndarray:
    """Mean of the visible (selected) nodes of one ``(n_nodes, 2)`` pose; NaN if none."""
    pts = points if nodes is None else points[nodes]
    missing = np.isnan(pts)
    if not missing.any():
        return np.add.reduce(pts, axis=0) / len(pts)
    ok = ~missing.any(axis=-1)
    n = int(ok.sum())
    if n == 0:
        return np.full(2, np.nan)
    return np.add.reduce(pts[ok], axis=0) / n


class KalmanShift:
    """One filter per track id for the classic tracker; moves candidates to predicted poses."""

    def __init__(self, *, features: str, node_indices: tuple[int, ...] | None, init_frames: int,
                 reset_gap: int, q: float = 1.0, r: float = 4.0) -> None:
        self.features = features
        self.node_indices = node_indices
        self.init_frames = init_frames
        self.reset_gap = reset_gap
        self.q, self.r = q, r
        self.filters: dict[int, ConstantVelocity] = {}
        self.last_seen: dict[int, int] = {}
        self.updates: dict[int, int] = {}
        self.caps: dict[int, float] = {}
        self.frames_seen = 0
        self._nodes: np.ndarray | None = None
        self._order: dict[int | None, int] = {}
        self._preds: np.ndarray | None = None

    def _select(self, n_nodes: int) -> np.ndarray | None:
        if self._nodes is None and self.node_indices:
            # Indices past the skeleton are ignored (the skeleton is only known at run time).
            self._nodes = np.asarray([i for i in self.node_indices if i < n_nodes], dtype=np.int64)
        return self._nodes if self._nodes is not None and len(self._nodes) else None

    def _observation(self, points: np.ndarray) -> np.ndarray:
        if self.features == "keypoints":
            return points.ravel()
        return visible_centroid(points, self._select(points.shape[0]))

    @property
    def active(self) -> bool:
        return self.frames_seen >= self.init_frames

    def begin_frame(self, frame_idx: int) -> None:
        """Drop filters of tracks unseen for too long; predict the others to ``frame_idx``."""
        for tid in [t for t, f in self.last_seen.items() if frame_idx - f > self.reset_gap]:
            self.filters.pop(tid, None)
            del self.last_seen[tid]
        for kf in self.filters.values():
            kf.predict_to(frame_idx)
        # Every candidate of a track moves to the same prediction: compute it once per frame.
        self._order = {tid: j for j, tid in enumerate(self.filters)}
        self._preds = (np.stack([kf.position for kf in self.filters.values()])
                       if self.filters else None)

    def shift(self, points: np.ndarray, track_ids: list[int | None]) -> np.ndarray:
        """Candidates ``(m, n_nodes, 2)`` of ``track_ids`` moved to their track's prediction."""
        if not self.active or not len(points):
            return points
        order = self._order
        rows = [i for i, tid in enumerate(track_ids) if tid in order]
        if not rows or self._preds is None:
            return points
        out = points.copy()
        preds = self._preds[[order[track_ids[i]] for i in rows]]
        sub = points[rows]
        if self.features == "keypoints":
            pred = preds.reshape(sub.shape)
            out[rows] = np.where(np.isnan(pred) | np.isnan(sub), sub, pred)
            return out
        nodes = self._select(points.shape[1])
        sel = sub if nodes is None else sub[:, nodes]
        visible = ~np.isnan(sel).any(axis=-1)
        count = visible.sum(axis=1)
        cents = np.where(visible[..., None], sel, 0.0).sum(axis=1) / np.maximum(count, 1)[:, None]
        move = preds - cents
        ok = (count > 0) & np.isfinite(move).all(axis=1)
        out[np.asarray(rows)[ok]] = sub[ok] + move[ok][:, None, :]
        return out

    def observe(self, assignments: list[tuple[int, np.ndarray]], frame_idx: int) -> None:
        """Correct each matched track's filter with its instance of this frame."""
        self.frames_seen += 1
        for tid, pts in assignments:
            obs = self._observation(pts)
            if np.isnan(obs).all():
                continue
            self.last_seen[tid] = frame_idx
            kf = self.filters.get(tid)
            if kf is None:
                self.filters[tid] = ConstantVelocity(obs, frame_idx, q=self.q, r=self.r)
                self.updates[tid] = 0
                continue
            kf.update(obs)
            n = self.updates[tid] = self.updates.get(tid, 0) + 1
            if n % 4 == 1:
                # The speed cap follows the body size, which changes slowly: refresh it rarely.
                extent = np.fmax.reduce(pts, axis=0) - np.fmin.reduce(pts, axis=0)
                size = float(np.fmax.reduce(extent))
                self.caps[tid] = max(2.0, 0.5 * size) if np.isfinite(size) else 10.0
            kf.cap_velocity(self.caps.get(tid, 10.0))

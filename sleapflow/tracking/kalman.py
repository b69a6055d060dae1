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


class ConstantVelocity:
    """A constant-velocity Kalman filter on ``d`` coordinates, each with its own 2x2 covariance.

    Coordinates are independent (same motion model on x and y of every node), so a missing
    coordinate simply skips its own update. Process noise is white acceleration of spectral
    density ``q`` (px^2/frame^3); measurement noise ``r`` (px^2).
    """

    def __init__(self, z: np.ndarray, frame_idx: int, *, q: float, r: float,
                 p0_vel: float = 25.0) -> None:
        z = np.asarray(z, dtype=np.float64).ravel()
        self.q, self.r = q, r
        self.x = np.zeros((len(z), 2))
        self.x[:, 0] = np.nan_to_num(z)
        self.known = ~np.isnan(z)  # coordinates ever observed
        self.P = np.zeros((len(z), 2, 2))
        self.P[:, 0, 0] = r
        self.P[:, 1, 1] = p0_vel
        self.frame_idx = frame_idx

    def predict_to(self, frame_idx: int) -> None:
        """Advance the state to ``frame_idx`` (several frames at once if some were skipped)."""
        dt = float(frame_idx - self.frame_idx)
        if dt <= 0:
            return
        x, P = self.x, self.P
        x[:, 0] += dt * x[:, 1]
        p00, p01, p11 = P[:, 0, 0], P[:, 0, 1], P[:, 1, 1]
        q = self.q
        n00 = p00 + 2 * dt * p01 + dt * dt * p11 + q * dt**3 / 3
        n01 = p01 + dt * p11 + q * dt**2 / 2
        n11 = p11 + q * dt
        P[:, 0, 0], P[:, 0, 1], P[:, 1, 0], P[:, 1, 1] = n00, n01, n01, n11
        self.frame_idx = frame_idx

    def update(self, z: np.ndarray) -> None:
        """Correct with an observation at the current frame; NaN coordinates are skipped."""
        z = np.asarray(z, dtype=np.float64).ravel()
        seen = ~np.isnan(z)
        fresh = seen & ~self.known
        # A coordinate seen for the first time starts at its observation, at rest.
        self.x[fresh, 0] = z[fresh]
        self.x[fresh, 1] = 0.0
        self.known |= seen
        upd = seen & ~fresh
        if not upd.any():
            return
        P = self.P[upd]
        s = P[:, 0, 0] + self.r
        k0, k1 = P[:, 0, 0] / s, P[:, 0, 1] / s
        innov = z[upd] - self.x[upd, 0]
        self.x[upd, 0] += k0 * innov
        self.x[upd, 1] += k1 * innov
        p00, p01, p11 = P[:, 0, 0], P[:, 0, 1], P[:, 1, 1]
        new = np.empty_like(P)
        new[:, 0, 0] = (1 - k0) * p00
        new[:, 0, 1] = new[:, 1, 0] = (1 - k0) * p01
        new[:, 1, 1] = p11 - k1 * p01
        self.P[upd] = new

    @property
    def position(self) -> np.ndarray:
        out = self.x[:, 0].copy()
        out[~self.known] = np.nan
        return out

    @property
    def position_var(self) -> float:
        """Mean positional variance over the known coordinates (px^2)."""
        known = self.P[self.known, 0, 0]
        return float(known.mean()) if known.size else self.r

    def cap_velocity(self, max_speed: float) -> None:
        """Limit each coordinate's speed (px/frame): one noisy step must not fling a track."""
        np.clip(self.x[:, 1], -max_speed, max_speed, out=self.x[:, 1])


def visible_centroid(points: np.ndarray, nodes: np.ndarray | None = None) -> np.ndarray:
    """Mean of the visible (selected) nodes of one ``(n_nodes, 2)`` pose; NaN if none."""
    pts = points if nodes is None else points[nodes]
    ok = ~np.isnan(pts).any(axis=-1)
    if not ok.any():
        return np.full(2, np.nan)
    return pts[ok].mean(axis=0)


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
        self.frames_seen = 0
        self._nodes: np.ndarray | None = None

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

    def shift(self, points: np.ndarray, track_ids: list[int | None]) -> np.ndarray:
        """Candidates ``(m, n_nodes, 2)`` of ``track_ids`` moved to their track's prediction."""
        out = points.copy()
        if not self.active:
            return out
        for i, tid in enumerate(track_ids):
            kf = self.filters.get(tid) if tid is not None else None
            if kf is None:
                continue
            if self.features == "keypoints":
                pred = kf.position.reshape(points.shape[1:])
                out[i] = np.where(np.isnan(pred) | np.isnan(points[i]), points[i], pred)
            else:
                move = kf.position - visible_centroid(points[i], self._select(points.shape[1]))
                if np.isfinite(move).all():
                    out[i] = points[i] + move
        return out

    def observe(self, assignments: list[tuple[int, np.ndarray]], frame_idx: int) -> None:
        """Correct each matched track's filter with its instance of this frame."""
        self.frames_seen += 1
        for tid, pts in assignments:
            obs = self._observation(pts)
            if np.isnan(obs).all():
                continue
            kf = self.filters.get(tid)
            if kf is None:
                self.filters[tid] = ConstantVelocity(obs, frame_idx, q=self.q, r=self.r)
            else:
                kf.update(obs)
                extent = np.fmax.reduce(pts, axis=0) - np.fmin.reduce(pts, axis=0)
                size = float(np.fmax.reduce(extent))
                kf.cap_velocity(max(2.0, 0.5 * size) if np.isfinite(size) else 10.0)
            self.last_seen[tid] = frame_idx

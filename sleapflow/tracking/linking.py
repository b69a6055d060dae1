"""Gap-aware linking after any tracker (``--max_gap N``) and gap filling (``--fill_gaps K``).

Works on tracked frames in order, as a streaming stage. A *chain* is an output identity; each
tracker track feeds one chain. When a tracker track appears for the first time (or reappears
after its chain moved on), it is compared with every chain that ended at most ``max_gap`` frames
earlier and is absent from the frame: the ended chain's last pose is moved along its last
observed velocity (for the whole gap, for ~10 frames of it, or not at all: over a long occlusion
an animal may walk on, turn or stop; the best of the three counts), and the two poses are
compared node by node with a Gaussian similarity whose tolerance is a quarter of the animal's size
plus, per frame of gap, half its last speed (at least 2 px): the longer the gap, the further the
animal may have strayed. Chains and new
tracks are paired by Hungarian on that similarity; pairs at or above ``min_match_similarity``
continue the chain (the new track takes the chain's name), the others start chains of their own.
The decision is taken on the new track's first frame, so linking adds no latency.

With ``fill_gaps K``, when a chain is seen again after a gap of 1..K frames, its pose is
linearly interpolated (node by node, nodes present at both ends) into the frames of the gap.
Those instances are **marked as interpolated, never as detections**: instance score
:data:`INTERPOLATED_SCORE` (-1, outside any detector's [0, 1]), point scores 0 and tracking score
0. To write them, the stage holds frames back: a frame leaves after ``K`` later frames arrived
(and at the end of the stream), i.e. ``K`` frames of latency; memory is ``K`` frames plus one
pose per chain. Nothing is linked or filled across videos.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

import msgspec
import numpy as np
import sleap_io as sio

from sleapflow.messages import FramePrediction
from sleapflow.tracking.motion import keypoint_similarity, pose_size, visible_centroid

__all__ = ("INTERPOLATED_SCORE", "MOTION_MEMORY", "GapLinker")


#: Instance score of an interpolated (filled) instance: no detector gives a negative score.
INTERPOLATED_SCORE = -1.0
#: Frames over which an ended chain's last velocity is extrapolated (exponentially damped).
MOTION_MEMORY = 10.0


@dataclass
class _Chain:
    """One output identity: where it was last seen and how it was moving."""

    name: str
    video_id: int
    last_frame: int
    last_pose: np.ndarray
    velocity: np.ndarray  # px/frame of the centroid, from the last two sightings
    size: float
    skeleton: Any = None  # track-only: the skeleton of its source instances
    seen: int = 0


@dataclass
class _Pending:
    """A frame held back for gap filling, with its edits."""

    pred: FramePrediction
    names: list[str | None]
    fills: list[tuple[np.ndarray, str, Any]] = field(default_factory=list)


class GapLinker:
    """Synchronous core of the linking stage: :meth:`push` frames in order, then :meth:`flush`."""

    def __init__(self, max_gap: int, fill_gaps: int, min_similarity: float = 0.3) -> None:
        self.max_gap = max_gap
        self.fill_gaps = fill_gaps
        self.min_similarity = min_similarity
        self.buffer: deque[_Pending] = deque()
        self.chains: dict[str, _Chain] = {}
        self.chain_of: dict[str, str] = {}  # tracker track name -> chain name
        self.feeder: dict[str, str] = {}  # chain name -> tracker track currently feeding it
        self.video_id: int | None = None
        self.links = 0
        self.filled = 0

    # ------------------------------------------------------------------------------------
    def _new_chain_name(self, raw: str) -> str:
        name, k = raw, 1
        while name in self.chains:
            k += 1
            name = f"{raw}-{k}"
        return name

    def _predictions(self, chain: _Chain, frame_idx: int) -> list[np.ndarray]:
        """Where the ended chain may be now: its last velocity kept for the whole gap, kept for
        ~MOTION_MEMORY frames (exponentially damped), or not at all. Over a long occlusion an
        animal may have walked straight on, turned or stopped; the best hypothesis is scored."""
        gap = frame_idx - chain.last_frame
        damped = MOTION_MEMORY * (1.0 - np.exp(-gap / MOTION_MEMORY))
        return [chain.last_pose + chain.velocity * reach for reach in (float(gap), damped, 0.0)]

    @staticmethod
    def _tolerance(chain: _Chain, frame_idx: int) -> float:
        """Spread (px) of the link similarity: a quarter body plus, per frame of gap, half the
        chain's speed (at least 2 px): how far it may have strayed from the prediction."""
        gap = frame_idx - chain.last_frame - 1
        speed = float(np.hypot(*chain.velocity)) if np.isfinite(chain.velocity).all() else 0.0
        return 0.25 * chain.size + gap * max(2.0, 0.5 * speed)

    def _link(self, new: list[tuple[int, str]], pts: np.ndarray, frame_idx: int,
              present: set[str]) -> dict[str, str]:
        """Pair first-seen tracker tracks with chains that ended within ``max_gap`` frames."""
        ended = [c for c in self.chains.values()
                 if c.name not in present and c.video_id == self.video_id
                 and 0 <= frame_idx - c.last_frame - 1 <= self.max_gap]
        out: dict[str, str] = {}
        if not new or not ended or self.max_gap <= 0:
            return out
        from scipy.optimize import linear_sum_assignment

        spread2 = np.array([self._tolerance(c, frame_idx) ** 2 for c in ended])
        firsts = pts[[i for i, _ in new]]
        hypotheses = [self._predictions(c, frame_idx) for c in ended]
        sim = np.max([keypoint_similarity(firsts, np.stack([h[k] for h in hypotheses]), spread2)
                      for k in range(3)], axis=0)
        rows, cols = linear_sum_assignment(-sim)
        for r, c in zip(rows.tolist(), cols.tolist()):
            if sim[r, c] >= self.min_similarity:
                out[new[r][1]] = ended[c].name
        return out

    def _fill(self, chain: _Chain, pose: np.ndarray, frame_idx: int) -> None:
        gap = frame_idx - chain.last_frame - 1
        if not 1 <= gap <= self.fill_gaps:
            return
        start, end = chain.last_pose, pose
        for pending in self.buffer:
            f = pending.pred.frame_idx
            if pending.pred.video_id != chain.video_id or not chain.last_frame < f < frame_idx:
                continue
            if chain.name in pending.names or any(n == chain.name for _, n, _ in pending.fills):
                continue
            w = (f - chain.last_frame) / (gap + 1)
            filled = start + (end - start) * w  # NaN where a node is missing at either end
            if np.isnan(filled).all():
                continue
            pending.fills.append((filled, chain.name, chain.skeleton))
            self.filled += 1

    def _observe(self, chain: _Chain, pose: np.ndarray, frame_idx: int) -> None:
        step = frame_idx - chain.last_frame
        if step > 0:
            move = visible_centroid(pose) - visible_centroid(chain.last_pose)
            if np.isfinite(move).all():
                chain.velocity = move / step
        chain.seen += 1
        if chain.seen % 4 == 0:
            # The body size changes slowly: refresh its running estimate every 4th sighting.
            size = pose_size(pose)
            if np.isfinite(size):
                chain.size = 0.7 * chain.size + 0.3 * size
        # Nodes missing now keep their last position, moved with the animal.
        merged = np.where(np.isnan(pose), chain.last_pose + chain.velocity * step, pose)
        chain.last_pose, chain.last_frame = merged, frame_idx

    # ------------------------------------------------------------------------------------
    def push(self, pred: FramePrediction) -> list[FramePrediction]:
        """Take the next frame; return the frames that may leave now."""
        if pred.video_id != self.video_id:
            # A new video: nothing links or fills across the boundary.
            self.video_id = pred.video_id
        pts = np.asarray(pred.points, dtype=np.float64)
        raw = list(pred.track_names or [None] * pred.n_instances)
        names: list[str | None] = list(raw)
        present = {self.chain_of[r] for r in raw
                   if r is not None and r in self.chain_of
                   and self.feeder.get(self.chain_of[r]) == r}
        new = [(i, r) for i, r in enumerate(raw)
               if r is not None and not (r in self.chain_of and self.feeder.get(self.chain_of[r]) == r)]
        linked = self._link(new, pts, pred.frame_idx, present)
        skeletons = pred.source_instances
        for i, r in enumerate(raw):
            if r is None:
                continue
            if r in linked:
                chain = self.chains[linked[r]]
                self.links += 1
            elif r in self.chain_of and self.feeder.get(self.chain_of[r]) == r:
                chain = self.chains[self.chain_of[r]]
            else:
                name = self._new_chain_name(r)
                size = pose_size(pts[i])
                chain = _Chain(name, pred.video_id, pred.frame_idx, pts[i].copy(), np.zeros(2),
                               size if np.isfinite(size) else 20.0)
                self.chains[name] = chain
            self.chain_of[r] = chain.name
            self.feeder[chain.name] = r
            if skeletons is not None:
                chain.skeleton = skeletons[i].skeleton
            if chain.video_id == pred.video_id:
                self._fill(chain, pts[i], pred.frame_idx)
            chain.video_id = pred.video_id
            self._observe(chain, pts[i], pred.frame_idx)
            names[i] = chain.name
        # Chains unseen for longer than any gap we act on are forgotten (bounded memory).
        horizon = max(self.max_gap, self.fill_gaps) + 1
        for name in [n for n, c in self.chains.items() if pred.frame_idx - c.last_frame > horizon
                     or c.video_id != pred.video_id]:
            del self.chains[name]
            self.feeder.pop(name, None)
        self.buffer.append(_Pending(pred, names))
        out = []
        while len(self.buffer) > self.fill_gaps:
            out.append(self._release(self.buffer.popleft()))
        return out

    def flush(self) -> list[FramePrediction]:
        """The frames still held back, at the end of the stream."""
        out = [self._release(p) for p in self.buffer]
        self.buffer.clear()
        return out

    @staticmethod
    def _release(p: _Pending) -> FramePrediction:
        pred = msgspec.structs.replace(p.pred, track_names=tuple(p.names))
        if not p.fills:
            return pred
        k = len(p.fills)
        filled = np.stack([f[0] for f in p.fills])
        n, n_nodes = pred.n_instances, filled.shape[1]
        # An empty frame's arrays may have no node axis yet.
        own = np.asarray(pred.points, dtype=np.float64).reshape(n, n_nodes, 2)
        own_scores = np.asarray(pred.point_scores, dtype=np.float64).reshape(n, n_nodes)
        changes: dict[str, Any] = {
            "points": np.concatenate([own, filled]),
            "point_scores": np.concatenate([own_scores, np.zeros((k, n_nodes))]),
            "instance_scores": np.concatenate([np.asarray(pred.instance_scores, dtype=np.float64),
                                               np.full(k, INTERPOLATED_SCORE)]),
            "track_names": (*p.names, *(f[1] for f in p.fills)),
        }
        scores = (np.asarray(pred.tracking_scores, dtype=np.float64)
                  if pred.tracking_scores is not None else np.full(pred.n_instances, np.nan))
        changes["tracking_scores"] = np.concatenate([scores, np.zeros(k)])
        if pred.is_user is not None:
            changes["is_user"] = np.concatenate([np.asarray(pred.is_user, dtype=bool),
                                                 np.zeros(k, dtype=bool)])
        if pred.source_instances is not None:
            made = tuple(sio.PredictedInstance.from_numpy(
                f[0], skeleton=f[2], point_scores=np.zeros(n_nodes), score=INTERPOLATED_SCORE,
                tracking_score=0.0) for f in p.fills)
            changes["source_instances"] = (*pred.source_instances, *made)
        for name in ("centroids", "centroid_scores"):
            if getattr(pred, name) is not None:
                changes[name] = None  # per-instance extras the filled rows do not have
        return msgspec.structs.replace(pred, **changes)

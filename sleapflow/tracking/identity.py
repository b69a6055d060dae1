"""Identity linking after any tracker (``--link_tracklets``): stitches tracklets across gaps and
corrects swaps at crossings, over a bounded window of frames or the whole video.

The tracker's output is cut into *segments*: maximal runs of one tracker track with no missing
frame, cut again where two tracks come close (at the frame of closest approach, where a tracker
swaps identities). Segments are then given *identities* in order of their first frame. Each
candidate pair (an identity free at the segment's start, the segment) is scored by

* motion: the identity's last poses, moved along their fitted velocity, against the segment's
  first poses, and the segment's first poses moved backwards against the identity's last ones.
  The tolerance grows with the time between the two (an animal hidden for 40 frames may be
  anywhere within a wider circle than one hidden for 2), and three motion hypotheses are tried
  (kept velocity, velocity decaying over ~10 frames, standing still): the best one counts;
* pose shape: the rigid-invariant node-to-node distances of the two ends;
* appearance, where instances carry vectors (``FramePrediction.embeddings``, one row per
  instance): the cosine of the two ends' mean vectors.

Pairs are matched by Hungarian per start frame. Without an animal count a segment joins the
best identity whose score clears a threshold, else starts an identity of its own; with
``max_tracks`` N at most N identities exist, a segment joins the best free one whatever its
score, and one that co-occurs with all N (a duplicate detection) is left untracked. Segments
that are short and low-scoring (spurious detections) join an identity only where it explains
them well, and are left untracked otherwise (they never start an identity).

``window`` frames are held back (0: the whole video, the offline linker): frames leave in
blocks once ``window`` have arrived, and identities carry over between blocks, so latency and
memory are ``window`` frames plus a short history per identity. Nothing links across videos.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import msgspec
import numpy as np

from sleapflow.messages import FramePrediction
from sleapflow.options.mot import linking_overrides
from sleapflow.options.tracker import TrackerConfig
from sleapflow.tracking.motion import pose_size
from sleapflow.tracking.track_only import copy_instance

__all__ = (
    "APPEARANCE_WEIGHT", "CLOSE_BODIES", "END_FRAMES", "JUMP_BODIES", "MOTION_MEMORY",
    "SAME_TRACK_GAP_PRIOR", "SAME_TRACK_PRIOR", "SHAPE_WEIGHT", "UNTRACKED_COST",
    "WEAK_BIRTH_FACTOR",
    "LinkParams", "TrackletLinker", "link_params",
)

#: Detections at each end of a segment used to fit its motion and shape.
END_FRAMES = 8
#: Frames over which a lost animal's velocity decays in the "slowing down" hypothesis.
MOTION_MEMORY = 10.0
#: Log-density penalty per squared unit of shape difference (a twentieth of the body size).
SHAPE_WEIGHT = 0.5
#: Log-density penalty per unit of cosine distance between two ends' appearance vectors.
APPEARANCE_WEIGHT = 8.0
#: How much likelier a short, low-scoring segment is to be a new (spurious) track.
WEAK_BIRTH_FACTOR = 20.0
#: Prior odds for keeping the tracker's own continuation over a swap or re-link.
SAME_TRACK_PRIOR = 4.0
#: The same, where the tracker re-associated its track after a gap.
SAME_TRACK_GAP_PRIOR = 2.0
#: Centroid distance (in body sizes) under which two tracks are close enough to be swapped.
CLOSE_BODIES = 1.5
#: One-frame centroid step (in body sizes) beyond which a track is cut.
JUMP_BODIES = 1.0
#: Hungarian cost of leaving a segment untracked (closed set, count reached).
UNTRACKED_COST = 1e9


@dataclass(frozen=True)
class LinkParams:
    """What the linker needs from the tracker options (see :class:`TrackerConfig`)."""

    window: int = 0
    max_tracks: int | None = None
    swap_correction: bool = True
    #: Longest gap (frames) over which an identity may be re-joined without appearance.
    max_link_gap: int = 300
    #: Animal size in px; None: measured from the poses.
    body_size: float | None = None
    #: Prior probability that a segment no identity explains well is a new animal (no count).
    new_identity_prior: float = 0.05
    #: Instance score below which a short segment counts as spurious.
    weak_score: float = 0.5
    #: Segments shorter than this (frames) may be spurious.
    weak_length: int = 3


def link_params(config: TrackerConfig) -> LinkParams:
    """The linker's parameters from the tracker options (``--mot_param`` linking keys
    included)."""
    extra = linking_overrides(config.mot_param)
    return LinkParams(window=config.link_window, max_tracks=config.max_tracks,
                      swap_correction=extra.get("link_swap_correction", True),
                      body_size=extra.get("body_size"))


@dataclass
class _Det:
    frame: int
    row: int  # index of the FramePrediction in the block
    inst: int  # instance row within that frame
    pose: np.ndarray
    centroid: np.ndarray
    score: float
    vector: np.ndarray | None


@dataclass
class _Segment:
    raw: str
    dets: list[_Det]

    @property
    def start(self) -> int:
        return self.dets[0].frame

    @property
    def end(self) -> int:
        return self.dets[-1].frame


@dataclass
class _Identity:
    name: str
    last: deque[_Det] = field(default_factory=lambda: deque(maxlen=END_FRAMES))
    raw: str | None = None  # the tracker track that fed it last
    strong: bool = False  # whether a segment that is not spurious-looking ever fed it
    vectors: deque[np.ndarray] = field(default_factory=lambda: deque(maxlen=END_FRAMES))

    @property
    def end(self) -> int:
        return self.last[-1].frame


def _moved(velocity: np.ndarray, dt: np.ndarray, reach: str) -> np.ndarray:
    """Displacements ``(len(dt), 2)`` after ``dt`` frames (negative: backwards in time):
    velocity kept, decaying over ~MOTION_MEMORY frames, or the animal standing still. Over a
    long occlusion an animal may do any of the three."""
    if reach == "kept":
        return velocity[None] * dt[:, None]
    if reach == "decaying":
        reach_frames = np.sign(dt) * MOTION_MEMORY * (1.0 - np.exp(-np.abs(dt) / MOTION_MEMORY))
        return velocity[None] * reach_frames[:, None]
    return np.zeros((len(dt), 2))


def _centroid(pose: np.ndarray) -> np.ndarray:
    ok = ~np.isnan(pose).any(axis=-1)
    return pose[ok].mean(axis=0) if ok.any() else np.full(2, np.nan)


def _fit(dets: list[_Det] | deque[_Det]) -> tuple[np.ndarray, np.ndarray, int]:
    """Least-squares centroid line through ``dets``: (position at the reference frame,
    velocity px/frame, reference frame). The reference is the last detection's frame."""
    t = np.array([d.frame for d in dets], dtype=np.float64)
    c = np.array([d.centroid for d in dets])
    ok = np.isfinite(c).all(axis=1)
    t, c = t[ok], c[ok]
    ref = int(dets[-1].frame)
    if len(t) == 0:
        return np.full(2, np.nan), np.zeros(2), ref
    if len(t) == 1 or np.ptp(t) == 0:
        return c[-1], np.zeros(2), ref
    tt = t - ref
    a = np.vstack([tt, np.ones_like(tt)]).T
    (vel, pos), *_ = np.linalg.lstsq(a, c, rcond=None)
    return pos, vel, ref


def _shape(dets: list[_Det] | deque[_Det]) -> np.ndarray:
    """Mean node-to-node distance matrix (NaN where a pair is never seen): rigid-invariant."""
    mats = []
    for d in dets:
        diff = d.pose[:, None, :] - d.pose[None, :, :]
        mats.append(np.hypot(diff[..., 0], diff[..., 1]))
    stack = np.stack(mats)
    with np.errstate(invalid="ignore"):
        count = np.isfinite(stack).sum(axis=0)
        total = np.where(np.isfinite(stack), stack, 0.0).sum(axis=0)
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


class TrackletLinker:
    """Synchronous core of the identity-linking stage: :meth:`push` frames in order, then
    :meth:`flush`. Windowed (``params.window`` frames) or whole-video (``window=0``)."""

    def __init__(self, params: LinkParams, numbers: Iterator[int] | None = None) -> None:
        self.params = params
        #: Numbers of new identities; a stage shares one between its videos' linkers, so no
        #: two videos' identities share a name.
        self.numbers = numbers if numbers is not None else itertools.count()
        self.block: list[FramePrediction] = []
        self.video_id: int | None = None
        self.identities: dict[str, _Identity] = {}
        self.size: float | None = params.body_size
        self.extent: tuple[np.ndarray, np.ndarray] | None = None
        # Figures for --stats.
        self.links = 0
        self.swaps = 0
        self.untracked = 0
        self.max_held = 0

    # ------------------------------------------------------------------------------------
    def push(self, pred: FramePrediction) -> list[FramePrediction]:
        """Take the next frame; return the frames that may leave now."""
        out: list[FramePrediction] = []
        if self.video_id is not None and pred.video_id != self.video_id:
            out = self._process()
            self.identities.clear()  # nothing links across videos
            self.size = self.params.body_size
            self.extent = None
        self.video_id = pred.video_id
        self.block.append(pred)
        self.max_held = max(self.max_held, len(self.block))
        if self.params.window and len(self.block) >= self.params.window:
            out.extend(self._process())
        return out

    def flush(self) -> list[FramePrediction]:
        """The frames still held back, at the end of the stream."""
        return self._process()

    # ------------------------------------------------------------------------------------
    def _detections(self) -> dict[str, list[_Det]]:
        by_raw: dict[str, list[_Det]] = {}
        for row, pred in enumerate(self.block):
            names = pred.track_names or ()
            if not names:
                continue
            pts = np.asarray(pred.points, dtype=np.float64)
            scores = np.asarray(pred.instance_scores, dtype=np.float64)
            vectors = getattr(pred, "embeddings", None)
            for i, name in enumerate(names):
                if name is None:
                    continue
                vec = None if vectors is None else np.asarray(vectors[i], dtype=np.float64)
                if vec is not None and not np.isfinite(vec).all():
                    vec = None  # an instance the embedding model could not crop (NaN row)
                by_raw.setdefault(name, []).append(
                    _Det(pred.frame_idx, row, i, pts[i], _centroid(pts[i]), float(scores[i]), vec))
        return by_raw

    def _body_size(self, by_raw: dict[str, list[_Det]]) -> float:
        if self.size is not None:
            return self.size
        sizes = [pose_size(d.pose) for dets in by_raw.values() for d in dets[:200]]
        sizes = [s for s in sizes if np.isfinite(s) and s > 0]
        self.size = float(np.median(sizes)) if sizes else 50.0
        return self.size

    def _segments(self, by_raw: dict[str, list[_Det]], size: float) -> list[_Segment]:
        """Runs of one tracker track without a missing frame, cut at close approaches and at
        implausible leaps."""
        close: set[tuple[int, int]] = set()  # (frame, inst) of detections near another track
        if self.params.swap_correction:
            close = self._close_approaches(by_raw, size)
        # A track that leaps further than this in one frame has jumped to another animal.
        jump = JUMP_BODIES * size
        segments: list[_Segment] = []
        for raw, dets in by_raw.items():
            dets.sort(key=lambda d: d.frame)
            run: list[_Det] = []
            for d in dets:
                if run and (d.frame != run[-1].frame + 1 or (d.frame, d.inst) in close
                            or (run[-1].frame, run[-1].inst) in close
                            or not np.hypot(*(d.centroid - run[-1].centroid)) <= jump):
                    segments.append(_Segment(raw, run))
                    run = []
                run.append(d)
            if run:
                segments.append(_Segment(raw, run))
        return segments

    @staticmethod
    def _close_approaches(by_raw: dict[str, list[_Det]], size: float) -> set[tuple[int, int]]:
        """Detections within CLOSE_BODIES body sizes of another track's: where a tracker may
        swap two animals, so each of these frames is decided again on its own."""
        per_frame: dict[int, list[_Det]] = {}
        for dets in by_raw.values():
            for d in dets:
                per_frame.setdefault(d.frame, []).append(d)
        close: set[tuple[int, int]] = set()
        limit = CLOSE_BODIES * size
        for items in per_frame.values():
            if len(items) < 2:
                continue
            c = np.array([d.centroid for d in items])
            dist = np.hypot(*(c[:, None, :] - c[None, :, :]).transpose(2, 0, 1))
            np.fill_diagonal(dist, np.inf)
            with np.errstate(invalid="ignore"):
                near = (dist < limit).any(axis=1)
            close.update((d.frame, d.inst) for d, hit in zip(items, near.tolist()) if hit)
        return close

    # ------------------------------------------------------------------------------------
    def _log_link(self, ident: _Identity, seg: _Segment, size: float) -> float:
        """Log-density that ``seg`` continues ``ident``: the motion fit (a 2D Gaussian whose
        spread grows with the gap, so a tighter prediction counts for more), pose shape and,
        where both carry vectors, appearance."""
        head = seg.dets[:END_FRAMES]
        tail = list(ident.last)
        p_end, v_end, t_end = _fit(tail)
        p_start, v_start, _ = _fit(list(reversed(head)))
        t_start = head[0].frame
        if not (np.isfinite(p_end).all() and np.isfinite(p_start).all()):
            return -np.inf
        # Forward: the identity's end moved to each of the segment's first frames; backward:
        # the segment's start moved back to each of the identity's last frames. A velocity
        # fitted on fewer than 3 detections says little: that side's extrapolation is left out.
        sides = []
        if len(tail) >= 2 or len(head) < 3:
            sides.append((tail[-1].pose, np.stack([d.pose for d in head]),
                          np.array([d.frame - t_end for d in head], dtype=np.float64), v_end))
        if len(head) >= 3 or len(tail) < 2:
            sides.append((head[0].pose, np.stack([d.pose for d in tail]),
                          np.array([d.frame - t_start for d in tail], dtype=np.float64), v_start))
        best = -np.inf
        for reach in ("kept", "decaying", "still"):
            terms = np.concatenate([self._terms(anchor, poses, dts, vel, reach, size)
                                    for anchor, poses, dts, vel in sides])
            finite = terms[np.isfinite(terms)]
            if finite.size:
                best = max(best, float(finite.mean()))
        if not np.isfinite(best):
            return -np.inf
        # Pose shape: rigid-invariant, so it holds over any gap.
        sa, sb = _shape(tail), _shape(head)
        ok = np.isfinite(sa) & np.isfinite(sb)
        if ok.sum() >= 3:
            shape_err = float(np.sqrt(np.mean((sa[ok] - sb[ok]) ** 2))) / max(0.05 * size, 1.0)
            best -= SHAPE_WEIGHT * min(shape_err, 4.0) ** 2
        if ident.vectors and any(d.vector is not None for d in head):
            a = np.mean(ident.vectors, axis=0)
            b = np.mean([d.vector for d in head if d.vector is not None], axis=0)
            cos = float(a @ b / max(np.linalg.norm(a) * np.linalg.norm(b), 1e-12))
            best -= APPEARANCE_WEIGHT * (1.0 - cos)
        return best

    @staticmethod
    def _terms(anchor: np.ndarray, poses: np.ndarray, dts: np.ndarray, velocity: np.ndarray,
               reach: str, size: float) -> np.ndarray:
        """Per pose of ``poses`` (``dts`` frames from ``anchor``), the log-density of its mean
        node distance to ``anchor`` moved along ``velocity`` under one motion hypothesis. The
        tolerance is pose noise plus a drift growing with the gap (faster animals may stray
        further); NaN where no node is seen in both."""
        speed = float(np.hypot(*velocity)) if np.isfinite(velocity).all() else 0.0
        sigma = 0.15 * size + np.abs(dts) * max(0.02 * size, 0.4 * speed)
        moved = anchor[None] + _moved(velocity, dts, reach)[:, None, :]
        dist = np.hypot(*(moved - poses).transpose(2, 0, 1))
        seen = np.isfinite(dist)
        count = seen.sum(axis=1)
        err = np.where(count > 0, np.where(seen, dist, 0.0).sum(axis=1) / np.maximum(count, 1),
                       np.nan)
        return -0.5 * (err / sigma) ** 2 - np.log(2 * np.pi * sigma ** 2)

    # ------------------------------------------------------------------------------------
    def _new_name(self) -> str:
        while True:
            name = f"track_{next(self.numbers)}"
            if name not in self.identities:
                return name

    def _is_weak(self, seg: _Segment) -> bool:
        return (len(seg.dets) < self.params.weak_length
                and float(np.mean([d.score for d in seg.dets])) < self.params.weak_score)

    def _log_area(self, by_raw: dict[str, list[_Det]], size: float) -> float:
        """Log of the area animals were seen in so far (px^2): where a new animal may appear."""
        cs = np.array([d.centroid for dets in by_raw.values() for d in dets]).reshape(-1, 2)
        cs = cs[np.isfinite(cs).all(axis=1)]
        if len(cs):
            lo, hi = cs.min(axis=0), cs.max(axis=0)
            if self.extent is not None:
                lo, hi = np.minimum(lo, self.extent[0]), np.maximum(hi, self.extent[1])
            self.extent = (lo, hi)
        if self.extent is None:
            return float(np.log(max(size, 1.0) ** 2))
        w, h = self.extent[1] - self.extent[0] + size
        return float(np.log(w * h))

    def _assign(self, group: list[_Segment], free: list[str], size: float, log_area: float,
                names: dict[tuple[int, int], str | None]) -> None:
        """Identities for the segments starting on one frame: one Hungarian over linking to a
        free identity, starting a new one, or (animal count reached) staying untracked."""
        from scipy.optimize import linear_sum_assignment

        p = self.params
        n, m = len(group), len(free)
        # The alternative to a link: a new animal appearing anywhere in the arena. A segment
        # that looks spurious (short, low score) is far more likely to be one than a return.
        weak = [self._is_weak(s) for s in group]
        birth = np.array([log_area - np.log(p.new_identity_prior
                                            * (WEAK_BIRTH_FACTOR if w else 1.0)) for w in weak])
        slots = (n if p.max_tracks is None
                 else max(0, p.max_tracks - len(self.identities)))
        cost = np.full((n, m + n), UNTRACKED_COST)
        for r, s in enumerate(group):
            for c, name in enumerate(free):
                ident = self.identities[name]
                link = -self._log_link(ident, s, size)
                if ident.raw == s.raw:
                    # The tracker's own continuation is the prior: a swap must be clearly
                    # better to be taken. Across a gap the tracker's guess is weaker.
                    link -= np.log(SAME_TRACK_PRIOR if ident.end == s.start - 1
                                   else SAME_TRACK_GAP_PRIOR)
                if weak[r] or not ident.strong:
                    # A spurious-looking segment is a poor continuation, and an identity only
                    # such segments formed is a poor anchor.
                    link += np.log(WEAK_BIRTH_FACTOR)
                if p.max_tracks is None and link > birth[r]:
                    continue  # less likely than a new animal: never linked
                cost[r, c] = min(link, UNTRACKED_COST - 1.0)
            for k in range(min(slots, n)):
                cost[r, m + k] = birth[r]
        rows, cols = linear_sum_assignment(cost)
        for r, c in zip(rows.tolist(), cols.tolist()):
            s = group[r]
            if c < m and cost[r, c] < UNTRACKED_COST:
                name = free[c]
                ident = self.identities[name]
                if ident.raw != s.raw:
                    if ident.end == s.start - 1:
                        self.swaps += 1
                    else:
                        self.links += 1
            elif c >= m and cost[r, c] < UNTRACKED_COST and not weak[r]:
                name = self._new_name()
                self.identities[name] = _Identity(name)
            else:
                for d in s.dets:
                    names[(d.row, d.inst)] = None
                self.untracked += len(s.dets)
                continue
            ident = self.identities[name]
            ident.raw = s.raw
            ident.strong = ident.strong or not weak[r]
            for d in s.dets:
                names[(d.row, d.inst)] = name
                ident.last.append(d)
                if d.vector is not None:
                    ident.vectors.append(d.vector)

    def _process(self) -> list[FramePrediction]:
        """Give the block's segments identities and release the block."""
        if not self.block:
            return []

        by_raw = self._detections()
        size = self._body_size(by_raw)
        segments = self._segments(by_raw, size)
        segments.sort(key=lambda s: (s.start, s.raw))
        names: dict[tuple[int, int], str | None] = {}
        log_area = self._log_area(by_raw, size)
        busy_until: dict[str, int] = {n: ident.end for n, ident in self.identities.items()}
        p = self.params
        i = 0
        while i < len(segments):
            start = segments[i].start
            group = []
            while i < len(segments) and segments[i].start == start:
                group.append(segments[i])
                i += 1
            free = [n for n, end in busy_until.items() if end < start
                    and (p.max_tracks is not None or start - end <= p.max_link_gap)]
            self._assign(group, free, size, log_area, names)
            for s in group:
                name = names.get((s.dets[0].row, s.dets[0].inst))
                if name is not None:
                    busy_until[name] = s.end
        out = []
        for row, pred in enumerate(self.block):
            if not pred.track_names:
                out.append(pred)
                continue
            new = tuple(names.get((row, i)) if n is not None else None
                        for i, n in enumerate(pred.track_names))
            changes: dict[str, Any] = {"track_names": new}
            if pred.source_instances is not None and any(
                    n is None and inst.track is not None
                    for n, inst in zip(new, pred.source_instances)):
                # Track-only: an instance left untracked must not keep its input's old track.
                sources = list(pred.source_instances)
                for i, n in enumerate(new):
                    if n is None and sources[i].track is not None:
                        sources[i] = copy_instance(sources[i])
                        sources[i].track = None
                changes["source_instances"] = tuple(sources)
            out.append(msgspec.structs.replace(pred, **changes))
        self.block = []
        # Identities too long gone to be re-joined are forgotten (bounded memory), unless the
        # animal count is known (a closed set keeps every identity).
        if p.max_tracks is None and out:
            now = out[-1].frame_idx
            for n in [n for n, ident in self.identities.items()
                      if now - ident.end > p.max_link_gap]:
                del self.identities[n]
        return out

"""Synthetic multi-animal pose clips with known identities, for tracker tests and benchmarks.

Animals follow smooth Lissajous paths in their own part of an arena, each a rigid 13-node body
turned along its heading, with per-node noise and missing nodes. Options add what makes tracking
hard: occlusion gaps (an animal vanishes for a run of frames), dropped detections and spurious
low-score detections (random poses anywhere, and near-duplicates beside a real animal). A second
generator makes two animals cross head-on, another makes them meet while hidden and either
turn back or walk on. Every detection carries its true animal id, so the clip converts to
tracked ground truth and untracked predictions; :func:`appearance_vectors` gives each detection a
re-ID vector of its animal (for the appearance trackers). A real tracked clip becomes one with
:func:`clip_from_labels`, and :func:`occlude` makes any clip hard the same way (occlusion gaps,
spurious detections, pose noise).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import sleap_io as sio

__all__ = ("SyntheticClip", "appearance_vectors", "clip_from_labels", "crossing_clip",
           "meeting_clip", "occlude", "walking_clip")



@dataclass
class SyntheticClip:
    """Per frame: detections ``(n, n_nodes, 2)``, their scores and their true ids (-1: spurious)."""

    points: list[np.ndarray]
    scores: list[np.ndarray]
    ids: list[np.ndarray]
    n_animals: int

    def __len__(self) -> int:
        return len(self.points)

    def to_labels(self, *, truth: bool, tracks: list[list[str | None]] | None = None,
                  video_name: str = "synthetic.mp4") -> sio.Labels:
        """Ground truth (``truth``: real animals only, tracked ``animal_k``) or predictions (every
        detection, with ``tracks`` names per frame if given, untracked otherwise)."""
        n_nodes = self.points[0].shape[1] if self.points else 13
        skeleton = sio.Skeleton([f"n{i}" for i in range(n_nodes)])
        video = sio.Video(filename=video_name, open_backend=False)
        objs: dict[str, sio.Track] = {}
        frames = []
        for t, (pts, sc, ids) in enumerate(zip(self.points, self.scores, self.ids)):
            insts = []
            for i in range(len(pts)):
                if truth and ids[i] < 0:
                    continue
                name = f"animal_{ids[i]}" if truth else (tracks[t][i] if tracks else None)
                track = objs.setdefault(name, sio.Track(name)) if name else None
                insts.append(sio.PredictedInstance.from_numpy(pts[i], skeleton=skeleton,
                                                              score=float(sc[i]), track=track))
            frames.append(sio.LabeledFrame(video=video, frame_idx=t, instances=insts))
        return sio.Labels(labeled_frames=frames, videos=[video], skeletons=[skeleton],
                          tracks=list(objs.values()))


def _body(n_nodes: int, length: float, rng: np.random.Generator) -> np.ndarray:
    """A body along +x centred on 0: a spine plus side nodes, ``(n_nodes, 2)``."""
    spine = np.linspace(-length / 2, length / 2, n_nodes)
    side = np.where(np.arange(n_nodes) % 3 == 1, 0.25 * length, 0.0)
    side *= np.where(np.arange(n_nodes) % 2 == 0, 1, -1)
    return np.stack([spine, side], axis=1) + rng.normal(0, 1.0, (n_nodes, 2))


def _place(body: np.ndarray, center: np.ndarray, heading: float) -> np.ndarray:
    c, s = np.cos(heading), np.sin(heading)
    return body @ np.array([[c, s], [-s, c]]) + center


def _spurious_pose(body: np.ndarray, rng: np.random.Generator, arena: float) -> np.ndarray:
    return _place(body * rng.uniform(0.7, 1.2), rng.uniform(0, arena, 2), rng.uniform(0, 2 * np.pi))


def _finish(frames: list[list[tuple[np.ndarray, float, int]]], n_nodes: int,
            n_animals: int) -> SyntheticClip:
    points, scores, ids = [], [], []
    for dets in frames:
        points.append(np.stack([d[0] for d in dets]) if dets else np.zeros((0, n_nodes, 2)))
        scores.append(np.array([d[1] for d in dets], dtype=np.float64))
        ids.append(np.array([d[2] for d in dets], dtype=np.int64))
    return SyntheticClip(points, scores, ids, n_animals)


def walking_clip(n_frames: int = 400, n_animals: int = 2, n_nodes: int = 13, *, seed: int = 0,
                 gaps: tuple[int, int] | None = (5, 25), gaps_per_animal: int = 3,
                 drop: float = 0.03, spurious: float = 0.1, noise: float = 1.0,
                 missing: float = 0.05, arena: float = 800.0) -> SyntheticClip:
    """Animals on Lissajous paths in separate lanes; gaps of ``gaps`` frames (inclusive range,
    ``gaps_per_animal`` each), ``drop`` probability of a missed detection, ``spurious``
    probability per frame of a false detection (score 0.1-0.45), node noise ``noise`` px."""
    rng = np.random.default_rng(seed)
    lane = arena / n_animals
    hidden = np.zeros((n_animals, n_frames), dtype=bool)
    if gaps is not None:
        # Gaps of one animal never touch each other: each is one occlusion of known length.
        slot = (n_frames - 40) // max(1, gaps_per_animal)
        for a in range(n_animals):
            for k in range(gaps_per_animal):
                length = int(rng.integers(gaps[0], gaps[1] + 1))
                start = 20 + k * slot + int(rng.integers(0, max(1, slot - length - 5)))
                hidden[a, start:start + length] = True
    bodies = [_body(n_nodes, 40.0, rng) for _ in range(n_animals)]
    phase = rng.uniform(0, 2 * np.pi, (n_animals, 2))
    freq = rng.uniform(0.02, 0.04, (n_animals, 2))
    t = np.arange(n_frames + 1)[:, None]
    frames: list[list[tuple[np.ndarray, float, int]]] = []
    paths = []
    for a in range(n_animals):
        x = arena / 2 + 0.35 * arena * np.sin(freq[a, 0] * t[:, 0] * 2 * np.pi / 10 + phase[a, 0])
        y = lane * (a + 0.5) + 0.45 * lane * np.sin(freq[a, 1] * t[:, 0] * 2 * np.pi / 10
                                                   + phase[a, 1])
        paths.append(np.stack([x, y], axis=1))
    for f in range(n_frames):
        dets: list[tuple[np.ndarray, float, int]] = []
        for a in range(n_animals):
            step = paths[a][f + 1] - paths[a][f]
            pose = _place(bodies[a], paths[a][f], float(np.arctan2(step[1], step[0])))
            if hidden[a, f] or rng.random() < drop:
                continue
            pose = pose + rng.normal(0, noise, pose.shape)
            pose[rng.random(n_nodes) < missing] = np.nan
            dets.append((pose, float(rng.uniform(0.7, 1.0)), a))
            if rng.random() < spurious / 2:
                # A low-score near-duplicate beside the animal (a common detector artefact).
                dup = pose + rng.normal(0, 6.0, 2)
                dets.append((dup, float(rng.uniform(0.1, 0.45)), -1))
        if rng.random() < spurious:
            dets.append((_spurious_pose(bodies[0], rng, arena), float(rng.uniform(0.1, 0.45)), -1))
        order = rng.permutation(len(dets))
        frames.append([dets[i] for i in order])
    return _finish(frames, n_nodes, n_animals)


def crossing_clip(n_frames: int = 80, n_nodes: int = 13, *, speed: float = 4.0,
                  offset: float = 6.0, seed: int = 0, noise: float = 0.5) -> SyntheticClip:
    """Two animals walking head-on along nearly the same line, passing each other mid-clip."""
    rng = np.random.default_rng(seed)
    body = _body(n_nodes, 24.0, rng)
    mid = n_frames / 2
    frames: list[list[tuple[np.ndarray, float, int]]] = []
    for f in range(n_frames):
        dets = []
        for a, (sign, heading) in enumerate(((1, 0.0), (-1, np.pi))):
            center = np.array([400 + sign * speed * (f - mid), 300 + sign * offset / 2])
            pose = _place(body, center, heading) + rng.normal(0, noise, (n_nodes, 2))
            dets.append((pose, 0.9, a))
        frames.append(dets)
    return _finish(frames, n_nodes, 2)


def meeting_clip(kind: str = "bounce", n_frames: int = 50, n_nodes: int = 13, *,
                 hidden: tuple[int, int] = (16, 25), speed: float = 2.0, seed: int = 0,
                 noise: float = 0.5) -> SyntheticClip:
    """Two animals walk towards each other and meet at frame 20 while both are hidden (frames
    ``hidden[0]`` to ``hidden[1] - 1``). ``bounce``: each turns back the way it came, so a
    constant-velocity prediction swaps them; ``pass``: they walk on past each other, so the
    last seen positions swap them. Only appearance tells which is which after the gap."""
    if kind not in ("bounce", "pass"):
        raise ValueError(f"kind must be 'bounce' or 'pass', got {kind!r}")
    rng = np.random.default_rng(seed)
    body = _body(n_nodes, 24.0, rng)
    frames: list[list[tuple[np.ndarray, float, int]]] = []
    for f in range(n_frames):
        d = f - 20
        xs = ([400 - abs(speed * d) - 8, 400 + abs(speed * d) + 8] if kind == "bounce"
              else [400 + speed * d, 400 - speed * d])
        dets = []
        if not hidden[0] <= f < hidden[1]:
            for a in range(2):
                pose = _place(body, np.array([xs[a], 300.0 + 6 * a]), 0.0)
                dets.append((pose + rng.normal(0, noise, pose.shape), 0.9, a))
        order = rng.permutation(len(dets))
        frames.append([dets[i] for i in order])
    return _finish(frames, n_nodes, 2)


def appearance_vectors(clip: SyntheticClip, dim: int = 16, *, noise: float = 0.15,
                       seed: int = 1, distinct: bool = True) -> list[np.ndarray]:
    """Per frame, ``(n, dim)`` unit re-ID vectors: each animal's own direction plus noise
    (spurious detections get random ones). ``distinct=False`` gives every animal the same
    direction: vectors that carry no identity."""
    rng = np.random.default_rng(seed)
    base = rng.normal(size=(clip.n_animals, dim))
    if not distinct:
        base[:] = base[0]
    base /= np.linalg.norm(base, axis=1, keepdims=True)
    out = []
    for ids in clip.ids:
        v = np.where((ids >= 0)[:, None], base[np.maximum(ids, 0)], rng.normal(size=(len(ids), dim)))
        v = v + rng.normal(0, noise, v.shape)
        out.append(v / np.linalg.norm(v, axis=1, keepdims=True))
    return out


def clip_from_labels(labels: sio.Labels, *, min_nodes: int = 5) -> SyntheticClip:
    """A tracked ``.slp`` as a clip: one frame per frame index from 0 to the last labelled one,
    each track an animal id; untracked instances and ones with fewer than ``min_nodes`` visible
    nodes are left out."""
    names = sorted({i.track.name for lf in labels for i in lf.instances if i.track is not None})
    ids = {n: k for k, n in enumerate(names)}
    n_nodes = len(labels.skeletons[0].nodes)
    last = max(lf.frame_idx for lf in labels.labeled_frames)
    frames: list[list[tuple[np.ndarray, float, int]]] = [[] for _ in range(last + 1)]
    for lf in labels.labeled_frames:
        for inst in lf.instances:
            pts = inst.numpy()[:, :2].astype(np.float64)
            if inst.track is None or (~np.isnan(pts).any(axis=1)).sum() < min_nodes:
                continue
            frames[lf.frame_idx].append((pts, float(getattr(inst, "score", 1.0) or 1.0),
                                         ids[inst.track.name]))
    return _finish(frames, n_nodes, len(names))


def occlude(clip: SyntheticClip, *, seed: int = 0, gaps: tuple[int, int] = (5, 40),
            hidden: float = 0.2, spurious: float = 0.1, noise: float = 2.0) -> SyntheticClip:
    """``clip`` made occlusion-heavy: each animal hidden for runs of ``gaps`` frames (inclusive)
    covering about ``hidden`` of its frames, node noise of ``noise`` px, and a spurious
    low-score detection (score 0.1-0.45) on a ``spurious`` fraction of frames (half of them a
    near-duplicate of a real animal, half a real pose moved anywhere in the arena). Scores of
    real detections become 0.7-1.0."""
    rng = np.random.default_rng(seed)
    n = len(clip)
    hide = np.zeros((clip.n_animals, n), dtype=bool)
    for a in range(clip.n_animals):
        # Runs placed at random, not overlapping and not touching, until ``hidden`` is covered.
        for _ in range(1000):
            if hide[a].mean() >= hidden:
                break
            length = int(rng.integers(gaps[0], gaps[1] + 1))
            start = int(rng.integers(0, max(1, n - length)))
            if hide[a, max(0, start - 3):start + length + 3].any():
                continue
            hide[a, start:start + length] = True
    everything = [p for pts in clip.points for p in pts]
    lo = np.nanmin([np.nanmin(p, axis=0) for p in everything], axis=0) if everything else np.zeros(2)
    hi = np.nanmax([np.nanmax(p, axis=0) for p in everything], axis=0) if everything else np.ones(2)
    frames: list[list[tuple[np.ndarray, float, int]]] = []
    for f in range(n):
        dets: list[tuple[np.ndarray, float, int]] = []
        for pts, a in zip(clip.points[f], clip.ids[f].tolist()):
            if a >= 0 and hide[a, f]:
                continue
            dets.append((pts + rng.normal(0, noise, pts.shape), float(rng.uniform(0.7, 1.0)), a))
        if dets and rng.random() < spurious:
            pose = dets[int(rng.integers(len(dets)))][0]
            if rng.random() < 0.5:
                fake = pose + rng.normal(0, 6.0, 2)
            else:
                fake = pose - np.nanmean(pose, axis=0) + rng.uniform(lo, hi)
            dets.append((fake, float(rng.uniform(0.1, 0.45)), -1))
        order = rng.permutation(len(dets))
        frames.append([dets[i] for i in order])
    n_nodes = clip.points[0].shape[1] if clip.points else 13
    return _finish(frames, n_nodes, clip.n_animals)

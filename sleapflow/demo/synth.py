"""A deterministic synthetic clip: a four-node articulated "animal" over a textured background.

The demo and its embedded model are built from this generator (the training script is
``tools/train_demo_model.py``), so the clip is regenerated at run time instead of shipped, and
its ground-truth keypoints are exact.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import sleap_io as sio

#: Frame size of every generated clip (square, RGB).
SIZE = 160
#: Node names, head to tail, joined as a chain.
NODES = ("head", "thorax", "abdomen", "tail")
#: Segment lengths (pixels) head→thorax, thorax→abdomen, abdomen→tail.
SEGMENTS = (16.0, 18.0, 20.0)
#: Body width (line thickness, pixels) of each segment and the colour it is drawn in (RGB).
_WIDTHS = (9, 11, 4)
_BODY = ((150, 90, 50), (120, 70, 40), (90, 60, 40))
_HEAD = (220, 190, 90)


def skeleton() -> sio.Skeleton:
    """The animal's skeleton: a chain head → thorax → abdomen → tail."""
    return sio.Skeleton(nodes=list(NODES), edges=list(itertools.pairwise(NODES)),
                        name="demo_animal")


def background(seed: int) -> np.ndarray:
    """A smooth, fixed texture (blurred noise at two scales plus a few pebbles), uint8 RGB."""
    rng = np.random.default_rng(seed)
    coarse = cv2.resize(rng.random((10, 10, 3)).astype(np.float32), (SIZE, SIZE),
                        interpolation=cv2.INTER_CUBIC)
    fine = cv2.GaussianBlur(rng.random((SIZE, SIZE, 3)).astype(np.float32), (0, 0), 2.0)
    img = 70 + 50 * coarse + 40 * fine
    img = img * np.array([0.8, 1.0, 0.7], dtype=np.float32)  # greenish ground
    for _ in range(25):
        x, y = rng.integers(0, SIZE, 2)
        r = int(rng.integers(2, 6))
        shade = tuple(float(v) for v in rng.integers(40, 140, 3))
        cv2.circle(img, (int(x), int(y)), r, shade, -1, lineType=cv2.LINE_AA)
    return np.clip(img, 0, 255).astype(np.uint8)


def pose(center: np.ndarray, heading: float, bends: np.ndarray) -> np.ndarray:
    """The four node positions for a thorax-abdomen midpoint, a heading and two joint bends.

    The chain grows from the thorax: forward to the head along ``heading``, backward to the
    abdomen, then the tail, each joint turning by its bend (radians).
    """
    thorax = center + 0.5 * SEGMENTS[1] * np.array([np.cos(heading), np.sin(heading)])
    head = thorax + SEGMENTS[0] * np.array([np.cos(heading + bends[0]), np.sin(heading + bends[0])])
    back = heading + np.pi
    abdomen = thorax + SEGMENTS[1] * np.array([np.cos(back), np.sin(back)])
    tail_dir = back + bends[1]
    tail = abdomen + SEGMENTS[2] * np.array([np.cos(tail_dir), np.sin(tail_dir)])
    return np.stack([head, thorax, abdomen, tail])


def draw(bg: np.ndarray, points: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The animal drawn over ``bg`` (segments as thick lines, an oval head), plus sensor noise."""
    img = bg.astype(np.float32).copy()
    pts = [tuple(round(float(v) * 4) for v in p) for p in points]  # 2 bits of sub-pixel precision
    for i in range(3):
        cv2.line(img, pts[i], pts[i + 1], _BODY[i], _WIDTHS[i], lineType=cv2.LINE_AA, shift=2)
    cv2.circle(img, pts[2], 5 * 4, _BODY[1], -1, lineType=cv2.LINE_AA, shift=2)
    cv2.circle(img, pts[0], 5 * 4, _HEAD, -1, lineType=cv2.LINE_AA, shift=2)
    img += rng.normal(0.0, 4.0, img.shape).astype(np.float32)
    return np.clip(img, 0, 255).astype(np.uint8)


@dataclass(frozen=True)
class Clip:
    """Generated frames (``(n, SIZE, SIZE, 3)`` uint8) and their keypoints (``(n, 4, 2)``)."""

    frames: np.ndarray
    points: np.ndarray


def walk(n_frames: int, seed: int = 0) -> Clip:
    """A smooth walk: the body follows a Lissajous loop, facing where it goes, tail swinging."""
    rng = np.random.default_rng(seed)
    bg = background(seed)
    t = np.arange(n_frames, dtype=np.float64)
    w1, w2 = 2 * np.pi / 90.0, 2 * np.pi / 140.0
    p1, p2 = rng.uniform(0, 2 * np.pi, 2)
    amp = SIZE / 2 - 38
    cx = SIZE / 2 + amp * np.sin(w1 * t + p1)
    cy = SIZE / 2 + amp * np.sin(w2 * t + p2)
    vx, vy = amp * w1 * np.cos(w1 * t + p1), amp * w2 * np.cos(w2 * t + p2)
    heading = np.arctan2(vy, vx)
    frames, points = [], []
    for i in range(n_frames):
        bends = np.array([0.35 * np.sin(0.21 * i), 0.6 * np.sin(0.33 * i + 1.0)])
        pts = pose(np.array([cx[i], cy[i]]), float(heading[i]), bends)
        frames.append(draw(bg, pts, rng))
        points.append(pts)
    return Clip(np.stack(frames), np.stack(points))


def random_poses(n_frames: int, seed: int) -> Clip:
    """Independent poses (any position, heading and bend) over a few backgrounds: training data."""
    rng = np.random.default_rng(seed)
    bgs = [background(seed * 100 + k) for k in range(8)]
    frames, points = [], []
    margin = 30.0
    for i in range(n_frames):
        center = rng.uniform(margin, SIZE - margin, 2)
        pts = pose(center, float(rng.uniform(-np.pi, np.pi)),
                   np.array([rng.uniform(-0.5, 0.5), rng.uniform(-0.8, 0.8)]))
        frames.append(draw(bgs[i % len(bgs)], pts, rng))
        points.append(pts)
    return Clip(np.stack(frames), np.stack(points))


def write_clip(clip: Clip, video_path: str | Path, labels_path: str | Path | None = None,
               *, fps: float = 15.0) -> sio.Labels:
    """Encode ``clip`` to ``video_path`` (near-lossless H.264) and return (and with
    ``labels_path`` also save) its ground truth as user-labelled instances."""
    video_path = Path(video_path)
    video_path.parent.mkdir(parents=True, exist_ok=True)
    sio.save_video(clip.frames, video_path.as_posix(), fps=fps, crf=12, pixelformat="yuv420p")
    video = sio.load_video(video_path.as_posix())
    skel = skeleton()
    frames = [sio.LabeledFrame(video=video, frame_idx=i,
                               instances=[sio.Instance.from_numpy(clip.points[i], skeleton=skel)])
              for i in range(len(clip.points))]
    labels = sio.Labels(labeled_frames=frames, videos=[video], skeletons=[skel])
    if labels_path is not None:
        sio.save_slp(labels, Path(labels_path).as_posix(), verbose=False)
    return labels

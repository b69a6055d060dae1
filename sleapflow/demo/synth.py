"""A deterministic synthetic clip: a six-node winged "animal" over a textured background.

The demo and its embedded model are built from this generator (the training script is
``tools/train_demo_model.py``), so the clip is regenerated at run time instead of shipped, and
its ground-truth keypoints are exact.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import sleap_io as sio

__all__ = (
    "EDGES", "NODES", "SEGMENTS", "SIZE", "WING", "Clip", "background", "draw", "pose", "random_poses",
    "skeleton", "walk", "write_clip",
)


#: Frame size of every generated clip (square, RGB).
SIZE = 256
#: Node names: the body chain head to tail, then the two wing tips (left, right as the animal
#: sees it from above, image y pointing down).
NODES = ("head", "thorax", "abdomen", "tail", "left_wing", "right_wing")
#: The body chain's edges, then thorax to each wing tip.
EDGES = (("head", "thorax"), ("thorax", "abdomen"), ("abdomen", "tail"),
         ("thorax", "left_wing"), ("thorax", "right_wing"))
#: Segment lengths (pixels) head→thorax, thorax→abdomen, abdomen→tail.
SEGMENTS = (30.0, 32.0, 40.0)
#: Wing length (pixels), thorax to tip. The wings make the keypoints span two dimensions, so
#: OKS (normalised by the keypoints' box area) rates errors against a real box, not a sliver.
WING = 50.0
#: Body width (line thickness, pixels) of each segment and the colour it is drawn in (RGB).
_WIDTHS = (14, 17, 6)
_BODY = ((150, 90, 50), (120, 70, 40), (90, 60, 40))
_HEAD = (220, 190, 90)
#: Wing colours: left blue, right red, so the two sides are told apart by how they look, not
#: only by where they sit relative to the head.
_WINGS = ((70, 120, 220), (210, 70, 60))
_WING_WIDTH = 5


def skeleton() -> sio.Skeleton:
    """The animal's skeleton: the chain head → thorax → abdomen → tail, and a wing off the thorax
    on each side (a left/right symmetry pair)."""
    nodes = [sio.Node(name) for name in NODES]
    by_name = {n.name: n for n in nodes}
    return sio.Skeleton(nodes=nodes, edges=[sio.Edge(by_name[a], by_name[b]) for a, b in EDGES],
                        symmetries=[sio.Symmetry({by_name["left_wing"], by_name["right_wing"]})],
                        name="demo_animal")


def background(seed: int) -> np.ndarray:
    """A smooth, fixed texture (blurred noise at two scales plus a few pebbles), uint8 RGB."""
    rng = np.random.default_rng(seed)
    coarse = cv2.resize(rng.random((10, 10, 3)).astype(np.float32), (SIZE, SIZE),
                        interpolation=cv2.INTER_CUBIC)
    fine = cv2.GaussianBlur(rng.random((SIZE, SIZE, 3)).astype(np.float32), (0, 0), 2.0)
    img = 70 + 50 * coarse + 40 * fine
    img = img * np.array([0.8, 1.0, 0.7], dtype=np.float32)  # greenish ground
    for _ in range(60):
        x, y = rng.integers(0, SIZE, 2)
        r = int(rng.integers(2, 8))
        shade = tuple(float(v) for v in rng.integers(40, 140, 3))
        cv2.circle(img, (int(x), int(y)), r, shade, -1, lineType=cv2.LINE_AA)
    return np.clip(img, 0, 255).astype(np.uint8)


def _unit(angle: float) -> np.ndarray:
    return np.array([np.cos(angle), np.sin(angle)])


def pose(center: np.ndarray, heading: float, bends: np.ndarray, sweeps: np.ndarray) -> np.ndarray:
    """The six node positions for a thorax-abdomen midpoint, a heading, two joint bends and two
    wing sweeps (radians).

    The chain grows from the thorax: forward to the head along ``heading``, backward to the
    abdomen, then the tail, each joint turning by its bend. Each wing leaves the thorax square to
    the body on its side, swept back by its sweep.
    """
    thorax = center + 0.5 * SEGMENTS[1] * _unit(heading)
    head = thorax + SEGMENTS[0] * _unit(heading + bends[0])
    back = heading + np.pi
    abdomen = thorax + SEGMENTS[1] * _unit(back)
    tail = abdomen + SEGMENTS[2] * _unit(back + bends[1])
    # Image y points down, so the animal's left is a quarter turn anticlockwise on screen.
    left = thorax + WING * _unit(heading - np.pi / 2 - sweeps[0])
    right = thorax + WING * _unit(heading + np.pi / 2 + sweeps[1])
    return np.stack([head, thorax, abdomen, tail, left, right])


def draw(bg: np.ndarray, points: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The animal drawn over ``bg`` (wings under the body, segments as thick lines, an oval head,
    a dot at each wing tip), plus sensor noise."""
    img = bg.astype(np.float32).copy()
    pts = [tuple(round(float(v) * 4) for v in p) for p in points]  # 2 bits of sub-pixel precision
    for k, colour in enumerate(_WINGS):
        cv2.line(img, pts[1], pts[4 + k], colour, _WING_WIDTH, lineType=cv2.LINE_AA, shift=2)
        cv2.circle(img, pts[4 + k], 4 * 4, colour, -1, lineType=cv2.LINE_AA, shift=2)
    for i in range(3):
        cv2.line(img, pts[i], pts[i + 1], _BODY[i], _WIDTHS[i], lineType=cv2.LINE_AA, shift=2)
    cv2.circle(img, pts[2], 8 * 4, _BODY[1], -1, lineType=cv2.LINE_AA, shift=2)
    cv2.circle(img, pts[0], 8 * 4, _HEAD, -1, lineType=cv2.LINE_AA, shift=2)
    img += rng.normal(0.0, 4.0, img.shape).astype(np.float32)
    return np.clip(img, 0, 255).astype(np.uint8)


@dataclass(frozen=True)
class Clip:
    """Generated frames (``(n, SIZE, SIZE, 3)`` uint8) and their keypoints
    (``(n, len(NODES), 2)``)."""

    frames: np.ndarray
    points: np.ndarray


def walk(n_frames: int, seed: int = 0) -> Clip:
    """A smooth walk: the body follows a Lissajous loop, facing where it goes, tail swinging,
    wings beating out of step."""
    rng = np.random.default_rng(seed)
    bg = background(seed)
    t = np.arange(n_frames, dtype=np.float64)
    w1, w2 = 2 * np.pi / 90.0, 2 * np.pi / 140.0
    p1, p2 = rng.uniform(0, 2 * np.pi, 2)
    amp = SIZE / 2 - 66  # keeps the wing tips and tail inside the frame
    cx = SIZE / 2 + amp * np.sin(w1 * t + p1)
    cy = SIZE / 2 + amp * np.sin(w2 * t + p2)
    vx, vy = amp * w1 * np.cos(w1 * t + p1), amp * w2 * np.cos(w2 * t + p2)
    heading = np.arctan2(vy, vx)
    frames, points = [], []
    for i in range(n_frames):
        bends = np.array([0.35 * np.sin(0.21 * i), 0.6 * np.sin(0.33 * i + 1.0)])
        sweeps = np.array([0.45 + 0.3 * np.sin(0.27 * i), 0.45 + 0.3 * np.sin(0.27 * i + 2.0)])
        pts = pose(np.array([cx[i], cy[i]]), float(heading[i]), bends, sweeps)
        frames.append(draw(bg, pts, rng))
        points.append(pts)
    return Clip(np.stack(frames), np.stack(points))


def random_poses(n_frames: int, seed: int) -> Clip:
    """Independent poses (any position, heading, bend and wing sweep) over a few backgrounds:
    training data."""
    rng = np.random.default_rng(seed)
    bgs = [background(seed * 100 + k) for k in range(8)]
    frames, points = [], []
    margin = 64.0  # the wing tips and tail reach about 60 px from the centre
    for i in range(n_frames):
        center = rng.uniform(margin, SIZE - margin, 2)
        pts = pose(center, float(rng.uniform(-np.pi, np.pi)),
                   np.array([rng.uniform(-0.5, 0.5), rng.uniform(-0.8, 0.8)]),
                   rng.uniform(0.05, 0.85, 2))
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

"""Per-instance features, vectorised over a frame's instances.

Every function takes the frame's points as one ``(n, n_nodes, 2)`` float array with NaN for missing
nodes and returns one feature row per instance. All-NaN instances give NaN features, silently: the
tracker turns NaN similarities into infinite costs, so no warning is useful here.
"""

from __future__ import annotations

import numpy as np

__all__ = (
    "IMAGE_PATCH_MARGIN", "IMAGE_PATCH_SIZE", "bboxes", "centroids", "compute", "image_patches", "keypoints",
    "to_gray", "valid_point_counts",
)


#: Side of the square grayscale patch used by the ``image`` feature.
IMAGE_PATCH_SIZE = 16
#: Context added around an instance's bounding box for the ``image`` feature, as a fraction of the
#: box's larger side (at least 2 px), so a one-node or thin instance still sees its surroundings.
IMAGE_PATCH_MARGIN = 0.1


def valid_point_counts(points: np.ndarray) -> np.ndarray:
    """Number of nodes per instance whose x and y are both present (sleap-nn's "valid points")."""
    return (~np.isnan(points).any(axis=-1)).sum(axis=-1)


def keypoints(points: np.ndarray) -> np.ndarray:
    """The poses themselves, ``(n, n_nodes, 2)`` float64."""
    return np.asarray(points, dtype=np.float64)


def centroids(points: np.ndarray) -> np.ndarray:
    """Per-axis median of the visible nodes, ``(n, 2)`` (sleap-nn's ``np.nanmedian``)."""
    pts = np.asarray(points, dtype=np.float64)
    n, n_nodes = pts.shape[:2]
    if n == 0 or not np.isnan(pts).any():
        return np.median(pts, axis=1) if n else np.empty((0, 2))
    # A NaN-ignoring median without np.nanmedian's all-NaN RuntimeWarning: NaNs sort last, so the
    # middle of the first `count` sorted values is the median of the present ones.
    srt = np.sort(pts, axis=1)
    count = (~np.isnan(pts)).sum(axis=1)  # (n, 2)
    lo = np.clip((count - 1) // 2, 0, n_nodes - 1)
    hi = np.clip(count // 2, 0, n_nodes - 1)
    a = np.take_along_axis(srt, lo[:, None, :], axis=1)[:, 0]
    b = np.take_along_axis(srt, hi[:, None, :], axis=1)[:, 0]
    out = (a + b) / 2.0
    out[count == 0] = np.nan
    return out


def bboxes(points: np.ndarray) -> np.ndarray:
    """``[min_x, min_y, max_x, max_y]`` over the visible nodes, ``(n, 4)``."""
    pts = np.asarray(points, dtype=np.float64)
    if pts.shape[0] == 0:
        return np.empty((0, 4))
    # fmin/fmax ignore NaN and return NaN for all-NaN input without warning (unlike nanmin).
    return np.concatenate([np.fmin.reduce(pts, axis=1), np.fmax.reduce(pts, axis=1)], axis=1)


def to_gray(image: np.ndarray) -> np.ndarray:
    """A 2-D grayscale view of an (H, W), (H, W, 1) or (H, W, 3) RGB frame."""
    img = np.asarray(image)
    if img.ndim == 3 and img.shape[-1] == 1:
        img = img[..., 0]
    elif img.ndim == 3 and img.shape[-1] >= 3:
        import cv2  # OpenCV loads with the image feature only, not with every tracker

        img = cv2.cvtColor(np.ascontiguousarray(img[..., :3]), cv2.COLOR_RGB2GRAY)
    elif img.ndim != 2:
        raise ValueError(f"expected an (H, W) or (H, W, C) image, got shape {img.shape}")
    return img


def image_patches(points: np.ndarray, image: np.ndarray | None) -> np.ndarray:
    """Appearance feature: a small zero-mean, unit-norm grayscale patch around each instance.

    sleap-nn documents ``features="image"`` but raises when it is used. Here the patch is the
    instance's visible-node bounding box plus a margin, clipped to the frame, resized to
    ``IMAGE_PATCH_SIZE`` x ``IMAGE_PATCH_SIZE`` (area interpolation), with its mean removed and
    scaled to unit L2 norm, flattened to ``(n, IMAGE_PATCH_SIZE**2)``. Cosine similarity of two
    such patches is their normalised cross-correlation. Instances without visible nodes, boxes
    outside the frame and flat patches give NaN rows (never matched by appearance).
    """
    if image is None:
        raise ValueError("features='image' needs the frame image; pass image= to Tracker.track")
    n = points.shape[0]
    out = np.full((n, IMAGE_PATCH_SIZE * IMAGE_PATCH_SIZE), np.nan)
    if n == 0:
        return out
    import cv2

    gray = to_gray(image)
    height, width = gray.shape
    boxes = bboxes(points)
    for i, (x0, y0, x1, y1) in enumerate(boxes):
        if np.isnan(x0):
            continue
        margin = max(2.0, IMAGE_PATCH_MARGIN * max(x1 - x0, y1 - y0))
        c0, r0 = max(0, int(np.floor(x0 - margin))), max(0, int(np.floor(y0 - margin)))
        c1, r1 = min(width, int(np.ceil(x1 + margin)) + 1), min(height, int(np.ceil(y1 + margin)) + 1)
        if c1 <= c0 or r1 <= r0:
            continue
        crop = np.ascontiguousarray(gray[r0:r1, c0:c1], dtype=np.float32)
        patch = cv2.resize(crop, (IMAGE_PATCH_SIZE, IMAGE_PATCH_SIZE),
                           interpolation=cv2.INTER_AREA).astype(np.float64).ravel()
        patch -= patch.mean()
        norm = np.linalg.norm(patch)
        if norm > 0:
            out[i] = patch / norm
    return out


def compute(name: str, points: np.ndarray, image: np.ndarray | None = None) -> np.ndarray:
    """The feature ``name`` (a validated :data:`~sleapflow.options.tracker.FEATURES` value)."""
    if name == "keypoints":
        return keypoints(points)
    if name == "centroids":
        return centroids(points)
    if name == "bboxes":
        return bboxes(points)
    if name == "image":
        return image_patches(points, image)
    raise ValueError(f"unknown feature {name!r}")

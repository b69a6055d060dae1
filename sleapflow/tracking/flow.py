"""Optical-flow shift of stored poses into the current frame (sleap-nn's ``FlowShiftTracker``).

Stored instances are moved from the frame they were seen in to the current frame with OpenCV's
pyramidal Lucas-Kanade flow, and the shifted poses replace the stored features when scoring.
Images are prepared once per frame (:func:`prepare_image`) and the prepared image is what the
tracker keeps, so a frame is converted and resized once instead of once per comparison.
"""

from __future__ import annotations

import numpy as np

__all__ = ("LK_CRITERIA", "prepare_image", "shift_points")


#: Lucas-Kanade stopping criteria used by sleap-nn: 30 iterations or a 0.01 px step
#: (``cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT`` is 2 | 1; spelled out so that importing
#: the tracker does not load OpenCV, which only the flow tracker needs).
LK_CRITERIA = (2 | 1, 30, 0.01)


def prepare_image(image: np.ndarray, scale: float = 1.0) -> np.ndarray:
    """Convert a frame the way sleap-nn does before calling OpenCV.

    Floating images are cast to uint8 without rescaling; a rank > 3 image is squeezed; a
    channel-first 3-channel image is converted to gray (sleap-nn only tests the first axis, so the
    usual (H, W, 3) frames stay 3-channel, which OpenCV's LK accepts); the image is resized by
    ``scale`` with OpenCV's default bilinear interpolation.
    """
    import cv2

    img = np.asarray(image)
    if np.issubdtype(img.dtype, np.floating):
        img = img.astype(np.uint8)
    if img.ndim > 3:
        img = np.squeeze(img)
    if img.ndim > 2 and img.shape[0] == 3:
        img = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
    if scale != 1:
        img = cv2.resize(img, None, None, scale, scale)
    return np.ascontiguousarray(img)


def shift_points(points: np.ndarray, ref_image: np.ndarray, new_image: np.ndarray, *,
                 scale: float = 1.0, window_size: int = 21, max_levels: int = 3) -> np.ndarray:
    """Move ``(n, n_nodes, 2)`` points from ``ref_image`` to ``new_image``.

    Both images must come from :func:`prepare_image` with the same ``scale``. Points OpenCV could
    not follow (status 0: missing, outside the image, lost) come back NaN.
    """
    import cv2

    n, n_nodes = points.shape[:2]
    if n == 0 or n_nodes == 0:
        return np.empty_like(points, dtype=np.float32)
    flat = points.reshape(-1, 2).astype(np.float32) * np.float32(scale)
    shifted, status, _ = cv2.calcOpticalFlowPyrLK(
        ref_image, new_image, flat, None,
        winSize=(window_size, window_size), maxLevel=max_levels, criteria=LK_CRITERIA,
    )
    shifted = shifted / np.float32(scale)
    lost = (status.reshape(-1) == 0) | np.isnan(flat).any(axis=1)
    shifted[lost] = np.nan
    return shifted.reshape(n, n_nodes, 2)

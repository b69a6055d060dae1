"""A fast, pixel-exact path for grayscale videos: swscale's own RGB conversion as a lookup table.

A grayscale video stored as YUV 4:2:0 has flat chroma (every U and V sample is 128), and then
swscale's YUV→RGB conversion is a function of the luma sample alone. The table of that function
is measured once per video from swscale itself (a calibration frame of the video's own format,
size class, range and matrix), so a frame whose chroma is flat is converted by one table lookup
on its Y plane: the same pixels as ``to_ndarray(format="rgb24")[..., 0]`` at several times the
speed. Frames with any other chroma value, and every format the table was not built for, take
the normal conversion; the table is also checked against the normal conversion of the first
frame before it is used at all.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ("GrayLookup",)


_FLAT = 128
_FORMATS = ("yuv420p", "yuvj420p")


def _plane(frame: Any, index: int, height: int, width: int) -> np.ndarray:
    plane = frame.planes[index]
    arr = np.frombuffer(plane, np.uint8).reshape(-1, plane.line_size)
    return arr[:height, :width]


class GrayLookup:
    """``convert(frame)`` → (H, W, 1) uint8 for a flat-chroma frame, or None to fall back."""

    def __init__(self, first: Any, first_rgb: np.ndarray) -> None:
        self.enabled = False
        self.format = first.format.name
        if self.format not in _FORMATS:
            return
        self.width, self.height = first.width, first.height
        self.color_range = first.color_range
        self.colorspace = first.colorspace
        self.table = self._calibrate()
        got = self.convert_unchecked(first)
        # Only trusted if it reproduces the normal conversion of a real frame exactly.
        self.enabled = (got is not None and np.array_equal(got[..., 0], first_rgb[..., 0]))

    def _calibrate(self) -> np.ndarray:
        import av

        # Full video width so swscale takes the code path it takes for real frames.
        width = self.width + (self.width % 2)
        rows = 2 * -(-256 // width)
        frame = av.VideoFrame(width, rows, "yuv420p")
        y = np.resize(np.arange(256, dtype=np.uint8), (rows, width))
        for index, values in enumerate((y, None, None)):
            plane = frame.planes[index]
            plane_rows = rows if index == 0 else rows // 2
            data = np.full((plane_rows, plane.line_size), _FLAT, np.uint8)
            if values is not None:
                data[:, :width] = values
            plane.update(data.tobytes())
        frame.color_range = self.color_range
        frame.colorspace = self.colorspace
        rgb = frame.to_ndarray(format="rgb24")
        table = np.zeros(256, np.uint8)
        table[y.reshape(-1)] = rgb[..., 0].reshape(-1)
        return table

    def convert_unchecked(self, frame: Any) -> np.ndarray | None:
        h, w = frame.height, frame.width
        u = _plane(frame, 1, (h + 1) // 2, (w + 1) // 2)
        v = _plane(frame, 2, (h + 1) // 2, (w + 1) // 2)
        if u.min() != _FLAT or u.max() != _FLAT or v.min() != _FLAT or v.max() != _FLAT:
            return None
        y = _plane(frame, 0, h, w)
        import cv2

        # OpenCV's LUT is several times faster than numpy fancy indexing on 1-megapixel planes.
        return cv2.LUT(y, self.table)[..., None]

    def convert(self, frame: Any) -> np.ndarray | None:
        if not self.enabled or frame.format.name != self.format or frame.width != self.width \
                or frame.height != self.height or frame.color_range != self.color_range \
                or frame.colorspace != self.colorspace:
            return None
        return self.convert_unchecked(frame)

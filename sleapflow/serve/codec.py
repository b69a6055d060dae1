"""Request decoding (PNG/JPEG or raw arrays, checked before they reach the graph) and the JSON
shapes of responses, as msgspec Structs (they also make the OpenAPI schemas)."""

from __future__ import annotations

import io
import math
from typing import Any

import msgspec
import numpy as np

from sleapflow.inputs.media_limits import PNG_SIGNATURE
from sleapflow.inputs.media_limits import image_header as read_image_header
from sleapflow.messages import FramePrediction

__all__ = (
    "MIN_SIDE", "PNG_SIGNATURE", "BadRequest", "ErrorBody", "Health", "Instance", "Prediction",
    "RawFormat", "VideoRequest", "check_frame", "check_size", "decode_image", "decode_json",
    "decode_message", "decode_raw", "encode", "image_header", "parse_raw_format", "parse_shape",
    "prediction_body",
)


MIN_SIDE = 8


class BadRequest(Exception):
    """A request the server refuses: ``status`` is the HTTP status, ``code`` a short name."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


# ---- response shapes ------------------------------------------------------------------------


class Instance(msgspec.Struct, frozen=True, omit_defaults=True):
    """One animal: ``points[k]`` is node k's (x, y) in image pixels, null where not found.

    ``track`` (``track_N``) and ``tracking_score`` are sent on a tracked stream (``serve
    --tracking``: a websocket stream or a video request, each with its own tracker)."""

    points: list[list[float | None]]
    point_scores: list[float | None]
    score: float | None
    track: str | None = None
    tracking_score: float | None = None


class Prediction(msgspec.Struct, frozen=True, omit_defaults=True):
    """One frame's result. ``seq`` numbers a stream's frames from 0; ``latency_ms`` is the time
    from the server receiving the frame to its result being ready."""

    frame_idx: int
    nodes: list[str]
    instances: list[Instance]
    seq: int | None = None
    latency_ms: float | None = None


class ErrorBody(msgspec.Struct, frozen=True, omit_defaults=True):
    """Every error: ``error`` is a short code, ``detail`` says what is wrong and what to do."""

    error: str
    detail: str
    seq: int | None = None
    frame_idx: int | None = None


class VideoRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """``POST /v1/videos``: a video (or .slp / HDF5 / image folder) readable by the server, and
    the frames to run, as ``sleapflow track --frames`` takes them ("0-99,200" or a list)."""

    path: str
    frames: str | list[int] | None = None
    video_index: int | None = None


class RawFormat(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A websocket text message that switches the stream to raw frames of this shape."""

    shape: list[int]
    dtype: str = "uint8"


class Health(msgspec.Struct, frozen=True):
    status: str
    graph: str
    models: list[str]
    nodes: list[str]
    frames_pending: int


def prediction_body(pred: FramePrediction, nodes: list[str], *, seq: int | None = None,
                    latency_ms: float | None = None) -> Prediction:
    """The JSON shape of a prediction; instances with no node found are left out, as the .slp
    writer leaves them out."""
    points = np.asarray(pred.points, dtype=np.float64)
    scores = np.asarray(pred.point_scores, dtype=np.float64)
    inst = np.asarray(pred.instance_scores, dtype=np.float64)
    keep = ~np.all(np.isnan(points), axis=(1, 2)) if points.size else np.zeros(0, bool)
    n = points.shape[0]
    tracks = pred.track_names or (None,) * n
    tracking = (np.full(n, np.nan) if pred.tracking_scores is None
                else np.asarray(pred.tracking_scores, dtype=np.float64))
    instances = [Instance(points=p, point_scores=s, score=c, track=t,
                          tracking_score=None if t is None or math.isnan(ts) else ts)
                 for p, s, c, t, ts, k in zip(points.tolist(), scores.tolist(), inst.tolist(),
                                              tracks, tracking.tolist(), keep.tolist()) if k]
    return Prediction(frame_idx=pred.frame_idx, nodes=nodes, instances=instances, seq=seq,
                      latency_ms=None if latency_ms is None else round(latency_ms, 3))


# ---- request decoding -----------------------------------------------------------------------


def check_size(height: int, width: int, max_side: int, max_pixels: int) -> None:
    """Sides in [8, max_side] and area at most max_pixels, else a 422 (before any allocation)."""
    if not (MIN_SIDE <= height <= max_side and MIN_SIDE <= width <= max_side):
        raise BadRequest(422, "wrong_size", f"frame sides must be {MIN_SIDE}-{max_side} pixels; "
                                            f"got {height}x{width}")
    if height * width > max_pixels:
        raise BadRequest(422, "wrong_size", f"frames may have at most {max_pixels} pixels "
                                            f"(--max_image_pixels); got {height}x{width}")


def check_frame(image: np.ndarray, max_side: int, max_pixels: int) -> np.ndarray:
    """(H, W) or (H, W, 1|3) uint8 with sides in [8, max_side], else a 4xx naming the problem."""
    if image.dtype != np.uint8:
        raise BadRequest(422, "wrong_dtype", f"frames must be 8-bit (uint8); got {image.dtype}")
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[..., 0]
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] != 3):
        channels = image.shape[2] if image.ndim == 3 else "?"
        raise BadRequest(422, "wrong_channels",
                         f"frames must be grayscale or RGB (1 or 3 channels); got shape "
                         f"{list(image.shape)} ({channels} channels)")
    check_size(image.shape[0], image.shape[1], max_side, max_pixels)
    return image


def _bad_header(kind: str) -> BadRequest:
    return BadRequest(400, "bad_image", f"the {kind} header could not be read (truncated or "
                                        "corrupt); the image could not be decoded")


def image_header(data: bytes) -> tuple[int, int, int]:
    """``(height, width, bits per sample)`` from a PNG's IHDR or a JPEG's start-of-frame,
    read without decoding anything, so the size is checked before pixels are allocated."""
    kind = "PNG" if data.startswith(PNG_SIGNATURE) else "JPEG" if data.startswith(b"\xff\xd8") \
        else None
    if kind is None:
        raise BadRequest(415, "not_an_image",
                         "the body is not a PNG or JPEG image; send image bytes, or raw pixels "
                         "with ?shape=H,W,C&dtype=uint8")
    header = read_image_header(io.BytesIO(data))
    if header is None:
        raise _bad_header(kind)
    width, height, bits = header
    return height, width, bits


def decode_image(data: bytes, max_side: int, max_pixels: int) -> np.ndarray:
    """A PNG or JPEG file's pixels as RGB (or grayscale) uint8; runs in a worker thread.

    The header's size and bit depth are checked first: a few hundred kB of PNG can declare a
    30000x30000 image, and decoding it before the check would take gigabytes.
    """
    import cv2

    height, width, depth = image_header(data)
    check_size(height, width, max_side, max_pixels)
    if depth > 8:
        raise BadRequest(422, "wrong_dtype", f"frames must be 8-bit (uint8); the image has "
                                             f"{depth}-bit samples")
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise BadRequest(400, "bad_image", "the image could not be decoded (truncated or corrupt)")
    if image.ndim == 3 and image.shape[2] == 3:
        image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    return check_frame(image, max_side, max_pixels)


def parse_shape(text: str | list[int]) -> tuple[int, ...]:
    """``H,W`` or ``H,W,C`` as positive integers (sizes are checked by :func:`decode_raw`)."""
    try:
        parts = text.split(",") if isinstance(text, str) else text
        # A bound on the digits keeps int() of a megabyte of digits off the worker thread.
        if any(len(str(d).strip()) > 12 for d in parts):
            raise ValueError
        dims = tuple(int(d) for d in parts)
    except (TypeError, ValueError):
        raise BadRequest(400, "bad_shape", f"shape must be H,W or H,W,C integers; got "
                                           f"{str(text)[:80]!r}") from None
    if len(dims) not in (2, 3) or any(d < 1 for d in dims):
        raise BadRequest(400, "bad_shape", f"shape must be H,W or H,W,C positive integers; got "
                                           f"{str(text)[:80]!r}")
    return dims


def decode_raw(data: bytes, shape: tuple[int, ...], dtype: str, max_side: int,
               max_pixels: int) -> np.ndarray:
    """Raw C-order pixels of ``shape``; the byte count must match exactly."""
    if dtype != "uint8":
        raise BadRequest(422, "wrong_dtype", f"raw frames must be dtype uint8; got {dtype!r}")
    # Sizes are checked in Python integers before numpy sees them: a declared shape whose
    # product overflows int64 must be a 4xx, not a wrapped-around count or a crash.
    if len(shape) == 3 and shape[2] not in (1, 3):
        raise BadRequest(422, "wrong_channels", f"frames must be grayscale or RGB (1 or 3 "
                                                f"channels); got shape {list(shape)} "
                                                f"({shape[2]} channels)")
    expected = math.prod(shape)
    if len(data) != expected:
        raise BadRequest(400, "wrong_size", f"shape {list(shape)} uint8 is {expected} bytes but the "
                                            f"body has {len(data)}")
    check_size(shape[0], shape[1], max_side, max_pixels)
    image = np.frombuffer(data, np.uint8).reshape(shape)
    # The graph keeps frames until their batch is done: own the pixels, not the request buffer.
    return check_frame(image.copy(), max_side, max_pixels)


def decode_message(data: bytes, raw: RawFormat | None, max_side: int,
                   max_pixels: int) -> np.ndarray:
    """A websocket binary message: an image file, or raw pixels after a RawFormat message."""
    if raw is None:
        return decode_image(data, max_side, max_pixels)
    return decode_raw(data, tuple(raw.shape), raw.dtype, max_side, max_pixels)


def decode_json(data: str | bytes, type: Any, *, what: str, example: str) -> Any:
    """``data`` as JSON of ``type``; a 400 naming the bad field, or showing ``example``."""
    try:
        return msgspec.json.decode(data, type=type)
    except msgspec.ValidationError as exc:
        raise BadRequest(400, "bad_field", f"bad {what}: {exc}") from None
    except msgspec.DecodeError:
        raise BadRequest(400, "bad_json", f"{what} must be JSON like {example}") from None


def parse_raw_format(text: str) -> RawFormat:
    fmt = decode_json(text, RawFormat, what="stream format message",
                      example='{"shape": [H, W, C], "dtype": "uint8"}')
    parse_shape(fmt.shape)
    return fmt


def encode(obj: Any) -> bytes:
    return msgspec.json.encode(obj)

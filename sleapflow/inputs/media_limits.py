"""Checks made before an input is opened or a frame is allocated: what kind of path it is, and sizes.

A damaged or hostile input can declare frames far larger than any camera makes: an image whose
header says 30000 x 30000 (a few hundred bytes of PNG that decode to gigabytes), an HDF5 dataset
whose declared shape was never written, an AVI header with an absurd resolution. Each is read
from its header and refused with one line before a decoder allocates the frame. A FIFO, device
or socket is refused before it is opened: reading one blocks until something writes to it.
"""

from __future__ import annotations

import errno
import math
import os
import struct
from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO

from sleapflow.errors import ConfigError, InputNotFoundError, VideoDecodeError
from sleapflow.outputs.files import special_kind

__all__ = (
    "MAX_FRAME_BYTES",
    "MAX_FRAME_PIXELS",
    "PNG_SIGNATURE",
    "check_array_frame",
    "check_frame_size",
    "check_image_bytes",
    "check_image_file",
    "check_input_path",
    "image_header",
    "image_size",
    "too_large",
)


#: Pixels in one frame. 8K UHD (7680 x 4320, 33 Mpx) fits twice over; the model's float copy of
#: a frame this size is already ~800 MB, so anything larger is a damaged header, not a camera.
MAX_FRAME_PIXELS = 1 << 26
#: Bytes of one decoded frame as read (a uint8 RGB frame at the pixel limit).
MAX_FRAME_BYTES = 3 * MAX_FRAME_PIXELS

def _short(path: str, limit: int = 120) -> str:
    # A 5,000-character path would make the one error line unreadable.
    return path if len(path) <= limit else f"{path[:limit // 2]}...{path[-limit // 2:]}"


def check_input_path(raw: str, option: str = "-i") -> os.stat_result | None:
    """The ``stat`` of an input path, or None when it does not exist.

    A path too long for the file system and a path that is not a regular file or a folder
    (FIFO, device, socket) are refused, the first before anything is looked up under it.
    """
    try:
        st = os.stat(raw)
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ENOTDIR):
            return None
        if exc.errno == errno.ENAMETOOLONG:
            raise ConfigError(f"{option} path is too long for the file system ({len(raw)} "
                              f"characters): {_short(raw)!r}") from None
        raise InputNotFoundError(f"{option} {_short(raw)!r} cannot be read: "
                                 f"{exc.strerror or exc}") from None
    kind = special_kind(st.st_mode)
    if kind is not None:
        raise ConfigError(f"{option} {_short(raw)!r} is {kind}, not a file: reading it would "
                          "wait for a writer; save the stream to a file first")
    return st


def too_large(width: int, height: int) -> bool:
    """Whether a frame of ``width x height`` is over :data:`MAX_FRAME_PIXELS`."""
    return width * height > MAX_FRAME_PIXELS


def check_frame_size(width: int, height: int, what: str) -> None:
    """Refuse a frame size no real video has, before it is decoded."""
    if width <= 0 or height <= 0:
        raise VideoDecodeError(f"{what} declares frames of {width} x {height} pixels: the header "
                               "is damaged")
    if too_large(width, height):
        raise VideoDecodeError(
            f"{what} declares frames of {width} x {height} pixels ({width * height / 1e6:.0f} "
            f"megapixels, the limit is {MAX_FRAME_PIXELS / 1e6:.0f}): the header is damaged, or "
            "the frames are too large to predict on; downscale them first")


def check_array_frame(shape: Sequence[int], itemsize: int, what: str) -> None:
    """Refuse an array whose one frame (``shape`` without its first axis) is too large to read."""
    frame = [int(s) for s in shape[1:]]
    size = math.prod(frame) * max(1, int(itemsize))
    if size > MAX_FRAME_BYTES:
        raise VideoDecodeError(
            f"{what} declares frames of shape {tuple(frame)} ({size / 2**30:.1f} GiB each; the "
            f"limit is {MAX_FRAME_BYTES / 2**20:.0f} MiB): the file is damaged, or the frames are "
            "too large to predict on")


# --------------------------------------------------------------------------------------------
# Image headers: width and height without decoding
# --------------------------------------------------------------------------------------------


#: A PNG file's first eight bytes.
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _png(head: bytes) -> tuple[int, int, int] | None:
    # The IHDR chunk comes first: its length (13), name, then width, height and bit depth.
    if len(head) < 8 + 8 + 13 or head[12:16] != b"IHDR":
        return None
    w, h, depth = struct.unpack(">IIB", head[16:25])
    return w, h, depth


def _bmp(head: bytes) -> tuple[int, int] | None:
    if len(head) < 26:
        return None
    w, h = struct.unpack("<ii", head[18:26])
    return abs(w), abs(h)  # a negative height is a top-down bitmap


def _tiff(f: BinaryIO, head: bytes) -> tuple[int, int] | None:
    order = "<" if head[:2] == b"II" else ">"
    (ifd,) = struct.unpack(order + "I", head[4:8])
    f.seek(ifd)
    raw = f.read(2)
    if len(raw) < 2:
        return None
    (count,) = struct.unpack(order + "H", raw)
    found: dict[int, int] = {}
    entries = f.read(12 * min(count, 4096))
    for k in range(len(entries) // 12):
        tag, kind = struct.unpack(order + "HH", entries[12 * k:12 * k + 4])
        if tag in (256, 257):  # ImageWidth, ImageLength: SHORT (3) or LONG (4)
            fmt = order + ("H" if kind == 3 else "I")
            found[tag] = struct.unpack(fmt, entries[12 * k + 8:12 * k + 8 + struct.calcsize(fmt)])[0]
    if 256 in found and 257 in found:
        return found[256], found[257]
    return None


#: JPEG start-of-frame markers (every SOFn but DHT, JPG and DAC, which share the range).
_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
#: JPEG markers with no length field: TEM, RSTn.
_BARE = {0x01, *range(0xD0, 0xD8)}


def _jpeg(f: BinaryIO) -> tuple[int, int, int] | None:
    f.seek(2)
    for _ in range(1024):  # segments before the frame header (EXIF, ICC, tables)
        if f.read(1) != b"\xff":
            return None
        marker = f.read(1)
        while marker == b"\xff":  # fill bytes
            marker = f.read(1)
        if not marker:
            return None
        if marker[0] in _BARE:
            continue
        if marker[0] in (0xD9, 0xDA):  # the end, or image data, before any frame header
            return None
        raw = f.read(2)
        if len(raw) < 2:
            return None
        (length,) = struct.unpack(">H", raw)
        if length < 2:
            return None
        if marker[0] in _SOF:
            body = f.read(5)
            if length < 8 or len(body) < 5:
                return None
            bits, h, w = struct.unpack(">BHH", body)
            return w, h, bits
        f.seek(length - 2, os.SEEK_CUR)
    return None


def image_header(f: BinaryIO) -> tuple[int, int, int] | None:
    """``(width, height, bits per sample)`` of a PNG or JPEG file, read from its header without
    decoding anything; None for another format or a header that cannot be read."""
    head = f.read(32)
    try:
        if head.startswith(PNG_SIGNATURE):
            return _png(head)
        if head.startswith(b"\xff\xd8"):
            return _jpeg(f)
    except (struct.error, OSError, ValueError):
        return None
    return None


def image_size(f: BinaryIO) -> tuple[int, int] | None:
    """``(width, height)`` from an image file's header (PNG, JPEG, BMP, TIFF), or None when the
    format is not one of these or the header cannot be parsed (then the decoder decides)."""
    start = f.tell()
    header = image_header(f)
    if header is not None:
        return header[0], header[1]
    f.seek(start)
    head = f.read(32)
    try:
        if head.startswith(b"BM"):
            return _bmp(head)
        if head[:4] in (b"II*\x00", b"MM\x00*"):
            return _tiff(f, head)
    except (struct.error, OSError, ValueError):
        return None
    return None


def check_image_file(path: str | Path, what: str | None = None) -> None:
    """Refuse an image file whose header declares a frame too large to decode."""
    try:
        with open(path, "rb") as f:
            size = image_size(f)
    except OSError:
        return  # unreadable: the decoder reports it with its own words
    if size is not None:
        check_frame_size(size[0], size[1], what or f"image {_short(str(path))!r}")


def check_image_bytes(data: bytes, what: str) -> None:
    """Refuse encoded image bytes (an embedded frame) whose header declares too large a frame."""
    import io

    size = image_size(io.BytesIO(data))
    if size is not None:
        check_frame_size(size[0], size[1], what)

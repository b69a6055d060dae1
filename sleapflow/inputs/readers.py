"""Frame readers: video files through PyAV, and sleap-io's readers for .slp, HDF5 and images.

Readers are plain synchronous objects; the decode stage calls them from a worker thread.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import sleap_io as sio

from sleapflow.errors import FrameDecodeError, VideoDecodeError
from sleapflow.inputs.media_faults import open_advice
from sleapflow.inputs.media_limits import (
    check_frame_size,
    check_image_bytes,
    check_image_file,
    too_large,
)
from sleapflow.logs import get_logger
from sleapflow.messages import InputPlan
from sleapflow.outputs.remote import is_url

__all__ = ("PyAVReader", "SioReader", "VideoInfo", "is_grayscale", "open_container", "open_reader",
           "probe_video", "video_name")


log = get_logger(__name__)


def is_grayscale(image: np.ndarray) -> bool:
    """sleap-io's test: the first and the last channel of the first frame are equal."""
    return image.shape[-1] == 1 or bool(np.array_equal(image[..., 0], image[..., -1]))


def video_name(video: sio.Video) -> str:
    filename = video.filename
    if isinstance(filename, list):
        return filename[0] if filename else "<empty image list>"
    return str(filename)


@dataclass(frozen=True)
class VideoInfo:
    """What planning needs to know about a video file without decoding it all."""

    n_frames: int
    height: int
    width: int
    channels: int
    fps: float | None


def _count_frames(path: str) -> int:
    """Frames in the first video stream: the container's count, else a packet count.

    Matroska/WebM store no frame count and a duration estimate can be off by a frame or more,
    so those are counted by demuxing (no decoding; about as fast as reading the file).
    """
    container, handle = open_container(path)
    try:
        stream = container.streams.video[0]
        if stream.frames:
            return int(stream.frames)
        n = 0
        for packet in container.demux(stream):
            # The demuxer ends with an empty flush packet; discard-flagged packets never decode.
            if packet.size and not getattr(packet, "is_discard", False):
                n += 1
        return n
    finally:
        container.close()
        if handle is not None:
            handle.close()


def open_container(path: str) -> tuple[Any, Any]:
    """``av.open`` of a local path or a URL, and the file object to close after the container
    (None unless the URL is read through fsspec)."""
    import av

    if not is_url(path):
        return av.open(path), None
    from sleapflow.inputs.remote import HTTP_TIMEOUT_S, open_remote

    source, handle = open_remote(path)
    try:
        return av.open(source, timeout=HTTP_TIMEOUT_S), handle
    except BaseException:
        if handle is not None:
            handle.close()
        raise


class PyAVReader:
    """Random access to one video file by frame index, decoding forward and seeking over gaps.

    Frame ``i`` is the ``i``-th frame in decode (presentation) order from the start of the
    stream, as sleap-io's readers number them. After a seek the index of the landing frame is
    derived from its timestamp relative to the first frame's (``pts0``), so streams that do not
    start at zero are numbered right; a seek that lands past its target backs off further.
    Like sleap-io, a video whose first frame has equal first and last channels is read as
    grayscale (channel 0 of the RGB conversion).
    """

    #: Below this gap (in frames) decoding forward is cheaper than a seek plus a GOP's decode.
    SEEK_GAP = 64
    #: Containers whose seeks land on a keyframe with exact timestamps. MPEG program/transport
    #: streams (.mpg, .ts) interpolate timestamps after a seek and can be a frame off, so those
    #: and unknown formats are decoded forward only (restarting for a backward jump).
    SEEKABLE_FORMATS = ("mov", "mp4", "matroska", "webm", "avi")
    #: Undecodable packets tolerated per reader before the file counts as unreadable.
    MAX_DECODE_ERRORS = 100_000
    _AT_END = 1 << 62

    def __init__(self, path: str) -> None:
        self.path = path
        self._container: Any = None
        #: The fsspec file object a remote video is read through (closed after the container).
        self._handle: Any = None
        self._frames: Iterator[Any] | None = None
        self._next_idx = 0
        self._after_seek = False
        self._last: tuple[int, np.ndarray] | None = None
        self._gop = 0
        self._last_key: int | None = None
        self._resync = False
        self.decode_errors = 0
        self._pts0: Any = None
        self._size = (0, 0)
        from av.video.reformatter import VideoReformatter

        # One converter for the reader's life: ``frame.to_ndarray(format="rgb24")`` builds a
        # new swscale context for every frame, which cost a third of colour decoding (same
        # pixels either way).
        self._rgb = VideoReformatter()
        self._open()
        first = self._first_frame()
        if first is None:
            self.close()
            raise VideoDecodeError(f"video {path!r} has no decodable frames")
        try:
            check_frame_size(first.width, first.height, f"video {path!r}")
        except VideoDecodeError:
            self.close()
            raise
        self._size = (first.width, first.height)
        self._pts0 = first.pts
        # Seeking needs timestamps and a frame rate to turn an index into a timestamp.
        formats = set(self._container.format.name.split(","))
        self._seekable = (self._pts0 is not None and bool(self._fps) and self._time_base is not None
                          and bool(formats & set(self.SEEKABLE_FORMATS)))
        image = self._to_rgb(first)
        self.grayscale = is_grayscale(image)
        # Grayscale frames with flat chroma skip swscale: a table lookup gives the same pixels.
        from sleapflow.inputs.gray_decode import GrayLookup

        self._gray = GrayLookup(first, image) if self.grayscale else None
        self.shape = (image.shape[0], image.shape[1], 1 if self.grayscale else 3)
        self._note_key(first, 0)
        self._last = (0, image)
        self._next_idx = 1

    @property
    def fps(self) -> float | None:
        return self._fps

    def _open(self) -> None:
        import av

        self._close_container()
        try:
            self._container, self._handle = open_container(self.path)
            self._stream = self._container.streams.video[0]
        except (av.error.FFmpegError, IndexError, OSError) as exc:
            raise VideoDecodeError(f"cannot open video {self.path!r}: {exc}{open_advice(exc, self.path)}"
                                   ) from exc
        # The container's declared size, before the decoder allocates a frame of it.
        width, height = self._stream.codec_context.width, self._stream.codec_context.height
        if width and height and too_large(width, height):
            self._close_container()
            check_frame_size(width, height, f"the header of video {self.path!r}")
        # Frame threading decodes H.264/HEVC several times faster; seeks flush it correctly.
        self._stream.thread_type = "AUTO"
        rate = self._stream.average_rate or self._stream.guessed_rate
        self._fps = float(rate) if rate else None
        self._time_base = self._stream.time_base
        self._frames = self._container.decode(self._stream)
        self._next_idx = 0
        self._after_seek = False
        self._resync = False

    def _first_frame(self) -> Any:
        """The first frame, which fixes the video's numbering and colour: a file whose first
        packets do not decode is refused here (later corrupt frames are skipped instead)."""
        import av

        try:
            return self._next_frame()
        except av.error.FFmpegError as exc:
            self.close()
            raise VideoDecodeError(
                f"cannot decode the first frame of {self.path!r}: {exc}; the start of the file is "
                "corrupt: re-encode it (ffmpeg -i IN OUT.mp4 drops frames it cannot decode)"
            ) from exc

    def _to_rgb(self, frame: Any) -> np.ndarray:
        return self._rgb.reformat(frame, format="rgb24").to_ndarray()

    def _next_frame(self) -> Any:
        assert self._frames is not None
        return next(self._frames, None)

    def _resume_after_error(self) -> None:
        """After a packet fails to decode, go on from the next packet; the next frame's index
        comes from its timestamp, since the failed ones produced no frame to count."""
        self.decode_errors += 1
        self._frames = self._container.decode(self._stream)
        self._resync = self._pts0 is not None and bool(self._fps) and self._time_base is not None
        if not self._resync:
            self._next_idx += 1  # no timestamps: assume the bad packet was one frame

    def _pts_index(self, pts: int) -> int:
        return round(float((pts - self._pts0) * self._time_base) * self._fps)

    def _note_key(self, frame: Any, idx: int) -> None:
        # Learn the keyframe interval so short forward gaps are decoded through, not seeked.
        if frame.key_frame:
            if self._last_key is not None and idx > self._last_key:
                self._gop = max(self._gop, idx - self._last_key)
            self._last_key = idx

    def _seek(self, index: int) -> None:
        target = self._pts0 + round(index / self._fps / float(self._time_base))
        self._container.seek(target, stream=self._stream, backward=True, any_frame=False)
        self._frames = self._container.decode(self._stream)
        self._after_seek = True
        self._resync = False
        self._last_key = None

    def _position_for(self, index: int) -> None:
        """Put the decoder at or before ``index``: keep going, seek, or restart from the top."""
        behind = index < self._next_idx
        gap = index - self._next_idx
        if not behind and gap <= max(self.SEEK_GAP, 2 * self._gop):
            return
        if self._seekable and index > self.SEEK_GAP:
            self._seek(index)
        elif behind:
            self._open()

    def _decode_at(self, index: int) -> np.ndarray | None:
        import av

        if self._last is not None and self._last[0] == index:
            return self._last[1]
        last_error: Exception | None = None
        try:
            self._position_for(index)
            backoff = self.SEEK_GAP
            while True:
                try:
                    frame = self._next_frame()
                except av.error.FFmpegError as exc:
                    if self.decode_errors >= self.MAX_DECODE_ERRORS:
                        raise
                    self._resume_after_error()
                    last_error = exc
                    continue
                if frame is None:
                    # At the end: any later read is "behind" and repositions (seek or restart).
                    self._next_idx = self._AT_END
                    self._after_seek = False
                    return None
                if self._after_seek:
                    self._after_seek = False
                    if frame.pts is None:
                        # No timestamp to place the landing frame: count from the top instead.
                        self._seekable = False
                        self._open()
                        continue
                    idx = self._pts_index(frame.pts)
                    if idx > index:
                        # Landed past the target (keyframe timestamps vs. seek index): back off.
                        if index - backoff <= 0:
                            self._open()
                        else:
                            self._seek(index - backoff)
                            backoff *= 2
                        continue
                elif self._resync and frame.pts is not None:
                    self._resync = False
                    idx = max(self._pts_index(frame.pts), self._next_idx)
                else:
                    idx = self._next_idx
                self._next_idx = idx + 1
                self._note_key(frame, idx)
                if idx == index:
                    if (frame.width, frame.height) != self._size:
                        # A frame of another size (a damaged packet, a resolution switch) would
                        # not batch with the rest; it is a failed frame, not a new video shape.
                        raise FrameDecodeError(
                            f"frame {index} of {self.path!r} is {frame.width} x {frame.height}, "
                            f"not {self._size[0]} x {self._size[1]} as the video's first frame")
                    image = self._gray.convert(frame) if self._gray is not None else None
                    if image is None:
                        image = self._to_rgb(frame)
                    self._last = (idx, image)
                    return image
                if idx > index:
                    if last_error is not None:
                        # The wanted frame was in the packets that failed to decode.
                        raise FrameDecodeError(f"frame {index} of {self.path!r} cannot be "
                                               f"decoded: {last_error}")
                    return None
        except av.error.FFmpegError as exc:
            raise VideoDecodeError(f"error decoding {self.path!r} at frame {index}: {exc}") from exc

    def read(self, index: int) -> np.ndarray | None:
        """Frame ``index`` as (H, W, C) uint8, or None when the video has no such frame."""
        if index < 0:
            return None
        image = self._decode_at(index)
        if image is None:
            return None
        return image[..., :1] if self.grayscale else image

    def _close_container(self) -> None:
        if self._container is not None:
            self._container.close()
            self._container = None
        if self._handle is not None:
            self._handle.close()
            self._handle = None

    def close(self) -> None:
        self._close_container()
        self._frames = None


def probe_video(path: str) -> VideoInfo:
    """Frame count, size, channels (sleap-io's grayscale rule) and frame rate of a video file."""
    import av

    reader = PyAVReader(path)
    try:
        height, width, channels = reader.shape
        fps = reader.fps
    finally:
        reader.close()
    try:
        n_frames = _count_frames(path)
    except (av.error.FFmpegError, OSError) as exc:
        raise VideoDecodeError(f"cannot read {path!r}: {exc}") from exc
    return VideoInfo(n_frames=n_frames, height=height, width=width, channels=channels, fps=fps)


class SioReader:
    """Frames through a sleap-io Video (labels' videos, HDF5 datasets, image sequences).

    Image files and embedded frames are size-checked from their headers before they are
    decoded; an embedded frame that does not decode, or decodes to another size than its
    video declares, is a failed frame (counted), not a prediction on garbage.
    """

    def __init__(self, video: sio.Video) -> None:
        self.video = video
        self._h5: Any = None
        backend = video.backend
        self._embedded = bool(getattr(backend, "has_embedded_images", False))
        self._declared: tuple[int, int] | None = None

    def _embedded_bytes(self, index: int) -> bytes | None:
        import h5py

        backend = self.video.backend
        if self._h5 is None:
            self._h5 = h5py.File(str(self.video.filename), "r")
            ds = self._h5[backend.dataset]
            height, width = ds.attrs.get("height"), ds.attrs.get("width")
            if height is not None and width is not None:
                self._declared = (int(height), int(width))
        frame_map = getattr(backend, "frame_map", None) or {}
        row = frame_map.get(index, index)
        ds = self._h5[backend.dataset]
        if not 0 <= row < ds.shape[0]:
            return None
        return bytes(np.asarray(ds[row]).tobytes())

    def _check_before_decode(self, index: int) -> None:
        what = f"frame {index} of {video_name(self.video)!r}"
        try:
            if self._embedded:
                data = self._embedded_bytes(index)
                if data is not None:
                    check_image_bytes(data, f"embedded {what}")
            elif isinstance(self.video.filename, list) and 0 <= index < len(self.video.filename):
                check_image_file(self.video.filename[index], f"image {self.video.filename[index]!r}")
        except FrameDecodeError:
            raise
        except VideoDecodeError as exc:
            raise FrameDecodeError(str(exc)) from exc

    def read(self, index: int) -> np.ndarray | None:
        self._check_before_decode(index)
        try:
            image = self.video[index]
        except (IndexError, KeyError):
            return None
        except Exception as exc:  # sleap-io backends raise many kinds; name the video and frame
            if self._embedded:
                raise FrameDecodeError(
                    f"embedded frame {index} of {video_name(self.video)!r} is not a decodable "
                    "image (its stored bytes are damaged)") from exc
            raise VideoDecodeError(
                f"cannot read frame {index} of {video_name(self.video)!r}: {exc}") from exc
        image = np.asarray(image)
        if image.ndim == 2:
            image = image[..., None]
        if image.ndim != 3 or image.shape[-1] not in (1, 3, 4):
            raise FrameDecodeError(f"frame {index} of {video_name(self.video)!r} decoded to an "
                                   f"array of shape {image.shape}, not an image")
        if self._declared is not None and image.shape[:2] != self._declared:
            raise FrameDecodeError(
                f"embedded frame {index} of {video_name(self.video)!r} is {image.shape[1]} x "
                f"{image.shape[0]}, not {self._declared[1]} x {self._declared[0]} as its video "
                "declares (its stored bytes are damaged)")
        return image

    def close(self) -> None:
        if self._h5 is not None:
            self._h5.close()
            self._h5 = None


def open_reader(plan: InputPlan, video_id: int) -> PyAVReader | SioReader:
    """A reader for one video of the plan (PyAV for plain video files, sleap-io otherwise)."""
    video = plan.videos[video_id]
    if plan.kind == "video":
        return PyAVReader(str(video.filename))
    return SioReader(video)

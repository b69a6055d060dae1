"""Live sources: V4L2 cameras, network streams FFmpeg opens (rtsp, udp, tcp, srt, http with --live)
and a stream on stdin, read frame by frame with each frame's capture and arrival time.

A live source has no frame count and cannot seek: it is planned without probing (opening it
would consume frames) and read once, in order, by :class:`LiveReader` in a thread of its own.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import sleap_io as sio

from sleapflow.errors import ConfigError, VideoDecodeError
from sleapflow.inputs.media_limits import check_frame_size
from sleapflow.inputs.readers import is_grayscale
from sleapflow.inputs.remote import remote_suffix
from sleapflow.logs import get_logger
from sleapflow.messages import InputPlan
from sleapflow.outputs.remote import HTTP_SCHEMES, url_scheme

__all__ = ("LIVE_SCHEMES", "OPEN_TIMEOUT_S", "STREAM_SUFFIXES", "LiveFrame", "LiveReader", "live_kind",
           "live_sources_running", "plan_live", "register_live_source", "stop_live_sources",
           "unregister_live_source")


log = get_logger(__name__)

#: URL schemes that are always streams (FFmpeg's network protocols): never files to download.
LIVE_SCHEMES = ("rtsp", "rtsps", "rtmp", "rtp", "udp", "tcp", "srt")
#: http(s) paths that name streams rather than files (HLS playlists, MJPEG camera feeds);
#: any other http(s) URL is a stream only with ``--live``.
STREAM_SUFFIXES = (".m3u8", ".mjpg", ".mjpeg")
#: How long opening a source may take before it fails (a camera or server that never answers).
OPEN_TIMEOUT_S = 30.0


def live_kind(path: str | None, live: bool | None = None) -> str | None:
    """``"stdin"``, ``"device"`` or ``"stream"`` when ``path`` names a live source, else None.

    ``live`` is ``--live`` (True) / ``--no-live`` (False): either makes an http(s) URL a
    stream (without one such a URL is a video file to download, as before, unless its suffix
    names a stream format)."""
    if not path:
        return None
    if path == "-":
        return "stdin"
    if path.startswith("/dev/video"):
        return "device"
    scheme = url_scheme(path)
    if scheme in LIVE_SCHEMES:
        return "stream"
    if scheme in HTTP_SCHEMES and (live is not None or remote_suffix(path) in STREAM_SUFFIXES):
        return "stream"
    return None


def plan_live(path: str, *, live: bool | None, need_ground_truth: bool = False) -> InputPlan:
    """The plan of a live source: one video (its shape filled in as frames arrive), no items.

    Nothing is opened here: a stream's first frames are not read twice, and a camera is
    opened once, by the source stage."""
    if need_ground_truth:
        raise ConfigError("this model needs ground-truth instances from a .slp input; a live "
                          f"source ({path!r}) has none: pass a centroid model too")
    name = "<stdin>" if path == "-" else path
    video = sio.Video(filename=name, open_backend=False, backend_metadata={
        "type": "MediaVideo", "shape": None, "filename": name, "grayscale": None, "bgr": True,
        "dataset": "", "input_format": "", "fps": None,
    })
    return InputPlan(kind="live", source_path=name, videos=[video], items=[],
                     frame_selection_method="all")


@dataclass(frozen=True)
class LiveFrame:
    """One decoded frame of a live source, with its times (``time.time()`` seconds)."""

    index: int
    image: np.ndarray
    pts: float | None
    capture_time: float
    arrival_time: float


class LiveReader:
    """Opens a live source and yields its frames in arrival order (blocking: run it in a thread).

    Each frame's ``index`` counts from the first frame decoded, by timestamp where the stream
    has timestamps and a frame rate (so frames the network lost leave gaps), else by arrival.
    Capture time is the stream timestamp mapped onto the wall clock by the smallest
    arrival-minus-timestamp seen so far: the fastest frame's transport counts as zero, every
    later delay (network, decoding, a graph that falls behind) is counted in the latency.
    Frames decode to RGB (grayscale as sleap-io decides from the first frame, as files are),
    so a stream's pixels equal those of the same stream read from a file.
    """

    #: Packets in a row that may fail to decode before the stream counts as unreadable.
    MAX_DECODE_ERRORS = 100

    def __init__(self, path: str, *, idle_timeout_s: float = 10.0) -> None:
        self.path = path
        self.kind = live_kind(path, live=True)
        self.idle_timeout_s = idle_timeout_s
        self._container: Any = None
        self.fps: float | None = None
        self.shape: tuple[int, int, int] | None = None
        self.first_pts: float | None = None
        self.frames = 0
        self._offset: float | None = None
        self._last_index = -1
        self._stop = False

    def open(self) -> None:
        import av

        options: dict[str, str] = {}
        fmt = None
        target: Any = self.path
        if self.kind == "device":
            fmt = "v4l2"
        elif self.kind == "stdin":
            target = "pipe:0"
        if url_scheme(self.path) == "udp":
            # A receiver that falls behind keeps the newest datagrams instead of failing.
            options["overrun_nonfatal"] = "1"
        container_options = {"flags": "low_delay",
                             # Frames held back while FFmpeg probes the stream arrive late.
                             "analyzeduration": "200000", "probesize": "32768"}
        try:
            self._container = av.open(target, format=fmt, options={**options, **container_options},
                                      timeout=(OPEN_TIMEOUT_S, self.idle_timeout_s))
            stream = self._container.streams.video[0]
        except (av.error.FFmpegError, IndexError, OSError) as exc:
            self.close()
            raise VideoDecodeError(f"cannot open live source {self.path!r}: {exc}") from exc
        # Slice threads only: frame threading holds a frame back per thread (latency).
        stream.thread_type = "SLICE"
        rate = stream.average_rate or stream.guessed_rate
        self.fps = float(rate) if rate else None
        self._stream = stream
        from av.video.reformatter import VideoReformatter

        self._rgb = VideoReformatter()
        self._grayscale: bool | None = None

    def stop(self) -> None:
        """Ask :meth:`frames` to end after the frame it is on (thread-safe)."""
        self._stop = True

    def _index(self, pts: float | None) -> int:
        if pts is not None and self.fps:
            if self.first_pts is None:
                self.first_pts = pts
            index = round((pts - self.first_pts) * self.fps)
        else:
            index = self._last_index + 1
        # A stream whose timestamps repeat or step back still numbers its frames uniquely.
        index = max(index, self._last_index + 1)
        self._last_index = index
        return index

    def _image(self, frame: Any) -> np.ndarray:
        image = self._rgb.reformat(frame, format="rgb24").to_ndarray()
        if self._grayscale is None:
            check_frame_size(frame.width, frame.height, f"live source {self.path!r}")
            self._grayscale = is_grayscale(image)
            self.shape = (image.shape[0], image.shape[1], 1 if self._grayscale else 3)
        elif (image.shape[0], image.shape[1]) != self.shape[:2]:  # type: ignore[index]
            raise VideoDecodeError(
                f"live source {self.path!r} changed its frame size to {image.shape[1]} x "
                f"{image.shape[0]} from {self.shape[1]} x {self.shape[0]}")  # type: ignore[index]
        return image[..., :1] if self._grayscale else image

    def frames_iter(self) -> Iterator[LiveFrame]:
        """The frames until the stream ends, goes quiet for ``idle_timeout_s`` or is stopped."""
        import av

        assert self._container is not None, "open() first"
        decoded = self._container.decode(self._stream)
        failures = 0
        while not self._stop:
            try:
                frame = next(decoded, None)
            except av.error.ExitError:
                # FFmpeg's read timed out: nothing arrived for idle_timeout_s (UDP never ends
                # otherwise).
                log.info("live source quiet: ended", source=self.path,
                         idle_timeout_s=self.idle_timeout_s)
                return
            except av.error.EOFError:
                return
            except av.error.InvalidDataError as exc:
                # A damaged packet in a stream is skipped, as in files; the stream goes on.
                failures += 1
                if failures > self.MAX_DECODE_ERRORS:
                    raise VideoDecodeError(f"live source {self.path!r}: {failures} packets in a "
                                           f"row failed to decode ({exc})") from exc
                log.warning("live frame failed to decode; skipped", source=self.path, error=str(exc))
                decoded = self._container.decode(self._stream)
                continue
            except av.error.FFmpegError as exc:
                # The connection ended (an HTTP stream's server closed it, a socket error).
                log.info("live source ended", source=self.path, reason=str(exc))
                return
            failures = 0
            if frame is None:
                return
            arrival = time.time()
            pts = float(frame.time) if frame.time is not None else None
            if pts is None:
                capture = arrival
            else:
                offset = arrival - pts
                if self._offset is None or offset < self._offset:
                    self._offset = offset
                capture = pts + self._offset
            image = self._image(frame)
            self.frames += 1
            yield LiveFrame(index=self._index(pts), image=image, pts=pts,
                            capture_time=capture, arrival_time=arrival)

    def close(self) -> None:
        if self._container is not None:
            try:
                self._container.close()
            finally:
                self._container = None


class _Stoppable(Protocol):
    def stop(self) -> None: ...


#: The live sources running in this process: a first Ctrl-C ends their streams (the graph then
#: drains and writes everything) instead of cancelling the run. Kept here, below the stages, so
#: that the command line can reach it without importing a stage.
_ACTIVE: list[_Stoppable] = []


def register_live_source(source: _Stoppable) -> None:
    _ACTIVE.append(source)


def unregister_live_source(source: _Stoppable) -> None:
    _ACTIVE.remove(source)


def live_sources_running() -> bool:
    return bool(_ACTIVE)


def stop_live_sources() -> bool:
    """End every running live source's stream, as at its end; False when none runs. Call it on
    the event loop's thread (the CLI's SIGINT handler schedules it there)."""
    sources = list(_ACTIVE)
    for source in sources:
        source.stop()
    return bool(sources)

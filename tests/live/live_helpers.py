"""Loopback live streams for the live-source tests: an MPEG-TS clip and real-time senders."""

from __future__ import annotations

import contextlib
import http.server
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import numpy as np

#: The part of centered_pair_small.mp4's 384 x 384 frames where its two flies are (rows, columns):
#: a third of the pixels, so the models run three times faster.
FLIES = (slice(96, 288), slice(64, 320))


def write_ts_clip(source: Path, out: Path, n_frames: int, *, fps: int = 30,
                  crop: tuple[slice, slice] = FLIES) -> Path:
    """The first ``n_frames`` of ``source``, cropped, re-encoded as an MPEG-TS clip (mpeg2video,
    low delay, a keyframe every 5 frames so a receiver that joins late locks on fast)."""
    import av

    with av.open(str(source)) as src, av.open(str(out), "w", format="mpegts") as dst:
        stream = dst.add_stream("mpeg2video", rate=fps)
        first = True
        for i, frame in enumerate(src.decode(video=0)):
            if i >= n_frames:
                break
            image = np.ascontiguousarray(frame.to_ndarray(format="rgb24")[crop])
            if first:
                stream.height, stream.width = image.shape[:2]
                stream.pix_fmt = "yuv420p"
                stream.gop_size = 5
                stream.options = {"qscale": "3", "flags": "+low_delay"}
                first = False
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                dst.mux(packet)
        for packet in stream.encode():
            dst.mux(packet)
    return out


def frame_pts(path: Path) -> list[float]:
    """Each decoded frame's timestamp in seconds, in frame order (as a file reader numbers them)."""
    import av

    with av.open(str(path)) as c:
        return [float(f.time) for f in c.decode(video=0)]


#: A low-delay sender: each packet flushed as it is muxed, so no frame's tail waits in the
#: output buffer for the next frame, and video PES packets carry their length, so that the
#: receiver's demuxer lets a frame go when it is complete, not when the next one starts.
LOW_DELAY_MUX = {"flush_packets": "1", "omit_video_pes_length": "0"}


def stream_packets(path: Path, target: str | IO[bytes], *, speed: float = 1.0,
                   stop: threading.Event | None = None, loops: int = 1,
                   log: list[tuple[float, float, float]] | None = None) -> int:
    """Remux ``path``'s packets (no re-encoding) to ``target`` as MPEG-TS at ``speed`` x real
    time, ``loops`` times over with timestamps running on; returns the packets sent. ``target``
    is a URL or a writable binary file. ``log`` gets, per packet, its pts (s, as sent), when it
    was due and when it was really sent (``time.time()``): a late sender is told apart from a
    slow receiver. The muxer is set for low delay (:data:`LOW_DELAY_MUX`)."""
    import av

    sent = 0
    with av.open(target, "w", format="mpegts", options=LOW_DELAY_MUX) as out:
        ost = None
        start = time.monotonic()
        wall_start = time.time()
        shift = 0  # in the stream's time base: each loop carries on where the last one ended
        origin = None
        for _ in range(loops):
            with av.open(str(path)) as src:
                ins = src.streams.video[0]
                if ost is None:
                    ost = out.add_stream_from_template(ins)
                step = round(1 / (float(ins.average_rate or 30) * ins.time_base))
                last = 0
                for packet in src.demux(ins):
                    if packet.dts is None:
                        continue
                    packet.dts += shift
                    packet.pts = None if packet.pts is None else packet.pts + shift
                    last = max(last, packet.pts or packet.dts)
                    origin = packet.dts if origin is None else origin
                    due = start + float((packet.dts - origin) * ins.time_base) / speed
                    delay = due - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
                    if stop is not None and stop.is_set():
                        return sent
                    packet.stream = ost
                    out.mux(packet)
                    sent += 1
                    if log is not None and packet.pts is not None:
                        log.append((float(packet.pts * ins.time_base),
                                    wall_start + (due - start), time.time()))
                shift = last + step
    return sent


def udp_bound(port: int) -> bool:
    """Whether a socket on this machine listens on UDP ``port`` (read from /proc: no probing)."""
    want = f":{port:04X}"
    for table in ("/proc/net/udp", "/proc/net/udp6"):
        with contextlib.suppress(OSError), open(table) as f:
            next(f)
            if any(line.split()[1].endswith(want) for line in f):
                return True
    return False


def wait_udp_bound(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not udp_bound(port):
        if time.monotonic() > deadline:
            raise TimeoutError(f"nothing listens on udp port {port}")
        time.sleep(0.01)


def free_port(kind: int = socket.SOCK_DGRAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def http_stream(path: Path, *, speed: float = 1.0) -> Iterator[str]:
    """A local HTTP server whose one URL streams ``path`` as MPEG-TS in real time, with no
    length (a live stream, not a file)."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "video/mp2t")
            self.end_headers()
            with contextlib.suppress(OSError):
                stream_packets(path, self.wfile, speed=speed)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/live"
    finally:
        server.shutdown()
        server.server_close()


def nan_equal(a: Any, b: Any) -> bool:
    return bool(np.array_equal(np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64),
                               equal_nan=True))


#: Frames in the shared test clip (the ``clip`` fixture in this folder's conftest.py).
CLIP_FRAMES = 12


def feed_stdin(clip: Path, pipe: IO[bytes], stop: threading.Event, loops: int) -> None:
    """Stream ``clip`` into a run's stdin ``loops`` times over in real time, until ``stop``.
    The run going away mid-stream (a broken pipe, in PyAV's words) ends the feed quietly."""
    with contextlib.suppress(Exception):
        stream_packets(clip, pipe, stop=stop, loops=loops)


@contextlib.contextmanager
def stdin_stream_run(args: list[str], clip: Path, loops: int) -> Iterator[subprocess.Popen[bytes]]:
    """``python -m sleapflow ARGS`` in a child process with ``clip`` streamed into its stdin
    ``loops`` times over; the child is killed and the feed stopped on the way out."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2]),
           "OMP_NUM_THREADS": "1"}
    stop = threading.Event()
    with subprocess.Popen([sys.executable, "-m", "sleapflow", *args], stdin=subprocess.PIPE,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env) as proc:
        assert proc.stdin is not None
        feeder = threading.Thread(target=feed_stdin, args=(clip, proc.stdin, stop, loops),
                                  daemon=True)
        feeder.start()
        try:
            yield proc
        finally:
            stop.set()
            proc.kill()
            feeder.join(10)
            with contextlib.suppress(BrokenPipeError):
                proc.stdin.close()

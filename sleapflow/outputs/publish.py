"""``--publish``: each frame's poses (and tracks) sent as they are made, as one JSON message per
frame, to NDJSON lines on stdout and/or a ZeroMQ PUB socket (the format: docs/LIVE.md)."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Sequence
from typing import Any, TextIO

import msgspec
import numpy as np

from sleapflow.errors import ConfigError
from sleapflow.messages import FramePrediction

__all__ = ("MESSAGE_VERSION", "Publisher", "check_targets", "end_message", "frame_message",
           "open_publisher")

#: Bumped when a field of the messages changes meaning or goes away (new fields do not bump it).
MESSAGE_VERSION = 1
_STDOUT = ("-", "ndjson:-")
_ZMQ_SCHEMES = ("tcp://", "ipc://", "inproc://")
_INSTALL = 'install the live extra: python -m pip install "sleapflow[live]"'


def check_targets(targets: Sequence[str]) -> tuple[str, ...]:
    """``--publish`` values checked before the run: ``-``/``ndjson:-`` or a ZeroMQ address, with
    pyzmq installed for the latter."""
    seen: list[str] = []
    for target in targets:
        if target in _STDOUT:
            target = "-"
        elif target.startswith("zmq+"):
            target = target.removeprefix("zmq+")
        if target != "-" and not target.startswith(_ZMQ_SCHEMES):
            raise ConfigError(f"--publish {target!r}: give - (NDJSON lines on stdout) or a ZeroMQ "
                              "address such as tcp://127.0.0.1:5555")
        if target != "-":
            try:
                import zmq  # noqa: F401
            except ImportError:
                raise ConfigError(f"--publish {target!r} needs pyzmq: {_INSTALL}") from None
        if target in seen:
            raise ConfigError(f"--publish {target!r} is given twice")
        seen.append(target)
    return tuple(seen)


def _points(a: Any) -> list[Any]:
    """An array as nested lists, NaN as null."""
    arr = np.asarray(a, dtype=np.float64)
    return np.where(np.isnan(arr), None, arr).tolist()  # type: ignore[call-overload, no-any-return]


def frame_message(pred: FramePrediction, *, source: str, nodes: Sequence[str]) -> dict[str, Any]:
    """One frame's message: its identity and times, and each instance's points and scores."""
    n = pred.n_instances
    tracks = pred.track_names or (None,) * n
    tscores = pred.tracking_scores
    instances = []
    scores = np.asarray(pred.instance_scores, dtype=np.float64) if n else None
    for i in range(n):
        instances.append({
            "track": tracks[i],
            "score": None if scores is None or np.isnan(scores[i]) else float(scores[i]),
            "tracking_score": None if tscores is None or np.isnan(tscores[i])
            else float(tscores[i]),
            "points": _points(pred.points[i]),
            "point_scores": _points(pred.point_scores[i]),
        })
    latency = (None if pred.result_time is None or pred.capture_time is None
               else round((pred.result_time - pred.capture_time) * 1000.0, 3))
    return {"type": "poses", "v": MESSAGE_VERSION, "source": source, "seq": pred.seq,
            "frame_idx": pred.frame_idx, "pts": pred.pts, "capture_time": pred.capture_time,
            "arrival_time": pred.arrival_time, "result_time": pred.result_time,
            "latency_ms": latency, "nodes": list(nodes), "instances": instances}


def end_message(*, source: str, frames: int, dropped: int, stale: int = 0) -> dict[str, Any]:
    """The last message of a run: how many frames were published and dropped (``stale``:
    dropped while the graph warmed up, apart)."""
    return {"type": "end", "v": MESSAGE_VERSION, "source": source, "frames": frames,
            "dropped": dropped, "stale": stale}


class Publisher:
    """Sends each message to every target: a line of JSON on stdout, a ZeroMQ PUB message.

    A PUB socket never blocks the run: a subscriber that is slow or absent misses messages
    (ZeroMQ's high-water mark), as closed-loop consumers expect."""

    def __init__(self, targets: Sequence[str], *, stdout: TextIO | None = None) -> None:
        self.targets = tuple(targets)
        self._stdout = stdout if stdout is not None else sys.stdout
        self._ndjson = "-" in self.targets
        self._sockets: list[Any] = []
        self._context: Any = None
        self._encoder = msgspec.json.Encoder()
        zmq_targets = [t for t in self.targets if t != "-"]
        if zmq_targets:
            import zmq

            self._context = zmq.Context()
            try:
                for address in zmq_targets:
                    sock = self._context.socket(zmq.PUB)
                    sock.setsockopt(zmq.LINGER, 1000)
                    self._sockets.append(sock)
                    try:
                        sock.bind(address)
                    except zmq.ZMQError as exc:
                        raise ConfigError(f"--publish {address!r} cannot be bound: {exc}") from exc
            except BaseException:
                self.close()
                raise

    def send(self, message: dict[str, Any]) -> None:
        data = self._encoder.encode(message)
        if self._ndjson:
            self._stdout.write(data.decode() + "\n")
            self._stdout.flush()
        if self._sockets:
            import zmq

            for sock in self._sockets:
                # No room for a slow subscriber: it misses this frame, the run goes on.
                with contextlib.suppress(zmq.Again):
                    sock.send(data, zmq.NOBLOCK)

    def close(self) -> None:
        for sock in self._sockets:
            sock.close()
        self._sockets = []
        if self._context is not None:
            self._context.term()
            self._context = None


def open_publisher(targets: Sequence[str]) -> Publisher | None:
    """A publisher for ``targets`` (None when there are none)."""
    return Publisher(check_targets(targets)) if targets else None

"""Public test doubles: list source and sink, a fake clock, a synthetic video and a serial runner."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import anyio
import numpy as np
from anyio.abc import TaskStatus

from sleapflow.runtime.adapters import CollectSink
from sleapflow.runtime.graph import Role
from sleapflow.runtime.serial import run_serial


class ListSource:
    """Emits the given items in order, then closes its outbox."""

    role: Role = "source"
    preserves_order = True
    requires_order = False
    restores_order = False

    def __init__(self, items: Iterable[Any], name: str = "source") -> None:
        self.name = name
        self.items = list(items)
        self.sent = 0

    async def run(self, inbox: None, outbox: Any, *,
                  task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        async with outbox:
            task_status.started()
            for item in self.items:
                await outbox.send(item)
                self.sent += 1


__all__ = ["FakeClock", "ListSink", "ListSource", "run_serial", "write_synthetic_video"]

#: Collects every item it receives; an optional ``limit`` makes it leave early.
ListSink = CollectSink


class FakeClock:
    """A clock that only moves when told to, so metrics can be asserted exactly."""

    def __init__(self, start: float = 0.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def write_synthetic_video(path: str | Path, n_frames: int = 32, height: int = 64,
                          width: int = 96, *, color: bool = False, fps: int = 25,
                          codec: str = "mpeg4", seed: int = 0) -> Path:
    """Write a small video of moving blobs with PyAV and return its path."""
    import av

    path = Path(path)
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    centers = rng.uniform([10, 10], [height - 10, width - 10], size=(2, 2))
    velocity = rng.uniform(-1.5, 1.5, size=(2, 2))
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width = width
        stream.height = height
        stream.pix_fmt = "yuv420p"
        stream.options = {"qscale": "2"} if codec == "mpeg4" else {}
        for i in range(n_frames):
            img = np.full((height, width), 20.0)
            for c, v in zip(centers, velocity):
                cy, cx = c + v * i
                img += 200.0 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * 4.0**2))
            frame_u8 = np.clip(img, 0, 255).astype(np.uint8)
            rgb = np.stack([frame_u8] * 3, axis=-1)
            if color:
                rgb[..., 0] = np.clip(img * 0.8, 0, 255).astype(np.uint8)
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path

"""Public test doubles: list source and sink, a fake clock, a synthetic video and a serial runner."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import anyio
import numpy as np
from anyio.abc import TaskStatus

from sleapflow.runtime.adapters import BatchStage, MapStage, ReorderStage
from sleapflow.runtime.graph import Role


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


class ListSink:
    """Collects every item it receives; an optional ``limit`` makes it leave early."""

    role: Role = "sink"
    preserves_order = True
    requires_order = True
    restores_order = False

    def __init__(self, name: str = "sink", *, limit: int | None = None,
                 on_item: Callable[[Any], Any] | None = None) -> None:
        self.name = name
        self.items: list[Any] = []
        self.limit = limit
        self.on_item = on_item

    async def run(self, inbox: Any, outbox: None, *,
                  task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        async with inbox:
            task_status.started()
            async for item in inbox:
                if self.on_item is not None:
                    await self.on_item(item)
                self.items.append(item)
                if self.limit is not None and len(self.items) >= self.limit:
                    return


class FakeClock:
    """A clock that only moves when told to, so metrics can be asserted exactly."""

    def __init__(self, start: float = 0.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def run_serial(items: Sequence[Any], stages: Sequence[Any]) -> list[Any]:
    """The plain loop a graph must be equivalent to: apply each adapter's work in order."""
    current = list(items)
    for stage in stages:
        if isinstance(stage, MapStage):
            out: list[Any] = []
            for item in current:
                result = stage.fn(item)
                if stage.flatten:
                    out.extend(result)
                else:
                    out.append(result)
            current = out
        elif isinstance(stage, BatchStage):
            batches: list[Any] = []
            pending: list[Any] = []
            weight = 0
            pending_key = None
            for item in current:
                key = stage.key(item) if stage.key else None
                if pending and key != pending_key:
                    batches.append(pending)
                    pending, weight = [], 0
                pending_key = key
                pending.append(item)
                weight += stage.weight(item) if stage.weight else 1
                if weight >= stage.size:
                    batches.append(pending)
                    pending, weight = [], 0
            if pending:
                batches.append(pending)
            current = [stage.make_batch(i, b) if stage.make_batch else b
                       for i, b in enumerate(batches)]
        elif isinstance(stage, ReorderStage):
            current = sorted(current, key=stage.seq_of)
        else:
            raise TypeError(f"run_serial cannot run {type(stage).__name__}")
    return current


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


def write_gray_h264(path: str | Path, n_frames: int = 300, size: int = 1024, *, fps: int = 30,
                    gop: int = 30, preset: str = "ultrafast") -> Path:
    """A grayscale H.264 clip (yuv420p, B-frames, keyframe every ``gop``) for decode benchmarks.

    Cheap to make at 1024x1024: textured noise scrolling under two moving bright squares, so
    frames differ everywhere and the encoder has real motion to code.
    """
    import av

    path = Path(path)
    rng = np.random.default_rng(0)
    texture = rng.integers(30, 90, size=(size, 2 * size), dtype=np.uint8)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        stream.options = {"preset": preset, "bf": "2", "keyint": str(gop), "crf": "18"}
        for i in range(n_frames):
            shift = (3 * i) % size
            img = texture[:, shift:shift + size].copy()
            for k, speed in enumerate((5, 7)):
                y = (40 + speed * i) % (size - 64)
                x = (size // 3 * (k + 1) + 3 * i) % (size - 64)
                img[y:y + 64, x:x + 64] = 220
            rgb = np.repeat(img[..., None], 3, axis=-1)
            for packet in stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path

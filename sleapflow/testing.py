"""Public test doubles: list source and sink, a fake clock, the serial runner, a log capture, and
synthetic inputs (a video of moving blobs, a sleap-nn model folder with random weights)."""

from __future__ import annotations

import contextlib
import itertools
import logging
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import anyio
import numpy as np
from anyio.abc import TaskStatus

from sleapflow.logs import fields_of
from sleapflow.runtime.adapters import CollectSink
from sleapflow.runtime.graph import Role
from sleapflow.runtime.serial import run_serial


class _FieldsHandler(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.entries: list[Mapping[str, Any]] = []

    def emit(self, record: logging.LogRecord) -> None:
        fields = fields_of(record)
        self.entries.append(fields or {"event": record.getMessage(),
                                       "log_level": record.levelname.lower()})


@contextlib.contextmanager
def captured_logs(logger: str = "sleapflow") -> Iterator[list[Mapping[str, Any]]]:
    """Every record sleapflow logs inside the block, at any level, as its structured fields
    (``event``, ``log_level`` and the key-values), whatever logging is configured to show."""
    target = logging.getLogger(logger)
    handler = _FieldsHandler()
    previous = target.level
    target.addHandler(handler)
    target.setLevel(logging.DEBUG)
    try:
        yield handler.entries
    finally:
        target.removeHandler(handler)
        target.setLevel(previous)


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


__all__ = (
    "SYNTHETIC_GRAPHS", "FakeClock", "ListSink", "ListSource", "captured_logs", "run_serial",
    "write_default_clip", "write_gray_h264", "write_synthetic_model", "write_synthetic_video",
)

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


#: Graphs the embedded default can generate a model for.
SYNTHETIC_GRAPHS = ("single_instance",)

#: The default synthetic clip: the size of the reference's small_robot.mp4.
DEFAULT_HEIGHT, DEFAULT_WIDTH = 320, 560


def _training_config(model_type: str, *, nodes: list[str], filters: int, filters_rate: float,
                     max_stride: int, output_stride: int, in_channels: int, scale: float) -> dict:
    """The parts of a sleap-nn ``training_config.yaml`` that decide inference (others omitted)."""
    if model_type != "single_instance":
        raise ValueError(f"no synthetic model for {model_type!r}; have {SYNTHETIC_GRAPHS}")
    edges = [{"source": {"name": a}, "destination": {"name": b}} for a, b in itertools.pairwise(nodes)]
    return {
        "data_config": {
            "preprocessing": {"ensure_rgb": False, "ensure_grayscale": False, "max_height": None,
                              "max_width": None, "scale": scale, "crop_size": None},
            "skeletons": [{"name": "synthetic", "nodes": [{"name": n} for n in nodes],
                           "edges": edges, "symmetries": []}],
        },
        "model_config": {
            "backbone_config": {
                "unet": {"in_channels": in_channels, "kernel_size": 3, "filters": filters,
                         "filters_rate": filters_rate, "max_stride": max_stride,
                         "stem_stride": None, "middle_block": True, "up_interpolate": True,
                         "stacks": 1, "convs_per_block": 2, "output_stride": output_stride},
                "convnext": None,
                "swint": None,
            },
            "head_configs": {
                "single_instance": {"confmaps": {"part_names": nodes, "sigma": 2.5,
                                                 "output_stride": output_stride}},
                "centroid": None, "centered_instance": None, "bottomup": None,
                "multi_class_bottomup": None, "multi_class_topdown": None,
            },
        },
        "sleap_nn_version": "0.3.5",
        "description": "sleapflow bench: synthetic model with random weights",
    }


def write_synthetic_model(folder: str | Path, model_type: str = "single_instance", *,
                          n_nodes: int = 8, filters: int = 32, filters_rate: float = 1.5,
                          max_stride: int = 16, output_stride: int = 2, in_channels: int = 1,
                          scale: float = 0.5, seed: int = 0) -> Path:
    """Write ``training_config.yaml`` + ``best.ckpt`` (random weights) for a realistic UNet.

    The checkpoint is a plain ``{"state_dict": {"model.<key>": tensor}}`` pickle, the layout of
    a Lightning ``best.ckpt`` that the restricted unpickler reads. The head's bias is raised so
    every part has a peak above the default threshold: the post-processing and writing costs
    are then those of a real run, not of empty frames.
    """
    import torch
    import yaml

    from sleapflow.models import read_model_config
    from sleapflow.models.network import PoseNetwork

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    nodes = [f"node{i}" for i in range(n_nodes)]
    config = _training_config(model_type, nodes=nodes, filters=filters, filters_rate=filters_rate,
                              max_stride=max_stride, output_stride=output_stride,
                              in_channels=in_channels, scale=scale)
    (folder / "training_config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    # read_model_config needs both files present; a placeholder checkpoint is replaced below.
    (folder / "best.ckpt").write_bytes(b"")
    torch.manual_seed(seed)
    net = PoseNetwork(read_model_config(folder))
    state = net.state_dict()
    with torch.no_grad():
        for key, value in state.items():
            if key.startswith("head_layers.") and key.endswith(".bias"):
                value.fill_(0.5)
    torch.save({"state_dict": {f"model.{k}": v.clone() for k, v in state.items()}},
               folder / "best.ckpt")
    return folder


def write_default_clip(path: str | Path, n_frames: int, *, height: int = DEFAULT_HEIGHT,
                       width: int = DEFAULT_WIDTH) -> Path:
    return write_synthetic_video(path, n_frames=n_frames, height=height, width=width)


def write_gray_h264(path: str | Path, n_frames: int = 300, size: int = 1024, *, fps: int = 30,
                    gop: int = 30, preset: str = "ultrafast", colour: bool = False) -> Path:
    """A grayscale H.264 clip (yuv420p, B-frames, keyframe every ``gop``) for decode benchmarks.

    Cheap to make at 1024x1024: textured noise scrolling under two moving bright squares, so
    frames differ everywhere and the encoder has real motion to code. ``colour`` tints the
    channels apart (same content), so readers take their colour path instead of the gray one.
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
            if colour:
                rgb = (rgb * np.array([1.0, 0.8, 0.55])).astype(np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path

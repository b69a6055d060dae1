"""Public test doubles: list source and sink, a fake clock, the serial runner, a log capture, a
stage conformance check, and synthetic inputs (a video of moving blobs, a sleap-nn model folder
with random weights)."""

from __future__ import annotations

import contextlib
import inspect
import itertools
import logging
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import anyio
import numpy as np
from anyio.abc import TaskStatus

from sleapflow.logs import fields_of
from sleapflow.runtime.adapters import CollectSink
from sleapflow.runtime.graph import Role, chain
from sleapflow.runtime.runner import run_graph
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
    "SYNTHETIC_GRAPHS", "FakeClock", "ListSink", "ListSource", "StageCheckFailed", "StageCheckFault",
    "captured_logs", "check_stage", "run_serial", "write_default_clip", "write_gray_h264",
    "write_synthetic_model", "write_synthetic_video",
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


# --------------------------------------------------------------------------------------------
# Stage conformance
# --------------------------------------------------------------------------------------------

_ROLES = ("source", "stage", "sink")
_FLAGS = ("preserves_order", "requires_order", "restores_order")
#: Stream errors that are a quiet stop, not a failure.
_QUIET = (anyio.BrokenResourceError, anyio.ClosedResourceError)


class StageCheckFault(Exception):
    """The error :func:`check_stage` injects into a stage's stream: it must come out of the run."""


class StageCheckFailed(AssertionError):
    """A stage broke a house rule; the message lists every rule it broke."""


class _Probe:
    """What a stage did with the task status and the streams check_stage handed it."""

    def __init__(self, fault: str | None) -> None:
        #: ``"send"`` / ``"receive"``: the stage's first send / receive raises StageCheckFault.
        self.fault = fault
        self.started = 0
        self.early_traffic = False
        self.inbox_ended = False
        self.broken = False
        self.after_broken = 0
        self.handles: list[Any] = []
        self.raised: BaseException | None = None
        self.left_open: list[str] = []

    def traffic(self) -> None:
        if self.started == 0:
            self.early_traffic = True
        if self.broken:
            self.after_broken += 1


class _ProbeStatus:
    def __init__(self, inner: TaskStatus[None], probe: _Probe) -> None:
        self._inner = inner
        self._probe = probe

    def started(self, value: None = None) -> None:
        self._probe.started += 1
        if self._probe.started == 1:  # a second call is reported, not passed on to the runner
            self._inner.started(value)


class _ProbeReceive:
    def __init__(self, inner: Any, probe: _Probe) -> None:
        self._inner = inner
        self._probe = probe
        self.closed = False
        probe.handles.append(self)

    async def receive(self) -> Any:
        probe = self._probe
        probe.traffic()
        if probe.fault == "receive":
            raise StageCheckFault("check_stage: the inbox failed")
        try:
            return await self._inner.receive()
        except anyio.EndOfStream:
            probe.inbox_ended = True
            raise

    def __aiter__(self) -> _ProbeReceive:
        return self

    async def __anext__(self) -> Any:
        try:
            return await self.receive()
        except anyio.EndOfStream:
            raise StopAsyncIteration from None

    def clone(self) -> _ProbeReceive:
        return _ProbeReceive(self._inner.clone(), self._probe)

    def close(self) -> None:
        self.closed = True
        self._inner.close()

    async def aclose(self) -> None:
        self.close()

    async def __aenter__(self) -> _ProbeReceive:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()


class _ProbeSend:
    def __init__(self, inner: Any, probe: _Probe) -> None:
        self._inner = inner
        self._probe = probe
        self.closed = False
        probe.handles.append(self)

    async def send(self, item: Any) -> None:
        probe = self._probe
        probe.traffic()
        if probe.fault == "send":
            raise StageCheckFault("check_stage: the outbox failed")
        try:
            await self._inner.send(item)
        except _QUIET:
            probe.broken = True
            raise

    def clone(self) -> _ProbeSend:
        return _ProbeSend(self._inner.clone(), self._probe)

    def close(self) -> None:
        self.closed = True
        self._inner.close()

    async def aclose(self) -> None:
        self.close()

    async def __aenter__(self) -> _ProbeSend:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()


class _Probed:
    """The stage as the runner sees it, with its task status and streams watched."""

    def __init__(self, stage: Any, probe: _Probe) -> None:
        self.stage = stage
        self.probe = probe
        self.name = stage.name
        self.role = stage.role
        self.preserves_order = stage.preserves_order
        self.requires_order = stage.requires_order
        self.restores_order = stage.restores_order
        self.emits = getattr(stage, "emits", None)

    async def run(self, inbox: Any, outbox: Any, *,
                  task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        probe = self.probe
        inbox = None if inbox is None else _ProbeReceive(inbox, probe)
        outbox = None if outbox is None else _ProbeSend(outbox, probe)
        try:
            await self.stage.run(inbox, outbox, task_status=_ProbeStatus(task_status, probe))
        except BaseException as exc:
            probe.raised = exc
            raise
        finally:
            probe.left_open = [("inbox" if isinstance(h, _ProbeReceive) else "outbox")
                               for h in probe.handles if not h.closed]


class _LeavingSink:
    """A consumer that stops before taking anything."""

    role: Role = "sink"
    preserves_order = True
    requires_order = False
    restores_order = False

    def __init__(self, name: str) -> None:
        self.name = name

    async def run(self, inbox: Any, outbox: None, *,
                  task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        async with inbox:
            task_status.started()


def _is_map_node(stage: Any) -> bool:
    return callable(getattr(stage, "apply", None)) and callable(getattr(stage, "open", None))


def _declaration_faults(stage: Any) -> list[str]:
    faults = []
    name = getattr(stage, "name", None)
    if not isinstance(name, str) or not name:
        faults.append(f"its name is {name!r}, not a non-empty string")
    role = getattr(stage, "role", None)
    if role not in _ROLES:
        faults.append(f"its role is {role!r}, not one of {_ROLES}")
    for flag in _FLAGS:
        if not isinstance(getattr(stage, flag, None), bool):
            faults.append(f"it does not declare {flag} as a bool")
    if getattr(stage, "restores_order", False) and not getattr(stage, "preserves_order", True):
        faults.append("it restores order but does not preserve it")
    if getattr(stage, "emits", None) not in (None, "items", "batches"):
        faults.append(f"it emits {stage.emits!r}, not 'items' or 'batches'")
    if _is_map_node(stage):
        if role != "stage":
            faults.append(f"a map node must have the role 'stage', not {role!r}")
    else:
        run = getattr(stage, "run", None)
        if not inspect.iscoroutinefunction(run):
            faults.append("it has neither an async run() nor a map node's open()/apply()")
        elif "task_status" not in inspect.signature(run).parameters:
            faults.append("its run() takes no task_status")
    return faults


def _chain_has(exc: BaseException | None, kind: type[BaseException]) -> bool:
    seen: set[int] = set()
    todo = [exc]
    while todo:
        current = todo.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, kind):
            return True
        if isinstance(current, BaseExceptionGroup):
            todo.extend(current.exceptions)
        todo.extend([current.__cause__, current.__context__])
    return False


async def check_stage(stage: Any, items: Iterable[Any] = (), *,
                      rebuild: Callable[[], Any] | None = None, bad_item: Any = None,
                      timeout: float = 60.0) -> list[Any]:
    """Run ``stage`` (a source, a stage or a sink, as the runner sees it: a map node or an
    object with its own ``run()``) alone between a list source and a list sink, through the
    runner, and check the house rules; return what it emitted on the normal run.

    The rules: it declares a name, a role and its order flags (``preserves_order``,
    ``requires_order``, ``restores_order``); it calls ``task_status.started()`` exactly once,
    before it touches a stream; it consumes its inbox to the end and closes its streams itself
    on the normal path; an error on its streams (:class:`StageCheckFault`, injected on its first
    send and on its first receive) comes out of the run, and it still closes its streams; when
    its consumer stops early it stops quietly (no error, no further receive or send, streams
    closed) without hanging. A map node's loop is the runner's own, so for it the checks are
    the declaration, the normal run, the early stop and ``bad_item``. With ``bad_item`` (an
    item it must reject, e.g. ``object()``), that item after ``items`` must fail the run.

    Every run is bounded by ``timeout`` seconds (a hang fails the check). ``rebuild`` makes a
    fresh copy of the stage for each run after the first (a stage that keeps state or writes a
    file); without it the same object runs again. Every broken rule is listed in the
    :class:`StageCheckFailed` raised.
    """
    samples = list(items)
    faults = [f"declaration: {f}" for f in _declaration_faults(stage)]
    if faults:
        raise StageCheckFailed(f"check_stage({getattr(stage, 'name', stage)!r}):\n  "
                               + "\n  ".join(faults))
    role = stage.role
    has_inbox, has_outbox = role != "source", role != "sink"
    map_node = _is_map_node(stage)
    first = [True]

    def fresh() -> Any:
        if first[0] or rebuild is None:
            first[0] = False
            return stage
        return rebuild()

    async def attempt(scenario: str, feed: list[Any] | None, *, leave: bool = False,
                      fault: str | None = None) -> tuple[_Probe, list[Any], BaseException | None,
                                                         ListSource | None]:
        node = fresh()
        probe = _Probe(fault)
        under = node if map_node else _Probed(node, probe)
        source = ListSource(feed or [], name="check_stage.source") if has_inbox else None
        sink: Any = None
        if has_outbox:
            sink = (_LeavingSink("check_stage.sink") if leave else
                    CollectSink("check_stage.sink"))
            sink.requires_order = False  # an unordered stage may feed it
        spec = chain(f"check_{scenario}", [s for s in (source, under, sink) if s is not None], 1)
        error: BaseException | None = None
        try:
            with anyio.fail_after(timeout):
                await run_graph(spec)
        except TimeoutError:
            faults.append(f"{scenario}: the run did not end within {timeout:g} s (a hang)")
        except Exception as exc:
            error = exc
        emitted = list(sink.items) if isinstance(sink, CollectSink) else []
        if not map_node:
            if probe.started != 1:
                faults.append(f"{scenario}: task_status.started() was called {probe.started} "
                              "times, not once")
            if probe.early_traffic:
                faults.append(f"{scenario}: it used a stream before calling started()")
            if probe.left_open:
                faults.append(f"{scenario}: it returned with its {', '.join(probe.left_open)} "
                              "still open")
        return probe, emitted, error, source

    # The normal path: every item in, the stream's end flushes, both streams closed.
    probe, emitted, error, source = await attempt("normal", samples)
    if error is not None:
        faults.append(f"normal: the run failed: {error!r}")
    if source is not None and source.sent != len(samples):
        faults.append(f"normal: it took {source.sent} of {len(samples)} items")
    if has_inbox and not map_node and not probe.inbox_ended and error is None:
        faults.append("normal: it returned before its inbox ended")

    # An error on its streams comes out of the run, and the streams are still closed.
    if not map_node:
        where = []
        if has_outbox and emitted:  # a stage that sends nothing has no send to fail
            where.append("send")
        if has_inbox:
            where.append("receive")
        for fault in where:
            probe, _, error, _ = await attempt(f"{fault}_error", samples, fault=fault)
            if not _chain_has(error, StageCheckFault):
                faults.append(f"{fault}_error: an error on its {fault} did not come out of the run "
                              f"(the run ended with {error!r})")

    # A bad item fails the run.
    if bad_item is not None and has_inbox:
        _, _, error, _ = await attempt("bad_item", [*samples, bad_item])
        if error is None:
            faults.append("bad_item: the bad item did not fail the run")

    # The consumer leaves at once: a quiet stop, nothing taken or sent after it, no hang.
    if has_outbox:
        probe, _, error, _ = await attempt("early_stop", samples, leave=True)
        if error is not None:
            faults.append(f"early_stop: the consumer leaving failed the run: {error!r}")
        if not map_node:
            if probe.after_broken:
                faults.append(f"early_stop: it went on ({probe.after_broken} receive/send calls) "
                              "after its outbox broke")
            if probe.raised is not None and not isinstance(probe.raised, _QUIET):
                faults.append(f"early_stop: it raised {probe.raised!r} instead of stopping quietly")

    if faults:
        raise StageCheckFailed(f"check_stage({stage.name!r}):\n  " + "\n  ".join(faults))
    return emitted

"""The async API for services: open a graph as an async context manager and iterate its results.

::

    async with open_graph(model_paths=["models/single_instance"], device="cpu") as graph:
        async with anyio.create_task_group() as tg:
            tg.start_soon(feed, graph)          # await graph.push(image, frame_idx=i) ...
            async for pred in graph:            # FramePrediction per frame, in push order
                ...

Frames come from a file (``source=path``, decoded by the same decode stage as the CLI) or are
pushed by the caller (``await graph.push(image)``; ``await graph.close_input()`` ends the
stream). ``push`` waits while the graph's bounded queues are full, so a fast producer is held to
the pace of the slowest stage and memory stays flat. Results come out in input order, one
:class:`~sleapflow.messages.FramePrediction` per frame (frames without detections included).

The graph is the job ``sleapflow track`` plans (:func:`sleapflow.jobs.job.plan_job`, its graph from
:func:`~sleapflow.jobs.job.job_spec`), opened by :func:`sleapflow.runtime.running_graph` instead
of run to its end; only the source and the sink differ. That context
manager owns the task group the graph runs in: leaving the block early is a clean stop
(no more input, results no longer wanted: the runner's quiet-stop path), nothing outlives the
block, and a failing stage comes out of the block as one :class:`~sleapflow.errors.StageError`.
Several graphs can run at once in one event loop, each in its own ``async with``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import AsyncExitStack
from datetime import datetime
from types import TracebackType
from typing import Any

import anyio
import msgspec
import numpy as np
import sleap_io as sio
from anyio import BrokenResourceError, ClosedResourceError, EndOfStream
from anyio.abc import TaskStatus
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from sleapflow.errors import ConfigError, SleapflowError
from sleapflow.graphs.build import PreparedRun, make_source, run_provenance
from sleapflow.inputs import InputPlan
from sleapflow.jobs.job import Job, job_spec, plan_job
from sleapflow.messages import Frame, FramePrediction
from sleapflow.options.boundary import build_config
from sleapflow.options.config import InferenceConfig
from sleapflow.options.declared import front_options
from sleapflow.runtime import GraphRunner, GraphSpec, GraphStats, RunningGraph, running_graph
from sleapflow.runtime.graph import Role
from sleapflow.runtime.latency import LatencyFigures, LatencyMeter

__all__ = ("GraphSession", "NamedGraphSession", "PushSource", "ResultSink", "SpecFactory",
           "open_custom_graph", "open_graph")

#: A pushed frame on its way to the source stage: (image, frame_idx, video_id, capture_time).
_Pushed = tuple[np.ndarray, int, int, float | None]


class PushSource:
    """The source of a pushed-frames graph: forwards what the caller pushes as ``Frame``s.

    The caller's channel is unbuffered, so ``push`` returns only once this stage has taken the
    frame, and this stage waits on its bounded outbox: a full graph holds the caller.
    """

    role: Role = "source"
    preserves_order = True
    requires_order = False
    restores_order = False

    def __init__(self, frames: MemoryObjectReceiveStream[_Pushed], *, name: str = "push") -> None:
        self.name = name
        self._frames = frames
        self.sent = 0

    async def run(self, inbox: None, outbox: Any, *,
                  task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        async with outbox, self._frames:
            task_status.started()
            async for image, frame_idx, video_id, capture_time in self._frames:
                # A frame pushed with its capture time is timed through the graph (latency).
                arrival = None if capture_time is None else time.time()
                await outbox.send(Frame(seq=self.sent, video_id=video_id, frame_idx=frame_idx,
                                        image=image, capture_time=capture_time,
                                        arrival_time=arrival))
                self.sent += 1


class ResultSink:
    """The sink of a session: hands each result to the caller's ``async for``.

    When the caller stops listening (leaves the block), the hand-over raises
    ``BrokenResourceError``, which the runner treats as a quiet stop that cascades upstream.
    """

    role: Role = "sink"
    preserves_order = True
    requires_order = True
    restores_order = False

    def __init__(self, results: MemoryObjectSendStream[Any], *, name: str = "results") -> None:
        self.name = name
        self._results = results

    async def run(self, inbox: Any, outbox: None, *,
                  task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        async with inbox, self._results:
            task_status.started()
            async for item in inbox:
                await self._results.send(item)


def _as_frame(image: Any, copy: bool) -> np.ndarray:
    arr = np.asarray(image)
    if arr.dtype != np.uint8:
        raise ConfigError(f"push: frames must be uint8 images (got dtype {arr.dtype})")
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.ndim != 3 or arr.shape[-1] not in (1, 3):
        raise ConfigError(f"push: a frame is (H, W), (H, W, 1) or (H, W, 3) (got shape {arr.shape})")
    # The graph keeps the frame until its batch is done; a copy stops a caller that reuses its
    # buffer (a camera ring buffer) from changing frames already in flight.
    return np.array(arr, copy=True) if copy else arr


SpecFactory = Callable[[Any, Any], GraphSpec]


class GraphSession:
    """A running graph: ``push``/``close_input`` feed it, ``async for`` reads its results.

    Made by :func:`open_graph` (or :func:`open_custom_graph`); usable only inside its
    ``async with`` block.
    """

    def __init__(self, make_spec: Callable[[], tuple[SpecFactory, Any]] | None = None, *,
                 push: bool) -> None:
        self._make_spec = make_spec
        self._push_mode = push
        self.run: PreparedRun | None = None
        self.runner: GraphRunner | None = None
        self._graph: RunningGraph | None = None
        self._exit: AsyncExitStack | None = None
        self._input_send: MemoryObjectSendStream[_Pushed] | None = None
        self._results_receive: MemoryObjectReceiveStream[Any] | None = None
        self._next_frame_idx = 0
        self._input_closed = False
        self._stage_ends: list[Any] = []
        self._started = datetime.now()
        self._answered = 0
        #: Latency of pushed frames that carried a capture time, to when they were read.
        self._latency = LatencyMeter()

    # ---- public API ------------------------------------------------------------------------

    @property
    def name(self) -> str:
        assert self.runner is not None, "the graph is not open"
        return self.runner.spec.name

    @property
    def node_names(self) -> tuple[str, ...] | None:
        """The skeleton's node names, in the order of each prediction's points."""
        if self.run is None:
            return None
        return tuple(self.run.primary_config().skeleton.node_names)

    def statistics(self) -> GraphStats:
        """The per-stage counters so far (items, busy, starved, blocked, peak queue depth)."""
        if self.runner is None:
            raise SleapflowError("the graph is not open")
        return self.runner.statistics()

    def latency(self) -> LatencyFigures | None:
        """Capture-to-pose latency so far (percentiles in ms) and frames dropped: a live
        ``source=``'s, or that of frames pushed with ``capture_time`` (to when each result was
        read); None when no frame is timed (a file, frames pushed without a capture time)."""
        if self.run is not None and self.run.latency is not None:
            return self.run.latency.figures()
        return self._latency.figures() if self._latency.frames else None

    def provenance(self) -> dict[str, Any]:
        """The provenance a file written from this session's results so far would record: the
        same keys ``track`` and ``run_inference`` write (``frames_processed`` counts the results
        read)."""
        if self.run is None:
            raise SleapflowError("provenance(): only a graph opened by open_graph records one")
        labels = sio.Labels(videos=list(self.run.plan.videos))
        return run_provenance(self.run, labels, started=self._started,
                              frames_processed=self._answered)

    async def push(self, image: Any, *, frame_idx: int | None = None, video_id: int = 0,
                   capture_time: float | None = None, copy: bool = True) -> None:
        """Send one (H, W[, C]) uint8 frame in; waits while the graph is full.

        ``frame_idx`` defaults to one more than the previous frame's (from 0). With
        ``capture_time`` (``time.time()`` seconds, e.g. the camera's timestamp) the frame is
        timed: its result carries capture, arrival and result times, and :meth:`latency`
        counts it.
        """
        if not self._push_mode:
            raise ConfigError("push(): this graph reads its frames from source=; open it without "
                              "source to push frames")
        if self._input_send is None:
            raise SleapflowError("push(): the graph is not open; use `async with open_graph(...)`")
        if self._input_closed:
            raise SleapflowError("push(): close_input() was already called")
        frame = _as_frame(image, copy)
        idx = self._next_frame_idx if frame_idx is None else int(frame_idx)
        self._next_frame_idx = idx + 1
        try:
            await self._input_send.send((frame, idx, int(video_id), capture_time))
        except (BrokenResourceError, ClosedResourceError):
            # The source stopped taking frames: the graph failed. Its error cancels this block;
            # wait for that so the caller sees the StageError, not this symptom.
            assert self._graph is not None
            await self._graph.finished.wait()
            raise SleapflowError("push(): the graph has stopped") from None

    async def close_input(self) -> None:
        """No more frames: the graph finishes what it holds and the results end."""
        self._input_closed = True
        if self._input_send is not None:
            await self._input_send.aclose()

    def __aiter__(self) -> GraphSession:
        return self

    async def __anext__(self) -> FramePrediction:
        if self._results_receive is None:
            raise SleapflowError("the graph is not open; use `async with open_graph(...)`")
        try:
            result = await self._results_receive.receive()
        except EndOfStream:
            # The sink is done; the graph ends right after. Waiting lets a failure that ended the
            # stream come out as the error instead of looking like a normal end.
            assert self._graph is not None
            await self._graph.finished.wait()
            raise StopAsyncIteration from None
        except ClosedResourceError:
            raise StopAsyncIteration from None
        self._answered += 1
        if isinstance(result, FramePrediction) and result.capture_time is not None \
                and result.result_time is None:
            now = time.time()
            self._latency.add(result.capture_time, now)
            result = msgspec.structs.replace(result, result_time=now)
        return result

    # ---- lifecycle -------------------------------------------------------------------------

    def _build(self) -> GraphSpec:
        assert self._make_spec is not None
        factory, source = self._make_spec()
        results_send, self._results_receive = anyio.create_memory_object_stream[Any](0)
        self._stage_ends = [results_send]
        if source is None:
            self._input_send, frames = anyio.create_memory_object_stream[_Pushed](0)
            self._stage_ends.append(frames)
            source = PushSource(frames)
        try:
            return factory(source, ResultSink(results_send))
        except BaseException:
            self._close_streams()
            raise

    def _close_streams(self) -> None:
        for stream in (self._input_send, self._results_receive, *self._stage_ends):
            if stream is not None:
                stream.close()

    def _stop(self) -> None:
        # A clean stop: no more frames in, results no longer wanted. The source ends and the
        # sink's next hand-over hits a closed stream: the runner's quiet stop, upstream-bound.
        if self._input_send is not None:
            self._input_send.close()
        if self._results_receive is not None:
            self._results_receive.close()

    async def __aenter__(self) -> GraphSession:
        if self._exit is not None:
            raise SleapflowError("a graph session can be entered only once")
        async with AsyncExitStack() as stack:
            # Last out: the stages close their ends when they run; a graph that failed while
            # starting never ran some of them.
            stack.callback(self._close_streams)
            spec = self._build()
            self._started = datetime.now()
            self._graph = await stack.enter_async_context(running_graph(spec))
            self.runner = self._graph.runner
            stack.callback(self._stop)
            self._exit = stack.pop_all()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> bool | None:
        assert self._exit is not None
        return await self._exit.__aexit__(exc_type, exc, tb)


def _plan_for(cfg: InferenceConfig, push: bool) -> Job:
    """The session's job: nothing written (its sink hands results to the caller)."""
    if not push:
        return plan_job(cfg)
    plan = InputPlan(kind="push", source_path="<pushed frames>", videos=[], items=[])
    job = plan_job(cfg, plan=plan)
    if job.run.graph.needs_ground_truth:
        raise ConfigError(f"the {job.run.graph_name} graph reads ground-truth instances from a "
                          ".slp input; open it with source=<labels.slp> instead of pushing frames")
    return job


class NamedGraphSession(GraphSession):
    """A session over a named graph (what :func:`open_graph` returns); prepares (reads configs,
    plans the input) off the loop."""

    def __init__(self, cfg: InferenceConfig, *, push: bool) -> None:
        super().__init__(push=push)
        self.cfg = cfg
        #: Frames are pushed one at a time, each after the last one's result (a Predictor): the
        #: graph's map stages run as one (see :func:`~sleapflow.graphs.build.build_graph`).
        self.one_at_a_time = False

    async def __aenter__(self) -> GraphSession:
        job = await anyio.to_thread.run_sync(_plan_for, self.cfg, self._push_mode)
        self.run = job.run

        def make_spec() -> tuple[SpecFactory, Any]:
            source = None if self._push_mode else make_source(job.run)
            chained = True if self.one_at_a_time else None
            return (lambda src, sink: job_spec(job, source=src, sink=sink,
                                               chained=chained)), source

        self._make_spec = make_spec
        return await super().__aenter__()


#: What open_graph takes: its declared options, and a whole tracker config.
_OPEN_GRAPH_OPTIONS = frozenset({"tracker", *(o.keyword for o in front_options("open_graph"))})


def open_graph(model_paths: list[str] | tuple[str, ...] | str, *, source: str | None = None,
               **options: Any) -> GraphSession:
    """Open the graph the CLI would run for these models, as an async context manager.

    ``source`` is a video, ``.slp``, HDF5 or image folder to read frames from; without it, frames
    are pushed with ``await graph.push(image)``. ``options`` are the options declared for
    ``open_graph`` (:func:`sleapflow.options.declared.front_options`): ``sleapflow track``'s
    inference options (``device``, ``batch_size``, ``queue_maxsize``, ``peak_threshold``,
    ``frames``, the tracker's ...) and ``max_batch_delay_ms``; a whole ``tracker=TrackerConfig``
    is taken too. Bad or unknown options raise :class:`~sleapflow.errors.ConfigError` here,
    before anything runs.
    """
    if "data_path" in options:
        raise ConfigError("open_graph: pass the input as source=, not data_path=")
    unknown = sorted(set(options) - _OPEN_GRAPH_OPTIONS)
    if unknown:
        raise ConfigError(f"open_graph: unknown option(s) {', '.join(unknown)} (a session writes "
                          "no file, so output options are not among them); see "
                          "sleapflow.options.declared.front_options('open_graph')")
    cfg = build_config(model_paths=model_paths, data_path=source, **options)
    return NamedGraphSession(cfg, push=source is None)


def open_custom_graph(build: SpecFactory, *, source: Any = None) -> GraphSession:
    """A session over any graph: ``build(source, sink)`` returns the spec to run.

    ``source`` is a source stage; without one the session's push source is used. Useful for
    graphs assembled from stages by hand, and for testing the session itself.
    """
    return GraphSession(lambda: (build, source), push=source is None)

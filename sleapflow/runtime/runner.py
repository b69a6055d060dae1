"""The one runner: every graph executes in a single anyio task group with bounded streams."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
from anyio import BrokenResourceError, ClosedResourceError, get_cancelled_exc_class
from anyio.abc import TaskStatus

from sleapflow.errors import StageError
from sleapflow.runtime.graph import GraphSpec, validate
from sleapflow.runtime.stats import Clock, GraphStats, StageMeter
from sleapflow.runtime.streams import MeteredReceiveStream, MeteredSendStream

__all__ = ("GraphRunner", "ItemFailure", "RunSpec", "leaves", "root_cause", "run_graph")


#: Exceptions that are only the consequence of another failure or of a quiet stop.
_CONSEQUENTIAL = (BrokenResourceError, ClosedResourceError)


class ItemFailure(Exception):
    """Raised ``from`` a stage's real error to name the item it failed on, for stages that run
    their own loop (a source decoding in chunks); the runner reports the real error, with the
    item's place in its message and as a note on it."""

    def __init__(self, item: Any) -> None:
        super().__init__(f"failed on {item!r}")
        self.item = item


def leaves(exc: BaseException) -> list[BaseException]:
    """The exceptions at the leaves of (possibly nested) exception groups."""
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for sub in exc.exceptions for leaf in leaves(sub)]
    return [exc]


def root_cause(group: BaseExceptionGroup, body: BaseException | None = None) -> BaseException:
    """The one exception a failed graph reports: a stage's ``StageError``, else ``body`` (the
    error of the code that held the graph open) when it is among the leaves, else the first
    leaf that is not a consequence (cancellation, a closed stream), else the group itself."""
    found = leaves(group)
    for leaf in found:
        if isinstance(leaf, StageError):
            return leaf
    if body is not None and any(leaf is body for leaf in found):
        return body
    consequential = (get_cancelled_exc_class(), *_CONSEQUENTIAL)
    for leaf in found:
        if not isinstance(leaf, consequential):
            return leaf
    return group


def _reraise(cause: BaseException, group: BaseExceptionGroup) -> None:
    """Raise ``cause`` in place of ``group``, keeping its own traceback and chained cause."""
    if cause is group:
        raise group
    raise cause.with_traceback(cause.__traceback__) from cause.__cause__


def _where(item: Any) -> tuple[int | None, int | None, int | None]:
    """The sequence number, frame index and video an item carries, for error messages and for
    whoever decides what a failure costs (a many-input run fails only that video)."""
    if item is None:
        return None, None, None
    seq = getattr(item, "seq", None)
    frame_idx = getattr(item, "frame_idx", None)
    video_id = getattr(item, "video_id", None)
    frames = getattr(item, "frames", None)
    if frames and frame_idx is None:
        frame_idx = getattr(frames[0], "frame_idx", None)
    if frames and video_id is None:
        video_id = getattr(frames[0], "video_id", None)
    return seq, frame_idx, video_id


def _is_map_node(stage: Any) -> bool:
    return callable(getattr(stage, "apply", None)) and callable(getattr(stage, "open", None))


class GraphRunner:
    """Runs one graph spec; ``statistics()`` may be read at any time, during or after the run."""

    def __init__(self, spec: GraphSpec, *, clock: Clock = time.perf_counter) -> None:
        validate(spec)
        self.spec = spec
        self._clock = clock
        self._meters = {s.name: StageMeter(s.name, clock) for s in spec.stages}
        self._started_at: float | None = None
        self._stopped_at: float | None = None
        #: The raw memory streams of every edge, kept so tests can check they were all closed.
        self.raw_streams: list[Any] = []

    def statistics(self) -> GraphStats:
        now = self._clock()
        start = self._started_at if self._started_at is not None else now
        end = self._stopped_at if self._stopped_at is not None else now
        return GraphStats(
            graph=self.spec.name,
            stages=tuple(self._meters[s.name].snapshot() for s in self.spec.stages),
            wall_s=max(0.0, end - start),
        )

    async def run(self, *, task_status: TaskStatus[GraphRunner] = anyio.TASK_STATUS_IGNORED
                  ) -> GraphStats:
        """Run the graph to the end; a failing stage comes out as one ``StageError``.

        ``task_status.started(self)`` is called once every stage has started (models loaded,
        sink ready), so ``await tg.start(runner.run)`` returns when the graph can take frames.
        """
        spec = self.spec
        inboxes: dict[str, MeteredReceiveStream[Any] | None] = {s.name: None for s in spec.stages}
        outboxes: dict[str, MeteredSendStream[Any] | None] = {s.name: None for s in spec.stages}
        for edge in spec.edges:
            send, receive = anyio.create_memory_object_stream[Any](max_buffer_size=edge.maxsize)
            self.raw_streams.extend([send, receive])
            outboxes[edge.src] = MeteredSendStream(send, self._meters[edge.src], self._clock,
                                                   spec.seams)
            inboxes[edge.dst] = MeteredReceiveStream(receive, self._meters[edge.dst], self._clock,
                                                     spec.seams)
        self._started_at = self._clock()
        try:
            async with anyio.create_task_group() as tg:
                # Sink first: a model that fails to load fails the run before the first decode.
                for stage in reversed(spec.stages):
                    await tg.start(self._supervise, stage, inboxes[stage.name],
                                   outboxes[stage.name])
                task_status.started(self)
        except BaseExceptionGroup as group:
            _reraise(root_cause(group), group)
        finally:
            self._stopped_at = self._clock()
            for stream in self.raw_streams:
                stream.close()
        return self.statistics()

    def _stage_error(self, stage: Any, exc: Exception, item: Any) -> StageError:
        seq, frame_idx, video_id = _where(item)
        where = f"{self.spec.name}.{stage.name}"
        if seq is not None:
            where += f"@{seq}"
        if frame_idx is not None:
            where += f" (frame {frame_idx})"
        # The item travels with the original error too, for whoever reads its traceback.
        exc.add_note(f"sleapflow: raised by {where}")
        error = StageError(f"{where}: {exc}", graph=self.spec.name, stage=stage.name, seq=seq,
                           frame_idx=frame_idx, video_id=video_id)
        error.__cause__ = exc
        return error

    async def _map_worker(self, stage: Any, inbox: Any, outbox: Any) -> None:
        """One worker of a map node: apply it to each item, in the order they arrive."""
        async with inbox, outbox:
            async for item in inbox:
                try:
                    result = await stage.apply(item)
                except Exception as exc:
                    # The item at hand, not the inbox's latest: with several workers they differ.
                    raise self._stage_error(stage, exc, item) from exc
                for out in stage.results(result):
                    await outbox.send(out)

    async def _run_map(self, stage: Any, inbox: Any, outbox: Any, *,
                       task_status: TaskStatus[None]) -> None:
        await stage.open()
        task_status.started()
        workers = getattr(stage, "workers", 1)
        if workers == 1:
            await self._map_worker(stage, inbox.clone(), outbox.clone())
            return
        try:
            async with anyio.create_task_group() as tg:
                for _ in range(workers):
                    tg.start_soon(self._map_worker, stage, inbox.clone(), outbox.clone())
        except BaseExceptionGroup as group:
            # A broken outbox in every worker is the same quiet stop as in a single-worker
            # stage; otherwise a worker's real error is the stage's error.
            if all(isinstance(leaf, _CONSEQUENTIAL) for leaf in leaves(group)):
                raise BrokenResourceError from None
            _reraise(root_cause(group), group)

    async def _supervise(self, stage: Any, inbox: MeteredReceiveStream[Any] | None,
                         outbox: MeteredSendStream[Any] | None, *,
                         task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        meter = self._meters[stage.name]
        meter.started_at = self._clock()
        try:
            if _is_map_node(stage):
                await self._run_map(stage, inbox, outbox, task_status=task_status)
            else:
                await stage.run(inbox, outbox, task_status=task_status)
        except _CONSEQUENTIAL:
            # Downstream stopped taking items (an early-leaving consumer): a quiet stop that
            # cascades upstream as this stage's inbox closes below.
            pass
        except get_cancelled_exc_class():
            raise
        except StageError:
            raise
        except ItemFailure as failure:
            cause = failure.__cause__
            if not isinstance(cause, Exception):
                raise
            raise self._stage_error(stage, cause, failure.item) from cause
        except Exception as exc:
            raise self._stage_error(stage, exc, meter.last_item) from exc
        finally:
            meter.stopped_at = self._clock()
            if inbox is not None:
                inbox.close()
            if outbox is not None:
                outbox.close()


#: A way to run a spec to its end (a job's: its runner handed to the benchmark first, say), for
#: code that runs graphs on a caller's behalf.
RunSpec = Callable[[GraphSpec], Awaitable[GraphStats]]


async def run_graph(spec: GraphSpec, *, clock: Clock = time.perf_counter,
                    task_status: TaskStatus[GraphRunner] = anyio.TASK_STATUS_IGNORED) -> GraphStats:
    """Run ``spec`` to completion and return its final statistics.

    Started with ``await tg.start(run_graph, spec)``, it hands back its :class:`GraphRunner`
    once every stage has started.
    """
    return await GraphRunner(spec, clock=clock).run(task_status=task_status)

"""The one runner: every graph executes in a single anyio task group with bounded streams."""

from __future__ import annotations

import time
from typing import Any

import anyio
from anyio import BrokenResourceError, ClosedResourceError, get_cancelled_exc_class
from anyio.abc import TaskStatus

from sleapflow.errors import StageError
from sleapflow.runtime.graph import GraphSpec, validate
from sleapflow.runtime.stats import Clock, GraphStats, StageMeter
from sleapflow.runtime.streams import MeteredReceiveStream, MeteredSendStream


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        out: list[BaseException] = []
        for sub in exc.exceptions:
            out.extend(_leaves(sub))
        return out
    return [exc]


def _where(item: Any) -> tuple[int | None, int | None]:
    """The sequence number and frame index an item carries, for error messages."""
    if item is None:
        return None, None
    seq = getattr(item, "seq", None)
    frame_idx = getattr(item, "frame_idx", None)
    if frame_idx is None:
        frames = getattr(item, "frames", None)
        if frames:
            frame_idx = getattr(frames[0], "frame_idx", None)
    return seq, frame_idx


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

    async def run(self) -> GraphStats:
        """Run the graph to the end; a failing stage comes out as one ``StageError``."""
        spec = self.spec
        inboxes: dict[str, MeteredReceiveStream[Any] | None] = {s.name: None for s in spec.stages}
        outboxes: dict[str, MeteredSendStream[Any] | None] = {s.name: None for s in spec.stages}
        for edge in spec.edges:
            send, receive = anyio.create_memory_object_stream[Any](max_buffer_size=edge.maxsize)
            self.raw_streams.extend([send, receive])
            outboxes[edge.src] = MeteredSendStream(send, self._meters[edge.src], self._clock)
            inboxes[edge.dst] = MeteredReceiveStream(receive, self._meters[edge.dst], self._clock)
        self._started_at = self._clock()
        try:
            async with anyio.create_task_group() as tg:
                # Sink first: a model that fails to load fails the run before the first decode.
                for stage in reversed(spec.stages):
                    await tg.start(self._supervise, stage, inboxes[stage.name],
                                   outboxes[stage.name])
        except BaseExceptionGroup as group:
            self._raise_root_cause(group)
        finally:
            self._stopped_at = self._clock()
            for stream in self.raw_streams:
                stream.close()
        return self.statistics()

    def _raise_root_cause(self, group: BaseExceptionGroup) -> None:
        leaves = _leaves(group)
        for exc in leaves:
            if isinstance(exc, StageError):
                raise exc.with_traceback(exc.__traceback__) from exc.__cause__
        consequential = (get_cancelled_exc_class(), BrokenResourceError, ClosedResourceError)
        for exc in leaves:
            if not isinstance(exc, consequential):
                raise exc from None
        raise group

    async def _supervise(self, stage: Any, inbox: MeteredReceiveStream[Any] | None,
                         outbox: MeteredSendStream[Any] | None, *,
                         task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        meter = self._meters[stage.name]
        meter.started_at = self._clock()
        try:
            try:
                await stage.run(inbox, outbox, task_status=task_status)
            except BaseExceptionGroup as group:
                # A stage with workers of its own reports through a group: a broken outbox there
                # is the same quiet stop, and a real error is the stage's error.
                real = [e for e in _leaves(group)
                        if not isinstance(e, (BrokenResourceError, ClosedResourceError))]
                if not real:
                    raise BrokenResourceError from None
                cancelled = get_cancelled_exc_class()
                if all(isinstance(e, cancelled) for e in real):
                    raise
                raise next(e for e in real if not isinstance(e, cancelled)) from None
        except (BrokenResourceError, ClosedResourceError):
            # Downstream stopped taking items (an early-leaving consumer): a quiet stop that
            # cascades upstream as this stage's inbox closes below.
            pass
        except get_cancelled_exc_class():
            raise
        except StageError:
            raise
        except Exception as exc:
            seq, frame_idx = _where(getattr(exc, "sleapflow_item", meter.last_item))
            where = f"{self.spec.name}.{stage.name}"
            if seq is not None:
                where += f"@{seq}"
            if frame_idx is not None:
                where += f" (frame {frame_idx})"
            raise StageError(f"{where}: {exc}", graph=self.spec.name, stage=stage.name,
                             seq=seq, frame_idx=frame_idx) from exc
        finally:
            meter.stopped_at = self._clock()
            if inbox is not None:
                inbox.close()
            if outbox is not None:
                outbox.close()


async def run_graph(spec: GraphSpec, *, clock: Clock = time.perf_counter) -> GraphStats:
    """Run ``spec`` to completion and return its final statistics."""
    return await GraphRunner(spec, clock=clock).run()

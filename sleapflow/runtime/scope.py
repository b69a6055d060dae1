"""``running_graph(spec)``: a graph running for the length of an ``async with`` block."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
from anyio.abc import TaskStatus

from sleapflow.runtime.graph import GraphSpec
from sleapflow.runtime.runner import GraphRunner, root_cause
from sleapflow.runtime.stats import Clock, GraphStats

__all__ = ("RunningGraph", "running_graph")



class RunningGraph:
    """A graph that is running: its runner (statistics at any time) and whether it ended."""

    def __init__(self, runner: GraphRunner) -> None:
        self.runner = runner
        self.spec = runner.spec
        self.finished = anyio.Event()
        self.stats: GraphStats | None = None

    def statistics(self) -> GraphStats:
        return self.runner.statistics()

    async def _run(self, *, task_status: TaskStatus[GraphRunner] = anyio.TASK_STATUS_IGNORED
                   ) -> None:
        try:
            self.stats = await self.runner.run(task_status=task_status)
        finally:
            self.finished.set()


@asynccontextmanager
async def running_graph(spec: GraphSpec, *, clock: Clock = time.perf_counter
                     ) -> AsyncIterator[RunningGraph]:
    """Run ``spec`` while the block runs; the block starts once every stage has started.

    The graph runs in a task group this manager owns: nothing outlives the block, and leaving
    it waits for the graph to end (so whoever feeds the source should end its input first). One
    exception comes out: a stage's ``StageError``, else the block's own error.
    """
    graph = RunningGraph(GraphRunner(spec, clock=clock))
    body: BaseException | None = None
    try:
        async with anyio.create_task_group() as tg:
            # Models load before this returns: a bad checkpoint fails here, not mid-stream.
            await tg.start(graph._run, name=f"sleapflow graph {spec.name}")
            try:
                yield graph
            except BaseException as exc:
                body = exc
                raise
    except BaseExceptionGroup as group:
        cause = root_cause(group, body)
        if cause is group:
            raise
        raise cause.with_traceback(cause.__traceback__) from cause.__cause__

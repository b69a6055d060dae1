"""The many-input sink: one ``.slp`` per video, each written (atomically) as its last frame arrives."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import anyio
import msgspec
from anyio.abc import TaskStatus

from sleapflow.errors import OutputWriteError
from sleapflow.inputs.expand import ManyPlan, VideoTask
from sleapflow.logs import get_logger
from sleapflow.outputs.journal import VideoJournals
from sleapflow.runtime.graph import Role

__all__ = ("ManyWriter",)


log = get_logger(__name__)


class ManyWriter:
    """Routes each prediction to its video's own writer (the one a single run of that video
    would use) and writes that video's output when the next video begins or the stream ends.

    Frames arrive in plan order, so each video's frames are contiguous: a video is complete
    when a frame of another one arrives. The writers see local video ids (0), as in a single
    run, so each output is what a one-video run writes. With ``journals`` every frame is
    journaled (in its video's own journal) before it is kept, and a video's journal is removed
    once its output is in place.
    """

    role: Role = "sink"
    preserves_order = True
    requires_order = True
    restores_order = False

    def __init__(self, plan: ManyPlan, *, make_writer_for: Callable[[VideoTask], Any],
                 on_frame: Callable[[int], None] | None = None, name: str = "write",
                 journals: VideoJournals | None = None) -> None:
        self.name = name
        self.plan = plan
        self.on_frame = on_frame
        self.journals = journals
        # Built up front: an output that cannot be written fails the run before any decode.
        self.writers = {t.video_id: make_writer_for(t) for t in plan.tasks
                        if t.status == "planned" and t.video_id is not None}
        self._tasks = {t.video_id: t for t in plan.tasks if t.video_id is not None}
        self.result: list[VideoTask] | None = None
        self._clock = time.perf_counter
        self._since = 0.0

    def _take(self, pred: Any) -> None:
        """Journal one frame, then keep it as its video's own (blocking: a worker thread)."""
        if self.journals is not None:
            self.journals.add(pred)
        self.writers[pred.video_id].builder.add(msgspec.structs.replace(pred, video_id=0))

    def _write(self, video_id: int) -> Any:
        """Write the video's output, then drop its journal, in one worker-thread call: a stop
        can then not land between the two (a finished video never looks interrupted)."""
        result = self.writers[video_id].finish()
        if self.journals is not None:
            self.journals.remove(video_id)
        return result

    async def _finish(self, video_id: int) -> None:
        task = self._tasks[video_id]
        writer = self.writers[video_id]
        writer.result = await anyio.to_thread.run_sync(self._write, video_id)
        task.status = "done"
        now = self._clock()
        task.seconds = now - self._since
        self._since = now
        task.summary = writer.summary(task.seconds)

    async def run(self, inbox: Any, outbox: None, *,
                  task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        async with inbox:
            task_status.started()
            self._since = self._clock()
            current: int | None = None
            async for pred in inbox:
                arrived: int = pred.video_id
                if arrived != current:
                    if current is not None:
                        await self._finish(current)
                    current = arrived
                task = self._tasks[arrived]
                # Building sleap-io objects is CPU work: off the event loop, as the writer's own.
                await anyio.to_thread.run_sync(self._take, pred)
                task.frames += 1
                if self.on_frame is not None:
                    self.on_frame(1)
            if current is not None:
                await self._finish(current)
            # A video none of whose frames could be decoded fails on its own (an existing
            # output of it is left unchanged); the other videos' outputs stand.
            for video_id in self.writers:
                task = self._tasks[video_id]
                if task.status == "planned":
                    try:
                        await self._finish(video_id)
                    except OutputWriteError as exc:
                        if self.writers[video_id].builder.added:
                            raise
                        task.status, task.error = "failed", str(exc)
                        if self.journals is not None:
                            self.journals.remove(video_id)  # no frame of it: nothing to resume
                        log.warning("input failed", input=task.path, error=str(exc))
            self.result = self.plan.tasks

"""The decode source: reads the planned frames in a worker thread and emits them in order."""

from __future__ import annotations

from typing import Any

import anyio
import structlog
from anyio.abc import TaskStatus

from sleapflow.inputs import InputPlan, WorkItem, open_reader
from sleapflow.messages import Frame
from sleapflow.runtime.graph import Role

log = structlog.get_logger(__name__)


class DecodeSource:
    """Decodes ``plan.items`` a few frames per thread hop (amortising the hop, keeping order).

    Frames the container cannot produce (past its end) are skipped with a warning, as the
    reference's reader does.
    """

    role: Role = "source"
    preserves_order = True
    requires_order = False
    restores_order = False

    def __init__(self, plan: InputPlan, *, name: str = "decode", chunk: int = 4,
                 limiter: anyio.CapacityLimiter | None = None) -> None:
        self.name = name
        self.plan = plan
        self.chunk = max(1, chunk)
        self.limiter = limiter
        self._readers: dict[int, Any] = {}
        self.skipped = 0

    def _reader(self, video_id: int) -> Any:
        reader = self._readers.get(video_id)
        if reader is None:
            # One open video at a time keeps memory and file handles flat across many videos.
            self._close_readers()
            reader = open_reader(self.plan, video_id)
            self._readers[video_id] = reader
        return reader

    def _close_readers(self) -> None:
        for reader in self._readers.values():
            reader.close()
        self._readers.clear()

    def _read_chunk(self, items: list[WorkItem]) -> list[tuple[WorkItem, Any]]:
        out = []
        for item in items:
            image = self._reader(item.video_id).read(item.frame_idx)
            if image is None:
                self.skipped += 1
                log.warning("frame could not be decoded; skipped", video_id=item.video_id,
                            frame_idx=item.frame_idx)
                continue
            out.append((item, image))
        return out

    async def run(self, inbox: None, outbox: Any, *,
                  task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        async with outbox:
            task_status.started()
            seq = 0
            items = self.plan.items
            try:
                for start in range(0, len(items), self.chunk):
                    decoded = await anyio.to_thread.run_sync(
                        self._read_chunk, items[start:start + self.chunk], limiter=self.limiter)
                    for item, image in decoded:
                        await outbox.send(Frame(seq=seq, video_id=item.video_id,
                                                frame_idx=item.frame_idx, image=image,
                                                gt_points=item.gt_points))
                        seq += 1
            finally:
                with anyio.CancelScope(shield=True):
                    await anyio.to_thread.run_sync(self._close_readers)

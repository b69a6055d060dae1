"""The decode source: reads the planned frames in a worker thread and emits them in order."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import anyio
from anyio.abc import TaskStatus

from sleapflow.errors import FrameDecodeError, VideoDecodeError
from sleapflow.inputs import InputPlan, WorkItem, open_reader
from sleapflow.inputs.media_faults import DecodeFailures
from sleapflow.logs import get_logger
from sleapflow.messages import Frame
from sleapflow.runtime.graph import Role
from sleapflow.runtime.runner import ItemFailure

__all__ = ("DecodeSource",)


log = get_logger(__name__)


class DecodeSource:
    """Decodes ``plan.items`` a few frames per thread hop (amortising the hop, keeping order).

    Frames a video cannot produce (past its end, or missing from an image sequence) are skipped
    and reported once at the end, instead of ending the run as the reference's reader does.
    A frame that fails to decode (corrupt packets) is skipped too, counted in ``failures``
    (which ends the run past ``max_failed``) and reported once; decoding resumes at the next
    decodable frame. A video that cannot be opened at all fails the run.
    """

    role: Role = "source"
    preserves_order = True
    requires_order = False
    restores_order = False

    #: Readers kept open at once: frames of a multi-video .slp interleave videos in file order,
    #: so closing on every switch would reopen (and re-seek) the same few videos again and again.
    MAX_OPEN_READERS = 4

    def __init__(self, plan: InputPlan, *, name: str = "decode", chunk: int = 4,
                 limiter: anyio.CapacityLimiter | None = None,
                 failures: DecodeFailures | None = None, start: int = 0,
                 start_seq: int = 0) -> None:
        self.name = name
        self.failures = failures if failures is not None else DecodeFailures()
        #: Items already done (a resumed run): decoding starts after them; seqs keep counting.
        self.start = start
        self.start_seq = start_seq
        self.plan = plan
        self.chunk = max(1, chunk)
        self.limiter = limiter
        self._readers: OrderedDict[int, Any] = OrderedDict()

    def _reader(self, video_id: int) -> Any:
        reader = self._readers.get(video_id)
        if reader is not None:
            self._readers.move_to_end(video_id)
            return reader
        while len(self._readers) >= self.MAX_OPEN_READERS:
            _, oldest = self._readers.popitem(last=False)
            oldest.close()
        reader = open_reader(self.plan, video_id)
        self._readers[video_id] = reader
        return reader

    def _close_readers(self) -> None:
        while self._readers:
            _, reader = self._readers.popitem()
            reader.close()

    def _read_chunk(self, items: Sequence[WorkItem]) -> list[tuple[WorkItem, Any]]:
        out = []
        for item in items:
            try:
                image = self._reader(item.video_id).read(item.frame_idx)
            except FrameDecodeError as exc:
                self.failures.add(item.video_id, item.frame_idx, exc)
                continue
            except VideoDecodeError as exc:
                if item.video_id not in self._readers:
                    # The video cannot be opened: nothing of it can be read. The item names
                    # the video, so a many-input run fails that video alone.
                    raise ItemFailure(item) from exc
                # A reader that failed mid-stream is reopened (and re-positioned) next time.
                self._readers.pop(item.video_id).close()
                self.failures.add(item.video_id, item.frame_idx, exc)
                continue
            except Exception as exc:
                # Lets the runner name the frame in the StageError.
                raise ItemFailure(item) from exc
            if image is None:
                # A frame the input was planned with but its stream ends before or skips (a
                # truncated or damaged file): a failed frame like a corrupt one, counted in the
                # provenance and against --max_failed_frames.
                self.failures.add(item.video_id, item.frame_idx, FrameDecodeError(
                    f"frame {item.frame_idx} is missing from the video's stream (the file is "
                    "truncated or damaged)"))
                continue
            out.append((item, image))
        return out

    async def run(self, inbox: None, outbox: Any, *,
                  task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        async with outbox:
            task_status.started()
            seq = self.start_seq
            items = self.plan.items
            try:
                for start in range(self.start, len(items), self.chunk):
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
            if self.failures.count:
                log.warning("frames failed to decode; skipped", count=self.failures.count,
                            frames=self.failures.summary(), first_error=self.failures.first_error)


"""The engine: one open graph shared by every client, an admission bound, and result routing.

Clients hand frames to :meth:`Engine.submit`, which waits (within a bound) for one of
``max_pending`` slots and queues a :class:`Ticket`. One feeder task pushes the queued frames
into the graph in queue order, so frames from all clients are interleaved in one stream and the
graph's batch stage batches them together; one router task reads the graph's results, which
come out in push order, and hands each to the ticket pushed at that position. A slot is
released when its result arrives, so at most ``max_pending`` frames are held at once, whatever
the load.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Callable
from typing import Any

import anyio
import numpy as np
from anyio.abc import TaskStatus

from sleapflow.errors import SleapflowError
from sleapflow.messages import FramePrediction
from sleapflow.serve.config import ServeConfig

__all__ = ("FINISHED_STREAMS_KEPT", "LATENCY_WINDOW", "Busy", "Engine", "StreamRecord", "Ticket")

#: Each stream's latency percentiles are over its last this many frames.
LATENCY_WINDOW = 4096
#: Finished streams whose figures ``/v1/stats`` still shows (the most recent ones).
FINISHED_STREAMS_KEPT = 32



class Busy(Exception):
    """No slot came free within the wait bound (or the server is shutting down)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class Ticket:
    """One frame's way through the engine: its pixels until pushed, then its result."""

    __slots__ = ("cancelled", "done", "frame_idx", "image", "pixels", "result", "submitted_at")

    def __init__(self, image: np.ndarray, frame_idx: int) -> None:
        self.image: np.ndarray | None = image
        #: The frame, kept past the push only for a tracker that reads pixels (optical flow).
        self.pixels: np.ndarray | None = None
        self.frame_idx = frame_idx
        self.result: FramePrediction | None = None
        self.cancelled = False
        self.done = anyio.Event()
        self.submitted_at = anyio.current_time()


class StreamRecord:
    """One stream's figures for ``/v1/stats``: frames answered and, over its last
    :data:`LATENCY_WINDOW` frames, the time from a frame's arrival at the server (its request
    read in full) to its result being ready (tracking included). Capture-to-pose latency needs
    the camera's clock and is the live sources' figure, not this one."""

    __slots__ = ("frames", "id", "kind", "latencies_ms", "open", "tracked")

    def __init__(self, stream_id: int, kind: str, tracked: bool) -> None:
        self.id = stream_id
        self.kind = kind
        self.tracked = tracked
        self.open = True
        self.frames = 0
        self.latencies_ms: deque[float] = deque(maxlen=LATENCY_WINDOW)

    def add(self, latency_ms: float) -> None:
        self.frames += 1
        self.latencies_ms.append(latency_ms)

    def summary(self) -> dict[str, Any]:
        window = np.asarray(self.latencies_ms, dtype=np.float64)
        pct = ({f"p{q}": round(float(np.percentile(window, q)), 3) for q in (50, 95, 99)}
               if window.size else {"p50": None, "p95": None, "p99": None})
        return {"id": self.id, "kind": self.kind, "open": self.open, "tracked": self.tracked,
                "frames_answered": self.frames, "arrival_to_result_ms": pct}


class Engine:
    """Shares one graph (an ``open_graph`` session) among many clients; see the module doc.

    ``tracking`` makes one stream's tracker (a fresh state per call), or is None when the
    server does not track: the graph itself is untracked, so that the streams it mixes keep
    their identities apart.
    """

    def __init__(self, graph: Any, cfg: ServeConfig,
                 tracking: Callable[[], Callable[[FramePrediction], FramePrediction] | None]
                 | None = None) -> None:
        self.graph = graph
        self.cfg = cfg
        self.tracking = tracking
        self._stream_ids = itertools.count()
        self.streams: dict[int, StreamRecord] = {}
        self._finished: deque[StreamRecord] = deque(maxlen=FINISHED_STREAMS_KEPT)
        probe = tracking() if tracking is not None else None
        #: The graph drops pixels after preprocessing; a pixel-reading tracker gets them here.
        self.keep_pixels = bool(getattr(probe, "needs_image", False))
        self._slots = anyio.Semaphore(cfg.max_pending)
        # Never blocks: a ticket is queued only after it took a slot.
        self._queue_send, self._queue_receive = anyio.create_memory_object_stream[Ticket](
            cfg.max_pending)
        self._pushed: deque[Ticket] = deque()
        self._next_seq = 0
        self.closing = False
        self.failed: str | None = None
        self.counters = {"frames_submitted": 0, "frames_answered": 0, "frames_cancelled": 0,
                         "frames_rejected_busy": 0, "requests_rejected_4xx": 0}

    # ---- for request handlers --------------------------------------------------------------

    @property
    def pending(self) -> int:
        return self.cfg.max_pending - self._slots.value

    async def submit(self, image: np.ndarray, frame_idx: int, *,
                     wait_s: float | None = None) -> Ticket:
        """Queue one frame; waits up to ``wait_s`` (default: the configured bound) for room.

        ``wait_s=inf`` waits as long as it takes (a stream already admitted keeps its pace).
        """
        if self.closing or self.failed:
            raise Busy("the server is shutting down")
        wait = self.cfg.queue_wait_ms / 1000.0 if wait_s is None else wait_s
        acquired = False
        try:
            self._slots.acquire_nowait()  # a free slot is taken even with no wait allowed
            acquired = True
        except anyio.WouldBlock:
            with anyio.move_on_after(wait):
                await self._slots.acquire()
                acquired = True
        if not acquired:
            self.counters["frames_rejected_busy"] += 1
            raise Busy(f"the server holds {self.cfg.max_pending} frames and none finished within "
                       f"{wait * 1000:.0f} ms; retry later")
        ticket = Ticket(image, frame_idx)
        try:
            self._queue_send.send_nowait(ticket)
        except (anyio.ClosedResourceError, anyio.BrokenResourceError):
            self._slots.release()
            raise Busy("the server is shutting down") from None
        self.counters["frames_submitted"] += 1
        return ticket

    async def result(self, ticket: Ticket) -> FramePrediction:
        """The ticket's prediction once the graph produced it."""
        await ticket.done.wait()
        if ticket.result is None:
            raise SleapflowError(self.failed or "the frame was not processed")
        return ticket.result

    def cancel(self, ticket: Ticket) -> None:
        """The client is gone: skip the frame if not yet pushed, drop its result otherwise."""
        if not ticket.done.is_set() and not ticket.cancelled:
            ticket.cancelled = True
            ticket.image = None
            self.counters["frames_cancelled"] += 1

    def open_stream(self, kind: str) -> tuple[StreamRecord, Any]:
        """A new stream's record, and its own tracker (None when the server does not track)."""
        tracker = self.tracking() if self.tracking is not None else None
        record = StreamRecord(next(self._stream_ids), kind, tracker is not None)
        self.streams[record.id] = record
        return record, tracker

    def close_stream(self, record: StreamRecord) -> None:
        record.open = False
        if self.streams.pop(record.id, None) is not None:
            self._finished.append(record)

    # ---- the two tasks that move frames ----------------------------------------------------

    async def feed(self) -> None:
        """Pushes queued frames into the graph, in queue order; ends the input when closed."""
        async with self._queue_receive:
            async for ticket in self._queue_receive:
                if ticket.cancelled or ticket.image is None:
                    self._slots.release()
                    ticket.done.set()
                    continue
                image, ticket.image = ticket.image, None
                if self.keep_pixels:
                    ticket.pixels = image
                self._pushed.append(ticket)
                # push() waits while the graph is full: the feeder, not the event loop, is held.
                await self.graph.push(image, frame_idx=ticket.frame_idx, copy=False)
        await self.graph.close_input()

    async def route(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Hands each result to the ticket pushed at its position."""
        task_status.started()
        try:
            async for pred in self.graph:
                ticket = self._pushed.popleft()
                if pred.seq != self._next_seq:  # results are in push order; anything else is a bug
                    raise SleapflowError(f"result {pred.seq} arrived where {self._next_seq} was due")
                self._next_seq += 1
                if not ticket.cancelled:
                    ticket.result = pred
                    self.counters["frames_answered"] += 1
                ticket.done.set()
                self._slots.release()
        finally:
            # A failed graph: wake every waiter so no request hangs.
            for ticket in self._pushed:
                ticket.done.set()

    def close(self) -> None:
        """No new frames; the feeder pushes what is queued, then ends the graph's input."""
        self.closing = True
        self._queue_send.close()

    # ---- reporting -------------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """The graph's per-stage counters plus the server's own, as plain JSON-able data."""
        snapshot = self.graph.statistics()
        stages = []
        for s in snapshot.stages:
            stages.append({"name": s.name, "items_in": s.items_in, "items_out": s.items_out,
                           "wall_s": round(s.wall_s, 4), "busy": round(s.busy_fraction, 4),
                           "starved": round(s.starved_fraction, 4),
                           "blocked": round(s.blocked_fraction, 4),
                           "items_per_s": round(s.items_per_s, 2),
                           "peak_inbox_depth": s.peak_inbox_depth})
        by_name = snapshot.by_name()
        batch = by_name.get("batch")
        mean_batch = (batch.items_in / batch.items_out if batch is not None and batch.items_out
                      else None)
        return {"graph": snapshot.graph, "wall_s": round(snapshot.wall_s, 4),
                "bottleneck": snapshot.bottleneck, "stages": stages,
                "server": {**self.counters, "frames_pending": self.pending,
                           "max_pending": self.cfg.max_pending,
                           "mean_batch_size": None if mean_batch is None else round(mean_batch, 4),
                           "batch_size": self.cfg.options.get("batch_size")},
                "streams": [r.summary() for r in (*self._finished, *self.streams.values())]}

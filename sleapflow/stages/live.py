"""The live source (a camera or stream read by a thread of its own, dropping what the graph cannot
take in latency mode) and the result tap (result times, latency, ``--publish``)."""

from __future__ import annotations

import contextlib
import gc
import statistics
import threading
import time
from collections import deque
from collections.abc import Sequence
from typing import Any

import anyio
import anyio.from_thread
import anyio.lowlevel
import msgspec
from anyio.abc import TaskStatus

from sleapflow.inputs.live import LiveFrame, LiveReader, register_live_source, unregister_live_source
from sleapflow.logs import get_logger
from sleapflow.messages import Frame, FramePrediction
from sleapflow.outputs.publish import Publisher, end_message, frame_message
from sleapflow.runtime.graph import Role
from sleapflow.runtime.latency import LatencyMeter

__all__ = ("FrameWindow", "LiveSource", "ResultTap", "passes_over")


log = get_logger(__name__)

class FrameWindow:
    """Credits for the batches a live source may have in its graph at once (latency mode).

    The source takes a credit per group of frames it sends back to back (what was waiting
    when the credit came: the greedy batch stage makes them one batch), and the result tap
    gives back the credit of every group up to the frame whose result it has (a frame that
    left no result is given back with the next one). Frames the source cannot send yet wait
    in its buffer, where the oldest are dropped: so no frame waits in a queue inside the
    graph behind another batch. Both sides run on the event loop."""

    #: A frame that never comes back (a graph that drops it and then nothing else) must not
    #: stop the source for good: after this long without a credit it sends anyway.
    STALL_S = 2.0

    def __init__(self, limit: int) -> None:
        self.limit = max(1, limit)
        self.sent = 0
        self.done = 0
        #: The last frame (send order) of each group in flight, oldest first.
        self._groups: deque[int] = deque()
        self._room: anyio.Event | None = None

    @property
    def in_flight(self) -> int:
        """Groups (batches) sent whose results are not all out."""
        return len(self._groups)

    async def acquire(self) -> None:
        """Wait for room, then count the next frame sent as the first of a new group."""
        with anyio.move_on_after(self.STALL_S):
            while self.in_flight >= self.limit:
                self._room = room = anyio.Event()
                await room.wait()
        self.sent += 1
        self._groups.append(self.sent - 1)

    def extend(self) -> None:
        """Count the next frame sent in the group the last :meth:`acquire` opened."""
        self.sent += 1
        if self._groups:
            self._groups[-1] = self.sent - 1
        else:
            self._groups.append(self.sent - 1)

    #: The longest the warm-up frame is waited for (an export cache miss builds its session
    #: meanwhile); a frame that leaves no result is never given back, and must not stop the run.
    WARM_S = 60.0

    async def drained(self, stopped: threading.Event) -> None:
        """Wait until every frame sent has its result (or the source is stopped)."""
        with anyio.move_on_after(self.WARM_S):
            while self.in_flight > 0 and not stopped.is_set():
                self._room = room = anyio.Event()
                # stop() cannot wake this wait: look at the flag now and then.
                with anyio.move_on_after(0.1):
                    await room.wait()

    def release_through(self, seq: int) -> None:
        """The result of frame ``seq`` (numbered from 0 in send order) is out."""
        if seq + 1 > self.done:
            self.done = min(seq + 1, self.sent)
            while self._groups and self._groups[0] < self.done:
                self._groups.popleft()
            room, self._room = self._room, None
            if room is not None:
                room.set()


class _HeapFreeze:
    """Keeps what set-up made (torch, the models, the modules: most of the heap) out of the
    garbage collector's full collections while live sources run: scanning it stops the whole
    process for 100-150 ms, the longest stall a warm live graph had. Nested: the heap thaws
    when the last live source ends."""

    holders = 0

    @classmethod
    def hold(cls) -> None:
        if cls.holders == 0:
            gc.collect()  # the garbage made so far goes now, not frozen with the rest
            gc.freeze()
        cls.holders += 1

    @classmethod
    def release(cls) -> None:
        cls.holders -= 1
        if cls.holders == 0:
            gc.unfreeze()


class _FrameBuffer:
    """Frames decoded but not yet sent on, between the reader thread and the event loop.

    ``drop_oldest``: a full buffer drops its oldest frame for the new one (latency mode);
    otherwise the reader waits for room (every frame kept, the stream's own buffers fill).
    It also learns the stream's frame interval from the frames' arrival times."""

    #: Arrival gaps the frame interval is the median of (about half a second at 30 fps).
    GAPS = 15
    #: Gaps needed before the interval is trusted.
    MIN_GAPS = 4

    def __init__(self, capacity: int, *, drop_oldest: bool) -> None:
        self.capacity = max(1, capacity)
        self.drop_oldest = drop_oldest
        self.frames: deque[LiveFrame] = deque()
        self.dropped = 0
        self.done = False
        self.error: BaseException | None = None
        self.cond = threading.Condition()
        self._last_arrival: float | None = None
        self._gaps: deque[float] = deque(maxlen=self.GAPS)

    def interval(self) -> float | None:
        """The stream's frame interval in seconds, as its frames arrive (the median of the
        last gaps: a camera's nominal rate, or a stream's, can be wrong), None until known."""
        with self.cond:
            if len(self._gaps) < self.MIN_GAPS:
                return None
            return statistics.median(self._gaps)

    def newest(self) -> LiveFrame | None:
        """The newest waiting frame, None when none waits."""
        with self.cond:
            return self.frames[-1] if self.frames else None

    def put(self, frame: LiveFrame, stopped: threading.Event) -> None:
        with self.cond:
            if self._last_arrival is not None:
                self._gaps.append(frame.arrival_time - self._last_arrival)
            self._last_arrival = frame.arrival_time
            if self.drop_oldest:
                while len(self.frames) >= self.capacity:
                    self.frames.popleft()
                    self.dropped += 1
            else:
                while len(self.frames) >= self.capacity and not stopped.is_set():
                    self.cond.wait(0.1)
            self.frames.append(frame)

    def clear(self) -> int:
        """Drop every waiting frame; how many there were, with those the buffer pushed out."""
        with self.cond:
            n = len(self.frames) + self.dropped
            self.frames.clear()
            self.dropped = 0
            self.cond.notify_all()
            return n

    def take(self) -> LiveFrame | None:
        with self.cond:
            frame = self.frames.popleft() if self.frames else None
            self.cond.notify_all()
            return frame


def passes_over(age: float, interval: float) -> bool:
    """Latency mode's freshness rule: a waiting frame that has waited longer than the next one
    is away (more than half a frame interval) is passed over for that next one.

    It matters when the graph is slower than the stream. Sending the newest waiting frame
    whatever its age adds that age, up to a whole interval, to its latency; waiting for the
    next frame costs at most half an interval of idle graph, a few frames a second, and gives
    a fresher pose sooner on the whole: for a 57 ms graph on a 30 fps stream, p99 latency
    98 -> 80 ms and the mean age of the newest pose 104 -> 93 ms, at 15.5 instead of 17.5
    poses/s (``benchmarks/freshness_sim.py``; measured figures in benchmarks/RESULTS.md)."""
    return age > interval / 2


class LiveSource:
    """Reads a live source in a reader thread that never waits on the graph (latency mode), and
    sends its frames on as the graph takes them.

    In latency mode the frames waiting for the graph are at most ``capacity`` (a batch's
    worth): when the graph falls behind the oldest of them are dropped and counted in
    ``meter``, so what the next batch gets is the newest, and a newest frame that has already
    waited more than half a frame interval is passed over for the next (:func:`passes_over`).
    Without it (``live=False``) every frame is kept and the reader waits for room. The run
    ends at the end of the stream, after ``idle_timeout_s`` without a frame, after
    ``duration`` seconds, or at :meth:`stop` (Ctrl-C): the graph then drains, so everything
    already taken is predicted and written.
    ``video``'s metadata learns the stream's shape and frame rate as the first frame arrives.

    Latency mode warms the graph up on the stream's first frame: it goes through alone (the
    sessions for the stream's frame size, the first forward pass, lazy imports), untimed,
    and the frames that arrived meanwhile are dropped as stale (``meter.stale``, not
    ``meter.dropped``) so the next frame sent is the newest and every frame timed met a
    warm graph. A closed loop then starts on fresh frames rather than on a backlog.
    """

    role: Role = "source"
    preserves_order = True
    requires_order = False
    restores_order = False

    #: How long the end of a run waits for the reader thread to let go of the stream.
    JOIN_S = 2.0
    #: How far past its due time (in frame intervals) a frame waited for may come before the
    #: one passed over is sent after all: a stream that stalls or ends.
    NEXT_FRAME_SLACK = 0.5

    def __init__(self, path: str, *, live: bool, capacity: int, meter: LatencyMeter,
                 video: Any = None, duration: float | None = None, idle_timeout_s: float = 10.0,
                 window: FrameWindow | None = None, name: str = "live") -> None:
        self.name = name
        #: Latency mode: the frames allowed in the graph at once (given back by the tap).
        self.window = window
        self.path = path
        self.live = live
        self.meter = meter
        self.video = video
        self.duration = duration
        self.reader = LiveReader(path, idle_timeout_s=idle_timeout_s)
        self.buffer = _FrameBuffer(capacity, drop_oldest=live)
        self._stopped = threading.Event()
        self._wake: anyio.Event | None = None
        self._token: Any = None
        self._counted_drops = 0
        self._frozen = False
        #: Frames captured before this (wall clock) arrived during the warm-up: stale.
        self._warm_at = float("-inf")

    # -- the reader thread ----------------------------------------------------------------
    def _notify(self) -> None:
        with self.buffer.cond:
            wake, self._wake = self._wake, None
        if wake is not None and self._token is not None:
            # RuntimeError: the event loop is gone, nobody waits any more.
            with contextlib.suppress(RuntimeError):
                anyio.from_thread.run_sync(wake.set, token=self._token)

    def _pump(self) -> None:
        try:
            self.reader.open()
            for frame in self.reader.frames_iter():
                if self._stopped.is_set():
                    break
                self.buffer.put(frame, self._stopped)
                self._notify()
                if self._stopped.is_set():
                    break
        except BaseException as exc:  # handed to the event loop, raised there
            self.buffer.error = exc
        finally:
            try:
                self.reader.close()
            finally:
                with self.buffer.cond:
                    self.buffer.done = True
                self._notify()

    # -- the event loop -------------------------------------------------------------------
    def stop(self) -> None:
        """End the stream here (thread-safe with the reader; call on the event loop)."""
        self._stopped.set()
        self.reader.stop()
        with self.buffer.cond:
            wake, self._wake = self._wake, None
            self.buffer.cond.notify_all()
        if wake is not None:
            wake.set()

    @staticmethod
    def _message(seq: int, frame: LiveFrame) -> Frame:
        return Frame(seq=seq, video_id=0, frame_idx=frame.index, image=frame.image,
                     capture_time=frame.capture_time, arrival_time=frame.arrival_time,
                     pts=frame.pts)

    async def _warm_up(self) -> None:
        """After the first frame: wait for its result, then drop what arrived meanwhile."""
        assert self.window is not None
        start = time.perf_counter()
        await self.window.drained(self._stopped)
        self._warm_at = time.time()
        stale = self.buffer.clear()
        self._counted_drops = 0
        self.meter.drop_stale(stale)
        log.info("live graph warm", source=self.path, stale=stale,
                 seconds=round(time.perf_counter() - start, 3))

    def _note_drops(self) -> None:
        new = self.buffer.dropped - self._counted_drops
        if new:
            self.meter.drop(new)
            self._counted_drops = self.buffer.dropped

    def _describe_video(self) -> None:
        """The output's video gets the stream's frame size and rate from its first frame."""
        if self.video is None or self.reader.shape is None:
            return
        meta = self.video.backend_metadata
        if meta.get("shape") is None:
            height, width, channels = self.reader.shape
            meta.update(shape=[0, height, width, channels], grayscale=channels == 1,
                        fps=self.reader.fps)

    def _take(self) -> LiveFrame | None:
        """The next waiting frame; one captured before the graph was warm is stale (the
        reader may decode it late: the warm-up's collection holds every thread)."""
        while True:
            frame = self.buffer.take()
            if frame is None or frame.capture_time >= self._warm_at:
                return frame
            self.meter.drop_stale()

    async def _fresher(self) -> None:
        """Latency mode, before a frame is taken: if the newest waiting frame has waited too
        long (:func:`passes_over`), wait for the next one; if the stream stalls or ends, it is
        sent after all. On the CPU (one waiting frame) the next one pushes it out of the buffer,
        counted as dropped; on an accelerator it goes in the next batch beside that one."""
        interval = self.buffer.interval()
        newest = self.buffer.newest()
        if (interval is None or newest is None
                or not passes_over(time.time() - newest.arrival_time, interval)):
            return
        deadline = newest.arrival_time + interval * (1.0 + self.NEXT_FRAME_SLACK)
        while not self._stopped.is_set():
            with self.buffer.cond:
                if self.buffer.done or not self.buffer.frames or self.buffer.frames[-1] is not newest:
                    return
                self._wake = wake = anyio.Event()
            with anyio.move_on_after(deadline - time.time()) as scope:
                await wake.wait()
            if scope.cancelled_caught:
                return

    async def _next(self) -> LiveFrame | None:
        while True:
            frame = self._take()
            self._note_drops()
            if frame is not None:
                return frame
            if self._stopped.is_set():
                return None
            with self.buffer.cond:
                if self.buffer.done and not self.buffer.frames:
                    if self.buffer.error is not None:
                        raise self.buffer.error
                    return None
                if self.buffer.frames:
                    continue
                self._wake = wake = anyio.Event()
            await wake.wait()

    async def run(self, inbox: None, outbox: Any, *,
                  task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        async with outbox:
            self._token = anyio.lowlevel.current_token()
            thread = threading.Thread(target=self._pump, name=f"sleapflow-{self.name}",
                                      daemon=True)
            register_live_source(self)
            try:
                # Everything set up so far (the graph's stages start before their source)
                # leaves the full collections, before the stream is opened.
                _HeapFreeze.hold()
                self._frozen = True
                thread.start()
                task_status.started()
                seq = 0
                with anyio.move_on_after(self.duration if self.duration is not None
                                         else float("inf")):
                    while True:
                        if self.window is not None:
                            # Wait for room before taking a frame: what arrives meanwhile
                            # pushes the oldest waiting frames out of the buffer.
                            await self.window.acquire()
                            if seq > 0:
                                await self._fresher()
                        frame = await self._next()
                        if frame is None:
                            break
                        self._describe_video()
                        await outbox.send(self._message(seq, frame))
                        seq += 1
                        if self.window is None:
                            continue
                        if seq == 1:
                            self.meter.untimed_below = 1
                            await self._warm_up()
                            continue
                        # What else waits goes with it, as one batch: the newest frames.
                        for _ in range(self.buffer.capacity - 1):
                            more = self._take()
                            if more is None:
                                break
                            self.window.extend()
                            await outbox.send(self._message(seq, more))
                            seq += 1
                        self._note_drops()
            finally:
                unregister_live_source(self)
                if self._frozen:
                    self._frozen = False
                    _HeapFreeze.release()
                self.stop()
                with anyio.CancelScope(shield=True):
                    # The reader lets go of the stream at its next frame or read timeout; a
                    # stalled camera must not hold the run's end for long.
                    await anyio.to_thread.run_sync(thread.join, self.JOIN_S)
                self._note_drops()
            if self.video is not None and self.video.backend_metadata.get("shape"):
                self.video.backend_metadata["shape"][0] = self.reader._last_index + 1
            log.info("live source ended", source=self.path, frames=self.reader.frames,
                     sent=seq, dropped=self.meter.dropped)


class ResultTap:
    """Stamps each prediction's result time, records its latency in ``meter`` and publishes it
    (``--publish``) before the writer takes it; the last message says the run has ended."""

    role: Role = "stage"
    preserves_order = True
    requires_order = False
    restores_order = False

    def __init__(self, meter: LatencyMeter, *, targets: Sequence[str] = (), source: str = "",
                 nodes: Sequence[str] = (), window: FrameWindow | None = None,
                 name: str = "result") -> None:
        self.name = name
        self.window = window
        self.meter = meter
        self.targets = tuple(targets)
        self.source = source
        self.nodes = tuple(nodes)
        self.published = 0
        # One publishing thread keeps the messages in order; sends never wait on a consumer.
        self._limiter = anyio.CapacityLimiter(1)

    async def run(self, inbox: Any, outbox: Any, *,
                  task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        async with inbox, outbox:
            publisher: Publisher | None = None
            if self.targets:
                publisher = await anyio.to_thread.run_sync(Publisher, self.targets)
            try:
                task_status.started()
                async for pred in inbox:
                    pred = self._stamp(pred, time.time())
                    if self.window is not None:
                        self.window.release_through(pred.seq)
                    if publisher is not None:
                        message = frame_message(pred, source=self.source, nodes=self.nodes)
                        await anyio.to_thread.run_sync(publisher.send, message,
                                                       limiter=self._limiter)
                        self.published += 1
                    await outbox.send(pred)
            finally:
                if publisher is not None:
                    with anyio.CancelScope(shield=True):
                        end = end_message(source=self.source, frames=self.published,
                                          dropped=self.meter.dropped, stale=self.meter.stale)
                        await anyio.to_thread.run_sync(self._finish, publisher, end)

    @staticmethod
    def _finish(publisher: Publisher, end: dict[str, Any]) -> None:
        try:
            publisher.send(end)
        finally:
            publisher.close()

    def _stamp(self, pred: FramePrediction, now: float) -> FramePrediction:
        if pred.capture_time is not None:
            self.meter.add(pred.capture_time, now, seq=pred.seq, arrival_time=pred.arrival_time)
        return msgspec.structs.replace(pred, result_time=now)

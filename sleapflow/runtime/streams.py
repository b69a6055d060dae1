"""Stream wrappers that record items, starvation, backpressure and queue depth for a stage."""

from __future__ import annotations

from typing import Any, Generic, TypeVar

from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from sleapflow.runtime.stats import Clock, StageMeter

__all__ = ("MeteredReceiveStream", "MeteredSendStream", "T")


T = TypeVar("T")


class MeteredReceiveStream(Generic[T]):
    """The inbox a stage reads; time spent waiting here is the stage's starvation."""

    def __init__(self, inner: MemoryObjectReceiveStream[T], meter: StageMeter, clock: Clock,
                 seams: Any = None) -> None:
        self._inner = inner
        self._meter = meter
        self._clock = clock
        self._counted = False
        #: Stamps each frame as the stage takes it (a live run's latency meter), or None.
        self._seams = seams

    async def receive(self) -> T:
        depth = self._inner.statistics().current_buffer_used
        if depth > self._meter.peak_inbox_depth:
            self._meter.peak_inbox_depth = depth
        if not self._counted:
            self._counted = True
            self._meter.receivers += 1
        start = self._clock()
        try:
            item = await self._inner.receive()
        finally:
            # With several workers, each one's wait is a share of the stage's capacity.
            self._meter.starved_s += (self._clock() - start) / self._meter.receivers
        self._meter.items_in += 1
        self._meter.last_item = item
        if self._seams is not None:
            self._seams.passed(self._meter.name, item, sent=False)
        return item

    def receive_nowait(self) -> T:
        """An item already waiting (raises ``anyio.WouldBlock`` when none is): no wait to count."""
        item = self._inner.receive_nowait()
        self._meter.items_in += 1
        self._meter.last_item = item
        if self._seams is not None:
            self._seams.passed(self._meter.name, item, sent=False)
        return item

    def __aiter__(self) -> MeteredReceiveStream[T]:
        return self

    async def __anext__(self) -> T:
        from anyio import EndOfStream

        try:
            return await self.receive()
        except EndOfStream:
            raise StopAsyncIteration from None

    def clone(self) -> MeteredReceiveStream[T]:
        """Another handle on the same inbox, for stages that run several workers."""
        return MeteredReceiveStream(self._inner.clone(), self._meter, self._clock, self._seams)

    def close(self) -> None:
        self._inner.close()

    async def aclose(self) -> None:
        self._inner.close()

    async def __aenter__(self) -> MeteredReceiveStream[T]:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()


class MeteredSendStream(Generic[T]):
    """The outbox a stage writes; time spent waiting here is backpressure from downstream."""

    def __init__(self, inner: MemoryObjectSendStream[T], meter: StageMeter, clock: Clock,
                 seams: Any = None) -> None:
        self._inner = inner
        self._meter = meter
        self._clock = clock
        self._counted = False
        #: Stamps each frame as the stage hands it on (a live run's latency meter), or None.
        self._seams = seams

    async def send(self, item: T) -> None:
        if not self._counted:
            self._counted = True
            self._meter.senders += 1
        if self._seams is not None:
            # Stamped when ready, not when taken: a full queue's wait is the next stage's.
            self._seams.passed(self._meter.name, item, sent=True)
        start = self._clock()
        try:
            await self._inner.send(item)
        finally:
            self._meter.blocked_s += (self._clock() - start) / self._meter.senders
        self._meter.items_out += 1

    def clone(self) -> MeteredSendStream[T]:
        return MeteredSendStream(self._inner.clone(), self._meter, self._clock, self._seams)

    def close(self) -> None:
        self._inner.close()

    async def aclose(self) -> None:
        self._inner.close()

    async def __aenter__(self) -> MeteredSendStream[T]:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()

"""The closed set of adapters that turn pure callables into graph nodes: map, keyed map, batch,
reorder, collect."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Hashable, Iterable
from typing import Any, Generic, TypeVar

import anyio
import anyio.lowlevel
from anyio import CapacityLimiter, EndOfStream
from anyio.abc import TaskStatus

from sleapflow.runtime.graph import Emits, Role

__all__ = (
    "NO_KEY", "BatchStage", "Batcher", "CollectSink", "KeyedStage", "MapStage", "ReorderStage",
    "Reorderer", "S", "video_key",
)

#: The state type of a :class:`KeyedStage`.
S = TypeVar("S")


class MapStage:
    """A map node: one item in, one item out (or several with ``flatten``).

    The node declares the work; the runner drives it: ``open()`` once (the ``setup`` step, in a
    worker thread under ``limiter``: a model load), then ``workers`` loops of :meth:`apply` over
    the shared inbox. With ``offload`` the callable runs via ``anyio.to_thread.run_sync`` under
    ``limiter`` so the event loop only routes. With ``workers > 1`` several items are in flight
    at once and may leave out of order, so an order-sensitive stage downstream needs a
    :class:`ReorderStage` first.
    """

    role: Role = "stage"
    restores_order = False

    def __init__(self, name: str, fn: Callable[[Any], Any], *, offload: bool = True,
                 limiter: CapacityLimiter | None = None, workers: int = 1,
                 flatten: bool = False, setup: Callable[[], None] | None = None,
                 requires_order: bool = False) -> None:
        if workers < 1:
            raise ValueError("workers must be >= 1")
        if requires_order and workers > 1:
            raise ValueError("an order-sensitive stage runs one worker")
        self.requires_order = requires_order
        self.name = name
        self.fn = fn
        self.offload = offload
        self.limiter = limiter
        self.workers = workers
        self.flatten = flatten
        self.setup = setup
        self.preserves_order = workers == 1
        #: A flattening map turns each batch back into its items; a plain map keeps the unit.
        self.emits: Emits | None = "items" if flatten else None

    async def open(self) -> None:
        """The setup step, before the stage reports itself started."""
        if self.setup is not None:
            await anyio.to_thread.run_sync(self.setup, limiter=self.limiter)

    async def apply(self, item: Any) -> Any:
        if self.offload:
            return await anyio.to_thread.run_sync(self.fn, item, limiter=self.limiter)
        return self.fn(item)

    def results(self, result: Any) -> Iterable[Any]:
        """What one call sends on: its result, or each of its results with ``flatten``."""
        return result if self.flatten else (result,)


def video_key(item: Any) -> Hashable:
    """The default key of a :class:`KeyedStage`: the video an item belongs to."""
    return item.video_id


class _NoKey:
    """The key of a :class:`KeyedStage` before its first item and after a flush."""

    def __repr__(self) -> str:
        return "NO_KEY"


#: No key owns the held state yet (nothing has come, or the last key was flushed).
NO_KEY: Hashable = _NoKey()


class KeyedStage(Generic[S]):
    """A stateful map node with one state per key (by default per ``video_id``).

    ``make_state()`` makes a fresh state; ``fn(state, item)`` works one item against it and
    returns one result (or, with ``flatten``, an iterable of zero or more results). Items of
    one key follow one another (videos of a many-input run do), so one state is held at a
    time: when the key changes, ``flush(state)`` lets out what the old key's state still holds
    (zero or more items), the state is dropped and the new key starts from ``make_state()``;
    at the end of the stream the last key is flushed the same way. No state crosses from one
    key to the next, and items leave in the order they came.

    The state lives in named attributes (:attr:`state`, :attr:`key_now`), not in a coroutine
    frame, so a caller may feed items outside a graph with :meth:`push` / :meth:`finish` (the
    serial loop; a resume replaying a journal before the graph runs) and the graph then goes
    on from there. A state made before any item (:meth:`current`) belongs to the first key
    that comes. With ``offload`` (the default) each item's work, and each flush, runs in a
    worker thread under ``limiter`` so the event loop only routes.
    """

    role: Role = "stage"
    preserves_order = True
    restores_order = False
    #: Results are items of the unit that came in (a flattening keyed stage lets frames out).
    emits: Emits | None = None

    def __init__(self, name: str, make_state: Callable[[], S], fn: Callable[[S, Any], Any], *,
                 key: Callable[[Any], Hashable] = video_key,
                 flush: Callable[[S], Iterable[Any]] | None = None, flatten: bool = False,
                 offload: bool = True, limiter: CapacityLimiter | None = None,
                 requires_order: bool = True) -> None:
        self.name = name
        self.make_state = make_state
        self.fn = fn
        self.key = key
        self.flush = flush
        self.flatten = flatten
        self.offload = offload
        self.limiter = limiter
        #: Order-sensitive by default: a key's items must come in sequence, and keys one after
        #: another.
        self.requires_order = requires_order
        #: The state of :attr:`key_now`; None before it is made and after a flush.
        self.state: S | None = None
        #: The key whose items :attr:`state` has seen (:data:`NO_KEY` when none has).
        self.key_now: Hashable = NO_KEY

    def current(self) -> S:
        """The held state, made now if there is none."""
        if self.state is None:
            self.state = self.make_state()
        return self.state

    def push(self, item: Any) -> list[Any]:
        """Take the next item; return what leaves now: the old key's flushed items first when
        ``item`` starts a new key, then the item's own results."""
        key = self.key(item)
        out: list[Any] = []
        if self.key_now is not NO_KEY and key != self.key_now:
            out.extend(self.finish())
        self.key_now = key
        result = self.fn(self.current(), item)
        out.extend(result if self.flatten else (result,))
        return out

    def finish(self) -> list[Any]:
        """Flush the held state and drop it (a key has ended, or the stream has); return the
        items the flush lets out."""
        state, self.state, self.key_now = self.state, None, NO_KEY
        if state is None or self.flush is None:
            return []
        return list(self.flush(state))

    async def _work(self, fn: Callable[..., list[Any]], *args: Any) -> list[Any]:
        if self.offload:
            return await anyio.to_thread.run_sync(fn, *args, limiter=self.limiter)
        return fn(*args)

    async def run(self, inbox: Any, outbox: Any, *,
                  task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        async with inbox, outbox:
            task_status.started()
            async for item in inbox:
                for out in await self._work(self.push, item):
                    await outbox.send(out)
            for out in await self._work(self.finish):
                await outbox.send(out)


class Batcher:
    """The batching rule every interpreter shares: items gather until their total ``weight``
    reaches ``size``; a key change closes the batch before the new item joins."""

    def __init__(self, size: int, *, key: Callable[[Any], Hashable] | None = None,
                 weight: Callable[[Any], int] | None = None,
                 make_batch: Callable[[int, list[Any]], Any] | None = None) -> None:
        self.size = size
        self.key = key
        self.weight = weight
        self.make_batch = make_batch
        self.pending: list[Any] = []
        self._weight = 0
        self._key: Hashable = None
        self._seq = 0

    def add(self, item: Any) -> list[Any]:
        """Take ``item``; return the batches (none, one or two) that are now complete."""
        done: list[Any] = []
        key = self.key(item) if self.key is not None else None
        if self.pending and key != self._key:
            done.append(self.flush())
        self._key = key
        self.pending.append(item)
        self._weight += self.weight(item) if self.weight is not None else 1
        if self._weight >= self.size:
            done.append(self.flush())
        return done

    def flush(self) -> Any:
        """The pending items as a batch (call only when there are some)."""
        batch = (self.make_batch(self._seq, self.pending) if self.make_batch
                 else list(self.pending))
        self.pending = []
        self._weight = 0
        self._seq += 1
        return batch


class BatchStage:
    """Groups items until their total ``weight`` (1 each by default) reaches ``size``, flushing
    early on a key change, a timeout (measured from the first item of the batch) or the end of
    the stream. A weight function lets variable-size items (a frame's crops) fill even batches."""

    role: Role = "stage"
    preserves_order = True
    requires_order = False
    restores_order = False
    emits: Emits = "batches"

    def __init__(self, name: str, size: int, *, key: Callable[[Any], Hashable] | None = None,
                 timeout: float | None = None,
                 make_batch: Callable[[int, list[Any]], Any] | None = None,
                 weight: Callable[[Any], int] | None = None, greedy: bool = False) -> None:
        if size < 1:
            raise ValueError("batch size must be >= 1")
        #: Latency mode: a batch is what is waiting when its first item arrives (one item when
        #: the graph keeps up, up to ``size`` when it falls behind); nothing waits for more.
        self.greedy = greedy
        self.weight = weight
        self.name = name
        self.size = size
        self.key = key
        self.timeout = timeout
        self.make_batch = make_batch

    def batcher(self) -> Batcher:
        return Batcher(self.size, key=self.key, weight=self.weight, make_batch=self.make_batch)

    async def run(self, inbox: Any, outbox: Any, *,
                  task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        async with inbox, outbox:
            task_status.started()
            if self.greedy:
                await self._run_greedy(inbox, outbox)
                return
            batcher = self.batcher()
            # The timeout is a deadline set by the batch's first item: a steady trickle of
            # items must not hold a batch for ``timeout`` per item.
            deadline = 0.0
            while True:
                try:
                    if batcher.pending and self.timeout is not None:
                        with anyio.move_on_after(deadline - anyio.current_time()) as scope:
                            item = await inbox.receive()
                        if scope.cancelled_caught:
                            await outbox.send(batcher.flush())
                            continue
                    else:
                        item = await inbox.receive()
                except EndOfStream:
                    break
                for batch in batcher.add(item):
                    await outbox.send(batch)
                if self.timeout is not None and len(batcher.pending) == 1:
                    deadline = anyio.current_time() + self.timeout
            if batcher.pending:
                await outbox.send(batcher.flush())

    async def _run_greedy(self, inbox: Any, outbox: Any) -> None:
        batcher = self.batcher()
        while True:
            try:
                item = await inbox.receive()
            except EndOfStream:
                break
            ready = batcher.add(item)
            while batcher.pending and not ready:
                # One scheduling round lets the stage before hand over what it holds.
                await anyio.lowlevel.checkpoint()
                try:
                    ready = batcher.add(inbox.receive_nowait())
                except (anyio.WouldBlock, EndOfStream):
                    break
            for batch in ready:
                await outbox.send(batch)
            if batcher.pending:
                await outbox.send(batcher.flush())


class Reorderer:
    """Restores ``seq`` order; holds at most the items that raced ahead."""

    def __init__(self, seq_of: Callable[[Any], int], first_seq: int = 0) -> None:
        self.seq_of = seq_of
        self.expected = first_seq
        self.held: dict[int, Any] = {}

    def add(self, item: Any) -> list[Any]:
        self.held[self.seq_of(item)] = item
        out = []
        while self.expected in self.held:
            out.append(self.held.pop(self.expected))
            self.expected += 1
        return out

    def rest(self) -> list[Any]:
        """What is left at the end: gaps mean an upstream stage dropped an item; the rest leaves
        in order, not silently."""
        return [self.held.pop(seq) for seq in sorted(self.held)]


class ReorderStage:
    """Restores ``seq`` order after parallel workers; holds at most the items that raced ahead."""

    role: Role = "stage"
    preserves_order = True
    requires_order = False
    restores_order = True

    def __init__(self, name: str, *, seq_of: Callable[[Any], int] | None = None,
                 first_seq: int = 0) -> None:
        self.name = name
        self.seq_of = seq_of or (lambda item: item.seq)
        self.first_seq = first_seq

    def reorderer(self) -> Reorderer:
        return Reorderer(self.seq_of, self.first_seq)

    async def run(self, inbox: Any, outbox: Any, *,
                  task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        async with inbox, outbox:
            task_status.started()
            reorder = self.reorderer()
            async for item in inbox:
                for out in reorder.add(item):
                    await outbox.send(out)
            for out in reorder.rest():
                await outbox.send(out)


class CollectSink:
    """Keeps every item it receives, in order; an optional ``limit`` makes it leave early (a
    quiet stop upstream) and ``on_item`` is awaited on each item before it is kept."""

    role: Role = "sink"
    preserves_order = True
    requires_order = True
    restores_order = False

    def __init__(self, name: str = "sink", *, limit: int | None = None,
                 on_item: Callable[[Any], Awaitable[Any]] | None = None) -> None:
        self.name = name
        self.items: list[Any] = []
        self.limit = limit
        self.on_item = on_item

    async def run(self, inbox: Any, outbox: None, *,
                  task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        async with inbox:
            task_status.started()
            async for item in inbox:
                if self.on_item is not None:
                    await self.on_item(item)
                self.items.append(item)
                if self.limit is not None and len(self.items) >= self.limit:
                    return

"""The closed set of adapters that turn pure callables into stream stages: map, batch, reorder."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable
from typing import Any

import anyio
from anyio import CapacityLimiter, EndOfStream
from anyio.abc import TaskStatus

from sleapflow.runtime.graph import Role


class MapStage:
    """One item in, one item out (or several with ``flatten``), optionally in worker threads.

    With ``offload`` the callable runs via ``anyio.to_thread.run_sync`` under ``limiter`` so the
    event loop only routes. With ``workers > 1`` several items are in flight at once and may leave
    out of order, so an order-sensitive stage downstream needs a :class:`ReorderStage` first.
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

    async def _apply(self, item: Any) -> Any:
        if self.offload:
            return await anyio.to_thread.run_sync(self.fn, item, limiter=self.limiter)
        return self.fn(item)

    async def _work(self, inbox: Any, outbox: Any) -> None:
        async with inbox, outbox:
            async for item in inbox:
                try:
                    result = await self._apply(item)
                except Exception as exc:
                    # With several workers the inbox's last item may be another one.
                    exc.sleapflow_item = item  # type: ignore[attr-defined]
                    raise
                if self.flatten:
                    for out in result:
                        await outbox.send(out)
                else:
                    await outbox.send(result)

    async def run(self, inbox: Any, outbox: Any, *,
                  task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        async with inbox, outbox:
            if self.setup is not None:
                await anyio.to_thread.run_sync(self.setup)
            task_status.started()
            if self.workers == 1:
                await self._work(inbox.clone(), outbox.clone())
                return
            async with anyio.create_task_group() as tg:
                for _ in range(self.workers):
                    tg.start_soon(self._work, inbox.clone(), outbox.clone())


class BatchStage:
    """Groups items until their total ``weight`` (1 each by default) reaches ``size``, flushing
    early on a key change, a timeout (measured from the first item of the batch) or the end of
    the stream. A weight function lets variable-size items (a frame's crops) fill even batches."""

    role: Role = "stage"
    preserves_order = True
    requires_order = False
    restores_order = False

    def __init__(self, name: str, size: int, *, key: Callable[[Any], Hashable] | None = None,
                 timeout: float | None = None,
                 make_batch: Callable[[int, list[Any]], Any] | None = None,
                 weight: Callable[[Any], int] | None = None) -> None:
        if size < 1:
            raise ValueError("batch size must be >= 1")
        self.weight = weight
        self.name = name
        self.size = size
        self.key = key
        self.timeout = timeout
        self.make_batch = make_batch

    async def run(self, inbox: Any, outbox: Any, *,
                  task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        async with inbox, outbox:
            task_status.started()
            pending: list[Any] = []
            pending_weight = 0
            pending_key: Hashable = None
            batch_seq = 0
            held: Any = None
            ended = False
            # The timeout is a deadline set by the batch's first item: a steady trickle of
            # items must not hold a batch for ``timeout`` per item.
            deadline = 0.0

            async def flush() -> None:
                nonlocal pending, pending_weight, batch_seq
                if pending:
                    batch = (self.make_batch(batch_seq, pending) if self.make_batch
                             else list(pending))
                    pending = []
                    pending_weight = 0
                    batch_seq += 1
                    await outbox.send(batch)

            while not ended:
                if held is not None:
                    item, held = held, None
                else:
                    try:
                        if pending and self.timeout is not None:
                            with anyio.move_on_after(deadline - anyio.current_time()) as scope:
                                item = await inbox.receive()
                            if scope.cancelled_caught:
                                await flush()
                                continue
                        else:
                            item = await inbox.receive()
                    except EndOfStream:
                        ended = True
                        break
                key = self.key(item) if self.key is not None else None
                if pending and key != pending_key:
                    held = item
                    await flush()
                    continue
                pending_key = key
                if not pending and self.timeout is not None:
                    deadline = anyio.current_time() + self.timeout
                pending.append(item)
                pending_weight += self.weight(item) if self.weight is not None else 1
                if pending_weight >= self.size:
                    await flush()
            await flush()


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

    async def run(self, inbox: Any, outbox: Any, *,
                  task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        async with inbox, outbox:
            task_status.started()
            held: dict[int, Any] = {}
            expected = self.first_seq
            async for item in inbox:
                held[self.seq_of(item)] = item
                while expected in held:
                    await outbox.send(held.pop(expected))
                    expected += 1
            # Gaps mean an upstream stage dropped an item; emit the rest in order, not silently.
            for seq in sorted(held):
                await outbox.send(held[seq])


def flatten_items(batches: Iterable[Iterable[Any]]) -> list[Any]:
    """Serial counterpart of a flattening map, used by the serial runner."""
    return [item for batch in batches for item in batch]

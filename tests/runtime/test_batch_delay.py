"""The batch stage's timeout is a deadline from a batch's first item, on trio's mock clock."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from trio.testing import MockClock

from sleapflow.runtime import BatchStage, chain, run_graph


class _Trickle:
    """Sends 0, 1, 2, ... with ``gap`` seconds of (mock) time between items."""

    role = "source"
    preserves_order = True
    requires_order = False
    restores_order = False

    def __init__(self, n: int, gap: float) -> None:
        self.name = "trickle"
        self.n = n
        self.gap = gap

    async def run(self, inbox: None, outbox: Any, *,
                  task_status: Any = anyio.TASK_STATUS_IGNORED) -> None:
        async with outbox:
            task_status.started()
            for i in range(self.n):
                await outbox.send(i)
                await anyio.sleep(self.gap)


class _Collect:
    role = "sink"
    preserves_order = True
    requires_order = True
    restores_order = False

    def __init__(self) -> None:
        self.name = "collect"
        self.batches: list[tuple[float, list[int]]] = []

    async def run(self, inbox: Any, outbox: None, *,
                  task_status: Any = anyio.TASK_STATUS_IGNORED) -> None:
        async with inbox:
            task_status.started()
            async for batch in inbox:
                self.batches.append((anyio.current_time(), batch))


@pytest.mark.parametrize(("gap", "expected"), [
    # Items 0.4 s apart, 1 s deadline: a batch takes the items of its first second, not 10.
    (0.4, [[0, 1, 2], [3, 4, 5], [6, 7, 8], [9]]),
    # Items slower than the deadline: each goes alone.
    (1.5, [[i] for i in range(10)]),
])
def test_a_trickle_is_flushed_by_the_deadline_of_the_first_item(
        gap: float, expected: list[list[int]]) -> None:
    sink = _Collect()
    spec = chain("trickle", [_Trickle(10, gap), BatchStage("batch", 10, timeout=1.0), sink], 4)
    clock = MockClock(autojump_threshold=0)
    anyio.run(run_graph, spec, backend="trio", backend_options={"clock": clock})
    assert [b for _, b in sink.batches] == expected
    first = sink.batches[0][0]
    assert first == pytest.approx(1.0, abs=1e-6)  # flushed at the deadline, not at the 4th item

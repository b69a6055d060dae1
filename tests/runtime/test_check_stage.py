"""check_stage catches each house rule a stage can break (negative controls), and passes a stage
that keeps them."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from sleapflow.runtime import BatchStage, MapStage, ReorderStage
from sleapflow.testing import ListSource, StageCheckFailed, check_stage

pytestmark = pytest.mark.anyio


class Relay:
    """A well-behaved hand-written stage: doubles each item."""

    role = "stage"
    preserves_order = True
    requires_order = False
    restores_order = False

    def __init__(self, name: str = "relay") -> None:
        self.name = name

    async def run(self, inbox: Any, outbox: Any, *, task_status: Any = anyio.TASK_STATUS_IGNORED) -> None:
        async with inbox, outbox:
            task_status.started()
            async for item in inbox:
                await outbox.send(2 * item)


class NoClose(Relay):
    async def run(self, inbox, outbox, *, task_status=anyio.TASK_STATUS_IGNORED):
        task_status.started()
        async for item in inbox:
            await outbox.send(item)


class StartsTwice(Relay):
    async def run(self, inbox, outbox, *, task_status=anyio.TASK_STATUS_IGNORED):
        async with inbox, outbox:
            task_status.started()
            task_status.started()
            async for item in inbox:
                await outbox.send(item)


class SendsBeforeStarting(Relay):
    async def run(self, inbox, outbox, *, task_status=anyio.TASK_STATUS_IGNORED):
        async with inbox, outbox:
            await outbox.send("hello")
            task_status.started()
            async for item in inbox:
                await outbox.send(item)


class SwallowsErrors(Relay):
    async def run(self, inbox, outbox, *, task_status=anyio.TASK_STATUS_IGNORED):
        async with inbox, outbox:
            task_status.started()
            try:
                async for item in inbox:
                    await outbox.send(item)
            except Exception:
                pass


class LeavesEarly(Relay):
    async def run(self, inbox, outbox, *, task_status=anyio.TASK_STATUS_IGNORED):
        async with inbox, outbox:
            task_status.started()
            await outbox.send(await inbox.receive())


class IgnoresItsConsumer(Relay):
    """Keeps reading its inbox after the outbox broke."""

    async def run(self, inbox, outbox, *, task_status=anyio.TASK_STATUS_IGNORED):
        async with inbox, outbox:
            task_status.started()
            async for item in inbox:
                try:
                    await outbox.send(item)
                except anyio.BrokenResourceError:
                    continue


class WrapsTheStop(Relay):
    async def run(self, inbox, outbox, *, task_status=anyio.TASK_STATUS_IGNORED):
        try:
            await super().run(inbox, outbox, task_status=task_status)
        except anyio.BrokenResourceError as exc:
            raise RuntimeError("downstream went away") from exc


class Undeclared:
    name = "undeclared"
    role = "stage"

    async def run(self, inbox, outbox, *, task_status=anyio.TASK_STATUS_IGNORED):
        async with inbox, outbox:
            task_status.started()


async def test_a_well_behaved_stage_passes_and_its_output_comes_back() -> None:
    assert await check_stage(Relay(), [1, 2, 3], bad_item=None) == [2, 4, 6]
    assert await check_stage(MapStage("inc", lambda x: x + 1, workers=2), [1, 2], bad_item="x") \
        in ([2, 3], [3, 2])
    assert await check_stage(BatchStage("batch", 2), [1, 2, 3]) == [[1, 2], [3]]
    assert await check_stage(ListSource([5, 6])) == [5, 6]


@pytest.mark.parametrize(("stage", "rule"), [
    (NoClose(), r"normal: it returned with its inbox, outbox still open"),
    (StartsTwice(), r"started\(\) was called 2 times"),
    (SendsBeforeStarting(), r"used a stream before calling started"),
    (SwallowsErrors(), r"send_error: an error on its send did not come out"),
    (LeavesEarly(), r"normal: it returned before its inbox ended"),
    (IgnoresItsConsumer(), r"early_stop: it went on"),
    (WrapsTheStop(), r"early_stop: the consumer leaving failed the run"),
    (Undeclared(), r"declaration: it does not declare preserves_order"),
])
async def test_each_broken_rule_is_reported(stage: Any, rule: str) -> None:
    with pytest.raises(StageCheckFailed, match=rule):
        await check_stage(stage, [1, 2, 3])


async def test_a_stage_that_accepts_a_bad_item_is_reported() -> None:
    with pytest.raises(StageCheckFailed, match="bad_item: the bad item did not fail the run"):
        await check_stage(MapStage("id", lambda x: x), [1], bad_item=object())
    with pytest.raises(StageCheckFailed, match="bad_item"):
        await check_stage(ReorderStage("reorder", seq_of=lambda x: 0), [1], bad_item=object())


async def test_a_hang_is_reported_not_waited_on() -> None:
    class Hangs(Relay):
        async def run(self, inbox, outbox, *, task_status=anyio.TASK_STATUS_IGNORED):
            async with inbox, outbox:
                task_status.started()
                await anyio.Event().wait()

    with pytest.raises(StageCheckFailed, match="did not end within"):
        await check_stage(Hangs(), [1], timeout=0.05)

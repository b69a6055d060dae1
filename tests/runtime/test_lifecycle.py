"""The runtime owns the lifecycle: start handshake, running_graph blocks, fanned-out map workers and
item context as an exception note."""

from __future__ import annotations

import threading

import anyio
import pytest

from sleapflow.errors import StageError
from sleapflow.runtime import ItemFailure, MapStage, ReorderStage, chain, run_graph, running_graph
from sleapflow.testing import ListSink, ListSource

pytestmark = pytest.mark.anyio


class Item:
    def __init__(self, seq: int) -> None:
        self.seq = seq
        self.frame_idx = 10 + seq
        self.video_id = seq % 2


async def test_run_graph_reports_started_after_every_setup() -> None:
    loaded: list[str] = []
    stage = MapStage("model", lambda x: x, setup=lambda: loaded.append("model"))
    sink = ListSink()
    spec = chain("start", [ListSource(range(5)), stage, sink], 2)
    async with anyio.create_task_group() as tg:
        runner = await tg.start(run_graph, spec)
        assert loaded == ["model"]
        assert runner.spec is spec
    assert sink.items == list(range(5))


async def test_runner_fans_out_map_workers() -> None:
    # Three items can only pass the barrier together: the runner must run three at once.
    barrier = threading.Barrier(3, timeout=5)

    def wait(x: Item) -> Item:
        barrier.wait()
        return x

    sink = ListSink()
    spec = chain("fan", [ListSource([Item(i) for i in range(6)]),
                         MapStage("par", wait, workers=3, limiter=anyio.CapacityLimiter(3)),
                         ReorderStage("reorder"), sink], 2)
    await run_graph(spec)
    assert [i.seq for i in sink.items] == list(range(6))


async def test_error_carries_its_item_as_a_note() -> None:
    def fail(item: Item) -> Item:
        if item.seq == 3:
            raise ValueError("bad crop")
        return item

    spec = chain("noted", [ListSource([Item(i) for i in range(8)]),
                           MapStage("crop", fail, workers=2), ReorderStage("re"), ListSink()], 2)
    with pytest.raises(StageError) as info:
        await run_graph(spec)
    cause = info.value.__cause__
    assert isinstance(cause, ValueError)
    assert not hasattr(cause, "sleapflow_item")
    assert any("noted.crop@3 (frame 13)" in note for note in cause.__notes__)
    # Where it failed, as fields: a many-input run fails only the video named here.
    assert (info.value.stage, info.value.seq, info.value.frame_idx, info.value.video_id) == \
        ("crop", 3, 13, 1)


async def test_running_graph_block_and_stage_errors() -> None:
    sink = ListSink()
    async with running_graph(chain("ok", [ListSource(range(4)), sink], 2)) as graph:
        await graph.finished.wait()
    assert sink.items == list(range(4)) and graph.stats is not None

    with pytest.raises(KeyError, match="mine"):
        async with running_graph(chain("body", [ListSource(range(4)), ListSink()], 2)):
            raise KeyError("mine")

    def boom(x: int) -> int:
        raise RuntimeError("stage failed")

    with pytest.raises(StageError, match=r"^failing\.boom: stage failed"):
        async with running_graph(chain("failing", [ListSource(range(4)), MapStage("boom", boom),
                                                ListSink()], 2)) as graph:
            await anyio.sleep_forever()


class _FailingSource(ListSource):
    """A source with its own loop that fails on one item and names it."""

    async def run(self, inbox, outbox, *, task_status=anyio.TASK_STATUS_IGNORED):
        async with outbox:
            task_status.started()
            for item in self.items:
                try:
                    if item.seq == 2:
                        raise OSError("corrupt packet")
                except OSError as exc:
                    raise ItemFailure(item) from exc
                await outbox.send(item)


async def test_a_stage_names_the_item_it_failed_on() -> None:
    spec = chain("src", [_FailingSource([Item(i) for i in range(5)], name="decode"), ListSink()], 2)
    with pytest.raises(StageError, match=r"^src\.decode@2 \(frame 12\): corrupt packet") as info:
        await run_graph(spec)
    assert isinstance(info.value.__cause__, OSError)
    assert (info.value.seq, info.value.frame_idx) == (2, 12)

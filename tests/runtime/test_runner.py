"""Runtime behaviour: backpressure, errors, early stop, cancellation, metrics, serial loop."""

from __future__ import annotations

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sleapflow.errors import ConfigError, StageError
from sleapflow.runtime import BatchStage, GraphRunner, MapStage, ReorderStage, chain, run_graph
from sleapflow.testing import FakeClock, ListSink, ListSource, run_serial

pytestmark = pytest.mark.anyio


class Item:
    def __init__(self, seq: int, frame_idx: int | None = None) -> None:
        self.seq = seq
        self.frame_idx = seq if frame_idx is None else frame_idx


class GatedSink(ListSink):
    """A sink that takes nothing until its gate opens."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = anyio.Event()

    async def run(self, inbox, outbox, *, task_status=anyio.TASK_STATUS_IGNORED):
        async with inbox:
            task_status.started()
            await self.gate.wait()
            async for item in inbox:
                self.items.append(item)


@pytest.mark.parametrize("maxsize", [1, 3, 8])
async def test_slow_sink_holds_source_exactly_maxsize_ahead(maxsize: int) -> None:
    source = ListSource(range(100))
    sink = GatedSink()
    spec = chain("bp", [source, sink], maxsize)
    async with anyio.create_task_group() as tg:
        tg.start_soon(run_graph, spec)
        await anyio.wait_all_tasks_blocked()
        assert source.sent == maxsize
        await anyio.wait_all_tasks_blocked()
        assert source.sent == maxsize  # still held: nothing drained
        sink.gate.set()
    assert sink.items == list(range(100))


async def test_backpressure_through_a_middle_stage() -> None:
    source = ListSource(range(50))
    sink = GatedSink()
    spec = chain("bp2", [source, MapStage("double", lambda x: 2 * x, offload=False), sink], 2)
    async with anyio.create_task_group() as tg:
        tg.start_soon(run_graph, spec)
        await anyio.wait_all_tasks_blocked()
        # two queued before the map, one held by the map while it waits, two queued after it
        assert source.sent == 2 + 1 + 2
        sink.gate.set()
    assert sink.items == [2 * x for x in range(50)]


def _explode(item: Item) -> Item:
    if item.seq == 7:
        raise ValueError("bad pixel")
    return item


async def test_stage_error_names_graph_stage_and_frame() -> None:
    items = [Item(i, frame_idx=100 + i) for i in range(20)]
    sink = ListSink()
    spec = chain("g1", [ListSource(items), MapStage("boom", _explode), sink], 2)
    runner = GraphRunner(spec)
    with pytest.raises(StageError) as info:
        await runner.run()
    err = info.value
    assert str(err).startswith("g1.boom@7 (frame 107): bad pixel")
    assert (err.graph, err.stage, err.seq, err.frame_idx) == ("g1", "boom", 7, 107)
    assert isinstance(err.__cause__, ValueError)
    # every stream was closed: nothing is left running or open
    for stream in runner.raw_streams:
        stats = stream.statistics()
        assert stats.open_send_streams == 0 or stats.open_receive_streams == 0
    assert [i.seq for i in sink.items] == list(range(7))


async def test_error_in_sink_is_one_stage_error() -> None:
    async def fail(item: int) -> None:
        if item == 3:
            raise RuntimeError("disk full")

    spec = chain("g2", [ListSource(range(10)), ListSink(on_item=fail)], 1)
    with pytest.raises(StageError, match=r"^g2\.sink: disk full"):
        await run_graph(spec)


async def test_consumer_leaving_early_stops_upstream_quietly() -> None:
    source = ListSource(range(10_000))
    sink = ListSink(limit=5)
    spec = chain("early", [source, MapStage("inc", lambda x: x + 1), sink], 4)
    runner = GraphRunner(spec)
    stats = await runner.run()
    assert sink.items == [1, 2, 3, 4, 5]
    assert source.sent < 100  # upstream stopped instead of decoding everything
    assert stats.by_name()["sink"].items_in == 5


async def test_external_cancellation_closes_every_stream() -> None:
    source = ListSource(range(1000))
    sink = GatedSink()
    spec = chain("cancel", [source, MapStage("id", lambda x: x), sink], 2)
    runner = GraphRunner(spec)
    with anyio.CancelScope() as scope:
        async with anyio.create_task_group() as tg:
            tg.start_soon(runner.run)
            await anyio.wait_all_tasks_blocked()
            scope.cancel()
    assert scope.cancelled_caught
    for stream in runner.raw_streams:
        stats = stream.statistics()
        assert stats.open_send_streams == 0
        assert stats.open_receive_streams == 0


async def test_metrics_with_fake_clock() -> None:
    clock = FakeClock()

    def slow(item: int) -> int:
        clock.advance(0.5)
        return item

    spec = chain("m", [ListSource(range(4)), MapStage("slow", slow, offload=False),
                       ListSink()], 8)
    stats = await GraphRunner(spec, clock=clock).run()
    s = stats.by_name()["slow"]
    assert (s.items_in, s.items_out) == (4, 4)
    assert s.busy_s == pytest.approx(2.0)
    assert stats.wall_s == pytest.approx(2.0)
    assert stats.bottleneck == "slow"
    assert stats.by_name()["sink"].items_in == 4


def test_validation_rejects_bad_graphs() -> None:
    with pytest.raises(ConfigError, match="duplicate"):
        chain("d", [ListSource([]), MapStage("x", abs), MapStage("x", abs), ListSink()], 2)
    with pytest.raises(ConfigError, match="bounded"):
        chain("u", [ListSource([]), ListSink()], 0)
    with pytest.raises(ConfigError, match="reorder"):
        chain("o", [ListSource([]), MapStage("par", abs, workers=2), ListSink()], 2)
    chain("ok", [ListSource([]), MapStage("par", abs, workers=2), ReorderStage("re"),
                 ListSink()], 2)


def _make_batch(seq: int, items: list[Item]) -> list[Item]:
    return items


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(n=st.integers(0, 60), sizes=st.lists(st.integers(1, 5), min_size=5, max_size=5),
       batch=st.integers(1, 7), workers=st.integers(1, 3))
def test_graph_equals_serial_loop(anyio_backend: str, n: int, sizes: list[int], batch: int,
                                  workers: int) -> None:
    def square_all(b: list[Item]) -> list[tuple[int, int]]:
        return [(i.seq, i.seq * i.seq) for i in b]

    def tag(pair: tuple[int, int]) -> Item:
        out = Item(pair[0])
        out.value = pair[1] + 1
        return out

    def stages() -> list:
        return [BatchStage("batch", batch, make_batch=_make_batch),
                MapStage("square", square_all, flatten=True),
                MapStage("tag", tag, workers=workers),
                ReorderStage("reorder")]

    items = [Item(i) for i in range(n)]
    expected = [(i.seq, i.value) for i in run_serial(items, stages())]
    sink = ListSink()
    spec = chain("prop", [ListSource(items), *stages(), sink], sizes)
    anyio.run(run_graph, spec, backend=anyio_backend)
    assert [(i.seq, i.value) for i in sink.items] == expected


async def test_early_stop_and_errors_through_a_multi_worker_stage() -> None:
    source = ListSource([Item(i) for i in range(10_000)])
    sink = ListSink(limit=3)
    spec = chain("early2", [source, MapStage("par", lambda x: x, workers=3), ReorderStage("re"),
                            sink], 2)
    await run_graph(spec)
    assert [i.seq for i in sink.items] == [0, 1, 2]
    assert source.sent < 100

    def fail_on_five(item: Item) -> Item:
        if item.seq == 5:
            raise KeyError("missing part")
        return item

    spec = chain("err2", [ListSource([Item(i) for i in range(50)]),
                          MapStage("par", fail_on_five, workers=3), ReorderStage("re"), ListSink()], 2)
    with pytest.raises(StageError, match=r"^err2\.par@5 \(frame 5\): 'missing part'") as info:
        await run_graph(spec)
    assert isinstance(info.value.__cause__, KeyError)

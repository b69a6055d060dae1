"""The keyed stateful map: one state per key, flushed on a key change and at the end, order kept,
errors propagated, and always the same as a plain serial loop."""

from __future__ import annotations

from dataclasses import dataclass

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sleapflow.errors import StageError
from sleapflow.runtime import KeyedStage, chain, run_graph, run_serial
from sleapflow.runtime.adapters import NO_KEY
from sleapflow.testing import ListSink, ListSource

pytestmark = pytest.mark.anyio


@dataclass(frozen=True)
class Item:
    seq: int
    video_id: int
    frame_idx: int = 0
    camera: str = "a"


def items_of(videos: list[int]) -> list[Item]:
    """One item per entry, numbered in order; frame numbers restart with each video."""
    out: list[Item] = []
    for seq, video in enumerate(videos):
        frame = out[-1].frame_idx + 1 if out and out[-1].video_id == video else 0
        out.append(Item(seq, video, frame))
    return out


class Counter:
    """A state that counts what it has seen and remembers whose items they were."""

    def __init__(self) -> None:
        self.n = 0
        self.videos: set[int] = set()


def count(state: Counter, item: Item) -> tuple[int, int, int]:
    state.n += 1
    state.videos.add(item.video_id)
    return (item.seq, item.video_id, state.n)


class Holder:
    """A state that holds items back in threes (a gap linker's shape: zero or more out)."""

    def __init__(self) -> None:
        self.held: list[Item] = []

    def push(self, item: Item) -> list[tuple[int, int]]:
        self.held.append(item)
        if len(self.held) < 3:
            return []
        return self.flush()

    def flush(self) -> list[tuple[int, int]]:
        out = [(i.seq, len(self.held)) for i in self.held]
        self.held = []
        return out


def holding_stage(name: str = "hold", **kwargs) -> KeyedStage[Holder]:
    return KeyedStage(name, Holder, Holder.push, flush=Holder.flush, flatten=True, **kwargs)


async def test_each_key_gets_a_fresh_state_that_no_other_key_sees() -> None:
    states: list[Counter] = []

    def make() -> Counter:
        states.append(Counter())
        return states[-1]

    sink = ListSink()
    stage = KeyedStage("count", make, count)
    await run_graph(chain("keyed", [ListSource(items_of([0, 0, 0, 1, 1, 2, 2, 2, 2])), stage, sink], 2))
    assert sink.items == [(0, 0, 1), (1, 0, 2), (2, 0, 3), (3, 1, 1), (4, 1, 2),
                          (5, 2, 1), (6, 2, 2), (7, 2, 3), (8, 2, 4)]
    assert [s.videos for s in states] == [{0}, {1}, {2}]
    # The end of the stream drops the last state too: a later run starts afresh.
    assert stage.state is None and stage.key_now is NO_KEY


async def test_a_key_that_comes_back_starts_afresh() -> None:
    sink = ListSink()
    stage = KeyedStage("count", Counter, count)
    await run_graph(chain("back", [ListSource(items_of([0, 0, 1, 0])), stage, sink], 1))
    assert [n for _, _, n in sink.items] == [1, 2, 1, 1]


async def test_the_key_function_is_a_parameter() -> None:
    items = [Item(0, 0, camera="a"), Item(1, 1, camera="a"), Item(2, 2, camera="b")]
    sink = ListSink()
    stage = KeyedStage("count", Counter, count, key=lambda item: item.camera)
    await run_graph(chain("camera", [ListSource(items), stage, sink], 1))
    assert [n for _, _, n in sink.items] == [1, 2, 1]


async def test_held_items_leave_when_the_key_changes_and_at_the_end() -> None:
    # Worked on the event loop: a task waiting on a worker thread would count as blocked.
    stage = holding_stage(offload=False)
    send_in, inbox = anyio.create_memory_object_stream[Item](10)
    outbox, receive_out = anyio.create_memory_object_stream[tuple[int, int]](10)
    items = items_of([0, 0, 0, 0, 1, 1])
    got: list[tuple[int, int]] = []
    async with anyio.create_task_group() as tg, receive_out:
        await tg.start(stage.run, inbox, outbox)
        for item in items[:4]:
            await send_in.send(item)
        await anyio.wait_all_tasks_blocked()
        got.extend(receive_out.receive_nowait() for _ in range(3))
        assert got == [(0, 3), (1, 3), (2, 3)]  # the fourth is held
        with pytest.raises(anyio.WouldBlock):
            receive_out.receive_nowait()
        await send_in.send(items[4])  # a new video: video 0's held item leaves first
        await anyio.wait_all_tasks_blocked()
        assert receive_out.receive_nowait() == (3, 1)
        with pytest.raises(anyio.WouldBlock):
            receive_out.receive_nowait()
        await send_in.send(items[5])
        await send_in.aclose()  # the end of the stream flushes the last video
        got = [item async for item in receive_out]
    assert got == [(4, 2), (5, 2)]


async def test_a_flush_may_let_nothing_out() -> None:
    sink = ListSink()
    stage = KeyedStage("drop", list, lambda held, item: [], flush=lambda held: [], flatten=True)
    await run_graph(chain("none", [ListSource(items_of([0, 1, 2])), stage, sink], 1))
    assert sink.items == []


async def test_an_error_in_the_work_propagates_with_its_item() -> None:
    def fail(state: Counter, item: Item) -> tuple[int, int, int]:
        if item.seq == 4:
            raise ValueError("bad frame")
        return count(state, item)

    sink = ListSink()
    spec = chain("err", [ListSource(items_of([0, 0, 0, 1, 1, 1])), KeyedStage("track", Counter, fail),
                         sink], 1)
    with pytest.raises(StageError, match=r"^err\.track@4 \(frame 1\): bad frame") as info:
        await run_graph(spec)
    assert isinstance(info.value.__cause__, ValueError)
    assert [seq for seq, _, _ in sink.items] == [0, 1, 2, 3]


@pytest.mark.parametrize("offload", [True, False])
async def test_an_error_in_a_flush_propagates(offload: bool) -> None:
    def broken_flush(state: Holder) -> list[tuple[int, int]]:
        raise OSError("cannot flush")

    stage = KeyedStage("hold", Holder, Holder.push, flush=broken_flush, flatten=True, offload=offload)
    with pytest.raises(StageError, match="cannot flush") as info:
        await run_graph(chain("flush", [ListSource(items_of([0, 0, 1])), stage, ListSink()], 1))
    assert isinstance(info.value.__cause__, OSError)


async def test_a_consumer_leaving_early_stops_it_quietly() -> None:
    source = ListSource(items_of([0] * 5000))
    sink = ListSink(limit=2)
    await run_graph(chain("early", [source, KeyedStage("count", Counter, count), sink], 2))
    assert [n for _, _, n in sink.items] == [1, 2]
    assert source.sent < 100


async def test_items_fed_before_the_graph_runs_are_carried_on() -> None:
    # A resume replays journaled frames through the stage, then the graph goes on from there.
    stage = KeyedStage("count", Counter, count)
    items = items_of([3, 3, 3, 3, 3])
    assert [stage.push(item) for item in items[:2]] == [[(0, 3, 1)], [(1, 3, 2)]]
    sink = ListSink()
    await run_graph(chain("resumed", [ListSource(items[2:]), stage, sink], 1))
    assert [n for _, _, n in sink.items] == [3, 4, 5]


def test_a_state_made_before_any_item_belongs_to_the_first_key() -> None:
    stage = holding_stage()
    stage.current().held.append(Item(-1, 7))
    assert stage.key_now is NO_KEY
    assert stage.push(Item(0, 7)) == []
    assert stage.push(Item(1, 7)) == [(-1, 3), (0, 3), (1, 3)]
    assert stage.finish() == [] and stage.state is None


def test_the_adapter_declares_itself_an_ordered_stage() -> None:
    stage = holding_stage()
    assert (stage.role, stage.preserves_order, stage.requires_order, stage.restores_order) == \
        ("stage", True, True, False)
    assert not hasattr(stage, "apply")  # the runner drives it through its own run()


def serial_loop(items: list[Item], *, make, fn, flush) -> list:
    """What the adapter must equal, written out plainly."""
    out: list = []
    state = None
    video = None
    for item in items:
        if state is not None and item.video_id != video:
            out.extend(flush(state))
            state = None
        if state is None:
            state, video = make(), item.video_id
        out.extend(fn(state, item))
    if state is not None:
        out.extend(flush(state))
    return out


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(videos=st.lists(st.integers(0, 3), max_size=40), sizes=st.lists(st.integers(1, 4), min_size=2,
                                                                        max_size=2),
       offload=st.booleans(), hold=st.booleans())
def test_the_adapter_equals_a_plain_serial_loop(anyio_backend: str, videos: list[int], sizes: list[int],
                                                offload: bool, hold: bool) -> None:
    items = items_of(videos)
    if hold:
        make, fn, flush = Holder, Holder.push, Holder.flush
    else:
        make, fn, flush = Counter, lambda s, i: [count(s, i)], lambda s: [("end", s.n)]
    expected = serial_loop(items, make=make, fn=fn, flush=flush)

    def stage() -> KeyedStage:
        return KeyedStage("keyed", make, fn, flush=flush, flatten=True, offload=offload)

    sink = ListSink()
    anyio.run(run_graph, chain("prop", [ListSource(items), stage(), sink], sizes), backend=anyio_backend)
    assert sink.items == expected
    assert run_serial(items, [stage()]) == expected

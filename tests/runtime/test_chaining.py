"""Operator chaining: which map nodes fold into one, and that a chained graph gives what the
unchained one gives, one worker-thread call per item, under every member's limiter."""

from __future__ import annotations

import threading

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sleapflow.errors import StageError
from sleapflow.runtime import BatchStage, MapStage, chain, run_graph
from sleapflow.runtime.chaining import ChainedMaps, chain_maps
from sleapflow.testing import ListSink, ListSource

pytestmark = pytest.mark.anyio


def _names(stages: list) -> list[str]:
    return [s.name for s in stages]


def test_runs_of_one_worker_offloaded_maps_fold_and_a_flattening_map_ends_a_run() -> None:
    source, sink = ListSource([]), ListSink()
    stages = [
        source,
        MapStage("a", str), MapStage("b", str),
        BatchStage("batch", 2),
        MapStage("c", str), MapStage("d", list, flatten=True), MapStage("e", str),
        MapStage("f", str, workers=2), MapStage("g", str),
        MapStage("h", str, offload=False), MapStage("i", str), MapStage("j", str),
        sink,
    ]
    folded = chain_maps(stages)
    assert _names(folded) == ["source", "a+b", "batch", "c+d", "e", "f", "g", "h", "i+j", "sink"]
    c_d = folded[3]
    assert isinstance(c_d, ChainedMaps) and c_d.flatten and c_d.emits == "items"
    assert not folded[1].flatten and folded[1].preserves_order
    single = MapStage("x", str)
    assert chain_maps([source, single, sink]) == [source, single, sink]  # nothing to fold


async def test_each_item_goes_through_every_member_in_one_thread_call(
        monkeypatch: pytest.MonkeyPatch) -> None:
    threads: dict[int, set[int]] = {}
    dispatched: list[str] = []
    run_sync = anyio.to_thread.run_sync

    async def counted(fn, *args, **kwargs):
        dispatched.append("setup" if not args else "item")
        return await run_sync(fn, *args, **kwargs)

    monkeypatch.setattr(anyio.to_thread, "run_sync", counted)

    def step(k: int):
        def fn(x: int) -> int:
            threads.setdefault(x // 100, set()).add(threading.get_ident())
            return x + k
        return fn

    order: list[str] = []

    def setup(name: str):
        return lambda: order.append(name)

    members = [MapStage(f"m{k}", step(k), setup=setup(f"m{k}")) for k in (1, 2, 3)]
    sink = ListSink()
    spec = chain("chained", [ListSource(range(0, 1000, 100)), ChainedMaps(members), sink], 1)
    await run_graph(spec)
    assert sink.items == [x + 6 for x in range(0, 1000, 100)]
    assert order == ["m1", "m2", "m3"]  # every member's set-up, in order, before the first item
    # One worker-thread call per item (three, unchained), on one thread; one per set-up.
    assert dispatched.count("item") == 10 and dispatched.count("setup") == 3
    assert all(len(ids) == 1 for ids in threads.values())


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(items=st.lists(st.integers(-50, 50), max_size=20), size=st.integers(1, 4),
       flatten_last=st.booleans())
async def test_a_chained_graph_gives_what_the_unchained_graph_gives(
        items: list[int], size: int, flatten_last: bool) -> None:
    def build() -> list:
        last = (MapStage("split", lambda x: [x, -x], flatten=True) if flatten_last
                else MapStage("neg", lambda x: -x))
        return [ListSource(items), MapStage("double", lambda x: 2 * x),
                MapStage("inc", lambda x: x + 1), last, ListSink()]

    plain = build()
    await run_graph(chain("plain", plain, size))
    chained = chain_maps(build())
    assert len(chained) == 3
    await run_graph(chain("chained", chained, size))
    assert chained[-1].items == plain[-1].items


async def test_a_chain_holds_each_members_limiter_once_even_when_they_share_one() -> None:
    shared = anyio.CapacityLimiter(1)
    seen: list[float] = []

    def busy(x: int) -> int:
        seen.append(shared.borrowed_tokens)
        return x

    chained = ChainedMaps([MapStage("p", busy, limiter=shared),
                           MapStage("q", busy, limiter=shared)])
    sink = ListSink()
    with anyio.fail_after(10):  # a limiter taken twice would wait for itself forever
        await run_graph(chain("shared", [ListSource(range(3)), chained, sink], 1))
    assert sink.items == [0, 1, 2]
    assert seen == [1] * 6  # held while every member ran


async def test_an_error_in_a_chain_names_the_chain_and_the_step() -> None:
    def bad(x: int) -> int:
        if x == 2:
            raise ValueError("bad pixel")
        return x

    chained = ChainedMaps([MapStage("prep", lambda x: x), MapStage("peaks", bad)])
    with pytest.raises(StageError) as info:
        await run_graph(chain("g", [ListSource(range(5)), chained, ListSink()], 1))
    assert str(info.value).startswith("g.prep+peaks: bad pixel")
    assert "in the chained step 'peaks'" in "\n".join(info.value.__cause__.__notes__)


def test_a_chain_needs_two_members() -> None:
    with pytest.raises(ValueError, match="two map nodes"):
        ChainedMaps([MapStage("one", str)])

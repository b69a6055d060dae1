"""The async API: ordered results, backpressure, early exit, one error out, several graphs."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import anyio
import numpy as np
import pytest
import sleap_io as sio

from sleapflow.errors import ConfigError, ModelLoadError, StageError
from sleapflow.inputs import PyAVReader
from sleapflow.messages import FramePrediction
from sleapflow.runtime import MapStage, chain
from sleapflow.session import GraphSession, open_custom_graph, open_graph

pytestmark = pytest.mark.anyio

MODEL = "model_ckpts/minimal_instance_single_instance"
N_FRAMES = 16


@pytest.fixture(scope="module")
def frames(assets: Path) -> list[np.ndarray]:
    reader = PyAVReader(str(assets / "datasets/small_robot.mp4"))
    try:
        return [reader.read(i) for i in range(N_FRAMES)]
    finally:
        reader.close()


@pytest.fixture(scope="module")
def reference_preds(assets: Path, tmp_path_factory: pytest.TempPathFactory) -> sio.Labels:
    """What `sleapflow track` writes for the same frames."""
    from sleapflow.cli.app import main

    out = tmp_path_factory.mktemp("cli") / "cli.slp"
    assert main(["track", "-i", str(assets / "datasets/small_robot.mp4"), "-m", str(assets / MODEL),
                 "--frames", f"0-{N_FRAMES - 1}", "-o", str(out), "--device", "cpu"]) == 0
    return sio.load_slp(str(out), open_videos=False)


def _check_against(preds: list[FramePrediction], labels: sio.Labels) -> None:
    by_idx = {lf.frame_idx: lf for lf in labels}
    for pred in preds:
        if np.all(np.isnan(pred.points)):
            assert pred.frame_idx not in by_idx  # the writer drops empty single-instance frames
            continue
        np.testing.assert_allclose(pred.points[0], by_idx[pred.frame_idx].instances[0].numpy())


async def _push_all(graph: GraphSession, images: list[np.ndarray], idx: list[int]) -> None:
    for image, frame_idx in zip(images, idx):
        await graph.push(image, frame_idx=frame_idx)
    await graph.close_input()


async def test_file_and_pushed_frames_give_the_cli_results_in_order(
        assets: Path, frames: list[np.ndarray], reference_preds: sio.Labels) -> None:
    model = [str(assets / MODEL)]
    async with open_graph(model, source=str(assets / "datasets/small_robot.mp4"), device="cpu",
                          frames=f"0-{N_FRAMES - 1}") as graph:
        from_file = [pred async for pred in graph]
        assert graph.node_names == ("A", "B")
    assert [p.frame_idx for p in from_file] == list(range(N_FRAMES))
    _check_against(from_file, reference_preds)

    # Pushed in a scrambled frame order, small queues: results come back in push order.
    order = list(np.random.default_rng(0).permutation(N_FRAMES))
    async with open_graph(model, device="cpu", batch_size=3, queue_maxsize=2) as graph:
        async with anyio.create_task_group() as tg:
            tg.start_soon(_push_all, graph, [frames[i] for i in order], order)
            pushed = [pred async for pred in graph]
        stats = graph.statistics().by_name()
    assert [p.frame_idx for p in pushed] == order
    assert [p.seq for p in pushed] == list(range(N_FRAMES))
    _check_against(pushed, reference_preds)
    assert stats["forward"].items_in == -(-N_FRAMES // 3)


def _fake_graph(*, maxsize: int = 2, fail_at: int | None = None) -> Any:
    """push → (fail at frame_idx ``fail_at``) → results, no threads: fully deterministic."""
    def check(frame: Any) -> Any:
        if frame.frame_idx == fail_at:
            raise ValueError("bad pixel")
        return frame

    return lambda src, sink: chain("fake", [src, MapStage("check", check, offload=False), sink],
                                   maxsize)


async def test_push_waits_while_the_graph_is_full() -> None:
    pushed = 0
    image = np.zeros((4, 4, 1), np.uint8)

    async def pusher(graph: GraphSession) -> None:
        nonlocal pushed
        for _ in range(100):
            await graph.push(image)
            pushed += 1
        await graph.close_input()

    async with open_custom_graph(_fake_graph(maxsize=2)) as graph, anyio.create_task_group() as tg:
        tg.start_soon(pusher, graph)
        await anyio.wait_all_tasks_blocked()
        # Held: 1 by the results sink, 2 queued, 1 by the map stage, 2 queued, 1 by the source.
        assert pushed == 7
        await anyio.wait_all_tasks_blocked()
        assert pushed == 7  # still held: nothing drained
        first = await graph.__anext__()
        await anyio.wait_all_tasks_blocked()
        assert pushed == 8  # one result taken, one more frame let in
        rest = [pred async for pred in graph]
    assert [f.frame_idx for f in [first, *rest]] == list(range(100))


async def test_leaving_early_is_a_clean_stop(assets: Path, anyio_backend: str) -> None:
    tasks_before = _task_count(anyio_backend)
    async with open_graph([str(assets / MODEL)], source=str(assets / "datasets/small_robot.mp4"),
                          device="cpu", queue_maxsize=4) as graph:
        async for pred in graph:
            if pred.frame_idx == 2:
                break
    assert graph.runner is not None
    decoded = graph.runner.statistics().by_name()["decode"].items_out
    assert decoded < 166  # the source stopped instead of decoding the whole clip
    for stream in graph.runner.raw_streams:
        stats = stream.statistics()
        assert stats.open_send_streams == 0 and stats.open_receive_streams == 0
    # Leaving before reading anything, with frames pushed but input left open, also stops.
    async with open_custom_graph(_fake_graph()) as graph:
        await graph.push(np.zeros((2, 2), np.uint8))
    assert _task_count(anyio_backend) == tasks_before  # nothing outlived the blocks


def _task_count(backend: str) -> int | None:
    if backend != "asyncio":
        return None  # trio's nurseries make an orphan task impossible by construction
    import asyncio

    return len(asyncio.all_tasks())


async def test_cancelling_from_outside_stops_every_stage(assets: Path) -> None:
    with anyio.CancelScope() as scope:
        async with open_graph([str(assets / MODEL)], source=str(assets / "datasets/small_robot.mp4"),
                              device="cpu") as graph:
            async for _ in graph:
                scope.cancel()  # a deadline, a client that hung up ...
    assert scope.cancelled_caught
    assert graph.runner is not None
    for stream in graph.runner.raw_streams:
        stats = stream.statistics()
        assert stats.open_send_streams == 0 and stats.open_receive_streams == 0


async def test_a_stage_error_comes_out_of_the_block_as_one_stage_error() -> None:
    image = np.zeros((4, 4, 3), np.uint8)
    seen: list[int] = []
    with pytest.raises(StageError, match=r"^fake\.check@5 \(frame 5\): bad pixel") as info:
        async with open_custom_graph(_fake_graph(fail_at=5)) as graph, \
                anyio.create_task_group() as tg:
            tg.start_soon(_push_all, graph, [image] * 20, list(range(20)))
            async for pred in graph:
                seen.append(pred.frame_idx)
    assert isinstance(info.value.__cause__, ValueError)
    # Results before the failing frame arrive in order; how many depends on scheduling.
    assert seen == list(range(len(seen))) and len(seen) <= 5


async def test_the_block_s_own_error_comes_out_unwrapped() -> None:
    with pytest.raises(KeyError, match="mine"):
        async with open_custom_graph(_fake_graph()) as graph:
            await graph.push(np.zeros((2, 2), np.uint8))
            raise KeyError("mine")


async def test_a_model_that_fails_to_load_fails_on_entry(assets: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(assets / MODEL, broken)
    (broken / "best.ckpt").write_bytes(b"not a checkpoint")
    with pytest.raises(StageError) as info:
        async with open_graph([str(broken)], device="cpu"):
            pytest.fail("the block must not run")
    assert isinstance(info.value.__cause__, ModelLoadError)


async def test_bad_options_and_frames_are_refused_clearly(assets: Path) -> None:
    with pytest.raises(ConfigError, match="batch_size"):
        open_graph([str(assets / MODEL)], batch_size=0)
    for stray in ({"output_path": "x.slp"}, {"batch_sise": 2}):  # writes nothing; a typo
        with pytest.raises(ConfigError, match=f"unknown option.*{next(iter(stray))}"):
            open_graph([str(assets / MODEL)], **stray)
    with pytest.raises(ConfigError, match="input not found"):
        async with open_graph([str(assets / MODEL)], source=str(assets / "nope.mp4")):
            pytest.fail("the block must not run")
    async with open_graph([str(assets / MODEL)], source=str(assets / "datasets/small_robot.mp4"),
                          device="cpu", frames="0-3") as graph:
        with pytest.raises(ConfigError, match="reads its frames from source"):
            await graph.push(np.zeros((4, 4), np.uint8))
    async with open_graph([str(assets / MODEL)], device="cpu") as graph:
        with pytest.raises(ConfigError, match="uint8"):
            await graph.push(np.zeros((4, 4), np.float32))
        with pytest.raises(ConfigError, match="shape"):
            await graph.push(np.zeros((4, 4, 2), np.uint8))
        await graph.close_input()
        assert [p async for p in graph] == []


async def test_two_graphs_in_one_event_loop(assets: Path, frames: list[np.ndarray],
                                            reference_preds: sio.Labels) -> None:
    model = [str(assets / MODEL)]
    results: dict[str, list[FramePrediction]] = {}

    async def from_file() -> None:
        async with open_graph(model, source=str(assets / "datasets/small_robot.mp4"),
                              device="cpu", frames=f"0-{N_FRAMES - 1}") as graph:
            results["file"] = [pred async for pred in graph]

    async def pushed() -> None:
        async with open_graph(model, device="cpu", batch_size=2) as graph, \
                anyio.create_task_group() as tg:
            tg.start_soon(_push_all, graph, frames, list(range(N_FRAMES)))
            results["push"] = [pred async for pred in graph]

    async with anyio.create_task_group() as tg:
        tg.start_soon(from_file)
        tg.start_soon(pushed)
    for name in ("file", "push"):
        assert [p.frame_idx for p in results[name]] == list(range(N_FRAMES)), name
        _check_against(results[name], reference_preds)

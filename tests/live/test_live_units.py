"""The live pieces alone, without a stream: which inputs are live, latency-mode batching, the
latency figures, the summary line and the user errors (one ``Error:`` line, exit 2)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import anyio
import numpy as np
import pytest

from sleapflow.cli.app import main
from sleapflow.errors import ConfigError
from sleapflow.inputs.live import live_kind
from sleapflow.outputs.publish import check_targets, frame_message
from sleapflow.outputs.summary import RunSummary
from sleapflow.runtime.adapters import BatchStage, CollectSink
from sleapflow.runtime.latency import LatencyMeter


def test_which_inputs_are_live_sources() -> None:
    assert live_kind("-") == "stdin"
    assert live_kind("/dev/video0") == "device"
    for url in ("udp://127.0.0.1:5000", "rtsp://cam/stream", "tcp://10.0.0.2:9000",
                "srt://host:1234", "rtmp://host/app"):
        assert live_kind(url) == "stream", url
    # http(s) stays a file to download unless --live/--no-live says otherwise or the suffix
    # names a stream format.
    assert live_kind("https://host/video.mp4") is None
    assert live_kind("https://host/video.mp4", live=True) == "stream"
    assert live_kind("https://host/video.mp4", live=False) == "stream"
    assert live_kind("http://host/cam.mjpg") == "stream"
    assert live_kind("http://host/index.m3u8") == "stream"
    assert live_kind("clip.mp4") is None
    assert live_kind("/dev/null") is None
    assert live_kind(None) is None


async def _batches(stage: BatchStage, items: list[int], *, prefill: bool) -> list[list[int]]:
    """Run ``stage`` on ``items``: all waiting at once (``prefill``), or one at a time, each
    sent only after the batch before it came out (a graph that keeps up)."""
    inbox_send, inbox = anyio.create_memory_object_stream[Any](len(items))
    outbox, out_receive = anyio.create_memory_object_stream[Any](len(items))
    got: list[list[int]] = []
    async with anyio.create_task_group() as tg, out_receive:
        tg.start_soon(stage.run, inbox, outbox)
        async with inbox_send:
            if prefill:
                for item in items:
                    inbox_send.send_nowait(item)
            else:
                for item in items:
                    await inbox_send.send(item)
                    got.append(await out_receive.receive())
        got.extend([batch async for batch in out_receive])
    return got


@pytest.mark.anyio
async def test_latency_mode_batches_what_is_waiting_and_never_waits_for_more() -> None:
    def greedy() -> BatchStage:
        return BatchStage("batch", 4, make_batch=lambda seq, items: list(items), greedy=True)

    # Behind: five frames waiting make a full batch and then the one left.
    assert await _batches(greedy(), list(range(5)), prefill=True) == [[0, 1, 2, 3], [4]]
    # Keeping up: each frame leaves alone at once (no timeout, no wait for a full batch).
    assert await _batches(greedy(), list(range(3)), prefill=False) == [[0], [1], [2]]


@pytest.mark.anyio
async def test_the_frame_window_holds_the_source_until_results_come_back() -> None:
    from sleapflow.stages.live import FrameWindow

    window = FrameWindow(2)
    await window.acquire()
    await window.acquire()
    assert window.in_flight == 2
    got_in = anyio.Event()

    async def third() -> None:
        await window.acquire()
        got_in.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(third)
        await anyio.wait_all_tasks_blocked()
        assert not got_in.is_set()  # full: the third frame waits in the source
        window.release_through(0)  # frame 0's result is out
        await got_in.wait()
    assert window.in_flight == 2
    window.release_through(2)  # a frame that left no result is given back with a later one
    assert window.in_flight == 0


def test_latency_figures_are_the_percentiles_of_result_minus_capture() -> None:
    meter = LatencyMeter()
    assert meter.figures().p50_ms is None
    latencies = np.linspace(0.010, 0.110, 101)  # 10 ms .. 110 ms
    for i, lat in enumerate(latencies):
        meter.add(1000.0 + i, 1000.0 + i + lat)
    meter.drop(3)
    fig = meter.figures()
    assert fig.frames == 101 and fig.dropped == 3
    assert fig.p50_ms == pytest.approx(60.0, abs=1e-6)
    assert fig.p95_ms == pytest.approx(105.0, abs=1e-6)
    assert fig.p99_ms == pytest.approx(109.0, abs=1e-6)
    assert fig.max_ms == pytest.approx(110.0, abs=1e-6)
    assert fig.line() == "latency p50 60.0 ms, p95 105.0 ms, p99 109.0 ms; 3 frames dropped"
    summary = RunSummary(frames=101, seconds=4.0).with_latency(fig)
    assert summary.line().endswith("; latency p50 60.0 ms, p95 105.0 ms, p99 109.0 ms, 3 dropped")
    assert "latency" not in RunSummary(frames=3, seconds=1.0).line()


def test_a_frame_message_carries_poses_tracks_and_times() -> None:
    from sleapflow.messages import FramePrediction

    pred = FramePrediction(seq=4, video_id=0, frame_idx=7,
                           points=np.array([[[1.0, 2.0], [np.nan, np.nan]]]),
                           point_scores=np.array([[0.9, np.nan]]), instance_scores=np.array([0.8]),
                           track_names=("track_0",), tracking_scores=np.array([0.5]), pts=0.25,
                           capture_time=10.0, arrival_time=10.01, result_time=10.02)
    msg = frame_message(pred, source="udp://x", nodes=("head", "tail"))
    assert msg["latency_ms"] == pytest.approx(20.0)
    assert msg["instances"] == [{"track": "track_0", "score": 0.8, "tracking_score": 0.5,
                                 "points": [[1.0, 2.0], [None, None]],
                                 "point_scores": [0.9, None]}]
    assert (msg["type"], msg["seq"], msg["frame_idx"], msg["pts"], msg["nodes"]) == \
        ("poses", 4, 7, 0.25, ["head", "tail"])


def test_publish_targets_are_checked_before_the_run(monkeypatch: pytest.MonkeyPatch) -> None:
    assert check_targets(["ndjson:-", "tcp://127.0.0.1:5555"]) == ("-", "tcp://127.0.0.1:5555")
    with pytest.raises(ConfigError, match=r"give - .* or a ZeroMQ address"):
        check_targets(["udp://127.0.0.1:5555"])
    with pytest.raises(ConfigError, match="given twice"):
        check_targets(["-", "ndjson:-"])
    monkeypatch.setitem(sys.modules, "zmq", None)  # pyzmq not installed
    with pytest.raises(ConfigError, match=r'needs pyzmq: .*sleapflow\[live\]'):
        check_targets(["tcp://127.0.0.1:5555"])


@pytest.mark.parametrize("argv, message", [
    (["-i", "udp://127.0.0.1:9"], "is a live source: name the output with -o"),
    (["-i", "-", "-i", "udp://127.0.0.1:9"], "is a live source: it is read on its own"),
    (["-i", "{video}", "--duration", "5", "-o", "{out}"], "--duration applies to live sources"),
    (["-i", "udp://127.0.0.1:9", "--frames", "0-3", "-o", "{out}"], "use --duration"),
    (["-i", "udp://127.0.0.1:9", "--publish", "bogus", "-o", "{out}"], "--publish 'bogus'"),
    (["-i", "udp://127.0.0.1:9", "--resume", "-o", "{out}"], "cannot be replayed"),
])
def test_live_user_errors_are_one_line_and_exit_2(argv: list[str], message: str, assets: Path,
                                                  tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    video = assets / "datasets" / "centered_pair_small.mp4"
    out = tmp_path / "out.slp"
    argv = [a.format(video=video, out=out) for a in argv]
    model = str(assets / "model_ckpts" / "minimal_instance_single_instance")
    assert main(["track", *argv, "-m", model]) == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1 and message in errors[0], err
    assert "Traceback" not in err
    assert not out.exists()


class _Clock:
    """A clock that reads what the test set."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_latency_is_split_at_the_seams_and_the_slowest_frames_say_where_they_waited() -> None:
    from sleapflow.messages import Frame, FrameBatch, FramePrediction

    clock = _Clock()
    meter = LatencyMeter(clock=clock)
    # 100 frames: each decoded 1 ms after capture, sent on at once, batched alone, 5 ms of
    # network; frame 99 waits 200 ms in the forward stage's queue.
    for seq in range(100):
        t0 = 1000.0 + seq
        frame = Frame(seq=seq, video_id=0, frame_idx=seq, image=None)
        batch = FrameBatch(seq=seq, frames=(frame,))
        steps = [("live", frame, True, 0.002), ("batch", frame, False, 0.0),
                 ("batch", batch, True, 0.0), ("forward", batch, False,
                                              0.2 if seq == 99 else 0.0),
                 ("forward", batch, True, 0.005)]
        clock.now = t0 + 0.001
        for stage, item, sent, wait in steps:
            clock.now += wait
            meter.passed(stage, item, sent=sent)
        pred = FramePrediction(seq=seq, video_id=0, frame_idx=seq, points=None,
                               point_scores=None, instance_scores=None)
        clock.now += 0.001
        meter.passed("result", pred, sent=False)
        meter.add(t0, clock.now + 0.0005, seq=seq, arrival_time=t0 + 0.001)
    fig = meter.figures()
    segs = {s.name: s for s in fig.segments}
    assert [s.name for s in fig.segments] == ["stream", "live", "batch queue", "batch",
                                              "forward queue", "forward", "result queue",
                                              "result"]
    assert segs["stream"].p50_ms == pytest.approx(1.0)
    assert segs["live"].p50_ms == pytest.approx(2.0)
    assert segs["forward"].p50_ms == pytest.approx(5.0)
    assert segs["result"].p50_ms == pytest.approx(0.5)
    assert segs["forward queue"].p50_ms == pytest.approx(0.0, abs=1e-6)
    # The one slow frame is the p99 frame: its wait is in the forward queue, nowhere else.
    assert segs["forward queue"].tail_ms == pytest.approx(200.0)
    assert segs["forward"].tail_ms == pytest.approx(5.0)
    assert segs["forward queue"].mean_ms == pytest.approx(2.0)
    assert fig.max_ms == pytest.approx(1.0 + 2.0 + 200.0 + 5.0 + 1.0 + 0.5)
    table = fig.segment_table().splitlines()
    assert table[0].split()[:2] == ["latency", "segment"]
    assert table[6].split() == ["forward", "queue", "0.00", "2.00", "2.00", "200.00"]


def test_frame_seqs_are_the_frames_an_item_carries() -> None:
    from sleapflow.messages import CropSet, Frame, FrameBatch, FrameInfo
    from sleapflow.runtime.latency import frame_seqs

    frames = tuple(Frame(seq=s, video_id=0, frame_idx=s, image=None) for s in (7, 8))
    info = FrameInfo(seq=9, video_id=0, frame_idx=9, height=1, width=1)
    crops = CropSet(seq=3, frame=info, eff_scale=1.0, centroids=None, centroid_vals=None,
                    crops=None, slots=None, offsets=None)
    assert frame_seqs(FrameBatch(seq=0, frames=frames)) == (7, 8)  # not the batch's own seq
    assert frame_seqs(frames[1]) == (8,)
    assert frame_seqs(crops) == (9,)
    assert frame_seqs([1, 2]) == ()


def test_the_warm_up_frame_is_not_timed_and_stale_frames_are_counted_apart() -> None:
    meter = LatencyMeter()
    meter.untimed_below = 1
    meter.add(10.0, 12.5, seq=0)  # the warm-up frame: 2.5 s of set-up
    meter.drop_stale(40)
    meter.add(12.4, 12.41, seq=1)
    meter.drop(2)
    fig = meter.figures()
    assert (fig.frames, fig.dropped, fig.stale) == (1, 2, 40)
    assert fig.max_ms == pytest.approx(10.0)
    assert fig.line().endswith("2 frames dropped (40 more arrived during warm-up)")
    summary = RunSummary(frames=2, seconds=3.0).with_latency(fig)
    assert (summary.dropped_frames, summary.stale_frames) == (2, 40)


@pytest.mark.anyio
async def test_the_window_counts_batches_and_a_batch_is_back_when_its_last_frame_is() -> None:
    from sleapflow.stages.live import FrameWindow

    window = FrameWindow(1)
    await window.acquire()  # frame 0 opens a batch,
    window.extend()  # frames 1 and 2 go with it
    window.extend()
    assert (window.in_flight, window.sent) == (1, 3)
    got_in = anyio.Event()

    async def next_batch() -> None:
        await window.acquire()
        got_in.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(next_batch)
        await anyio.wait_all_tasks_blocked()
        window.release_through(1)  # frames 0 and 1 are out, frame 2 is not
        await anyio.wait_all_tasks_blocked()
        assert not got_in.is_set()
        window.release_through(2)
        await got_in.wait()
    assert (window.in_flight, window.sent) == (1, 4)


@pytest.mark.anyio
async def test_the_runner_stamps_every_frame_at_every_seam() -> None:
    from sleapflow.messages import Frame
    from sleapflow.runtime import MapStage, chain, run_graph

    clock = _Clock()
    meter = LatencyMeter(clock=clock)

    class Source:
        name, role = "src", "source"
        preserves_order, requires_order, restores_order = True, False, False

        async def run(self, inbox: None, outbox: Any, *, task_status: Any) -> None:
            async with outbox:
                task_status.started()
                for seq in range(3):
                    clock.now = 100.0 + seq
                    await outbox.send(Frame(seq=seq, video_id=0, frame_idx=seq, image=None))

    def work(frame: Frame) -> Frame:
        clock.now += 0.25
        return frame

    sink = CollectSink("sink")
    spec = chain("stamped", [Source(), MapStage("work", work, offload=False), sink], 1,
                 seams=meter)
    await run_graph(spec)
    assert [f.seq for f in sink.items] == [0, 1, 2]
    for seq in range(3):
        meter.add(100.0 + seq, clock.now, seq=seq)
    names = [s.name for s in meter.figures().segments]
    assert names == ["src", "work queue", "work", "sink queue", "sink"]
    work_seg = next(s for s in meter.figures().segments if s.name == "work")
    assert work_seg.p50_ms == pytest.approx(250.0)


def test_frames_captured_before_the_graph_was_warm_are_stale_and_the_heap_thaws() -> None:
    import gc
    import threading

    from sleapflow.inputs.live import LiveFrame
    from sleapflow.stages.live import LiveSource, _HeapFreeze

    meter = LatencyMeter()
    source = LiveSource("udp://127.0.0.1:9", live=True, capacity=4, meter=meter)
    never = threading.Event()
    for i, captured in enumerate((9.0, 9.9, 10.2)):
        source.buffer.put(LiveFrame(index=i, image=None, pts=None, capture_time=captured,
                                    arrival_time=10.3), never)
    source._warm_at = 10.0  # decoded late, after the warm-up, but captured during it
    frame = source._take()
    assert frame is not None and frame.index == 2 and meter.stale == 2
    assert source._take() is None
    # Set-up's heap leaves the full collections while live sources run, and comes back after.
    before = gc.get_freeze_count()
    _HeapFreeze.hold()
    _HeapFreeze.hold()
    assert gc.get_freeze_count() > before
    _HeapFreeze.release()
    assert gc.get_freeze_count() > before
    _HeapFreeze.release()
    assert gc.get_freeze_count() == before


def test_on_the_cpu_only_the_newest_frame_waits_on_an_accelerator_a_batch(assets: Path) -> None:
    import dataclasses

    from sleapflow.graphs.build import make_source, prepare
    from sleapflow.options.boundary import build_config

    model = str(assets / "model_ckpts" / "minimal_instance_single_instance")
    stream = "udp://127.0.0.1:9"  # planned, never opened: make_source does not read it
    run = prepare(build_config(data_path=stream, model_paths=[model], batch_size=4, device="cpu"))
    assert run.ctx.latency_mode and make_source(run).buffer.capacity == 1
    on_gpu = dataclasses.replace(run, ctx=dataclasses.replace(run.ctx, device="cuda"))
    assert make_source(on_gpu).buffer.capacity == 4
    keep_all = prepare(build_config(data_path=stream, model_paths=[model], batch_size=4,
                                    live=False, queue_maxsize=16))
    assert make_source(keep_all).buffer.capacity == 16


def test_live_on_onnx_resizes_with_torchs_kernel_on_one_thread_from_the_first_frame(
        assets: Path) -> None:
    """On ONNX Runtime on the CPU a live graph resizes with torch's kernel for the whole stream
    (never a switch mid-stream), imported at build and set to one thread at its first frame,
    after every stage's set-up; the result is the numpy kernel's, bit for bit."""
    import av
    import torch

    from sleapflow.graphs.build import prepare
    from sleapflow.graphs.common import preprocess_stage
    from sleapflow.messages import Frame, FrameBatch
    from sleapflow.options.boundary import build_config
    from sleapflow.stages.preprocess import NUMPY_RESIZE_BUDGET, Preprocessor, PreprocessPlan

    model = str(assets / "model_ckpts" / "minimal_instance_single_instance")  # scale 0.5
    run = prepare(build_config(data_path="udp://127.0.0.1:9", model_paths=[model], device="cpu",
                               runtime="onnx"))
    stages = run.graph.build(run.ctx, None)
    live = next(s.fn for s in stages if isinstance(getattr(s, "fn", None), Preprocessor))
    assert live.numpy and live.numpy_resize_budget == 0 and live.resize_threads == 1
    # A plan that never resizes never needs torch: the numpy path as in a file run.
    as_is = preprocess_stage(run.ctx, PreprocessPlan(max_stride=16), numpy=True).fn
    assert as_is.resize_threads is None and as_is.numpy_resize_budget == NUMPY_RESIZE_BUDGET
    with av.open(str(assets / "datasets" / "small_robot.mp4")) as clip:
        image = next(clip.decode(video=0)).to_ndarray(format="rgb24")
    batch = FrameBatch(seq=0, frames=(Frame(seq=0, video_id=0, frame_idx=0, image=image),))
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        got = live(batch).tensor
        assert torch.get_num_threads() == 1
        torch.set_num_threads(2)
        live(batch)
        assert torch.get_num_threads() == 2  # set once: a later change is left alone
    finally:
        torch.set_num_threads(threads)
    numpy_only = Preprocessor(live.plan, numpy=True, numpy_resize_budget=sys.maxsize)
    assert isinstance(got, np.ndarray) and got.shape == (1, 3, 160, 280)
    np.testing.assert_array_equal(got, numpy_only(batch).tensor)


def _stream_frame(index: int, arrived: float) -> Any:
    from sleapflow.inputs.live import LiveFrame

    return LiveFrame(index=index, image=None, pts=None, capture_time=arrived, arrival_time=arrived)


def test_a_waiting_frame_older_than_half_an_interval_is_passed_over_and_the_interval_is_learnt(
        ) -> None:
    import threading

    from sleapflow.stages.live import LiveSource, passes_over

    assert not passes_over(0.016, 1 / 30) and passes_over(0.017, 1 / 30)
    source = LiveSource("udp://127.0.0.1:9", live=True, capacity=1, meter=LatencyMeter())
    never = threading.Event()
    # A 40 ms stream whose arrivals jitter: the median gap is its interval, once 4 gaps are in.
    for i, arrived in enumerate((0.0, 0.040, 0.082, 0.119, 0.159)):
        assert source.buffer.interval() is None
        source.buffer.put(_stream_frame(i, arrived), never)
    assert source.buffer.interval() == pytest.approx(0.040, abs=1e-9)
    assert source.buffer.newest() is not None and source.buffer.newest().index == 4
    assert source.buffer.dropped == 4  # latency mode on the CPU: only the newest waits


@pytest.mark.anyio
async def test_the_source_waits_for_the_next_frame_instead_of_sending_a_stale_one() -> None:
    import threading
    import time

    from sleapflow.stages.live import LiveSource

    meter = LatencyMeter()
    source = LiveSource("udp://127.0.0.1:9", live=True, capacity=1, meter=meter)
    source._token = anyio.lowlevel.current_token()
    never = threading.Event()
    interval = 0.040
    now = time.time()
    # The waiting frame arrived 30 ms ago: the next is due in 10 ms, sooner than it has waited.
    for i in range(6):
        source.buffer.put(_stream_frame(i, now - 0.030 - (5 - i) * interval), never)
    stale = source.buffer.newest()
    waited = anyio.Event()

    async def fresher() -> None:
        await source._fresher()
        waited.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(fresher)
        await anyio.wait_all_tasks_blocked()
        assert not waited.is_set()  # it waits for the next frame rather than send this one

        def arrive() -> None:
            source.buffer.put(_stream_frame(6, time.time()), never)
            source._notify()

        await anyio.to_thread.run_sync(arrive)
        await waited.wait()
    sent = await source._next()
    assert sent is not None and sent.index == 6 and stale is not None and stale.index == 5
    assert meter.dropped == 6  # the five pushed out before, and the one passed over

    # A young frame goes at once; so does an old one whose successor is overdue (a stream that
    # stalls or ended: nothing fresher is coming soon).
    for arrived, index in ((time.time() - 0.010, 7), (time.time() - 0.070, 8)):
        source.buffer.put(_stream_frame(index, arrived), never)
        with anyio.fail_after(1):
            await source._fresher()
        taken = await source._next()
        assert taken is not None and taken.index == index


def test_a_live_graph_runs_its_map_stages_as_one_and_a_file_graph_does_not(
        assets: Path, tmp_path: Path) -> None:
    from sleapflow.graphs.build import build_graph, prepare
    from sleapflow.options.boundary import build_config

    def stage_names(data_path: str, models: list[str]) -> list[str]:
        paths = [str(assets / "model_ckpts" / f"minimal_instance_{m}") for m in models]
        run = prepare(build_config(data_path=data_path, model_paths=paths, device="cpu"))
        return [s.name for s in build_graph(run, output_path=str(tmp_path / "out.slp")).stages]

    stream = "udp://127.0.0.1:9"  # planned, never opened
    assert stage_names(stream, ["single_instance"]) == [
        "live", "batch", "preprocess+forward+peaks", "result", "write"]
    assert stage_names(stream, ["centroid", "centered_instance"]) == [
        "live", "batch", "preprocess+centroid_forward+crop", "crop_batch",
        "crop_preprocess+instance_forward+instance_peaks", "result", "write"]
    clip = str(assets / "datasets" / "small_robot.mp4")
    assert stage_names(clip, ["single_instance"]) == [
        "decode", "batch", "preprocess", "forward", "forward_reorder", "peaks", "write"]

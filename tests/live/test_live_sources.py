"""Live sources on loopback (no camera): a clip streamed in real time over UDP, HTTP and stdin is
predicted as it comes, its poses equal an offline run of the same clip (matched by timestamp),
a graph slower than the stream drops and counts frames, Ctrl-C writes a whole output, and
``--publish`` delivers every frame's message in order (ZeroMQ and NDJSON)."""

from __future__ import annotations

import json
import signal
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import sleap_io as sio

from sleapflow.cli.app import main

sys.path.insert(0, str(Path(__file__).parent))
from live_helpers import (
    CLIP_FRAMES,
    frame_pts,
    free_port,
    http_stream,
    nan_equal,
    stdin_stream_run,
    stream_packets,
    wait_udp_bound,
    write_ts_clip,
)

N_FRAMES = CLIP_FRAMES
#: The dropping test streams its clip this many times over.
UDP_LOOPS = 3
#: Top-down runs cost the most: their stream is shortest.
SHORT_FRAMES = 6


@pytest.fixture(scope="module")
def short_clip(assets: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("live") / "short.ts"
    return write_ts_clip(assets / "datasets" / "centered_pair_small.mp4", out, SHORT_FRAMES)


@pytest.fixture(scope="module")
def single(assets: Path) -> list[str]:
    # torch: no ONNX export to wait for (these tests are about the source, not the runtime).
    return ["-m", str(assets / "model_ckpts" / "minimal_instance_single_instance"),
            "--runtime", "torch"]


@pytest.fixture(scope="module")
def topdown(assets: Path) -> list[str]:
    return ["-m", str(assets / "model_ckpts" / "minimal_instance_centroid"),
            "-m", str(assets / "model_ckpts" / "minimal_instance_centered_instance"),
            "--runtime", "torch"]


def _offline(clip: Path, models: list[str], out: Path) -> dict[int, np.ndarray]:
    assert main(["track", "-i", str(clip), *models, "-o", str(out)]) == 0
    return _points(out)


def _points(path: Path) -> dict[int, np.ndarray]:
    """frame_idx -> (I, N, 2) points, instances in the file's order."""
    labels = sio.load_slp(str(path))
    return {lf.frame_idx: np.stack([inst.numpy() for inst in lf.instances])
            for lf in labels.labeled_frames}


def _udp_sender(clip: Path, port: int, **kwargs: Any) -> threading.Thread:
    def send() -> None:
        wait_udp_bound(port)
        stream_packets(clip, f"udp://127.0.0.1:{port}?pkt_size=1316", **kwargs)

    thread = threading.Thread(target=send, daemon=True)
    thread.start()
    return thread


def _subscriber(address: str, messages: list[dict[str, Any]]) -> threading.Thread:
    import zmq

    ctx = zmq.Context.instance()
    sock = ctx.socket(zmq.SUB)
    sock.setsockopt(zmq.SUBSCRIBE, b"")
    sock.setsockopt(zmq.RCVTIMEO, 20_000)
    sock.setsockopt(zmq.RECONNECT_IVL, 10)  # the publisher binds once its run starts
    sock.connect(address)

    def receive() -> None:
        try:
            while True:
                message = json.loads(sock.recv())
                messages.append(message)
                if message["type"] == "end":
                    return
        except zmq.Again:
            return
        finally:
            sock.close()

    thread = threading.Thread(target=receive, daemon=True)
    thread.start()
    return thread


def test_udp_stream_slower_graph_drops_frames_and_the_rest_equal_offline_and_reach_zmq(
        clip: Path, single: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    from sleapflow.stages.peaks import SingleInstancePeaks

    offline = _offline(clip, single, tmp_path / "offline.slp")
    pts = frame_pts(clip)
    # The live run's graph takes 0.1 s a frame, a third of the stream's 30 frames/s, once the
    # first frame has warmed it up.
    original = SingleInstancePeaks.__call__

    def slow(self: Any, batch: Any) -> Any:
        if batch.frames[0].seq > 0:
            time.sleep(0.1 * len(batch.frames))
        return original(self, batch)

    monkeypatch.setattr(SingleInstancePeaks, "__call__", slow)
    port, pub = free_port(), free_port(socket.SOCK_STREAM)
    messages: list[dict[str, Any]] = []
    sub = _subscriber(f"tcp://127.0.0.1:{pub}", messages)
    # The clip three times over: the frames that arrive while the first one warms the graph
    # up are stale, and a steady stream must follow them.
    sender = _udp_sender(clip, port, loops=UDP_LOOPS)
    loop_s = pts[-1] + 1 / 30  # how far each loop's timestamps run on from the one before
    out, summary = tmp_path / "live.slp", tmp_path / "summary.json"
    # Batch 1: a frame per forward worker in the graph at once, one waiting in the source.
    assert main(["track", "-i", f"udp://127.0.0.1:{port}", *single, "-o", str(out),
                 "--batch_size", "1", "--stream_timeout", "0.5",
                 "--publish", f"tcp://127.0.0.1:{pub}", "--summary_json", str(summary),
                 "--stats"]) == 0
    sender.join(10)
    sub.join(10)
    report = capsys.readouterr().out
    assert "latency p50" in report and "frames dropped" in report
    live = _points(out)
    poses = [m for m in messages if m["type"] == "poses"]
    # Every predicted frame was published, once, in order, and the end message counts them.
    assert [m["frame_idx"] for m in poses] == sorted(live)
    assert [m["seq"] for m in poses] == list(range(len(poses)))
    end = messages[-1]
    assert end == {"type": "end", "v": 1, "source": f"udp://127.0.0.1:{port}",
                   "frames": len(poses), "dropped": end["dropped"], "stale": end["stale"]}
    # Behind the stream, the oldest waiting frames were dropped and counted, the same count
    # in the summary, apart from those that arrived while the first frame warmed the graph
    # up (stale); loopback UDP loses nothing else, but for the last frame or two, which wait
    # in the demuxer for a next packet that never comes.
    record = json.loads(summary.read_text())["videos"][0]["summary"]
    assert end["dropped"] > 0 and record["dropped_frames"] == end["dropped"], (end, sorted(live))
    assert end["stale"] > 0 and record["stale_frames"] == end["stale"]
    assert record["frames"] == len(live)
    assert UDP_LOOPS * N_FRAMES - 2 <= len(live) + end["dropped"] + end["stale"] \
        <= UDP_LOOPS * N_FRAMES
    assert record["latency_p99_ms"] >= record["latency_p50_ms"] > 0
    for m in poses:
        # Matched by timestamp: the offline frame with this frame's pts, in its loop.
        in_clip = m["pts"] - loop_s * round((m["pts"] - pts[0]) // loop_s)
        j = int(np.argmin(np.abs(np.asarray(pts) - in_clip)))
        assert abs(pts[j] - in_clip) < 1e-6
        assert nan_equal(live[m["frame_idx"]], offline[j])
        assert nan_equal([[p[:2] for p in inst["points"]] for inst in m["instances"]],
                         np.asarray(live[m["frame_idx"]], dtype=float))
        assert m["capture_time"] <= m["arrival_time"] <= m["result_time"]
        assert m["latency_ms"] == pytest.approx((m["result_time"] - m["capture_time"]) * 1e3,
                                                abs=1e-2)


def test_http_stream_topdown_equals_offline_run(short_clip: Path, topdown: list[str],
                                                tmp_path: Path) -> None:
    offline = _offline(short_clip, topdown, tmp_path / "offline.slp")
    assert len(offline) == SHORT_FRAMES
    with http_stream(short_clip) as url:
        out = tmp_path / "live.slp"
        # --no-live: a stream (not a file to download) whose every frame is kept (queued),
        # even while the models warm up.
        assert main(["track", "-i", url, "--no-live", *topdown, "-o", str(out),
                     "--stream_timeout", "2"]) == 0
    live = _points(out)
    # An HTTP stream starts at the client's request and ends with the response: every frame,
    # numbered from the first, as offline.
    assert sorted(live) == sorted(offline)
    for idx, points in offline.items():
        assert nan_equal(live[idx], points)
    video = sio.load_slp(str(out)).videos[0]
    assert video.filename == url
    assert video.backend_metadata["shape"][1:] == [192, 256, 1]


def test_ctrl_c_on_a_stdin_stream_writes_a_whole_output_and_ndjson_has_every_frame(
        clip: Path, single: list[str], tmp_path: Path) -> None:
    out = tmp_path / "live.slp"
    lines: list[dict[str, Any]] = []
    args = ["track", "-i", "-", *single, "-o", str(out), "--publish", "-", "--stream_timeout", "20"]
    with stdin_stream_run(args, clip, FEED_LOOPS) as proc:
        assert proc.stdout is not None and proc.stderr is not None
        for line in proc.stdout:
            lines.append(json.loads(line))
            if len(lines) == 5:
                proc.send_signal(signal.SIGINT)
            if lines[-1]["type"] == "end":
                break
        rc = proc.wait(30)
        stderr = proc.stderr.read().decode()
    assert rc == 0, stderr
    assert "Stopping the live source" in stderr
    poses = [m for m in lines if m["type"] == "poses"]
    # Stopped early: the stream had far more to send.
    assert 5 <= len(poses) < FEED_LOOPS * N_FRAMES
    live = _points(out)
    assert [m["frame_idx"] for m in poses] == sorted(live)
    assert lines[-1]["frames"] == len(poses)
    for m in poses:
        assert nan_equal([[p[:2] for p in inst["points"]] for inst in m["instances"]],
                         np.asarray(live[m["frame_idx"]], dtype=float))
    assert not list(tmp_path.glob("*.journal*"))


#: The stdin stream runs for this many times the clip (40 s): it outlasts the test.
FEED_LOOPS = 100


def test_a_live_stream_on_onnx_resizes_as_a_file_run_does(clip: Path, assets: Path,
                                                          tmp_path: Path) -> None:
    """ONNX Runtime on the CPU, in latency mode: the stream's frames go through torch's resize
    kernel on one thread, the file run's through the numpy copy of it; the poses are the
    same to the last digit (the single-instance model fits these 384 x 384 frames into
    320 x 560 and halves them, so both resizes run)."""
    import torch

    onnx = ["-m", str(assets / "model_ckpts" / "minimal_instance_single_instance"),
            "--runtime", "onnx"]
    offline = _offline(clip, onnx, tmp_path / "offline.slp")
    assert len(offline) == N_FRAMES
    threads = torch.get_num_threads()  # the live run sets torch's (process-wide) count to 1
    # At a quarter of real time, so that most frames arrive after the first one has warmed
    # the graph up (those arriving meanwhile are dropped as stale).
    try:
        with http_stream(clip, speed=0.25) as url:
            out = tmp_path / "live.slp"
            assert main(["track", "-i", url, "--live", *onnx, "-o", str(out),
                         "--stream_timeout", "2"]) == 0
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(threads)
    live = _points(out)
    # How many arrive after the warm-up depends on the machine: at least the first and one more.
    assert len(live) >= 2 and set(live) <= set(offline)
    for idx, points in live.items():
        assert nan_equal(points, offline[idx])



def test_a_tracked_top_down_stream_in_latency_mode_equals_offline_on_every_frame_it_predicts(
        clip: Path, topdown: list[str], tmp_path: Path) -> None:
    """Latency mode (its map stages chained, stale frames passed over) with top-down models and
    the tracker, on a stream faster than the graph: every frame predicted has the offline
    run's poses, matched by timestamp, and each of its instances a track."""
    offline = _offline(clip, topdown, tmp_path / "offline.slp")
    pts = frame_pts(clip)
    loop_s = pts[-1] + 1 / 30
    port = free_port()
    sender = _udp_sender(clip, port, loops=UDP_LOOPS)
    out = tmp_path / "live.slp"
    assert main(["track", "-i", f"udp://127.0.0.1:{port}", *topdown, "--tracking", "-o", str(out),
                 "--stream_timeout", "0.5"]) == 0
    sender.join(10)
    labels = sio.load_slp(str(out))
    assert len(labels.labeled_frames) >= 2

    def by_x(points: np.ndarray) -> np.ndarray:
        """A frame's instances by their mean x: the tracker may order them otherwise."""
        return points[np.argsort(np.nanmean(points[:, :, 0], axis=1), kind="stable")]

    for lf in labels.labeled_frames:
        frame_pts_s = lf.frame_idx / 30 + pts[0]
        in_clip = frame_pts_s - loop_s * round((frame_pts_s - pts[0]) // loop_s)
        j = int(np.argmin(np.abs(np.asarray(pts) - in_clip)))
        assert abs(pts[j] - in_clip) < 1e-3
        assert all(inst.track is not None for inst in lf.instances)
        assert nan_equal(by_x(np.stack([inst.numpy() for inst in lf.instances])),
                         by_x(offline[j]))

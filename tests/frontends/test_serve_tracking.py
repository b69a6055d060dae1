"""`serve --tracking`: four websocket streams at once, each tracked by its own tracker, each
equal to ``track --tracking`` on the same frames; per-stream latency in ``/v1/stats``."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import cv2
import httpx
import numpy as np
import sleap_io as sio
from serve_server import Server
from websockets.sync.client import connect

from sleapflow.cli.app import main
from sleapflow.inputs import PyAVReader

MODELS = ("model_ckpts/minimal_instance_centroid", "model_ckpts/minimal_instance_centered_instance")
CLIP = "datasets/centered_pair_small.mp4"
#: The frames every stream sends, all four at once: a tracker shared between the streams would
#: see each frame four times over and make extra tracks (or swap them) where one per stream
#: gives each stream what one offline run gives.
FIRST, LAST = 40, 42


def _png(image: np.ndarray) -> bytes:
    ok, data = cv2.imencode(".png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    assert ok
    return data.tobytes()


def _offline(assets: Path, tmp_path: Path, first: int, last: int) -> list[list[tuple[str, np.ndarray]]]:
    """`track --tracking` on frames first..last: per frame, (track name, points) per instance."""
    out = tmp_path / f"track_{first}.slp"
    models = [a for m in MODELS for a in ("-m", str(assets / m))]
    assert main(["track", "-i", str(assets / CLIP), *models, "--frames", f"{first}-{last}",
                 "--tracking", "--device", "cpu", "-o", str(out)]) == 0
    by_frame = {lf.frame_idx: lf for lf in sio.load_slp(str(out), open_videos=False)}
    return [[(inst.track.name, inst.numpy()) for inst in by_frame[i].instances]
            if i in by_frame else [] for i in range(first, last + 1)]


def _stream(url: str, images: list[bytes]) -> list[dict[str, Any]]:
    with connect(url, max_size=None, open_timeout=30) as ws:
        for data in images:
            ws.send(data)
        return [json.loads(ws.recv(timeout=60)) for _ in images]


def test_four_tracked_streams_each_equal_offline_tracking(assets: Path, tmp_path: Path) -> None:
    server = Server(assets / MODELS[0], "-m", str(assets / MODELS[1]), "--tracking",
                    "--batch_size", "4", "--max_batch_delay_ms", "20", "--runtime", "auto",
                    "--precision", "fp32")
    try:
        reader = PyAVReader(str(assets / CLIP))
        try:
            clip = [_png(reader.read(i)) for i in range(FIRST, LAST + 1)]
        finally:
            reader.close()
        want = _offline(assets, tmp_path, FIRST, LAST)
        url = server.wait_ready()
        assert "tracking each stream" in "".join(server.log)
        with ThreadPoolExecutor(4) as pool:
            replies = list(pool.map(lambda _: _stream(server.ws_url, clip), range(4)))
        stats = httpx.get(f"{url}/v1/stats").json()
    finally:
        assert server.stop() == 0
    for k, bodies in enumerate(replies):
        assert [b["seq"] for b in bodies] == list(range(len(want)))
        for body, frame in zip(bodies, want):
            got = body["instances"]
            assert [inst["track"] for inst in got] == [name for name, _ in frame], (k, body["seq"])
            for inst, (_, points) in zip(got, frame):
                # Batches mix the streams' frames, so float32 sums run in another order than
                # offline: equal to well under a thousandth of a pixel, not bit for bit.
                np.testing.assert_allclose(np.array(inst["points"], dtype=float), points,
                                           rtol=1e-6, atol=2e-3)
                assert 0 <= inst["tracking_score"] <= 1
        # Each stream numbers its own tracks from 0, as a fresh offline run does.
        assert {i["track"] for b in bodies for i in b["instances"]} == {"track_0", "track_1"}
    streams = [s for s in stats["streams"] if s["kind"] == "websocket"]
    assert len(streams) == 4 and len({s["id"] for s in streams}) == 4
    for s in streams:
        assert s["tracked"] and not s["open"] and s["frames_answered"] == 3
        pct = s["arrival_to_result_ms"]
        assert 0 < pct["p50"] <= pct["p95"] <= pct["p99"]

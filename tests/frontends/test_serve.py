"""`sleapflow serve` end to end: real servers on 127.0.0.1 (ephemeral ports), driven over HTTP and
websockets — results, batching across clients, isolation, backpressure, auth and SIGTERM."""

from __future__ import annotations

import json
import signal
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import cv2
import httpx
import numpy as np
import pytest
import sleap_io as sio
from serve_server import Server
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

import sleapflow
from sleapflow.inputs import PyAVReader

MODEL = "model_ckpts/minimal_instance_single_instance"
CLIP = "datasets/small_robot.mp4"
N_FRAMES = 24
TOKEN = "s3cret-token"
ROOT = Path(sleapflow.__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def servers(assets: Path) -> Iterator[dict[str, Server]]:
    """Started together (model loading overlaps): "open" without auth, "tight" with a token
    from the environment and room for two frames only, answering 503 at once when full."""
    model = assets / MODEL
    started = {
        "open": Server(model, "--batch_size", "4", "--max_batch_delay_ms", "20",
                       "--max_pending", "32", "--stream_inflight", "8", "--max_body_mb", "2"),
        "tight": Server(model, "--batch_size", "2", "--max_batch_delay_ms", "50",
                        "--max_pending", "2", "--queue_wait_ms", "0", "--stream_inflight", "2",
                        env={"SLEAPFLOW_SERVE_TOKEN": TOKEN}),
    }
    try:
        for server in started.values():
            server.wait_ready()
        yield started
    finally:
        for server in started.values():
            server.stop()


@pytest.fixture(scope="module")
def frames(assets: Path) -> list[np.ndarray]:
    reader = PyAVReader(str(assets / CLIP))
    try:
        return [reader.read(i) for i in range(N_FRAMES)]
    finally:
        reader.close()


@pytest.fixture(scope="module")
def reference(assets: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[int, np.ndarray]:
    """`sleapflow track` on the same frames: frame index → (nodes, 2) points."""
    from sleapflow.cli.app import main

    out = tmp_path_factory.mktemp("serve") / "track.slp"
    assert main(["track", "-i", str(assets / CLIP), "-m", str(assets / MODEL), "--frames",
                 f"0-{N_FRAMES - 1}", "-o", str(out), "--device", "cpu"]) == 0
    labels = sio.load_slp(str(out), open_videos=False)
    return {lf.frame_idx: lf.instances[0].numpy() for lf in labels}


def png(image: np.ndarray) -> bytes:
    ok, data = cv2.imencode(".png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    assert ok
    return data.tobytes()


def points_of(body: dict[str, Any]) -> np.ndarray | None:
    """A single-instance prediction's (nodes, 2) points (NaN for null), None when empty."""
    if not body["instances"]:
        return None
    assert len(body["instances"]) == 1
    return np.array([[np.nan if v is None else v for v in p] for p in body["instances"][0]["points"]])


def check(body: dict[str, Any], frame_idx: int, reference: dict[int, np.ndarray]) -> None:
    assert body["frame_idx"] == frame_idx
    assert body["nodes"] == ["A", "B"]
    got = points_of(body)
    if frame_idx not in reference:
        assert got is None  # `track` writes no frame where nothing was found
        return
    assert got is not None
    np.testing.assert_allclose(got, reference[frame_idx], rtol=1e-6, atol=1e-4)


def stats(url: str, **kw: Any) -> dict[str, Any]:
    return httpx.get(f"{url}/v1/stats", **kw).json()


def wait_idle(url: str, **kw: Any) -> dict[str, Any]:
    """The server's counters once it holds no frames and they stopped moving (bounded)."""
    last = None
    for _ in range(100):
        now = stats(url, **kw)["server"]
        if now["frames_pending"] == 0 and now == last:
            return now
        last = now
        time.sleep(0.1)
    raise AssertionError(f"server did not settle: {last}")


def ws_session(url: str, images: list[bytes], *, headers: dict[str, str] | None = None,
               raw_shape: list[int] | None = None) -> list[dict[str, Any]]:
    """Send every frame, then read one reply per frame (the server answers in order)."""
    with connect(url, additional_headers=headers, max_size=None, open_timeout=30) as ws:
        if raw_shape is not None:
            ws.send(json.dumps({"shape": raw_shape, "dtype": "uint8"}))
        replies: list[dict[str, Any]] = []

        def read() -> None:
            for _ in images:
                replies.append(json.loads(ws.recv(timeout=60)))

        reader = threading.Thread(target=read)
        reader.start()
        for data in images:
            ws.send(data)
        reader.join(timeout=90)
        assert len(replies) == len(images)
        return replies


# ---- results -------------------------------------------------------------------------------


def test_single_frames_png_jpeg_and_raw(servers: dict[str, Server], frames: list[np.ndarray],
                                        reference: dict[int, np.ndarray]) -> None:
    url = servers["open"].url
    with httpx.Client(base_url=url, timeout=60) as client:
        health = client.get("/v1/health").json()
        assert health["status"] == "ok" and health["nodes"] == ["A", "B"]
        r = client.post("/v1/predict", params={"frame_idx": 3}, content=png(frames[3]),
                        headers={"content-type": "image/png"})
        assert r.status_code == 200, r.text
        check(r.json(), 3, reference)
        assert r.json()["latency_ms"] > 0
        r = client.post("/v1/predict", params={"shape": "320,560,3", "dtype": "uint8",
                                               "frame_idx": 5}, content=frames[5].tobytes())
        assert r.status_code == 200, r.text
        check(r.json(), 5, reference)
        # JPEG is lossy: the confident node lands in nearly the same place.
        _, jpeg = cv2.imencode(".jpg", cv2.cvtColor(frames[7], cv2.COLOR_RGB2BGR),
                                [cv2.IMWRITE_JPEG_QUALITY, 98])
        r = client.post("/v1/predict", content=jpeg.tobytes())
        assert r.status_code == 200, r.text
        got = points_of(r.json())
        assert got is not None and np.abs(got[0] - reference[7][0]).max() < 3.0
        # Grayscale frames (PNG, raw H,W) go to the RGB model too, without upsetting the graph.
        gray = cv2.imencode(".png", cv2.cvtColor(frames[3], cv2.COLOR_RGB2GRAY))[1].tobytes()
        r = client.post("/v1/predict", content=gray)
        assert r.status_code == 200, r.text
        r = client.post("/v1/predict", params={"shape": "320,560"},
                        content=cv2.cvtColor(frames[3], cv2.COLOR_RGB2GRAY).tobytes())
        assert r.status_code == 200, r.text
        r = client.post("/v1/predict", params={"frame_idx": 3}, content=png(frames[3]))
        check(r.json(), 3, reference)
        doc = client.get("/openapi.json").json()
        assert doc["openapi"].startswith("3.") and {"/v1/predict", "/v1/videos", "/v1/stream",
                                                    "/v1/health", "/v1/stats"} <= set(doc["paths"])
        assert "Prediction" in doc["components"]["schemas"]


def test_a_streamed_video_equals_sleapflow_track(servers: dict[str, Server], assets: Path,
                                                 reference: dict[int, np.ndarray]) -> None:
    url = servers["open"].url
    wanted = list(range(N_FRAMES))
    with httpx.Client(base_url=url, timeout=60) as client, client.stream(
            "POST", "/v1/videos", json={"path": str(assets / CLIP),
                                        "frames": f"0-{N_FRAMES - 1}"}) as r:
        assert r.status_code == 200
        assert r.headers["content-type"] == "application/x-ndjson"
        lines = [json.loads(line) for line in r.iter_lines() if line]
    assert [line["frame_idx"] for line in lines] == wanted
    for line in lines:
        check(line, line["frame_idx"], reference)


def test_eight_concurrent_clients_each_get_their_own_results(
        servers: dict[str, Server], frames: list[np.ndarray],
        reference: dict[int, np.ndarray]) -> None:
    url = servers["open"].url
    before = stats(url)["stages"]
    order = {k: [(5 * k + 3 * j) % N_FRAMES for j in range(6)] for k in range(8)}

    def http_client(k: int) -> list[dict[str, Any]]:
        with httpx.Client(base_url=url, timeout=60) as client:
            out = []
            for i in order[k]:
                r = client.post("/v1/predict", params={"frame_idx": i}, content=png(frames[i]))
                assert r.status_code == 200, r.text
                out.append(r.json())
            return out

    def ws_client(k: int) -> list[dict[str, Any]]:
        return ws_session(servers["open"].ws_url, [frames[i].tobytes() for i in order[k]],
                          raw_shape=[320, 560, 3])

    with ThreadPoolExecutor(8) as pool:
        futures = {k: pool.submit(http_client if k < 4 else ws_client, k) for k in range(8)}
        results = {k: f.result(timeout=120) for k, f in futures.items()}
    for k, replies in results.items():
        for j, (i, body) in enumerate(zip(order[k], replies)):
            if k >= 4:
                assert body["seq"] == j and body["latency_ms"] > 0
                body = {**body, "frame_idx": i}  # websocket frames are numbered by the stream
            check(body, i, reference)
    after = {s["name"]: s for s in stats(url)["stages"]}
    prior = {s["name"]: s for s in before}
    frames_in = after["batch"]["items_in"] - prior["batch"]["items_in"]
    batches = after["forward"]["items_in"] - prior["forward"]["items_in"]
    assert frames_in == 48
    assert batches < frames_in  # frames of different clients shared forward passes


# ---- isolation -----------------------------------------------------------------------------


def test_a_client_that_disconnects_stops_its_share_of_the_work(
        servers: dict[str, Server], assets: Path, frames: list[np.ndarray],
        reference: dict[int, np.ndarray]) -> None:
    url = servers["open"].url
    start = wait_idle(url)
    # A whole-clip video request, abandoned after three lines.
    with httpx.Client(base_url=url, timeout=60) as client, client.stream(
            "POST", "/v1/videos", json={"path": str(assets / CLIP)}) as r:
        lines = r.iter_lines()
        assert [json.loads(next(lines))["frame_idx"] for _ in range(3)] == [0, 1, 2]
    after_video = wait_idle(url)
    pushed = after_video["frames_submitted"] - start["frames_submitted"]
    assert pushed < 60  # of 166: reading and pushing stopped with the client
    # A websocket that sends 20 frames and leaves after reading one reply.
    with connect(servers["open"].ws_url, max_size=None) as ws:
        ws.send(json.dumps({"shape": [320, 560, 3]}))
        for i in range(20):
            ws.send(frames[i].tobytes())
        json.loads(ws.recv(timeout=60))
    after_ws = wait_idle(url)
    assert after_ws["frames_answered"] - after_video["frames_answered"] < 20
    assert after_ws["frames_cancelled"] > after_video["frames_cancelled"]
    # The server is unaffected.
    r = httpx.post(f"{url}/v1/predict", params={"frame_idx": 2}, content=png(frames[2]), timeout=60)
    check(r.json(), 2, reference)


def test_malformed_requests_get_a_4xx_naming_the_problem_and_disturb_no_one(
        servers: dict[str, Server], frames: list[np.ndarray],
        reference: dict[int, np.ndarray], tmp_path: Path, assets: Path) -> None:
    url = servers["open"].url
    good = [frames[i].tobytes() for i in range(N_FRAMES)]
    other: dict[str, list[dict[str, Any]]] = {}
    # A well-behaved websocket client streams the whole time.
    neighbour = threading.Thread(target=lambda: other.setdefault(
        "replies", ws_session(servers["open"].ws_url, good, raw_shape=[320, 560, 3])))
    neighbour.start()
    rgba = cv2.imencode(".png", np.zeros((32, 32, 4), np.uint8))[1].tobytes()
    cases: list[tuple[str, dict[str, Any], int, str, str]] = [
        ("/v1/predict", {"content": b"hello, not an image"}, 415, "not_an_image", "PNG or JPEG"),
        ("/v1/predict", {"content": png(frames[0])[:200]}, 400, "bad_image", "decoded"),
        ("/v1/predict", {"content": b""}, 400, "empty_body", "empty"),
        ("/v1/predict", {"content": rgba}, 422, "wrong_channels", "4 channels"),
        ("/v1/predict", {"content": bytes(10), "params": {"shape": "4,4,3"}}, 400, "wrong_size",
         "48 bytes"),
        ("/v1/predict", {"content": bytes(48), "params": {"shape": "4,4,3"}}, 422, "wrong_size",
         "8-4096"),
        ("/v1/predict", {"content": bytes(64 * 64 * 2), "params": {"shape": "64,64,2"}}, 422,
         "wrong_channels", "1 or 3"),
        ("/v1/predict", {"content": bytes(64), "params": {"shape": "8,8", "dtype": "float32"}},
         422, "wrong_dtype", "uint8"),
        ("/v1/predict", {"content": png(frames[0]), "params": {"colour": "red"}}, 400,
         "unknown_field", "colour"),
        ("/v1/predict", {"content": bytes(3 * 1024 * 1024)}, 413, "too_large", "limit"),
        ("/v1/videos", {"json": {"path": str(tmp_path / "x.mp4"), "fps": 30}}, 400, "bad_field",
         "fps"),
        ("/v1/videos", {"content": b"{not json", "headers": {"content-type": "application/json"}},
         400, "bad_json", "JSON"),
        ("/v1/videos", {"json": {"path": str(tmp_path / "missing.mp4")}}, 404, "bad_video",
         "not found"),
        ("/v1/videos", {"json": {"path": "x.mp4", "frames": "9-1"}}, 400, "bad_video", "frames"),
        # What track calls an error (no frame selected) is one here too, not an empty 200.
        ("/v1/videos", {"json": {"path": str(assets / CLIP), "frames": "100000-100005"}}, 400,
         "no_frames", "past the end"),
    ]
    with httpx.Client(base_url=url, timeout=60) as client:
        for path, kwargs, status, code, words in cases:
            r = client.post(path, **kwargs)
            assert r.status_code == status, (path, kwargs.get("params"), r.text)
            assert r.headers["content-type"] == "application/json"
            body = r.json()
            assert body["error"] == code and words in body["detail"], body
        # A bad websocket message gets an error reply in its place; the stream goes on.
        with connect(servers["open"].ws_url, max_size=None) as ws:
            ws.send(b"junk")
            ws.send(png(frames[1]))
            ws.send('{"shape": [8, 8], "stride": 2}')
            ws.send(png(frames[2]))
            first, second, third = (json.loads(ws.recv(timeout=60)) for _ in range(3))
        assert first["error"] == "not_an_image" and first["seq"] == 0
        check({**second, "frame_idx": 1}, 1, reference)
        assert third["error"] == "bad_field" and "stride" in third["detail"]
    neighbour.join(timeout=120)
    for i, body in enumerate(other["replies"]):
        check({**body, "frame_idx": i}, i, reference)
    assert httpx.get(f"{url}/v1/health").json()["status"] == "ok"


# ---- auth, backpressure, shutdown ----------------------------------------------------------


def test_auth_off_by_default_and_on_with_a_token(servers: dict[str, Server],
                                                 frames: list[np.ndarray]) -> None:
    open_url, tight_url = servers["open"].url, servers["tight"].url
    assert httpx.get(f"{open_url}/v1/stats").status_code == 200  # no token needed
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
        r = httpx.post(f"{tight_url}/v1/predict", content=png(frames[0]), headers=headers)
        assert r.status_code == 401 and r.json()["error"] == "unauthorized"
        assert r.headers["www-authenticate"] == "Bearer"
        assert httpx.get(f"{tight_url}/v1/stats", headers=headers).status_code == 401
    with pytest.raises(InvalidStatus), connect(servers["tight"].ws_url):
        pass
    auth = {"Authorization": f"Bearer {TOKEN}"}
    assert httpx.get(f"{tight_url}/v1/health").status_code == 200  # probes need no token
    r = httpx.post(f"{tight_url}/v1/predict", content=png(frames[0]), headers=auth, timeout=60)
    assert r.status_code == 200 and r.json()["frame_idx"] == 0
    replies = ws_session(servers["tight"].ws_url, [png(frames[0])], headers=auth)
    assert replies[0]["seq"] == 0 and replies[0]["instances"]


def test_a_non_loopback_bind_without_a_token_is_refused(assets: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    from sleapflow.cli.app import main

    # Refused while checking options, before any socket exists.
    assert main(["serve", "-m", str(assets / MODEL), "--host", "0.0.0.0"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("Error: refusing to serve on non-loopback address '0.0.0.0'")
    assert "--token" in err and "--insecure" in err


def test_a_full_server_answers_503_with_retry_after(servers: dict[str, Server],
                                                    frames: list[np.ndarray]) -> None:
    url = servers["tight"].url
    auth = {"Authorization": f"Bearer {TOKEN}"}
    body = png(frames[0])

    def one(_: int) -> httpx.Response:
        return httpx.post(f"{url}/v1/predict", content=body, headers=auth, timeout=60)

    statuses: list[int] = []
    for _ in range(3):  # bounded: two slots and no wait make a burst of 16 overflow at once
        with ThreadPoolExecutor(16) as pool:
            answers = list(pool.map(one, range(16)))
        statuses += [r.status_code for r in answers]
        busy = [r for r in answers if r.status_code == 503]
        if busy:
            break
    assert set(statuses) <= {200, 503} and 200 in statuses and busy
    assert busy[0].headers["retry-after"] == "1"
    assert busy[0].json()["error"] == "busy" and "retry" in busy[0].json()["detail"]
    after = wait_idle(url, headers=auth)
    assert after["frames_pending"] == 0 and after["frames_rejected_busy"] >= len(busy)


def test_sigterm_finishes_requests_in_flight_then_exits(servers: dict[str, Server], assets: Path,
                                                        reference: dict[int, np.ndarray]) -> None:
    server = servers["tight"]
    url = server.url
    auth = {"Authorization": f"Bearer {TOKEN}"}
    with httpx.Client(base_url=url, timeout=60, headers=auth) as client, client.stream(
            "POST", "/v1/videos", json={"path": str(assets / CLIP),
                                        "frames": f"0-{N_FRAMES - 1}"}) as r:
        lines = r.iter_lines()
        first = json.loads(next(lines))
        server.proc.send_signal(signal.SIGTERM)
        rest = [json.loads(line) for line in lines if line]
    got = [first, *rest]
    assert [line["frame_idx"] for line in got] == list(range(N_FRAMES))  # the stream completed
    for line in got:
        check(line, line["frame_idx"], reference)
    assert server.proc.wait(timeout=60) == 0
    assert "stopped after" in "".join(server.log)
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{url}/v1/health")


def test_the_serve_settings_are_checked_before_anything_loads() -> None:
    from sleapflow.errors import ConfigError
    from sleapflow.serve.config import ServeConfig, is_loopback

    assert all(map(is_loopback, ["127.0.0.1", "127.8.0.1", "::1", "localhost"]))
    assert not any(map(is_loopback, ["0.0.0.0", "10.1.2.3", "::", "example.org"]))
    model = ("m",)
    assert ServeConfig(model_paths=model, host="0.0.0.0", token="t").token == "t"
    assert ServeConfig(model_paths=model, host="0.0.0.0", insecure=True).insecure
    for bad, words in [({"host": "10.0.0.1"}, "without a token"), ({"port": 70000}, "--port"),
                       ({"max_pending": 0}, "--max_pending"), ({"token": " "}, "--token is empty"),
                       ({"queue_wait_ms": -1}, "--queue_wait_ms"),
                       ({"max_body_mb": 0}, "--max_body_mb")]:
        with pytest.raises(ConfigError, match=words):
            ServeConfig(model_paths=model, **bad)
    with pytest.raises(ConfigError, match="-m MODEL"):
        ServeConfig(model_paths=())

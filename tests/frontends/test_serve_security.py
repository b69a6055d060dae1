"""`sleapflow serve` against hostile clients and careless options: a real tokenless server on
127.0.0.1 confined to a folder, with short deadlines — symlink escapes, FIFOs, slow clients, image
bombs, overflowing shapes, cross-site requests — and the token check's strict form."""

from __future__ import annotations

import contextlib
import json
import os
import select
import shutil
import socket
import struct
import threading
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

import cv2
import httpx
import numpy as np
import pytest
import sleap_io as sio
from serve_server import Server
from websockets.exceptions import ConnectionClosedOK, InvalidStatus
from websockets.sync.client import connect

import sleapflow

MODEL = "model_ckpts/minimal_instance_single_instance"
CLIP = "datasets/small_robot.mp4"
ROOT = Path(sleapflow.__file__).resolve().parent.parent
DEADLINE_S = 1.5  # --request_timeout_s and --idle_timeout_s of the test server


def png(image: np.ndarray) -> bytes:
    ok, data = cv2.imencode(".png", image)
    assert ok
    return data.tobytes()


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory, assets: Path) -> dict[str, Path]:
    """A served folder with legitimate inputs and every escape of the issue, and a folder
    outside it."""
    base = tmp_path_factory.mktemp("confined")
    root, outside = base / "root", base / "outside"
    (root / "images").mkdir(parents=True)
    outside.mkdir()
    rng = np.random.default_rng(0)
    for k in range(2):
        picture = rng.integers(0, 255, (64, 64, 3), np.uint8)
        (root / "images" / f"{k}.png").write_bytes(png(picture))
        (outside / f"secret{k}.png").write_bytes(png(picture))
    shutil.copyfile(assets / CLIP, root / "clip.mp4")
    # A glob through a symlinked folder.
    (root / "linked").symlink_to(outside, target_is_directory=True)
    # An image folder holding a symlink to a file outside.
    (root / "mixed").mkdir()
    (root / "mixed" / "0.png").write_bytes((root / "images" / "0.png").read_bytes())
    (root / "mixed" / "1.png").symlink_to(outside / "secret0.png")
    # A video path that is itself a symlink out.
    (root / "alias.mp4").symlink_to(assets / CLIP)
    # A .slp inside the root whose video lies outside it (the shared clip).
    skeleton = sio.Skeleton(["A", "B"])
    video = sio.Video(filename=str(assets / CLIP), open_backend=False)
    frame = sio.LabeledFrame(video=video, frame_idx=0, instances=[
        sio.Instance.from_numpy(np.array([[10.0, 10.0], [20.0, 20.0]]), skeleton=skeleton)])
    sio.save_slp(sio.Labels(videos=[video], skeletons=[skeleton], labeled_frames=[frame]),
                 str(root / "labels.slp"))
    os.mkfifo(root / "stuck.mp4")
    return {"root": root, "outside": outside}


@pytest.fixture(scope="module")
def server(assets: Path, tree: dict[str, Path]) -> Iterator[Server]:
    started = Server(assets / MODEL, "--video_root", str(tree["root"]), "--batch_size", "2",
                     "--max_batch_delay_ms", "5", "--request_timeout_s", str(DEADLINE_S),
                     "--idle_timeout_s", str(DEADLINE_S), "--max_body_mb", "2")
    try:
        started.wait_ready()
        yield started
    finally:
        started.stop()


def post_video(url: str, payload: dict[str, object], timeout: float = 30) -> httpx.Response:
    return httpx.post(f"{url}/v1/videos", json=payload, timeout=timeout)


# ---- confinement by real path --------------------------------------------------------------


def test_video_root_holds_by_real_path_for_globs_folders_and_labels(
        server: Server, tree: dict[str, Path]) -> None:
    root = tree["root"]
    # What lies inside is served (so the refusals below are about the path, not the input).
    r = post_video(server.url, {"path": str(root / "images")})
    assert r.status_code == 200, r.text
    assert [json.loads(line)["frame_idx"] for line in r.text.splitlines()] == [0, 1]
    r = post_video(server.url, {"path": str(root / "images" / "*.png")})
    assert r.status_code == 200, r.text
    r = post_video(server.url, {"path": str(root / "clip.mp4"), "frames": "0-1"})
    assert r.status_code == 200 and len(r.text.splitlines()) == 2, r.text
    for path in [str(root / "linked" / "*.png"),  # a glob through a symlinked folder
                 str(root / "linked"),  # the symlinked folder itself
                 str(root / "mixed"),  # an image folder holding a symlink out
                 str(root / "m*" / "*.png"),  # the same by a glob
                 str(root / "alias.mp4"),  # a symlinked video
                 str(root / "labels.slp"),  # a .slp whose video is outside
                 str(root / ".." / "outside" / "secret0.png"),
                 str(tree["outside"] / "secret1.png")]:
        r = post_video(server.url, {"path": path})
        assert r.status_code == 403, (path, r.text)
        assert r.headers["content-type"] == "application/json"
        assert r.json()["error"] == "outside_root" and "--video_root" in r.json()["detail"]
    r = post_video(server.url, {"path": str(root / "labels.slp"), "video_index": 0,
                                "frames": "0"})
    assert r.status_code == 403, r.text


def test_a_fifo_is_refused_without_blocking(server: Server, tree: dict[str, Path]) -> None:
    started = time.monotonic()
    for _ in range(5):
        r = post_video(server.url, {"path": str(tree["root"] / "stuck.mp4")}, timeout=10)
        assert r.status_code == 400 and r.json()["error"] == "not_a_file", r.text
        assert "FIFO" in r.json()["detail"]
    assert time.monotonic() - started < 10
    assert httpx.get(f"{server.url}/v1/health").json()["status"] == "ok"


# ---- slow clients --------------------------------------------------------------------------


def test_slow_and_stalled_clients_are_dropped_while_others_are_served(server: Server) -> None:
    port = server.port
    frame = png(np.full((64, 64, 3), 128, np.uint8))
    assert httpx.post(f"{server.url}/v1/predict", content=frame, timeout=60).status_code == 200
    head = f"POST /v1/predict HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n".encode()
    clients: list[tuple[str, socket.socket, bytes]] = []
    for k in range(20):
        sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        kind = ("silent", "head", "body")[k % 3]
        if kind == "head":
            sock.sendall(head)  # then header bytes, one at a time
        elif kind == "body":
            sock.sendall(head + b"Content-Type: image/png\r\nContent-Length: 100000\r\n\r\n")
        clients.append((kind, sock, b"x" * 1000 if kind != "head" else b"X-Slow: " + b"y" * 1000))
    stack = contextlib.ExitStack()
    ws = stack.enter_context(connect(server.url.replace("http://", "ws://") + "/v1/stream",
                                     open_timeout=10))
    started = time.monotonic()
    closed: dict[int, float] = {}
    replies: dict[int, bytes] = {}
    served = []

    def normal_client() -> None:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            for _ in range(3):
                r = client.post("/v1/predict", content=frame)
                served.append((r.status_code, time.monotonic() - started))

    other = threading.Thread(target=normal_client)
    other.start()
    sent = 0
    while len(closed) < len(clients) and time.monotonic() - started < 4 * DEADLINE_S + 4:
        for k, (kind, sock, trickle) in enumerate(clients):
            if k in closed:
                continue
            if kind != "silent" and sent < len(trickle):
                with contextlib.suppress(OSError):
                    sock.send(trickle[sent:sent + 1])  # one byte per round: never finishing
            while select.select([sock], [], [], 0)[0]:
                try:
                    data = sock.recv(65536)
                except OSError:
                    data = b""
                if not data:
                    closed[k] = time.monotonic() - started
                    break
                replies[k] = replies.get(k, b"") + data
        sent += 1
        time.sleep(0.1)
    other.join(timeout=30)
    with pytest.raises(ConnectionClosedOK) as info:
        ws.recv(timeout=10)  # a websocket that never sends is closed as idle too
    assert info.value.rcvd is not None and "idle" in info.value.rcvd.reason
    stack.close()
    for _, sock, _ in clients:
        sock.close()
    assert sorted(closed) == list(range(len(clients))), f"still open: {set(range(20)) - set(closed)}"
    # Each was dropped at its deadline (plus the grace for a body and the polling), not later.
    assert max(closed.values()) < DEADLINE_S + 1.0 + 1.5, closed
    for k, (kind, _, _) in enumerate(clients):
        if kind in ("head", "body"):
            status, _, body = replies[k].partition(b"\r\n\r\n")
            assert status.startswith(b"HTTP/1.1 408"), replies[k]
            assert json.loads(body)["error"] == "timeout"
    assert [status for status, _ in served] == [200, 200, 200]
    assert served[0][1] < DEADLINE_S  # served while the slow ones were still connected
    assert not any("Traceback" in line for line in server.log), "".join(server.log)


# ---- frames that claim too much ------------------------------------------------------------


def png_bomb(side: int) -> bytes:
    """A 1-bit grayscale PNG of side x side black pixels: tiny compressed, side^2 bytes decoded."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    row = bytes(1 + (side + 7) // 8)  # filter byte 0, then the packed bits
    packer = zlib.compressobj(9)
    idat = b"".join(packer.compress(row * 1000) for _ in range(side // 1000))
    idat += packer.compress(row * (side % 1000)) + packer.flush()
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0))
            + chunk(b"IDAT", idat) + chunk(b"IEND", b""))


def test_an_image_bomb_is_refused_from_its_header_with_bounded_memory(server: Server) -> None:
    bomb = png_bomb(30000)  # decoded: 900 MB of 8-bit pixels
    assert len(bomb) < 1024 * 1024
    frame = png(np.full((64, 64, 3), 128, np.uint8))
    with httpx.Client(base_url=server.url, timeout=30) as client:
        assert client.post("/v1/predict", content=frame).status_code == 200  # warm
        before = server.peak_rss_kib()
        for _ in range(3):
            r = client.post("/v1/predict", content=bomb)
            assert r.status_code == 422 and r.json()["error"] == "wrong_size", r.text
            assert "30000x30000" in r.json()["detail"]
        with connect(server.url.replace("http://", "ws://") + "/v1/stream") as ws:
            ws.send(bomb)
            reply = json.loads(ws.recv(timeout=30))
        assert reply["error"] == "wrong_size" and reply["seq"] == 0
        grown_mib = (server.peak_rss_kib() - before) / 1024
    assert grown_mib < 100, f"peak RSS grew by {grown_mib:.0f} MiB"


def test_image_sizes_are_read_from_headers() -> None:
    from sleapflow.serve.codec import BadRequest, image_header

    rng = np.random.default_rng(1)
    colour = rng.integers(0, 255, (40, 70, 3), np.uint8)
    assert image_header(png(colour)) == (40, 70, 8)
    assert image_header(png(colour[..., 0].astype(np.uint16) * 200)) == (40, 70, 16)
    for flags in ([], [cv2.IMWRITE_JPEG_PROGRESSIVE, 1]):
        jpeg = cv2.imencode(".jpg", colour, flags)[1].tobytes()
        assert image_header(jpeg) == (40, 70, 8)
    assert image_header(png_bomb(30000)) == (30000, 30000, 1)
    for broken, status in [(png(colour)[:20], 400), (b"\xff\xd8\xff\xe0\x00", 400),
                           (b"\xff\xd8" + b"\xff\xda\x00\x08" + bytes(8), 400), (b"GIF89a", 415)]:
        with pytest.raises(BadRequest) as info:
            image_header(broken)
        assert info.value.status == status


def test_a_raw_shape_that_overflows_is_a_4xx_json(server: Server) -> None:
    with httpx.Client(base_url=server.url, timeout=30) as client:
        for shape, status, code in [("99999999999,99999999999,3", 400, "wrong_size"),
                                    ("4294967296,4294967296,1", 400, "wrong_size"),
                                    ("18446744073709551617,1,3", 400, "bad_shape"),
                                    ("3037000500,3037000500", 400, "wrong_size")]:
            r = client.post("/v1/predict", params={"shape": shape}, content=bytes(48))
            assert r.status_code == status, (shape, r.text)
            assert r.headers["content-type"] == "application/json"
            assert r.json()["error"] == code
        # The size check applies to raw frames whose byte count does match.
        r = client.post("/v1/predict", params={"shape": "8,5000"}, content=bytes(40000))
        assert r.status_code == 422 and "8-4096" in r.json()["detail"]
    with connect(server.url.replace("http://", "ws://") + "/v1/stream") as ws:
        ws.send(json.dumps({"shape": [99999999999, 99999999999, 3]}))
        ws.send(bytes(48))
        reply = json.loads(ws.recv(timeout=30))
    assert reply["error"] == "wrong_size" and reply["seq"] == 0
    assert not any("Traceback" in line for line in server.log)


# ---- a web page driving a tokenless server -------------------------------------------------


def ws_handshake(port: int, host: str) -> bytes:
    """The status line answering a websocket handshake with exactly this one Host header (the
    websockets client would send its own Host beside an extra one)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(f"GET /v1/stream HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                     "Sec-WebSocket-Version: 13\r\n\r\n".encode())
        return sock.recv(4096).split(b"\r\n")[0]


def test_a_web_page_cannot_drive_a_tokenless_server(server: Server, tree: dict[str, Path]) -> None:
    url, port = server.url, server.port
    clip = json.dumps({"path": str(tree["root"] / "clip.mp4"), "frames": "0"})
    # A form-like post (no CORS preflight) is refused; the JSON one is served.
    r = httpx.post(f"{url}/v1/videos", content=clip, headers={"Content-Type": "text/plain"})
    assert r.status_code == 415 and r.json()["error"] == "wrong_content_type", r.text
    r = httpx.post(f"{url}/v1/videos", content=clip)
    assert r.status_code == 415
    r = httpx.post(f"{url}/v1/videos", content=clip,
                   headers={"Content-Type": "application/json; charset=utf-8"}, timeout=30)
    assert r.status_code == 200, r.text
    # DNS rebinding: the page's own name, now pointing at 127.0.0.1.
    for host in ["evil.example", f"evil.example:{port}", f"127.0.0.1:{port + 1}", "localhost.",
                 f"127.0.0.1.evil.example:{port}"]:
        r = httpx.get(f"{url}/v1/stats", headers={"Host": host})
        assert r.status_code == 421 and r.json()["error"] == "misdirected_host", (host, r.text)
    for host in ["localhost", f"localhost:{port}", f"127.0.0.1:{port}", "[::1]", f"[::1]:{port}"]:
        assert httpx.get(f"{url}/v1/stats", headers={"Host": host}).status_code == 200, host
    # A page of another site (or a sandboxed one) may not post, even a frame.
    frame = png(np.full((64, 64, 3), 128, np.uint8))
    for origin in ["http://evil.example", "null", f"http://evil.example:{port}"]:
        r = httpx.post(f"{url}/v1/predict", content=frame, headers={"Origin": origin})
        assert r.status_code == 403 and r.json()["error"] == "foreign_origin", (origin, r.text)
    r = httpx.post(f"{url}/v1/predict", content=frame, headers={"Origin": f"http://localhost:{port}"},
                   timeout=30)
    assert r.status_code == 200
    ws_url = url.replace("http://", "ws://") + "/v1/stream"
    with pytest.raises(InvalidStatus) as refused, connect(ws_url, origin="http://evil.example"):
        pass
    assert refused.value.response.status_code == 403
    assert ws_handshake(port, "evil.example").startswith(b"HTTP/1.1 403")  # rebound name
    assert ws_handshake(port, f"127.0.0.1:{port}").startswith(b"HTTP/1.1 101")
    with connect(ws_url, origin=f"http://127.0.0.1:{port}") as ws:  # a local page may
        ws.send(frame)
        assert json.loads(ws.recv(timeout=30))["seq"] == 0


# ---- the token's strict form (in process: the guard alone) ---------------------------------


def test_the_authorization_header_must_be_exactly_bearer_token() -> None:
    import anyio
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    from sleapflow.serve.app import RequestGuard
    from sleapflow.serve.config import ServeConfig

    async def stats(request: Request) -> PlainTextResponse:
        return PlainTextResponse("ok")

    inner = Starlette(routes=[Route("/v1/stats", stats)])
    guarded = RequestGuard(inner, ServeConfig(model_paths=("m",), token="s3cret"))
    refused = [[], [("Authorization", "Bearer wrong")], [("Authorization", "s3cret")],
               [("Authorization", "bearer s3cret")], [("Authorization", "Bearer  s3cret")],
               [("Authorization", "Bearer s3cret ")], [("Authorization", "Basic s3cret")],
               [("Authorization", "Bearer s3cret"), ("Authorization", "Bearer s3cret")],
               [("Authorization", "Bearer s3cret, Bearer x")]]

    async def run() -> None:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=guarded),
                                     base_url="http://127.0.0.1:8000") as client:
            for headers in refused:
                r = await client.get("/v1/stats", headers=headers)
                assert r.status_code == 401, headers
                assert r.json()["error"] == "unauthorized"
                assert r.headers["www-authenticate"] == "Bearer"
            r = await client.get("/v1/stats", headers={"Authorization": "Bearer s3cret"})
            assert r.status_code == 200 and r.text == "ok"
            # With a token, the token is the guard: another Host or Origin holding it gets in.
            r = await client.get("/v1/stats", headers={
                "Authorization": "Bearer s3cret", "Host": "box.lan", "Origin": "https://dash.lan"})
            assert r.status_code == 200

    anyio.run(run)


# ---- start options -------------------------------------------------------------------------


@pytest.mark.parametrize(("option", "value"), [
    ("--max_body_mb", "inf"), ("--max_body_mb", "nan"), ("--max_body_mb", "-1"),
    ("--max_body_mb", "0"), ("--request_timeout_s", "0"), ("--idle_timeout_s", "inf"),
    ("--graceful_timeout_s", "nan"), ("--max_image_pixels", "0"), ("--max_frame_side", "100000"),
])
def test_bad_start_options_are_one_error_line_and_exit_2(
        assets: Path, capsys: pytest.CaptureFixture[str], option: str, value: str) -> None:
    from sleapflow.cli.app import main

    assert main(["serve", "-m", str(assets / MODEL), option, value]) == 2
    err = capsys.readouterr().err
    assert err.startswith("Error: ") and err.count("\n") == 1, err
    assert option in err and "Traceback" not in err


def test_an_unexpected_failure_is_still_a_json_body() -> None:
    import anyio

    from sleapflow.serve.app import build_app
    from sleapflow.serve.config import ServeConfig

    class BrokenEngine:
        cfg = ServeConfig(model_paths=("m",))
        def stats(self) -> dict[str, object]:
            raise RuntimeError("a bug")

    app = build_app(BrokenEngine(), ["A"])  # type: ignore[arg-type]

    async def run() -> httpx.Response:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8000") as c:
            return await c.get("/v1/stats")

    r = anyio.run(run)
    assert r.status_code == 500 and r.headers["content-type"] == "application/json"
    assert r.json()["error"] == "internal"

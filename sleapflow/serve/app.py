"""The Starlette app: predict, videos (NDJSON), the websocket stream, health, stats, OpenAPI.

Handlers only route: decoding runs in worker threads, inference in the shared graph. Every
error is a JSON :class:`~sleapflow.serve.codec.ErrorBody` with a 4xx/5xx status, and a bad
request never reaches the graph, so it cannot disturb other clients.
"""

from __future__ import annotations

import hmac
import math
import os
from typing import Any

import anyio
import msgspec
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route, WebSocketRoute
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.websockets import WebSocket, WebSocketDisconnect

from sleapflow.errors import InputNotFoundError, SleapflowError
from sleapflow.inputs import open_reader, plan_input
from sleapflow.messages import FramePrediction
from sleapflow.options.boundary import build_config
from sleapflow.serve.codec import (
    BadRequest,
    ErrorBody,
    Health,
    Prediction,
    RawFormat,
    VideoRequest,
    decode_image,
    decode_json,
    decode_message,
    decode_raw,
    encode,
    parse_raw_format,
    parse_shape,
    prediction_body,
)
from sleapflow.serve.config import ServeConfig
from sleapflow.serve.engine import Busy, Engine, Ticket
from sleapflow.serve.paths import Confinement

__all__ = ("JSON", "LOOPBACK_HOSTS", "NDJSON", "PUBLIC_PATHS", "RequestGuard", "Service", "build_app",
           "openapi_document")


JSON = "application/json"
NDJSON = "application/x-ndjson"
#: Paths served without a token: probes and the API description.
PUBLIC_PATHS = frozenset({"/v1/health", "/openapi.json"})


def _json(obj: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(encode(obj), status_code=status, media_type=JSON, headers=headers)


#: Host names a browser uses for this machine itself; a tokenless server answers only these, so a
#: page whose own name was rebound to 127.0.0.1 (DNS rebinding) is still refused.
LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "[::1]"})


def _split_host(value: str) -> tuple[str, str | None]:
    """``host[:port]`` (IPv6 in brackets) → lower-case host and port text (None if absent)."""
    value = value.strip().lower()
    if value.startswith("["):
        host, sep, rest = value.partition("]")
        host += sep
        return host, rest[1:] if rest.startswith(":") else (None if not rest else "?")
    host, sep, port = value.partition(":")
    return host, port if sep else None


class RequestGuard:
    """What every request (http and websocket) passes before a handler.

    With a token: exactly one ``Authorization: Bearer <token>`` header, compared in constant time,
    on every path but the public ones. A browser cannot add that header to a cross-site request
    (nor to a websocket), so the token alone keeps web pages out.

    Without a token the server is open to whoever can reach it, and a web page in the user's
    browser can reach a loopback server. So it answers only requests whose ``Host`` names this
    machine (``localhost``, ``127.0.0.1``, ``[::1]``, the bound address; with or without the
    server's port), which defeats DNS rebinding, and refuses any ``Origin`` but a loopback one or
    the server's own, which refuses pages on other sites (a form post, ``fetch`` or websocket).
    ``--insecure`` on a wildcard address (0.0.0.0, ::) cannot know its own names: Host is not
    checked there, Origin still is.
    """

    def __init__(self, app: ASGIApp, cfg: ServeConfig) -> None:
        self.app = app
        self.expected = f"Bearer {cfg.token}".encode() if cfg.token else None
        bound = cfg.host.lower()
        bound = f"[{bound}]" if ":" in bound else bound
        self.check_host = cfg.token is None and bound not in ("0.0.0.0", "[::]")
        self.hosts = LOOPBACK_HOSTS | {bound}

    def _host_ok(self, host: str | None, port: int | None) -> bool:
        if host is None:
            return False
        name, given = _split_host(host)
        return name in self.hosts and (given is None or given == str(port))

    def _origin_ok(self, origin: str, host: str | None, port: int | None) -> bool:
        scheme, sep, rest = origin.strip().lower().partition("://")
        if not sep or scheme not in ("http", "https", "ws", "wss") or "/" in rest:
            return False  # "null" (a sandboxed page or a file) and anything malformed
        name, _ = _split_host(rest)
        if name in LOOPBACK_HOSTS or name in self.hosts:
            return True  # a page on this machine: it could call the server directly anyway
        # The server's own origin (the name a client used under --insecure on 0.0.0.0).
        return host is not None and rest == host.strip().lower()

    async def _refuse(self, scope: Scope, receive: Receive, send: Send, status: int, code: str,
                      detail: str, headers: dict[str, str] | None = None) -> None:
        if scope["type"] == "websocket":
            # Before accepting: the client gets an HTTP 403 instead of a websocket.
            await send({"type": "websocket.close", "code": 1008, "reason": detail[:120]})
            return
        await _json(ErrorBody(error=code, detail=detail), status, headers)(scope, receive, send)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers: dict[bytes, list[bytes]] = {}
        for name, value in scope["headers"]:
            headers.setdefault(name, []).append(value)
        if self.expected is None:
            host_values = headers.get(b"host", [])
            host = host_values[0].decode("latin-1") if len(host_values) == 1 else None
            port = (scope.get("server") or (None, None))[1]
            if self.check_host and not self._host_ok(host, port):
                await self._refuse(scope, receive, send, 421, "misdirected_host",
                                   f"this server answers only Host localhost, 127.0.0.1 or [::1] "
                                   f"(got {host!r}); start it with --token to serve other names")
                return
            origins = headers.get(b"origin", [])
            if origins and not (len(origins) == 1 and self._origin_ok(
                    origins[0].decode("latin-1"), host, port)):
                await self._refuse(scope, receive, send, 403, "foreign_origin",
                                   "requests from web pages of other sites are refused; start the "
                                   "server with --token to let a page that holds it call")
                return
        elif scope["path"] not in PUBLIC_PATHS:
            given = headers.get(b"authorization", [])
            # Exactly one header of exactly this form: no other scheme, case or spacing.
            if len(given) != 1 or not hmac.compare_digest(given[0], self.expected):
                await self._refuse(scope, receive, send, 401, "unauthorized",
                                   "missing or wrong bearer token: send exactly one "
                                   "'Authorization: Bearer <token>' header",
                                   {"WWW-Authenticate": "Bearer"})
                return
        await self.app(scope, receive, send)


class Service:
    """The handlers, bound to one engine and its settings."""

    def __init__(self, engine: Engine, nodes: list[str]) -> None:
        self.engine = engine
        self.cfg = engine.cfg
        self.nodes = nodes
        # Decoding uploads and videos: a few threads, not one per client, so that many clients
        # neither oversubscribe the cores the graph needs nor spread frames over many arenas.
        self.decode_limiter = anyio.CapacityLimiter(max(1, min(4, os.cpu_count() or 1)))
        # Tracking a frame takes well under a millisecond to a few; one thread for all streams.
        self.track_limiter = anyio.CapacityLimiter(1)
        self.confinement = Confinement(self.cfg.video_root)

    # ---- helpers ---------------------------------------------------------------------------

    def _busy(self, exc: Busy) -> Response:
        return _json(ErrorBody(error="busy", detail=exc.message), 503,
                     {"Retry-After": str(self.cfg.retry_after_s)})

    @staticmethod
    def _check_query(request: Request, allowed: set[str]) -> None:
        unknown = sorted(set(request.query_params) - allowed)
        if unknown:
            known = ", ".join(sorted(allowed)) or "none"
            raise BadRequest(400, "unknown_field",
                             f"unknown query field(s) {', '.join(unknown)}; known: {known}")

    async def _read_body(self, request: Request) -> bytes:
        limit = self.cfg.max_body_bytes
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise BadRequest(413, "too_large", f"the body is {declared} bytes; the limit is {limit} "
                                               "(--max_body_mb)")
        chunks: list[bytes] = []
        size = 0
        timeout = self.cfg.request_timeout_s
        try:
            # A client that sends its body slowly, or stops, holds a connection and a part-read
            # body: it gets this long, then 408 and the connection is closed.
            with anyio.fail_after(timeout):
                async for chunk in request.stream():
                    size += len(chunk)
                    if size > limit:
                        raise BadRequest(413, "too_large",
                                         f"the body exceeds {limit} bytes (--max_body_mb)")
                    chunks.append(chunk)
        except TimeoutError:
            raise BadRequest(408, "timeout", f"the request body did not arrive within {timeout:g} s "
                                             "(--request_timeout_s)") from None
        except ClientDisconnect:
            # Nobody is left to answer; a 4xx ends the handler without a traceback in the log.
            raise BadRequest(400, "disconnected", "the client went away mid-body") from None
        return b"".join(chunks)

    @staticmethod
    def _require_json(request: Request) -> None:
        # A browser may post text/plain or a form to any site without asking first; JSON it must
        # ask for (a CORS preflight, which this server never grants), so JSON only.
        kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if kind != JSON:
            raise BadRequest(415, "wrong_content_type", f"this endpoint takes {JSON} (got "
                                                        f"{kind or 'no content type'!r}); send "
                                                        f"'Content-Type: {JSON}'")

    # ---- endpoints -------------------------------------------------------------------------

    async def health(self, request: Request) -> Response:
        engine = self.engine
        status = "failed" if engine.failed else ("stopping" if engine.closing else "ok")
        return _json(Health(status=status, graph=engine.graph.name,
                            models=list(self.cfg.model_paths), nodes=self.nodes,
                            frames_pending=engine.pending), 200 if status == "ok" else 503)

    async def stats(self, request: Request) -> Response:
        return _json(self.engine.stats())

    async def predict(self, request: Request) -> Response:
        self._check_query(request, {"shape", "dtype", "frame_idx"})
        query = request.query_params
        try:
            frame_idx = int(query.get("frame_idx", "0"))
        except ValueError:
            raise BadRequest(400, "bad_field", "frame_idx must be an integer") from None
        body = await self._read_body(request)
        if not body:
            raise BadRequest(400, "empty_body", "the body is empty; send a PNG/JPEG image or raw "
                                                "pixels with ?shape=H,W,C")
        side, pixels = self.cfg.max_frame_side, self.cfg.max_image_pixels
        if "shape" in query:
            shape = parse_shape(query["shape"])
            image = await anyio.to_thread.run_sync(decode_raw, body, shape,
                                                   query.get("dtype", "uint8"), side, pixels,
                                                   limiter=self.decode_limiter)
        elif "dtype" in query:
            raise BadRequest(400, "bad_field", "dtype needs shape: raw pixels are sent with "
                                               "?shape=H,W,C&dtype=uint8")
        else:
            image = await anyio.to_thread.run_sync(decode_image, body, side, pixels,
                                                   limiter=self.decode_limiter)
        received = anyio.current_time()
        try:
            ticket = await self.engine.submit(image, frame_idx)
        except Busy as exc:
            return self._busy(exc)
        try:
            pred = await self.engine.result(ticket)
        finally:
            self.engine.cancel(ticket)  # a no-op once answered; frees the slot's work otherwise
        latency = (anyio.current_time() - received) * 1000
        return _json(prediction_body(pred, self.nodes, latency_ms=latency))

    async def videos(self, request: Request) -> Response:
        self._check_query(request, set())
        self._require_json(request)
        body = await self._read_body(request)
        req = decode_json(body, VideoRequest, what="video request",
                          example='{"path": "/data/clip.mp4", "frames": "0-99"}')
        try:
            # The one boundary: frames as text ("0-99,200") or a list, checked as track's are.
            cfg = build_config(data_path=req.path, frames=req.frames, video_index=req.video_index)
        except SleapflowError as exc:
            raise BadRequest(400, "bad_video", str(exc)) from None

        def plan() -> Any:
            # Every file planning or reading opens is checked by its real path: before planning
            # (which opens them) and on the finished plan (what the readers will open).
            self.confinement.before_planning(req.path)
            try:
                planned = plan_input(cfg)
            except InputNotFoundError as exc:
                raise BadRequest(404, "bad_video", str(exc)) from None
            except SleapflowError as exc:
                raise BadRequest(400, "bad_video", str(exc)) from None
            self.confinement.after_planning(planned)
            return planned

        plan = await anyio.to_thread.run_sync(plan)
        if not plan.items:
            # What track calls an error is one here too, not an empty 200.
            raise BadRequest(400, "no_frames", "no frames selected: every requested frame is past "
                                               "the end of the video (or the selection is empty)")
        stream = _VideoStream(self, plan)
        try:
            await stream.admit_first()
        except Busy as exc:
            await stream.close_readers()
            return self._busy(exc)
        except BaseException:
            await stream.close_readers()
            raise
        return stream

    async def tracked(self, tracker: Any, pred: FramePrediction, ticket: Ticket) -> FramePrediction:
        """``pred`` through its stream's own tracker, off the event loop."""
        if tracker is None:
            return pred
        if tracker.needs_image and ticket.pixels is not None:
            pixels = ticket.pixels if ticket.pixels.ndim == 3 else ticket.pixels[..., None]
            pred = msgspec.structs.replace(pred, image=pixels)
        ticket.pixels = None
        out: FramePrediction = await anyio.to_thread.run_sync(tracker, pred,
                                                              limiter=self.track_limiter)
        return out

    async def stream(self, websocket: WebSocket) -> None:
        await websocket.accept()
        engine = self.engine
        record, tracker = engine.open_stream("websocket")
        # (seq, ticket or error, received time), in arrival order; bounded so a fast camera is
        # held by TCP backpressure instead of piling frames up here.
        send, receive = anyio.create_memory_object_stream[tuple[int, Ticket | ErrorBody, float]](
            self.cfg.stream_inflight)
        live: set[Ticket] = set()
        side, pixels = self.cfg.max_frame_side, self.cfg.max_image_pixels
        idle = self.cfg.idle_timeout_s

        async def receiver(scope: anyio.CancelScope) -> None:
            raw: RawFormat | None = None
            seq = 0
            async with send:
                while True:
                    with anyio.move_on_after(idle) as waited:
                        message = await websocket.receive()
                    if waited.cancelled_caught:
                        if live or send.statistics().current_buffer_used:
                            continue  # results are still due: the client is waiting for them
                        # Nothing sent and nothing owed: a stalled client keeps no connection.
                        await websocket.close(1000, f"idle for {idle:g} s (--idle_timeout_s)")
                        scope.cancel()
                        return
                    if message["type"] == "websocket.disconnect":
                        scope.cancel()  # the client is gone: its queued frames are dropped
                        return
                    now = anyio.current_time()
                    item: Ticket | ErrorBody
                    try:
                        if message.get("text") is not None:
                            raw = parse_raw_format(message["text"])
                            continue
                        data = message.get("bytes") or b""
                        image = await anyio.to_thread.run_sync(
                            decode_message, data, raw, side, pixels,
                            limiter=self.decode_limiter)
                        item = await engine.submit(image, seq)
                        live.add(item)
                    except BadRequest as exc:
                        item = ErrorBody(error=exc.code, detail=exc.message, seq=seq)
                        engine.counters["requests_rejected_4xx"] += 1
                    except Busy as exc:
                        item = ErrorBody(error="busy", detail=exc.message, seq=seq)
                    await send.send((seq, item, now))
                    seq += 1

        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(receiver, tg.cancel_scope)
                try:
                    async with receive:
                        async for seq, item, received in receive:
                            if isinstance(item, ErrorBody):
                                await websocket.send_text(encode(item).decode())
                                continue
                            pred = await engine.result(item)
                            live.discard(item)
                            pred = await self.tracked(tracker, pred, item)
                            latency = (anyio.current_time() - received) * 1000
                            record.add(latency)
                            await websocket.send_text(encode(prediction_body(
                                pred, self.nodes, seq=seq, latency_ms=latency)).decode())
                except (WebSocketDisconnect, OSError):
                    tg.cancel_scope.cancel()  # the client went away: nothing left to answer
        finally:
            engine.close_stream(record)
            for ticket in live:
                engine.cancel(ticket)


class _VideoStream(Response):
    """NDJSON, one line per frame as produced; stops reading and pushing when the client goes."""

    media_type = NDJSON

    def __init__(self, service: Service, plan: Any) -> None:
        super().__init__(media_type=NDJSON)
        self.service = service
        self.engine = service.engine
        self.plan = plan
        self.items = list(plan.items)
        self.readers: dict[int, Any] = {}
        self.first: Ticket | ErrorBody | None = None
        self.live: set[Ticket] = set()

    async def _read(self, video_id: int, frame_idx: int) -> Any:
        def read() -> Any:
            reader = self.readers.get(video_id)
            if reader is None:
                reader = self.readers[video_id] = open_reader(self.plan, video_id)
            return reader.read(frame_idx)

        return await anyio.to_thread.run_sync(read, limiter=self.service.decode_limiter)

    async def _next(self, index: int, wait_s: float | None) -> Ticket | ErrorBody:
        item = self.items[index]
        try:
            image = await self._read(item.video_id, item.frame_idx)
        except SleapflowError as exc:
            # The 200 and earlier lines are sent: a frame that cannot be read is a line saying
            # so, not a torn stream and a traceback.
            return ErrorBody(error="unreadable_frame", detail=str(exc), frame_idx=item.frame_idx)
        if image is None:
            return ErrorBody(error="unreadable_frame", detail="this frame could not be decoded",
                             frame_idx=item.frame_idx)
        ticket = await self.engine.submit(image, item.frame_idx, wait_s=wait_s)
        self.live.add(ticket)
        return ticket

    async def admit_first(self) -> None:
        """Read and queue the first frame now, so a full server can still answer 503."""
        if self.items:
            self.first = await self._next(0, None)

    async def close_readers(self) -> None:
        readers, self.readers = list(self.readers.values()), {}
        for reader in readers:
            await anyio.to_thread.run_sync(reader.close)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", NDJSON.encode())]})
        out, inbox = anyio.create_memory_object_stream[Ticket | ErrorBody](
            self.service.cfg.stream_inflight)
        record, tracker = self.engine.open_stream("video")

        async def produce() -> None:
            async with out:
                if self.first is not None:
                    await out.send(self.first)
                for index in range(1, len(self.items)):
                    # Admitted already: later frames wait for room rather than fail mid-stream.
                    await out.send(await self._next(index, math.inf))

        async def watch(scope: anyio.CancelScope) -> None:
            while (await receive())["type"] != "http.disconnect":
                pass
            scope.cancel()  # the client hung up: stop reading and pushing its frames

        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(watch, tg.cancel_scope)
                tg.start_soon(produce)
                try:
                    async with inbox:
                        async for item in inbox:
                            if isinstance(item, Ticket):
                                pred = await self.engine.result(item)
                                self.live.discard(item)
                                pred = await self.service.tracked(tracker, pred, item)
                                record.add((anyio.current_time() - item.submitted_at) * 1000)
                                line = encode(prediction_body(pred, self.service.nodes))
                            else:
                                line = encode(item)
                            await send({"type": "http.response.body", "body": line + b"\n",
                                        "more_body": True})
                    await send({"type": "http.response.body", "body": b"", "more_body": False})
                except OSError:
                    pass  # the client went away while we were sending
                tg.cancel_scope.cancel()
        finally:
            self.engine.close_stream(record)
            for ticket in self.live:
                self.engine.cancel(ticket)
            with anyio.CancelScope(shield=True):
                await self.close_readers()


def openapi_document(nodes: list[str]) -> dict[str, Any]:
    """The OpenAPI 3.1 description of the API, with schemas from the msgspec Structs."""
    (pred, err, video, health, raw), components = msgspec.json.schema_components(
        [Prediction, ErrorBody, VideoRequest, Health, RawFormat],
        ref_template="#/components/schemas/{name}")

    def answer(schema: dict[str, Any], media: str = JSON) -> dict[str, Any]:
        return {"content": {media: {"schema": schema}}}

    errors = {str(code): {"description": text, **answer(err)} for code, text in
              [(400, "malformed request"), (401, "missing or wrong bearer token"),
               (403, "outside --video_root, or from a foreign web page"),
               (408, "the body did not arrive within --request_timeout_s"),
               (413, "body too large"), (415, "not an image, or not JSON"),
               (421, "a Host this tokenless server does not answer"), (422, "wrong size, dtype or channels"),
               (503, "full: retry after Retry-After seconds")]}
    return {
        "openapi": "3.1.0",
        "info": {"title": "sleapflow serve", "version": "1",
                 "description": "Pose estimation on frames from many clients, batched together. "
                                f"Skeleton nodes: {', '.join(nodes)}."},
        "components": {"schemas": components,
                       "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
        "security": [{"bearer": []}],
        "paths": {
            "/v1/predict": {"post": {
                "summary": "One frame in, its instances out",
                "parameters": [
                    {"name": "shape", "in": "query", "schema": {"type": "string"},
                     "description": "H,W or H,W,C for raw uint8 pixels (else the body is PNG/JPEG)"},
                    {"name": "dtype", "in": "query", "schema": {"type": "string", "enum": ["uint8"]}},
                    {"name": "frame_idx", "in": "query", "schema": {"type": "integer"}}],
                "requestBody": {"required": True, "content": {
                    "image/png": {}, "image/jpeg": {}, "application/octet-stream": {}}},
                "responses": {"200": {"description": "the frame's prediction", **answer(pred)},
                              **errors}}},
            "/v1/videos": {"post": {
                "summary": "Run a video on the server; one NDJSON line per frame as produced",
                "requestBody": {"required": True, **answer(video)},
                "responses": {"200": {"description": "NDJSON of Prediction (or ErrorBody for an "
                                                     "unreadable frame)", **answer(pred, NDJSON)},
                              "404": {"description": "no such file", **answer(err)}, **errors}}},
            "/v1/stream": {"get": {
                "summary": "Websocket: binary frames (PNG/JPEG, or raw after a RawFormat text "
                           "message) in; Prediction/ErrorBody text messages out, in order, with "
                           "latency_ms",
                "responses": {"101": {"description": "switching to the websocket protocol"}},
                "x-message-schemas": {"in": raw, "out": [pred, err]}}},
            "/v1/health": {"get": {"summary": "Liveness and readiness", "security": [],
                                   "responses": {"200": {"description": "ready", **answer(health)},
                                                 "503": {"description": "stopping or failed",
                                                         **answer(health)}}}},
            "/v1/stats": {"get": {"summary": "Per-stage graph statistics and server counters",
                                  "responses": {"200": {"description": "statistics",
                                                        **answer({"type": "object"})}}}},
        },
    }


def build_app(engine: Engine, nodes: list[str]) -> ASGIApp:
    """The ASGI app for one engine, behind the token, Host and Origin checks of :class:`RequestGuard`."""
    service = Service(engine, nodes)
    document = encode(openapi_document(nodes))

    async def openapi(request: Request) -> Response:
        return Response(document, media_type=JSON)

    async def bad_request(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, BadRequest)
        engine.counters["requests_rejected_4xx"] += 1
        # A body left unread (too large, too slow) would be read by the next request on this
        # connection: close it instead.
        headers = {"Connection": "close"} if exc.status in (408, 413) else None
        return _json(ErrorBody(error=exc.code, detail=exc.message), exc.status, headers)

    async def internal_error(request: Request, exc: Exception) -> Response:
        # A bug, not a bad request: still JSON for the client (the traceback goes to the log).
        return _json(ErrorBody(error="internal", detail="the server failed on this request; "
                                                        "see its log"), 500)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        return _json(ErrorBody(error="http_error", detail=str(exc.detail)), exc.status_code,
                     dict(exc.headers or {}))

    app = Starlette(routes=[
        Route("/v1/predict", service.predict, methods=["POST"]),
        Route("/v1/videos", service.videos, methods=["POST"]),
        WebSocketRoute("/v1/stream", service.stream),
        Route("/v1/health", service.health, methods=["GET"]),
        Route("/v1/stats", service.stats, methods=["GET"]),
        Route("/openapi.json", openapi, methods=["GET"]),
    ], exception_handlers={BadRequest: bad_request, HTTPException: http_error,
                           Exception: internal_error})
    return RequestGuard(app, engine.cfg)

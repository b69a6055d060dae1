"""Runs the server: loads the graph once, serves on uvicorn, and stops gracefully on SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import sys
import threading
from collections.abc import Iterator

import anyio

from sleapflow.serve.config import ServeConfig

__all__ = ("BODY_GRACE_S", "bind", "pin_mmap_threshold", "protocol_class", "serve")

#: Seconds past ``--request_timeout_s`` before a connection still sending a body is cut: the app
#: answers 408 at the deadline itself; this catches bodies no handler reads (a 404, a 405).
BODY_GRACE_S = 1.0

def bind(host: str, port: int) -> socket.socket:
    """The listening socket, bound before the app starts so port 0 gets a real port to report."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on sockets that say they are TCP, and
    # without it a response's header and body segments wait out the peer's delayed ACK (~40 ms).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        from sleapflow.errors import ConfigError

        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror}; pick another --port "
                          "or --host") from None
    # Listening now, so a client that connects as soon as the banner is printed waits in the
    # backlog instead of being refused while uvicorn starts.
    sock.listen(2048)
    return sock


def pin_mmap_threshold(threshold: int = 256 * 1024) -> bool:
    """Fix glibc's mmap threshold so large buffers (frames, request bodies) are mmapped and
    returned to the system when freed.

    By default glibc raises the threshold each time a large mmapped block is freed, after which
    frame-sized blocks come from the heaps of many threads and fragment them: under a steady
    load the server's RSS climbed from 0.3 to 0.6-0.76 GiB in a minute; pinned, it stays flat
    (benchmarks/RESULTS.md). A no-op outside glibc.
    """
    if not sys.platform.startswith("linux"):
        return False
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        m_mmap_threshold = -3  # from <malloc.h>
        return bool(libc.mallopt(m_mmap_threshold, threshold))
    except (OSError, AttributeError):
        return False  # not glibc (musl has no mallopt)


def protocol_class(request_timeout_s: float, idle_timeout_s: float) -> type[asyncio.Protocol]:
    """uvicorn's h11 protocol with deadlines on the parts uvicorn leaves open.

    uvicorn closes a keep-alive connection that stays silent, but only after a first response,
    and any byte resets that clock: a client that connects and sends nothing, or trickles its
    request head a byte at a time, was held forever. Here a new connection gets the idle clock
    at once, and from a request's first byte its head must arrive within ``request_timeout_s``
    (else a JSON 408 and the connection is closed), and then its body (the app answers 408
    first; a body no handler reads is cut a little later).
    """
    import h11
    from uvicorn.protocols.http.h11_impl import H11Protocol

    body = b'{"error":"timeout","detail":"the request head did not arrive within %g s ' \
           b'(--request_timeout_s)"}' % request_timeout_s
    timeout_response = (b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\n"
                        b"content-length: %d\r\nconnection: close\r\n\r\n" % len(body)) + body

    class Protocol(H11Protocol):
        _deadline: asyncio.TimerHandle | None = None
        _phase = ""

        def _arm(self, phase: str, seconds: float) -> None:
            self._disarm()
            self._phase = phase
            self._deadline = self.loop.call_later(seconds, self._expired)

        def _disarm(self) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
            self._deadline, self._phase = None, ""

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            super().connection_made(transport)  # type: ignore[arg-type]
            self.timeout_keep_alive = idle_timeout_s  # uvicorn's own option takes whole seconds
            self.timeout_keep_alive_task = self.loop.call_later(idle_timeout_s,
                                                                self.timeout_keep_alive_handler)

        def data_received(self, data: bytes) -> None:
            if self._deadline is None and data and self.conn.their_state is h11.IDLE:
                self._arm("head", request_timeout_s)
            super().data_received(data)

        def handle_events(self) -> None:
            super().handle_events()
            state = self.conn.their_state
            if state is h11.SEND_BODY:
                if self._phase != "body":
                    self._arm("body", request_timeout_s + BODY_GRACE_S)
            elif state is not h11.IDLE:
                self._disarm()  # the request is in (or the connection became a websocket)

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def _expired(self) -> None:
            phase = self._phase
            self._deadline, self._phase = None, ""
            if self.transport.is_closing():
                return
            if phase == "head" and self.conn.their_state is h11.IDLE:
                self.transport.write(timeout_response)
                self.transport.close()
            elif phase == "body" and self.conn.their_state is h11.SEND_BODY:
                self.transport.close()

    return Protocol


def _server_class() -> type:
    import uvicorn

    class Server(uvicorn.Server):
        """uvicorn's server, minus re-raising SIGTERM after its graceful stop: the graph still
        has to drain after the connections close, and the process should then exit 0."""

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            if threading.current_thread() is not threading.main_thread():
                yield
                return
            handled = (signal.SIGINT, signal.SIGTERM)
            original = {sig: signal.signal(sig, self.handle_exit) for sig in handled}
            try:
                yield
            finally:
                for sig, handler in original.items():
                    signal.signal(sig, handler)

    return Server


async def serve(cfg: ServeConfig) -> int:
    """Serve until SIGTERM/SIGINT: then stop accepting, finish open requests, drain the graph."""
    import uvicorn

    from sleapflow.graphs.build import stream_tracking
    from sleapflow.options.boundary import TRACKER_KEYS, build_config
    from sleapflow.serve.app import build_app
    from sleapflow.serve.engine import Engine
    from sleapflow.session import open_graph

    pin_mmap_threshold()
    # The graph is shared by every stream, so it runs untracked; each stream gets its own
    # tracker (the graph's filter, tracker and clean-up) over the shared graph's results.
    tracking_keys = {"tracking", *TRACKER_KEYS}
    graph_options = {k: v for k, v in cfg.options.items() if k not in tracking_keys}
    full = build_config(model_paths=list(cfg.model_paths), **cfg.options)
    sock = bind(cfg.host, cfg.port)
    try:
        async with open_graph(list(cfg.model_paths), **graph_options) as graph:
            assert graph.run is not None
            run = graph.run
            tracking = ((lambda: stream_tracking(run, full)) if full.tracking else None)
            # Engine makes one tracker at once: a bad tracker setting fails at start.
            engine = Engine(graph, cfg, tracking)
            nodes = list(graph.node_names or ())
            config = uvicorn.Config(
                build_app(engine, nodes), lifespan="off",
                http=protocol_class(cfg.request_timeout_s, cfg.idle_timeout_s),
                ws="websockets-sansio",
                ws_max_size=cfg.max_body_bytes, ws_per_message_deflate=False,
                limit_concurrency=cfg.max_connections,
                timeout_graceful_shutdown=cfg.graceful_timeout_s,
                log_level="info" if cfg.verbose else "warning", access_log=cfg.verbose)
            # No per-message deflate: frames are pixels, zlib would cost ~10 ms a frame per side
            # for little gain.
            server = _server_class()(config)
            async with anyio.create_task_group() as tg:
                tg.start_soon(engine.feed, name="serve feeder")
                await tg.start(engine.route, name="serve router")
                host, port = sock.getsockname()[:2]
                shown = f"[{host}]" if ":" in host else host
                auth = "bearer token" if cfg.token else "no auth"
                tracked = ", tracking each stream" if tracking is not None else ""
                print(f"sleapflow serve: listening on http://{shown}:{port} (graph {graph.name}"
                      f"{tracked}, {auth}, batch {cfg.options.get('batch_size')}, max delay "
                      f"{cfg.options.get('max_batch_delay_ms')} ms)", file=sys.stderr, flush=True)
                await server.serve(sockets=[sock])
                # Connections are closed: push what is queued, then let the graph run dry.
                engine.close()
            stats = engine.stats()["server"]
            print(f"sleapflow serve: stopped after {stats['frames_answered']} frames",
                  file=sys.stderr, flush=True)
    finally:
        sock.close()
    return 0

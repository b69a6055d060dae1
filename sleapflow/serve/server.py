"""Runs the server: loads the graph once, serves on uvicorn, and stops gracefully on SIGTERM."""

from __future__ import annotations

import contextlib
import signal
import socket
import sys
import threading
from collections.abc import Iterator

import anyio

from sleapflow.serve.config import ServeConfig

__all__ = ("bind", "pin_mmap_threshold", "serve")



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

    from sleapflow.serve.app import build_app
    from sleapflow.serve.engine import Engine
    from sleapflow.session import open_graph

    pin_mmap_threshold()
    sock = bind(cfg.host, cfg.port)
    try:
        async with open_graph(list(cfg.model_paths), **cfg.options) as graph:
            engine = Engine(graph, cfg)
            nodes = list(graph.node_names or ())
            config = uvicorn.Config(
                build_app(engine, nodes), lifespan="off", http="h11", ws="websockets-sansio",
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
                print(f"sleapflow serve: listening on http://{shown}:{port} (graph {graph.name}, "
                      f"{auth}, batch {cfg.options.get('batch_size')}, max delay "
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

"""The ``sleapflow serve`` command; imports the web stack only when run (it is an extra)."""

from __future__ import annotations

import os
from typing import Annotated

from sleapflow.errors import ConfigError
from sleapflow.options.help import opt as _opt

__all__ = ("serve_command",)



def serve_command(
    *,
    model_paths: Annotated[tuple[str, ...], _opt("model_paths", "-m", consume_multiple=True)] = (),
    host: Annotated[str, _opt("host", help="Address to listen on (loopback by default).")]
    = "127.0.0.1",
    port: Annotated[int, _opt("port", help="Port (0: any free port, printed at start).")] = 8000,
    token: Annotated[str | None, _opt("token", help="Bearer token clients must send "
                                                    "(default: $SLEAPFLOW_SERVE_TOKEN).")] = None,
    insecure: Annotated[bool, _opt("insecure", help="Allow a non-loopback address without a "
                                                    "token.")] = False,
    device: Annotated[str, _opt("device", "-d", help="auto, cpu, cuda, cuda:N or mps.")] = "auto",
    batch_size: Annotated[int, _opt("batch_size", "-b", help="Largest batch of frames, across "
                                                              "clients.")] = 8,
    max_batch_delay_ms: Annotated[float, _opt("max_batch_delay_ms",
                                              help="Longest a batch waits for more frames.")] = 5.0,
    queue_maxsize: Annotated[int, _opt("queue_maxsize", help="Frames queued between stages.")] = 16,
    max_pending: Annotated[int, _opt("max_pending", help="Frames held at once over all "
                                                         "clients.")] = 64,
    queue_wait_ms: Annotated[float, _opt("queue_wait_ms", help="Wait for room before "
                                                               "answering 503.")] = 1000.0,
    stream_inflight: Annotated[int, _opt("stream_inflight", help="Frames one stream may have in "
                                                                 "flight.")] = 16,
    max_body_mb: Annotated[float, _opt("max_body_mb", help="Largest request body.")] = 32.0,
    max_connections: Annotated[int, _opt("max_connections", help="Open connections at most "
                                                                 "(503 beyond).")] = 256,
    max_frame_side: Annotated[int, _opt("max_frame_side", help="Largest frame side "
                                                               "(pixels).")] = 4096,
    video_root: Annotated[str | None, _opt("video_root", help="Only serve /v1/videos paths "
                                                              "inside this folder.")] = None,
    graceful_timeout_s: Annotated[float, _opt("graceful_timeout_s", help="SIGTERM: seconds to "
                                                                         "finish requests.")] = 30.0,
    peak_threshold: Annotated[float, _opt("peak_threshold")] = 0.2,
    max_instances: Annotated[int | None, _opt("max_instances", "-n")] = None,
    integral_refinement: Annotated[str, _opt("integral_refinement",
                                             help="'integral' or 'none'.")] = "integral",
    forward_workers: Annotated[int | None, _opt("forward_workers",
                                                help="Batches in flight per model (CPU).")] = None,
    torch_threads: Annotated[int | None, _opt("torch_threads")] = None,
    verbose: Annotated[bool, _opt("verbose", help="Log every request.")] = False,
) -> int:
    """Serve pose estimation over HTTP and websockets, batching frames across clients."""
    try:
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError:
        raise ConfigError("sleapflow serve needs its extra: pip install 'sleapflow[serve]'") from None
    import anyio

    from sleapflow.options.boundary import build_config
    from sleapflow.serve.config import TOKEN_ENV, ServeConfig
    from sleapflow.serve.server import serve

    options = {"device": device, "batch_size": batch_size, "max_batch_delay_ms": max_batch_delay_ms,
               "queue_maxsize": queue_maxsize, "peak_threshold": peak_threshold,
               "max_instances": max_instances, "integral_refinement": integral_refinement,
               "forward_workers": forward_workers, "torch_threads": torch_threads}
    build_config(model_paths=model_paths, **options)  # bad inference options fail before binding
    cfg = ServeConfig(
        model_paths=tuple(model_paths), host=host, port=port,
        token=token if token is not None else os.environ.get(TOKEN_ENV) or None,
        insecure=insecure, max_pending=max_pending, queue_wait_ms=queue_wait_ms,
        stream_inflight=stream_inflight, max_body_mb=max_body_mb,
        max_connections=max_connections, max_frame_side=max_frame_side,
        video_root=video_root, graceful_timeout_s=graceful_timeout_s, verbose=verbose,
        options=options)
    return anyio.run(serve, cfg, backend="asyncio")

"""The ``sleapflow serve`` command; imports the web stack only when run (it is an extra)."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Annotated, Any, TypeAlias

from cyclopts import Parameter

from sleapflow.errors import ConfigError
from sleapflow.options.declared import cli_options, option_values
from sleapflow.options.help import opt as _opt

__all__ = ("ServeOptions", "serve_command")


# The model options (-m, device, batching, peaks...) are the inference options whose role offers
# them to "serve", with serve's own defaults (batches of 8, a 5 ms wait, short queues): declared
# once, in sleapflow.options.config. The server's own settings follow, by hand: they are not
# inference options.
if TYPE_CHECKING:
    ServeOptions: TypeAlias = Any
else:
    ServeOptions = cli_options("serve")


def serve_command(
    *,
    model: Annotated[ServeOptions, Parameter(name="*")] = ServeOptions(),  # noqa: B008
    host: Annotated[str, _opt("host", help="Address to listen on (loopback by default).")]
    = "127.0.0.1",
    port: Annotated[int, _opt("port", help="Port (0: any free port, printed at start).")] = 8000,
    token: Annotated[str | None, _opt("token", help="Bearer token clients must send "
                                                    "(default: $SLEAPFLOW_SERVE_TOKEN).")] = None,
    insecure: Annotated[bool, _opt("insecure", help="Allow a non-loopback address without a "
                                                    "token.")] = False,
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
    max_image_pixels: Annotated[int, _opt("max_image_pixels", help="Largest frame area "
                                                                   "(height x width), checked "
                                                                   "before decoding.")]
    = 4096 * 4096,
    request_timeout_s: Annotated[float, _opt("request_timeout_s", help="Seconds a request's "
                                                                       "head and body have to "
                                                                       "arrive (408 after).")]
    = 30.0,
    idle_timeout_s: Annotated[float, _opt("idle_timeout_s", help="Seconds an idle connection "
                                                                 "or websocket stays open.")]
    = 30.0,
    video_root: Annotated[str | None, _opt("video_root", help="Only serve /v1/videos paths "
                                                              "inside this folder.")] = None,
    graceful_timeout_s: Annotated[float, _opt("graceful_timeout_s", help="SIGTERM: seconds to "
                                                                         "finish requests.")] = 30.0,
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

    options = option_values(model)
    model_paths = options.pop("model_paths")
    build_config(model_paths=model_paths, **options)  # bad inference options fail before binding
    cfg = ServeConfig(
        model_paths=tuple(model_paths), host=host, port=port,
        token=token if token is not None else os.environ.get(TOKEN_ENV) or None,
        insecure=insecure, max_pending=max_pending, queue_wait_ms=queue_wait_ms,
        stream_inflight=stream_inflight, max_body_mb=max_body_mb,
        max_connections=max_connections, max_frame_side=max_frame_side,
        max_image_pixels=max_image_pixels, request_timeout_s=request_timeout_s,
        idle_timeout_s=idle_timeout_s,
        video_root=video_root, graceful_timeout_s=graceful_timeout_s, verbose=verbose,
        options=options)
    return anyio.run(serve, cfg, backend="asyncio")

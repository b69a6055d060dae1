"""The server's settings, checked once before anything loads: a frozen strict msgspec Struct."""

from __future__ import annotations

import ipaddress
import math
from typing import Any

import msgspec

from sleapflow.errors import ConfigError

__all__ = ("MAX_BODY_MB_LIMIT", "MAX_SIDE_LIMIT", "TOKEN_ENV", "ServeConfig", "is_loopback")


#: Largest --max_frame_side: beyond what PNG/JPEG decoders and the models handle anyway.
MAX_SIDE_LIMIT = 65535
#: Largest --max_body_mb (64 GiB): a body is held in memory whole.
MAX_BODY_MB_LIMIT = 65536.0

#: The environment variable that holds the bearer token when ``--token`` is not given.
TOKEN_ENV = "SLEAPFLOW_SERVE_TOKEN"


def is_loopback(host: str) -> bool:
    """True for addresses only this machine can reach (127.0.0.0/8, ::1, localhost)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything, so it is not trusted


class ServeConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Everything ``sleapflow serve`` needs besides the inference options."""

    model_paths: tuple[str, ...]
    host: str = "127.0.0.1"
    port: int = 8000
    token: str | None = None
    insecure: bool = False
    #: Frames the server holds at once (admitted, not yet answered), over all clients: the bound
    #: that keeps memory flat under any load.
    max_pending: int = 64
    #: How long a request waits for room before it is answered 503.
    queue_wait_ms: float = 1000.0
    #: Retry-After (seconds) sent with a 503.
    retry_after_s: int = 1
    #: Frames one stream (a video request, a websocket) may have in the graph at once, so one
    #: client cannot take every slot.
    stream_inflight: int = 16
    max_body_mb: float = 32.0
    #: Open connections at most (uvicorn answers 503 beyond): with ``max_body_mb`` it bounds the
    #: memory request bodies can take before they are admitted.
    max_connections: int = 256
    #: Largest accepted frame side in pixels; smallest is 8.
    max_frame_side: int = 4096
    #: Largest accepted frame area (height x width) in pixels, checked from an image's header
    #: before it is decoded, so a small compressed "bomb" cannot claim gigabytes.
    max_image_pixels: int = 4096 * 4096
    #: Seconds a request's head and body have to arrive once its first byte has: a slow or
    #: stalled sender is answered 408 (or dropped) instead of holding a connection forever.
    request_timeout_s: float = 30.0
    #: Seconds a connection may sit with no request in progress (HTTP keep-alive, or a websocket
    #: with no frame sent and none in flight) before it is closed.
    idle_timeout_s: float = 30.0
    #: Seconds SIGTERM waits for open requests to finish before cancelling them.
    graceful_timeout_s: float = 30.0
    #: If set, ``/v1/videos`` only reads paths inside this folder.
    video_root: str | None = None
    verbose: bool = False
    #: ``open_graph`` options (device, batch_size, max_batch_delay_ms, peak_threshold, ...).
    options: dict[str, Any] = msgspec.field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.model_paths:
            raise ConfigError("serve needs a model: pass -m MODEL (repeat for top-down)")
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"--port must be 0-65535 (got {self.port})")
        for name in ("max_pending", "stream_inflight", "max_frame_side", "retry_after_s",
                     "max_connections", "max_image_pixels"):
            if getattr(self, name) < 1:
                raise ConfigError(f"--{name} must be a positive integer (got {getattr(self, name)})")
        if self.max_frame_side > MAX_SIDE_LIMIT:
            raise ConfigError(f"--max_frame_side must be at most {MAX_SIDE_LIMIT} (got "
                              f"{self.max_frame_side})")
        # inf and nan pass a plain comparison one way or the other; every duration and size
        # here must be an ordinary number.
        for name in ("queue_wait_ms", "graceful_timeout_s"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ConfigError(f"--{name} must be a finite number >= 0 (got {value})")
        for name in ("request_timeout_s", "idle_timeout_s", "max_body_mb"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ConfigError(f"--{name} must be a finite number > 0 (got {value})")
        if self.max_body_mb > MAX_BODY_MB_LIMIT:
            raise ConfigError(f"--max_body_mb must be at most {MAX_BODY_MB_LIMIT} (got "
                              f"{self.max_body_mb})")
        if self.max_body_bytes < 1:
            raise ConfigError(f"--max_body_mb {self.max_body_mb} is under one byte; pass a "
                              "larger size")
        if self.token is not None and not self.token.strip():
            raise ConfigError("--token is empty; pass a non-empty token or leave auth off")
        if self.token is not None and not all("!" <= c <= "~" for c in self.token):
            # Clients send it as "Authorization: Bearer <token>", compared exactly: a space,
            # newline or non-ASCII character could never be matched.
            raise ConfigError("--token must be printable ASCII without spaces (check for a "
                              f"stray newline in ${TOKEN_ENV})")
        if not is_loopback(self.host) and self.token is None and not self.insecure:
            raise ConfigError(
                f"refusing to serve on non-loopback address {self.host!r} without a token: pass "
                f"--token (or set {TOKEN_ENV}), or --insecure to serve it open")

    @property
    def max_body_bytes(self) -> int:
        return int(self.max_body_mb * 1024 * 1024)

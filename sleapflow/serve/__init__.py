"""``sleapflow serve``: one long-lived graph that batches frames pushed by many HTTP/websocket clients."""

__all__ = ()

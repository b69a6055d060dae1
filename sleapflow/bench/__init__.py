"""``sleapflow bench``: per-stage throughput of a named graph, and the forward-only limits."""

__all__ = ()

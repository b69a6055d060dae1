"""The stage catalogue: stream adapters around the pure functions of sleapflow.ops."""

__all__ = ()

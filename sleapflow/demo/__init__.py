"""The `sleapflow demo` embedded default: a synthetic clip generator and a tiny trained model."""

__all__ = ()

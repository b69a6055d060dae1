"""Jobs: what to read, what to write, which graph and journal, and the functions that run them."""

__all__ = ()

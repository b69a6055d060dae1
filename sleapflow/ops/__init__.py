"""Pure array functions: preprocessing, peaks, crops, PAF grouping, identity, filters."""

__all__ = ()

"""How graphs execute: graph declarations, the runner, metered streams and statistics."""

"""Graph declarations, one module per model type, and the registry of named graphs."""

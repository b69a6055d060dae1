"""Model loading: config decoding, checkpoints, backbones and heads."""

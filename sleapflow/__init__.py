"""sleapflow: a fast, streaming inference engine for SLEAP / sleap-nn pose models."""

from __future__ import annotations

from importlib import import_module
from typing import Any

from sleapflow.errors import ConfigError, ModelLoadError, SleapflowError, StageError, VideoDecodeError

#: Public names and the modules that define them; imported on first use so ``import sleapflow``
#: stays light (torch loads only when a model or graph is touched).
_LAZY = {
    "run_inference": "sleapflow.predict",
    "arun_inference": "sleapflow.predict",
    "open_graph": "sleapflow.service",
    "Evaluator": "sleapflow.evaluation",
    "run_evaluation": "sleapflow.evaluation",
    "InferenceConfig": "sleapflow.config",
    "TrackerConfig": "sleapflow.tracking",
    "Tracker": "sleapflow.tracking",
    "load_model": "sleapflow.models",
    "GRAPHS": "sleapflow.graphs",
    "GraphSpec": "sleapflow.runtime",
    "GraphRunner": "sleapflow.runtime",
    "run_graph": "sleapflow.runtime",
}

__all__ = [
    "ConfigError",
    "ModelLoadError",
    "SleapflowError",
    "StageError",
    "VideoDecodeError",
    *sorted(_LAZY),
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'sleapflow' has no attribute {name!r}")
    return getattr(import_module(module), name)

"""sleapflow: a fast, streaming inference engine for SLEAP / sleap-nn pose models."""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from sleapflow.errors import ConfigError, ModelLoadError, SleapflowError, StageError, VideoDecodeError

if TYPE_CHECKING:
    # What type checkers and IDEs see; at run time the same names load on first use (below).
    from sleapflow.evaluation import Evaluator, run_evaluation
    from sleapflow.graphs import GRAPHS
    from sleapflow.messages import FramePrediction
    from sleapflow.models import load_model
    from sleapflow.options.config import InferenceConfig
    from sleapflow.predict import Poses, Predictor, arun_inference, run_inference
    from sleapflow.runtime import GraphRunner, GraphSpec, GraphStats, run_graph
    from sleapflow.session import GraphSession, open_graph
    from sleapflow.tracking import Tracker, TrackerConfig

#: Public names and the modules that define them; imported on first use so ``import sleapflow``
#: stays light (torch loads only when a model or graph is touched). The ``TYPE_CHECKING`` block
#: above lists the same names (a test keeps the two equal).
_LAZY = {
    "run_inference": "sleapflow.predict",
    "arun_inference": "sleapflow.predict",
    "Predictor": "sleapflow.predict",
    "Poses": "sleapflow.predict",
    "open_graph": "sleapflow.session",
    "GraphSession": "sleapflow.session",
    "FramePrediction": "sleapflow.messages",
    "Evaluator": "sleapflow.evaluation",
    "run_evaluation": "sleapflow.evaluation",
    "InferenceConfig": "sleapflow.options.config",
    "TrackerConfig": "sleapflow.tracking",
    "Tracker": "sleapflow.tracking",
    "load_model": "sleapflow.models",
    "GRAPHS": "sleapflow.graphs",
    "GraphSpec": "sleapflow.runtime",
    "GraphRunner": "sleapflow.runtime",
    "GraphStats": "sleapflow.runtime",
    "run_graph": "sleapflow.runtime",
}

__all__ = (
    "GRAPHS",
    "ConfigError",
    "Evaluator",
    "FramePrediction",
    "GraphRunner",
    "GraphSession",
    "GraphSpec",
    "GraphStats",
    "InferenceConfig",
    "ModelLoadError",
    "Poses",
    "Predictor",
    "SleapflowError",
    "StageError",
    "Tracker",
    "TrackerConfig",
    "VideoDecodeError",
    "arun_inference",
    "load_model",
    "open_graph",
    "run_evaluation",
    "run_graph",
    "run_inference",
)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'sleapflow' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})

"""Network runtimes: run a loaded model's forward pass under torch, ONNX Runtime or TensorRT."""

from sleapflow.runtimes.select import (
    PRECISIONS,
    RUNTIMES,
    RuntimeChoice,
    installed_runtimes,
    resolve_runtime,
)

__all__ = ["PRECISIONS", "RUNTIMES", "RuntimeChoice", "installed_runtimes", "make_runner",
           "resolve_runtime"]


def make_runner(*args, **kwargs):  # type: ignore[no-untyped-def]
    """See :func:`sleapflow.runtimes.runners.make_runner` (imported lazily: it pulls in torch)."""
    from sleapflow.runtimes.runners import make_runner as _make

    return _make(*args, **kwargs)

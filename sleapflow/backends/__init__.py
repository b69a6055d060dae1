"""Network runtimes: run a loaded model's forward pass under torch, ONNX Runtime or TensorRT."""

from sleapflow.backends.select import (
    PRECISIONS,
    RUNTIMES,
    RuntimeChoice,
    installed_runtimes,
    resolve_runtime,
)

__all__ = ("PRECISIONS", "RUNTIMES", "RuntimeChoice", "installed_runtimes", "make_runner", "resolve_runtime")


def make_runner(*args, **kwargs):  # type: ignore[no-untyped-def]
    """See :func:`sleapflow.backends.runners.make_runner` (imported lazily: it pulls in torch)."""
    from sleapflow.backends.runners import make_runner as _make

    return _make(*args, **kwargs)

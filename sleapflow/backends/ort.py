"""ONNX Runtime session settings shared by the runners fed torch tensors and numpy arrays."""

from __future__ import annotations

from typing import Any

__all__ = ("session_options",)


def session_options(threads: int | None) -> Any:
    """ONNX Runtime session options sized like the torch path: ``threads`` intra-op threads,
    sequential execution, and no spinning pool threads (on a shared CPU they burn the cores
    the other stages need)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = max(1, threads or 1)
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.log_severity_level = 3
    return opts

"""The flat error hierarchy every user-facing failure is translated into.

Every error sleapflow raises on purpose is defined here (a test checks it), so callers can
catch by type, and front ends can choose their answer by type.
"""

from __future__ import annotations

__all__ = (
    "ConfigError", "EventLoopError", "FrameDecodeError", "ModelLoadError", "OutputWriteError",
    "SleapflowError", "StageError", "VideoDecodeError",
)


class SleapflowError(Exception):
    """Base of every error sleapflow raises on purpose; the CLI prints these without a traceback."""


class ConfigError(SleapflowError):
    """An option, a config file or a command-line argument is invalid."""


class ModelLoadError(SleapflowError):
    """A model folder, checkpoint or weight file cannot be loaded."""


class VideoDecodeError(SleapflowError):
    """An input video, image sequence or labels file cannot be read."""


class FrameDecodeError(VideoDecodeError):
    """One frame cannot be decoded (its packets are corrupt); the run skips it and goes on."""


class OutputWriteError(SleapflowError, OSError):
    """The output (or its journal) could not be written: no space, read-only, permission.

    An ``OSError`` too, for callers that handle file-system failures as such.
    """


class EventLoopError(SleapflowError, RuntimeError):
    """``run_inference`` was called from inside a running event loop."""


class StageError(SleapflowError):
    """A stage of a running graph raised; the original exception is chained as ``__cause__``."""

    def __init__(self, message: str, *, graph: str, stage: str, seq: int | None = None,
                 frame_idx: int | None = None) -> None:
        super().__init__(message)
        self.graph = graph
        self.stage = stage
        self.seq = seq
        self.frame_idx = frame_idx

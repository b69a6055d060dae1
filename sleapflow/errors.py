"""The flat error hierarchy every user-facing failure is translated into."""

from __future__ import annotations

__all__ = ("ConfigError", "ModelLoadError", "SleapflowError", "StageError", "VideoDecodeError")



class SleapflowError(Exception):
    """Base of every error sleapflow raises on purpose; the CLI prints these without a traceback."""


class ConfigError(SleapflowError):
    """An option, a config file or a command-line argument is invalid."""


class ModelLoadError(SleapflowError):
    """A model folder, checkpoint or weight file cannot be loaded."""


class VideoDecodeError(SleapflowError):
    """An input video, image sequence or labels file cannot be read."""


class StageError(SleapflowError):
    """A stage of a running graph raised; the original exception is chained as ``__cause__``."""

    def __init__(self, message: str, *, graph: str, stage: str, seq: int | None = None,
                 frame_idx: int | None = None, video_id: int | None = None) -> None:
        super().__init__(message)
        self.graph = graph
        self.stage = stage
        self.seq = seq
        self.frame_idx = frame_idx
        #: The run's video the failing item belonged to, when the item says.
        self.video_id = video_id

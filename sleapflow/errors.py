"""The flat error hierarchy every user-facing failure is translated into.

Every error sleapflow raises on purpose is defined here (a test checks it), so callers can
catch by type, and front ends choose their answer by type (the CLI's exit code is
:attr:`SleapflowError.exit_code`). Third-party failures are translated where they happen, the
original chained as ``__cause__``.
"""

from __future__ import annotations

from typing import ClassVar

__all__ = (
    "BackendError", "ConfigError", "EventLoopError", "FrameDecodeError", "InputNotFoundError",
    "ModelLoadError", "OutputWriteError", "Preempted", "SleapflowError", "StageError",
    "VideoDecodeError",
)


class SleapflowError(Exception):
    """Base of every error sleapflow raises on purpose; the CLI prints these without a traceback.

    The CLI prints one ``Error: <message>`` line and exits with :attr:`exit_code`: 2 for a user
    error (an option, a path or a file the user can fix; the default), 1 for a failure while
    doing valid work (a network runtime, an unexpected error inside a stage), as for any other
    program that failed at run time. The message says what is wrong and what to do.
    """

    #: The CLI's exit status for this error: 2, the call needs fixing; 1, a run-time failure.
    exit_code: ClassVar[int] = 2


class ConfigError(SleapflowError):
    """An option, a config file or a command-line argument is invalid."""


class ModelLoadError(SleapflowError):
    """A model folder, checkpoint or weight file cannot be loaded."""


class VideoDecodeError(SleapflowError):
    """An input video, image sequence or labels file cannot be read."""


class FrameDecodeError(VideoDecodeError):
    """One frame cannot be decoded (its packets are corrupt); the run skips it and goes on."""


class InputNotFoundError(ConfigError, VideoDecodeError):
    """An input path (a video, an image pattern, a labels file, a shard output) does not exist.

    Its own type so front ends can answer it by type (serve: HTTP 404). It is both a
    :class:`ConfigError`, as a wrong ``--data_path`` was before, and a :class:`VideoDecodeError`,
    as an unreadable labels file is, so handlers of either keep catching it.
    """


class OutputWriteError(SleapflowError, OSError):
    """The output (or its journal) could not be written: no space, read-only, permission.

    An ``OSError`` too, for callers that handle file-system failures as such.
    """


class BackendError(SleapflowError, RuntimeError):
    """A network runtime failed: the ONNX export, its check against torch, ONNX Runtime or
    TensorRT (parse, build, load, run), or the export cache.

    The options were valid and the model loaded, so this is a run-time failure: the CLI exits 1,
    not 2 (a user error). The message names the step and the way out, usually ``--runtime
    torch``. Also a ``RuntimeError``, which is what these failures were before they had a type.
    """

    exit_code: ClassVar[int] = 1


class EventLoopError(SleapflowError, RuntimeError):
    """``run_inference`` was called from inside a running event loop."""


class Preempted(SleapflowError):
    """The run stopped on a preemption signal (``track --preempt_signals``: SLURM's warning
    ahead of a time limit, a preemption, a scheduler's SIGTERM) after its journals were synced
    and its locks let go; the same command with ``--resume`` continues it.

    Not a failure of the run: the CLI prints one line (no ``Error:``) and exits with
    :attr:`status`, 128 + the signal's number (143 for SIGTERM, 138 for SIGUSR1, as a shell
    reports a process that signal ended; Ctrl-C's is 130), so a job script can tell a stop to
    requeue from a failure.
    """

    exit_code: ClassVar[int] = 143  # SIGTERM's; an instance's own is :attr:`status`

    def __init__(self, message: str, *, signum: int) -> None:
        super().__init__(message)
        self.signum = signum

    @property
    def status(self) -> int:
        return 128 + self.signum


class StageError(SleapflowError):
    """A stage of a running graph raised; the original exception is chained as ``__cause__``.

    The CLI reports a :class:`SleapflowError` cause as that error (its message, its exit code);
    any other cause is unexpected, a run-time failure (exit 1).
    """

    exit_code: ClassVar[int] = 1

    def __init__(self, message: str, *, graph: str, stage: str, seq: int | None = None,
                 frame_idx: int | None = None, video_id: int | None = None) -> None:
        super().__init__(message)
        self.graph = graph
        self.stage = stage
        self.seq = seq
        self.frame_idx = frame_idx
        #: The run's video the failing item belonged to, when the item says.
        self.video_id = video_id

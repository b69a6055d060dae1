"""Reading a ``.slp`` file: the one place sleap-io's, h5py's and the OS's errors become ours.

Inputs, ground truth, shard outputs and predictions to render or check are all read here. It
sits with the outputs (the lowest layer whose modules read and write ``.slp`` files) so that
output naming and rendering can use it as well as the inputs, evaluation and jobs above them.
"""

from __future__ import annotations

import os
from pathlib import Path

import sleap_io as sio

from sleapflow.errors import InputNotFoundError, VideoDecodeError

__all__ = ("read_slp",)


def read_slp(path: str | os.PathLike[str], what: str = "labels file", *,
             open_videos: bool = True) -> sio.Labels:
    """The labels stored in the ``.slp`` at ``path`` (``sio.load_slp``).

    A path that does not exist raises :class:`InputNotFoundError`; anything else that stops the
    file being read (a folder, not HDF5, not SLEAP labels, truncated, no permission) raises
    :class:`VideoDecodeError` naming the file and the likely cause, the original chained.
    ``what`` names the file in messages (``"ground truth file"``, ``"shard output"``).
    """
    shown = os.fspath(path)
    p = Path(shown)
    if not p.exists():
        raise InputNotFoundError(f"{what} {shown!r} does not exist; check the path")
    if p.is_dir():
        raise VideoDecodeError(f"cannot read {what} {shown!r}: it is a folder, not a .slp file")
    try:
        return sio.load_slp(p.as_posix(), open_videos=open_videos)
    except FileNotFoundError as exc:  # removed since the check above
        raise InputNotFoundError(f"{what} {shown!r} does not exist; check the path") from exc
    except Exception as exc:  # sleap-io and h5py raise many types; all mean "unreadable"
        raise VideoDecodeError(f"cannot read {what} {shown!r}: {_reason(exc)}") from exc


def _reason(exc: Exception) -> str:
    """What h5py's or sleap-io's error means for a user, and what to do about it."""
    text = " ".join(str(exc).split())
    lowered = text.lower()
    if isinstance(exc, PermissionError) or "permission denied" in lowered:
        return "permission denied; check the file's permissions"
    if "file signature not found" in lowered:
        return ("it is not an HDF5 file, which a .slp is; check that it is the labels file saved "
                "by SLEAP, sleap-io or sleapflow, and that it was copied completely")
    if "truncated" in lowered:
        return f"the file is truncated (an interrupted copy or save?); copy or save it again ({text})"
    if isinstance(exc, KeyError):
        missing = exc.args[0] if exc.args else text  # str() of a KeyError adds quotes
        return (f"it is an HDF5 file but not SLEAP labels ({missing}); pass the .slp that SLEAP "
                "or sleapflow saved")
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__

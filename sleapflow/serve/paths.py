"""Which files a ``/v1/videos`` request opens, checked before and after planning it.

A path string says little about what gets opened: a glob can run through a symlinked folder, an
image folder can hold a symlink to a file elsewhere, a ``.slp`` names its videos inside. So every
file the request will open is resolved to its real path and must be a regular file (a FIFO or a
device would block a worker forever) inside ``--video_root`` when one is set. The files are
listed the way :func:`sleapflow.inputs.plan_input` picks them, checked before it runs (it opens
them), and the videos of the finished plan are checked again (what the readers will open).
"""

from __future__ import annotations

import glob
import os
import stat
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from sleapflow.errors import SleapflowError
from sleapflow.inputs.selection import IMAGE_SUFFIXES
from sleapflow.outputs.slp_read import read_slp
from sleapflow.serve.codec import BadRequest

__all__ = ("Confinement",)


def _filenames(videos: Iterable[Any]) -> Iterator[str]:
    """Every file name of sleap-io videos (an image sequence has one per frame)."""
    for video in videos:
        names = video.filename
        if isinstance(names, (str, os.PathLike)):
            yield os.fspath(names)
        else:
            yield from (os.fspath(n) for n in names)


class Confinement:
    """The file checks of one server: regular files only, inside ``root`` when it is set."""

    def __init__(self, root: str | None) -> None:
        self.root = Path(os.path.realpath(root)) if root is not None else None

    def check_file(self, path: str, shown: str) -> None:
        """``path`` by its real path: inside the root (403), existing (404), regular (400)."""
        real = os.path.realpath(path)
        # The root is checked first, so that a refused path says nothing of what lies outside.
        if self.root is not None and not Path(real).is_relative_to(self.root):
            raise BadRequest(403, "outside_root", f"{shown!r} resolves to a file outside the served "
                                                  "folder (--video_root); symlinks are followed")
        try:
            mode = os.stat(real).st_mode
        except FileNotFoundError:
            raise BadRequest(404, "bad_video", f"input not found: {shown!r}") from None
        except OSError as exc:
            raise BadRequest(400, "bad_video", f"cannot read {shown!r}: "
                                               f"{exc.strerror or exc}") from None
        if not stat.S_ISREG(mode) and not stat.S_ISDIR(mode):
            raise BadRequest(400, "not_a_file", f"{shown!r} is not a regular file (a FIFO, device "
                                                "or socket is never read)")

    def _check_regular(self, path: str, shown: str) -> None:
        self.check_file(path, shown)
        if not os.path.isfile(path):
            raise BadRequest(400, "not_a_file", f"{shown!r} is a folder; a video, .slp or HDF5 "
                                                "file was expected")

    def before_planning(self, raw: str) -> None:
        """Check what planning ``raw`` would open, before anything is opened."""
        if "\x00" in raw:
            raise BadRequest(400, "bad_field", "the path contains a NUL character")
        if glob.has_magic(raw) and not os.path.exists(raw):  # as planning tells a glob
            # An image glob: planning opens its image matches (regular files among them).
            for match in sorted(glob.glob(raw)):
                if Path(match).suffix.lower() in IMAGE_SUFFIXES:
                    self.check_file(match, match)
            return
        self.check_file(raw, raw)
        if os.path.isdir(raw):
            if raw.lower().endswith(".slp"):
                return  # planning refuses a folder named .slp without opening anything
            # An image folder: every image in it is opened (planning skips non-files).
            for entry in sorted(os.scandir(raw), key=lambda e: e.name):
                if Path(entry.name).suffix.lower() in IMAGE_SUFFIXES:
                    self.check_file(entry.path, entry.path)
            return
        if raw.lower().endswith(".slp"):
            # Loading labels opens their videos: read the names only, and check them first.
            try:
                labels = read_slp(raw, open_videos=False)
            except SleapflowError as exc:
                raise BadRequest(400, "bad_video", str(exc)) from None
            for name in _filenames(labels.videos):
                # A missing video is not opened; planning reports it if a frame needs it.
                if os.path.lexists(name):
                    self._check_regular(name, f"{name} (a video of {raw})")

    def after_planning(self, plan: Any) -> None:
        """Check every file the plan's readers will open (its videos' real paths)."""
        for name in _filenames(plan.videos):
            if os.path.lexists(name):
                self._check_regular(name, name)

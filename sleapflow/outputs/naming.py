"""Output naming: where a run writes when ``--output_path`` is not given, as sleap-nn names it."""

from __future__ import annotations

import glob
from pathlib import Path

import sleap_io as sio

from sleapflow.errors import VideoDecodeError
from sleapflow.messages import InputPlan
from sleapflow.options.config import InferenceConfig
from sleapflow.outputs.remote import is_url, remote_name
from sleapflow.outputs.slp_read import read_slp

__all__ = ("default_output_path",)



def _video_stem(video: sio.Video, k: int, labels_path: str | None) -> str:
    """A video's name for the ``--video_index`` default output path (spec §5.4).

    The stem of the video file; for frames embedded in the ``.pkg.slp`` itself, the stem of
    their source video when it is recorded, else ``video_<k>`` (the reference would repeat the
    labels file's own name).
    """
    filename = video.filename
    if not isinstance(filename, str):
        return f"video_{k}"
    embedded = labels_path is not None and Path(filename).name == Path(labels_path).name and \
        Path(filename).resolve() == Path(labels_path).resolve()
    if embedded:
        source = video.source_video.filename if video.source_video is not None else \
            getattr(video.backend, "source_filename", None)
        return Path(source).stem if isinstance(source, str) and source else f"video_{k}"
    return Path(filename).stem


def default_output_path(cfg: InferenceConfig, plan: InputPlan | None = None) -> str:
    """``sleap-nn track``'s default output name (spec §5.4), beside the input.

    ``<input with its last suffix replaced>.predictions.slp`` (``clip.mp4`` →
    ``clip.predictions.slp``, ``labels.pkg.slp`` → ``labels.pkg.predictions.slp``); with
    ``--video_index k`` on a ``.slp``: ``<labels stem>.<video stem>.predictions.slp``. A folder
    or a glob of images names the output after the folder, beside it. Pass the run's ``plan``
    to avoid reading the labels file again for the video name.
    """
    if not cfg.data_path:
        return "results.predictions.slp"
    raw = cfg.data_path
    if is_url(raw):
        # Beside it, as for a local file (an http(s) URL cannot take it: the output check says so).
        base = raw.split("?", 1)[0].split("#", 1)[0]
        name = remote_name(base)
        stem = name.rsplit(".", 1)[0] if "." in name else name
        return base[: len(base) - len(name)] + stem + ".predictions.slp"
    path = Path(raw)
    if glob.has_magic(raw) and not path.exists():
        folder = path.parent.resolve()
        return str(folder.parent / f"{folder.name}.predictions.slp")
    if path.is_dir():
        folder = path.resolve() if path.name in ("", ".", "..") else path
        return str(folder.parent / f"{folder.name}.predictions.slp")
    if cfg.video_index is not None and path.name.lower().endswith(".slp"):
        video: sio.Video | None = None
        if plan is not None and plan.video_index == cfg.video_index and plan.videos:
            video = plan.videos[0]
        else:
            try:
                labels = read_slp(raw, open_videos=False)
                if 0 <= cfg.video_index < len(labels.videos):
                    video = labels.videos[cfg.video_index]
            except VideoDecodeError:  # an unreadable input fails in planning, with this error
                video = None
        if video is not None:
            name = _video_stem(video, cfg.video_index, raw)
            return str(path.parent / f"{path.stem}.{name}.predictions.slp")
    return str(path.with_suffix(".predictions.slp"))

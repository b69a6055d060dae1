"""``sleapflow render``: predictions drawn over their video with sleap-io's renderer (skia),
as an mp4 or a single-frame PNG, written through the atomic temp-file-and-rename path."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import sleap_io as sio

from sleapflow.errors import ConfigError
from sleapflow.outputs.files import write_atomically
from sleapflow.outputs.slp_read import read_slp

__all__ = ("default_render_path", "render")



def default_render_path(predictions: str | Path) -> Path:
    """``x.predictions.slp`` → ``x.predictions.mp4``."""
    path = Path(predictions)
    stem = path.name[: -len(".slp")] if path.name.endswith(".slp") else path.stem
    return path.with_name(stem + ".mp4")


def _frames_to_draw(labels: sio.Labels, frames: Sequence[int] | None) -> list[int]:
    if frames is not None:
        return sorted(set(frames))
    video = labels.videos[0]
    return sorted({lf.frame_idx for lf in labels.labeled_frames if lf.video is video})


def render(predictions: str | Path | sio.Labels, output: str | Path | None = None, *,
           frames: Sequence[int] | None = None, fps: float | None = None,
           scale: float = 1.0, marker_size: float = 4.0, line_width: float = 2.0,
           color_by: str = "auto", show_progress: bool = False) -> Path:
    """Draw ``predictions`` over the first video and write ``output`` (``.mp4``, or ``.png`` for
    the first selected frame). ``frames`` are video frame indices (default: the predicted ones).
    """
    if isinstance(predictions, sio.Labels):
        labels = predictions
        if output is None:
            raise ConfigError("render: give an output path when passing Labels")
    else:
        labels = read_slp(predictions, "predictions file")
    out = Path(output) if output is not None else default_render_path(predictions)  # type: ignore[arg-type]
    if not labels.videos:
        raise ConfigError("render: the predictions file has no video to draw on")
    video = labels.videos[0]
    if not video.exists():
        raise ConfigError(f"render: the video {video.filename!r} the predictions refer to cannot "
                          "be found; render next to the original video")
    inds = _frames_to_draw(labels, frames)
    if not inds:
        raise ConfigError("render: nothing to draw (no predicted frames, or --frames is empty)")
    n = len(video)
    bad = [i for i in inds if i < 0 or i >= n]
    if bad:
        raise ConfigError(f"--frames {bad[0]} is outside the video's {n} frames")
    style = {"marker_size": marker_size, "line_width": line_width, "color_by": color_by,
             "scale": scale}
    if out.suffix.lower() == ".png":
        frame = inds[0]
        lf = next((f for f in labels.labeled_frames if f.video is video and f.frame_idx == frame),
                  None)

        def write_png(tmp: Path) -> None:
            if lf is not None:
                sio.render_image(lf, tmp.as_posix(), **style)
            else:  # a frame without predictions: the plain frame
                sio.render_image([], tmp.as_posix(), image=video[frame], **style)

        write_atomically(out, write_png)
        return out
    if out.suffix.lower() not in (".mp4", ".avi", ".mov", ".mkv"):
        raise ConfigError(f"render: output {str(out)!r} must end in .mp4 (video) or .png (image)")
    write_atomically(out, lambda tmp: sio.render_video(
        labels, tmp.as_posix(), video=video, frame_inds=inds, include_unlabeled=True, fps=fps,
        show_progress=show_progress, **style))
    return out

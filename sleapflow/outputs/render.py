"""``sleapflow render``: predictions drawn over their video with sleap-io's renderer (skia),
as an mp4 or a single-frame PNG, written through the atomic temp-file-and-rename path."""

from __future__ import annotations

import functools
import math
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import sleap_io as sio

from sleapflow.errors import ConfigError
from sleapflow.outputs.files import check_output_target, write_atomically
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


def _source_fps(video: sio.Video) -> float:
    """The video's own frame rate (its container's), so the overlay plays at the real speed."""
    try:
        fps = float(video.fps) if video.fps else 0.0
    except Exception:  # a backend that cannot say: fall back to the container's
        fps = 0.0
    if fps <= 0 and isinstance(video.filename, str):
        import av

        try:
            with av.open(video.filename) as container:
                rate = container.streams.video[0].average_rate
            fps = float(rate) if rate else 0.0
        except Exception:  # not a media file (an image folder, HDF5): no rate of its own
            fps = 0.0
    return fps if fps > 0 else 30.0


@functools.cache
def _typeface() -> Any:
    """The sans-serif face names are drawn in. Loading it starts fontconfig, which may print a
    complaint about the machine's own config files straight to the process's stderr (skia's
    bundled fontconfig is older than some distributions' files); that line says nothing about
    this run, so it is kept off the user's terminal."""
    import skia

    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            return skia.Typeface("sans-serif")
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _name_label(marker_size: float) -> Callable[[Any], None]:
    """Each instance's track (or class) name, drawn above its box: who is who, in every frame."""
    import skia

    font = skia.Font(_typeface(), max(10.0, 3.0 * marker_size))
    fill = skia.Paint(Color=skia.ColorWHITE, AntiAlias=True)
    outline = skia.Paint(Color=skia.ColorBLACK, AntiAlias=True, Style=skia.Paint.kStroke_Style,
                         StrokeWidth=3.0)

    def draw(ctx: Any) -> None:
        box = ctx.get_bbox()
        if not ctx.track_name or box is None:
            return
        x, y = ctx.world_to_canvas(box[0], box[1])
        for paint in (outline, fill):
            ctx.canvas.drawString(ctx.track_name, x, y - 4.0, font, paint)

    return draw


def render(predictions: str | Path | sio.Labels, output: str | Path | None = None, *,
           frames: Sequence[int] | None = None, fps: float | None = None,
           scale: float = 1.0, marker_size: float = 4.0, line_width: float = 2.0,
           color_by: str = "auto", palette: str = "standard", trail_length: int = 0,
           show_names: bool = True, show_progress: bool = False) -> Path:
    """Draw ``predictions`` over the first video and write ``output``: an ``.mp4`` of the
    selected frames (default: the predicted ones) at the source's frame rate, or a ``.png`` of
    one frame. Colours follow each track (or class) through every frame and every output, and
    its name is drawn beside it; frames without predictions are drawn plain. ``trail_length``
    > 0 draws each animal's last positions.
    """
    if isinstance(predictions, sio.Labels):
        labels = predictions
        if output is None:
            raise ConfigError("render: give an output path when passing Labels")
    else:
        labels = read_slp(predictions, "predictions file")
    out = Path(output) if output is not None else default_render_path(predictions)  # type: ignore[arg-type]
    check_output_target(out, "render output")  # a FIFO or a device is never replaced by a file
    if not labels.videos:
        raise ConfigError("render: the predictions file has no video to draw on")
    for name, value, low in (("--scale", scale, 0.0), ("--marker_size", marker_size, 0.0),
                             ("--line_width", line_width, 0.0)):
        if not math.isfinite(value) or value <= low:
            raise ConfigError(f"render: {name} must be a finite number above {low} (got {value})")
    if fps is not None and not (math.isfinite(fps) and 0 < fps <= 1000):
        raise ConfigError(f"render: --fps must be between 0 and 1000 (got {fps})")
    if trail_length < 0:
        raise ConfigError(f"render: --trail_length must be >= 0 (got {trail_length})")
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
    # Track colours are keyed by the labels' track list (the same in a picture and a video);
    # a frame given on its own would be coloured by the order of its instances instead.
    style: dict[str, Any] = {"marker_size": marker_size, "line_width": line_width,
                             "color_by": color_by, "scale": scale, "palette": palette,
                             "show_trails": trail_length > 0, "trail_length": max(1, trail_length)}
    if show_names:
        style["per_instance_callback"] = _name_label(marker_size)
    if out.suffix.lower() == ".png":
        if len(inds) > 1:
            raise ConfigError(f"render: a .png holds one frame, and {len(inds)} are selected; "
                              "pick one with --frames (e.g. --frames 100), or write an .mp4")
        frame = inds[0]
        position = next((k for k, f in enumerate(labels.labeled_frames)
                         if f.video is video and f.frame_idx == frame), None)

        def write_png(tmp: Path) -> None:
            if position is not None and labels.labeled_frames[position].instances:
                sio.render_image(labels, tmp.as_posix(), lf_ind=position, **style)
            else:  # a frame without predictions: the plain frame (in colour, as drawn ones are)
                image = np.asarray(video[frame])
                if image.ndim == 2 or image.shape[-1] == 1:
                    image = np.repeat(image.reshape(image.shape[0], image.shape[1], 1), 3, axis=2)
                sio.render_image(None, tmp.as_posix(), image=image, **style)

        write_atomically(out, write_png)
        return out
    if out.suffix.lower() not in (".mp4", ".avi", ".mov", ".mkv"):
        raise ConfigError(f"render: output {str(out)!r} must end in .mp4 (video) or .png (image)")
    rate = fps if fps is not None else _source_fps(video)
    write_atomically(out, lambda tmp: sio.render_video(
        labels, tmp.as_posix(), video=video, frame_inds=inds, include_unlabeled=True, fps=rate,
        show_progress=show_progress, **style))
    return out

"""Input resolution and frame readers: video files (PyAV), .slp labels, HDF5 and image sequences.

Readers are plain synchronous objects; the decode stage calls them from a worker thread.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import sleap_io as sio
import structlog

from sleapflow.config import InferenceConfig
from sleapflow.errors import ConfigError, VideoDecodeError

log = structlog.get_logger(__name__)

VIDEO_SUFFIXES = {".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv"}
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp"}


@dataclass(frozen=True)
class WorkItem:
    """One frame to process: which video, which index, and ground truth when a mode needs it."""

    video_id: int
    frame_idx: int
    gt_points: np.ndarray | None = None


@dataclass
class InputPlan:
    """What a run reads: the videos (for the output file), the frames, and the source labels."""

    kind: str  # "video", "slp", "hdf5", "images"
    source_path: str
    videos: list[sio.Video]
    items: list[WorkItem]
    labels: sio.Labels | None = None
    frame_selection_method: str = "all"
    video_readers: dict[int, Any] = field(default_factory=dict)


def _is_grayscale(image: np.ndarray) -> bool:
    return image.shape[-1] == 1 or (
        np.array_equal(image[..., 0], image[..., 1]) and np.array_equal(image[..., 0], image[..., 2])
    )


class PyAVReader:
    """Sequential PyAV decoding of one video file, seeking only across large gaps.

    Like sleap-io, a video whose first frame has equal colour channels is read as grayscale.
    """

    SEEK_GAP = 64

    def __init__(self, path: str) -> None:
        import av

        self.path = path
        try:
            self._container = av.open(path)
            self._stream = self._container.streams.video[0]
        except (av.error.FFmpegError, IndexError, OSError) as exc:
            raise VideoDecodeError(f"cannot open video {path!r}: {exc}") from exc
        self._stream.thread_type = "AUTO"
        self._frames: Iterator[Any] | None = None
        self._next_idx = 0
        rate = self._stream.average_rate or self._stream.guessed_rate
        self._fps = float(rate) if rate else None
        self._time_base = self._stream.time_base
        first = self._decode_at(0)
        if first is None:
            raise VideoDecodeError(f"video {path!r} has no decodable frames")
        self.grayscale = _is_grayscale(first)
        self.shape = first.shape
        self._restart()

    def _restart(self) -> None:
        self._container.seek(0, stream=self._stream)
        self._frames = self._container.decode(self._stream)
        self._next_idx = 0

    def _index_of(self, frame: Any) -> int:
        if frame.pts is None or self._fps is None:
            return self._next_idx
        return int(round(float(frame.pts * self._time_base) * self._fps))

    def _decode_at(self, index: int) -> np.ndarray | None:
        import av

        try:
            if self._frames is None or index < self._next_idx:
                self._restart()
            elif index - self._next_idx > self.SEEK_GAP and self._fps:
                target = int(index / self._fps / self._time_base)
                self._container.seek(target, stream=self._stream, backward=True)
                self._frames = self._container.decode(self._stream)
                self._next_idx = -1  # unknown until the first frame after the seek
            assert self._frames is not None
            for frame in self._frames:
                idx = self._index_of(frame) if self._next_idx < 0 else self._next_idx
                self._next_idx = idx + 1
                if idx == index:
                    return frame.to_ndarray(format="rgb24")
                if idx > index:
                    return None
        except av.error.FFmpegError as exc:
            raise VideoDecodeError(f"error decoding {self.path!r} at frame {index}: {exc}") from exc
        return None

    def read(self, index: int) -> np.ndarray | None:
        image = self._decode_at(index)
        if image is None:
            return None
        return image[..., :1] if self.grayscale else image

    def close(self) -> None:
        self._container.close()


class SioReader:
    """Frames through a sleap-io Video (labels' videos, HDF5 datasets, image sequences)."""

    def __init__(self, video: sio.Video) -> None:
        self.video = video

    def read(self, index: int) -> np.ndarray | None:
        try:
            image = self.video[index]
        except (IndexError, KeyError):
            return None
        except Exception as exc:  # sleap-io backends raise many kinds; name the video and frame
            raise VideoDecodeError(f"cannot read frame {index} of {self.video.filename!r}: {exc}") from exc
        image = np.asarray(image)
        if image.ndim == 2:
            image = image[..., None]
        return image

    def close(self) -> None:
        return None


def _frame_count(video: sio.Video) -> int | None:
    try:
        shape = video.shape
    except Exception:
        return None
    return None if shape is None else int(shape[0])


def _select_video_frames(frames: tuple[int, ...] | None, n_frames: int | None,
                         source: str) -> list[int]:
    if frames is None:
        if n_frames is None:
            raise VideoDecodeError(f"cannot tell how many frames {source!r} has; pass --frames")
        return list(range(n_frames))
    if n_frames is None:
        return list(frames)
    kept = [f for f in frames if 0 <= f < n_frames]
    if len(kept) < len(frames):
        log.warning("frames out of range skipped", source=source, n_frames=n_frames,
                    skipped=len(frames) - len(kept))
    return kept


def _user_points(lf: sio.LabeledFrame) -> np.ndarray | None:
    users = [inst for inst in lf.user_instances if not np.all(np.isnan(inst.numpy()))]
    if not users:
        return None
    return np.stack([inst.numpy()[:, :2] for inst in users]).astype(np.float64)


def plan_input(cfg: InferenceConfig, *, need_ground_truth: bool = False) -> InputPlan:
    """Resolve ``cfg.data_path`` and the selection options into the frames to process."""
    if not cfg.data_path:
        raise ConfigError("--data_path/-i is required")
    path = Path(cfg.data_path)
    if not path.exists():
        raise ConfigError(f"input not found: {cfg.data_path!r}")
    suffix = path.suffix.lower()
    if path.name.endswith(".slp"):
        return _plan_labels(cfg, path, need_ground_truth)
    if need_ground_truth:
        raise ConfigError(
            "this model needs ground-truth instances (a centered-instance model alone uses labeled "
            f"centroids), so the input must be a .slp labels file, not {path.name!r}; or pass a "
            "centroid model too"
        )
    if cfg.only_predicted_frames:
        raise ConfigError("--only_predicted_frames requires a .slp input (labels know which frames "
                          "have predictions)")
    if path.is_dir() or suffix in IMAGE_SUFFIXES:
        return _plan_sio_video(cfg, path, "images")
    if suffix in {".h5", ".hdf5"}:
        return _plan_sio_video(cfg, path, "hdf5")
    reader = PyAVReader(str(path))
    n_frames = _stream_frame_count(str(path))
    video = sio.Video(filename=str(path), open_backend=False)
    items = [WorkItem(0, f) for f in _select_video_frames(cfg.frames, n_frames, str(path))]
    reader.close()
    return InputPlan(kind="video", source_path=str(path), videos=[video], items=items,
                     frame_selection_method="specified" if cfg.frames is not None else "all")


def _stream_frame_count(path: str) -> int | None:
    import av

    with av.open(path) as container:
        stream = container.streams.video[0]
        if stream.frames:
            return int(stream.frames)
        if stream.duration and stream.average_rate:
            return int(round(float(stream.duration * stream.time_base * stream.average_rate)))
    return None


def _plan_sio_video(cfg: InferenceConfig, path: Path, kind: str) -> InputPlan:
    kwargs: dict[str, Any] = {}
    if kind == "hdf5":
        if cfg.video_dataset:
            kwargs["dataset"] = cfg.video_dataset
        kwargs["input_format"] = cfg.video_input_format
    source: Any = str(path)
    if kind == "images" and path.is_dir():
        source = sorted(str(p) for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not source:
            raise VideoDecodeError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in {str(path)!r}")
    try:
        video = sio.load_video(source, **kwargs)
    except Exception as exc:
        raise VideoDecodeError(f"cannot open {kind} input {str(path)!r}: {exc}") from exc
    items = [WorkItem(0, f) for f in _select_video_frames(cfg.frames, _frame_count(video), str(path))]
    return InputPlan(kind=kind, source_path=str(path), videos=[video], items=items,
                     frame_selection_method="specified" if cfg.frames is not None else "all")


def _plan_labels(cfg: InferenceConfig, path: Path, need_gt: bool) -> InputPlan:
    try:
        labels = sio.load_slp(str(path))
    except Exception as exc:
        raise VideoDecodeError(f"cannot read labels file {str(path)!r}: {exc}") from exc
    video_ids = {id(v): i for i, v in enumerate(labels.videos)}
    method = "all"
    if cfg.video_index is not None:
        if not 0 <= cfg.video_index < len(labels.videos):
            raise ConfigError(f"--video_index {cfg.video_index} is out of range: {path.name} has "
                              f"{len(labels.videos)} video(s)")
        video = labels.videos[cfg.video_index]
        frames = _select_video_frames(cfg.frames, _frame_count(video), str(path))
        if cfg.exclude_user_labeled:
            labeled = {lf.frame_idx for lf in labels.find(video) if lf.user_instances}
            frames = [f for f in frames if f not in labeled]
        by_idx = {lf.frame_idx: lf for lf in labels.find(video)}
        items = [WorkItem(cfg.video_index, f,
                          _user_points(by_idx[f]) if need_gt and f in by_idx else None)
                 for f in frames]
        if need_gt:
            items = [it for it in items if it.gt_points is not None]
        method = "specified" if cfg.frames is not None else "all"
        return InputPlan(kind="slp", source_path=str(path), videos=[video], items=items,
                         labels=labels, frame_selection_method=method)
    frames_list = list(labels.labeled_frames)
    if cfg.only_labeled_frames:
        frames_list = [lf for lf in frames_list if lf.user_instances]
        method = "labeled"
    elif cfg.only_suggested_frames:
        labeled = {(id(lf.video), lf.frame_idx) for lf in labels.labeled_frames if lf.user_instances}
        frames_list = [sio.LabeledFrame(video=s.video, frame_idx=s.frame_idx)
                       for s in labels.suggestions if (id(s.video), s.frame_idx) not in labeled]
        method = "suggested"
    elif cfg.exclude_user_labeled:
        frames_list = [lf for lf in frames_list if not lf.user_instances]
    elif cfg.only_predicted_frames:
        frames_list = [lf for lf in frames_list if lf.predicted_instances]
        method = "predicted"
    if cfg.frames is not None:
        positions = [p for p in cfg.frames if 0 <= p < len(frames_list)]
        if len(positions) < len(cfg.frames):
            log.warning("--frames positions beyond the labeled frames skipped",
                        n_labeled_frames=len(frames_list), skipped=len(cfg.frames) - len(positions))
        frames_list = [frames_list[p] for p in positions]
        if method == "all":
            method = "specified"
    items = []
    for lf in frames_list:
        gt = _user_points(lf) if need_gt else None
        if need_gt and gt is None:
            continue
        items.append(WorkItem(video_ids[id(lf.video)], lf.frame_idx, gt))
    return InputPlan(kind="slp", source_path=str(path), videos=list(labels.videos), items=items,
                     labels=labels, frame_selection_method=method)


def open_reader(plan: InputPlan, video_id: int) -> PyAVReader | SioReader:
    """A reader for one video of the plan (PyAV for plain video files)."""
    if plan.kind == "video":
        return PyAVReader(plan.source_path)
    return SioReader(plan.videos[video_id])

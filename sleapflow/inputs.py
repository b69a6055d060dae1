"""Input resolution and frame readers: video files (PyAV), .slp labels, HDF5 and image sequences.

``plan_input`` turns ``--data_path`` and the selection options into an :class:`InputPlan`: the
videos the output file refers to and the exact ``(video, frame)`` list to decode, following
``sleap-nn track`` (the legacy pipeline, spec §5.2/§7). Readers are plain synchronous objects;
the decode stage calls them from a worker thread.
"""

from __future__ import annotations

import glob
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import sleap_io as sio
import structlog

from sleapflow.config import InferenceConfig
from sleapflow.errors import ConfigError, VideoDecodeError

log = structlog.get_logger(__name__)

VIDEO_SUFFIXES = {".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv",
                  ".mj2", ".ts"}
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp"}
HDF5_SUFFIXES = {".h5", ".hdf5"}


@dataclass(frozen=True)
class WorkItem:
    """One frame to process: which video, which index, and ground truth when a mode needs it."""

    video_id: int
    frame_idx: int
    gt_points: np.ndarray | None = None


@dataclass
class InputPlan:
    """What a run reads: the videos (for the output file), the frames, and the source labels.

    ``source_path`` is the path the user gave (None for in-memory inputs); ``video_index`` is set
    when a single video of a ``.slp`` was selected (it names the default output file).
    """

    kind: str  # "video", "slp", "hdf5", "images"
    source_path: str | None
    videos: list[sio.Video]
    items: list[WorkItem]
    labels: sio.Labels | None = None
    frame_selection_method: str = "all"
    video_index: int | None = None
    video_readers: dict[int, Any] = field(default_factory=dict)


def is_grayscale(image: np.ndarray) -> bool:
    """sleap-io's test: the first and the last channel of the first frame are equal."""
    return image.shape[-1] == 1 or bool(np.array_equal(image[..., 0], image[..., -1]))


# --------------------------------------------------------------------------------------------
# Video files through PyAV
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class VideoInfo:
    """What planning needs to know about a video file without decoding it all."""

    n_frames: int
    height: int
    width: int
    channels: int
    fps: float | None


def _count_frames(path: str) -> int:
    """Frames in the first video stream: the container's count, else a packet count.

    Matroska/WebM store no frame count and a duration estimate can be off by a frame or more,
    so those are counted by demuxing (no decoding; about as fast as reading the file).
    """
    import av

    with av.open(path) as container:
        stream = container.streams.video[0]
        if stream.frames:
            return int(stream.frames)
        n = 0
        for packet in container.demux(stream):
            # The demuxer ends with an empty flush packet; discard-flagged packets never decode.
            if packet.size and not getattr(packet, "is_discard", False):
                n += 1
        return n


class PyAVReader:
    """Random access to one video file by frame index, decoding forward and seeking over gaps.

    Frame ``i`` is the ``i``-th frame in decode (presentation) order from the start of the
    stream, as sleap-io's readers number them. After a seek the index of the landing frame is
    derived from its timestamp relative to the first frame's (``pts0``), so streams that do not
    start at zero are numbered right; a seek that lands past its target backs off further.
    Like sleap-io, a video whose first frame has equal first and last channels is read as
    grayscale (channel 0 of the RGB conversion).
    """

    #: Below this gap (in frames) decoding forward is cheaper than a seek plus a GOP's decode.
    SEEK_GAP = 64
    #: Containers whose seeks land on a keyframe with exact timestamps. MPEG program/transport
    #: streams (.mpg, .ts) interpolate timestamps after a seek and can be a frame off, so those
    #: and unknown formats are decoded forward only (restarting for a backward jump).
    SEEKABLE_FORMATS = ("mov", "mp4", "matroska", "webm", "avi")
    _AT_END = 1 << 62

    def __init__(self, path: str) -> None:
        self.path = path
        self._container: Any = None
        self._frames: Iterator[Any] | None = None
        self._next_idx = 0
        self._after_seek = False
        self._last: tuple[int, np.ndarray] | None = None
        self._gop = 0
        self._last_key: int | None = None
        self._open()
        first = self._next_frame()
        if first is None:
            self.close()
            raise VideoDecodeError(f"video {path!r} has no decodable frames")
        self._pts0 = first.pts
        # Seeking needs timestamps and a frame rate to turn an index into a timestamp.
        formats = set(self._container.format.name.split(","))
        self._seekable = (self._pts0 is not None and bool(self._fps) and self._time_base is not None
                          and bool(formats & set(self.SEEKABLE_FORMATS)))
        image = first.to_ndarray(format="rgb24")
        self.grayscale = is_grayscale(image)
        # Grayscale frames with flat chroma skip swscale: a table lookup gives the same pixels.
        from sleapflow.gray_decode import GrayLookup

        self._gray = GrayLookup(first, image) if self.grayscale else None
        self.shape = (image.shape[0], image.shape[1], 1 if self.grayscale else 3)
        self._note_key(first, 0)
        self._last = (0, image)
        self._next_idx = 1

    @property
    def fps(self) -> float | None:
        return self._fps

    def _open(self) -> None:
        import av

        if self._container is not None:
            self._container.close()
        try:
            self._container = av.open(self.path)
            self._stream = self._container.streams.video[0]
        except (av.error.FFmpegError, IndexError, OSError) as exc:
            raise VideoDecodeError(f"cannot open video {self.path!r}: {exc}") from exc
        # Frame threading decodes H.264/HEVC several times faster; seeks flush it correctly.
        self._stream.thread_type = "AUTO"
        rate = self._stream.average_rate or self._stream.guessed_rate
        self._fps = float(rate) if rate else None
        self._time_base = self._stream.time_base
        self._frames = self._container.decode(self._stream)
        self._next_idx = 0
        self._after_seek = False

    def _next_frame(self) -> Any:
        assert self._frames is not None
        return next(self._frames, None)

    def _pts_index(self, pts: int) -> int:
        return round(float((pts - self._pts0) * self._time_base) * self._fps)

    def _note_key(self, frame: Any, idx: int) -> None:
        # Learn the keyframe interval so short forward gaps are decoded through, not seeked.
        if frame.key_frame:
            if self._last_key is not None and idx > self._last_key:
                self._gop = max(self._gop, idx - self._last_key)
            self._last_key = idx

    def _seek(self, index: int) -> None:
        target = self._pts0 + round(index / self._fps / float(self._time_base))
        self._container.seek(target, stream=self._stream, backward=True, any_frame=False)
        self._frames = self._container.decode(self._stream)
        self._after_seek = True
        self._last_key = None

    def _position_for(self, index: int) -> None:
        """Put the decoder at or before ``index``: keep going, seek, or restart from the top."""
        behind = index < self._next_idx
        gap = index - self._next_idx
        if not behind and gap <= max(self.SEEK_GAP, 2 * self._gop):
            return
        if self._seekable and index > self.SEEK_GAP:
            self._seek(index)
        elif behind:
            self._open()

    def _decode_at(self, index: int) -> np.ndarray | None:
        import av

        if self._last is not None and self._last[0] == index:
            return self._last[1]
        try:
            self._position_for(index)
            backoff = self.SEEK_GAP
            while True:
                frame = self._next_frame()
                if frame is None:
                    # At the end: any later read is "behind" and repositions (seek or restart).
                    self._next_idx = self._AT_END
                    self._after_seek = False
                    return None
                if self._after_seek:
                    self._after_seek = False
                    if frame.pts is None:
                        # No timestamp to place the landing frame: count from the top instead.
                        self._seekable = False
                        self._open()
                        continue
                    idx = self._pts_index(frame.pts)
                    if idx > index:
                        # Landed past the target (keyframe timestamps vs. seek index): back off.
                        if index - backoff <= 0:
                            self._open()
                        else:
                            self._seek(index - backoff)
                            backoff *= 2
                        continue
                else:
                    idx = self._next_idx
                self._next_idx = idx + 1
                self._note_key(frame, idx)
                if idx == index:
                    image = self._gray.convert(frame) if self._gray is not None else None
                    if image is None:
                        image = frame.to_ndarray(format="rgb24")
                    self._last = (idx, image)
                    return image
                if idx > index:
                    return None
        except av.error.FFmpegError as exc:
            raise VideoDecodeError(f"error decoding {self.path!r} at frame {index}: {exc}") from exc

    def read(self, index: int) -> np.ndarray | None:
        """Frame ``index`` as (H, W, C) uint8, or None when the video has no such frame."""
        if index < 0:
            return None
        image = self._decode_at(index)
        if image is None:
            return None
        return image[..., :1] if self.grayscale else image

    def close(self) -> None:
        if self._container is not None:
            self._container.close()
            self._container = None
            self._frames = None


def probe_video(path: str) -> VideoInfo:
    """Frame count, size, channels (sleap-io's grayscale rule) and frame rate of a video file."""
    import av

    reader = PyAVReader(path)
    try:
        height, width, channels = reader.shape
        fps = reader.fps
    finally:
        reader.close()
    try:
        n_frames = _count_frames(path)
    except (av.error.FFmpegError, OSError) as exc:
        raise VideoDecodeError(f"cannot read {path!r}: {exc}") from exc
    return VideoInfo(n_frames=n_frames, height=height, width=width, channels=channels, fps=fps)


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
            raise VideoDecodeError(
                f"cannot read frame {index} of {_video_name(self.video)!r}: {exc}") from exc
        image = np.asarray(image)
        if image.ndim == 2:
            image = image[..., None]
        return image

    def close(self) -> None:
        return None


def open_reader(plan: InputPlan, video_id: int) -> PyAVReader | SioReader:
    """A reader for one video of the plan (PyAV for plain video files, sleap-io otherwise)."""
    video = plan.videos[video_id]
    if plan.kind == "video":
        return PyAVReader(str(video.filename))
    return SioReader(video)


# --------------------------------------------------------------------------------------------
# Planning
# --------------------------------------------------------------------------------------------


def _video_name(video: sio.Video) -> str:
    filename = video.filename
    if isinstance(filename, list):
        return filename[0] if filename else "<empty image list>"
    return str(filename)


def _frame_count(video: sio.Video) -> int | None:
    try:
        shape = video.shape
    except Exception:
        return None
    return None if shape is None else int(shape[0])


def _embedded_frames(video: sio.Video) -> list[int] | None:
    """Frame indices stored in a ``.pkg.slp`` video (None for ordinary videos).

    An embedded video holds only some frames of its source, numbered as in the source; its
    length is the number stored, not the source's, so indices are checked against this list.
    """
    frame_map = getattr(video.backend, "frame_map", None)
    if frame_map:
        return sorted(int(f) for f in frame_map)
    return None


def _unique(values: Sequence[int]) -> tuple[list[int], int]:
    """Values in their given order without repeats, and how many repeats were dropped.

    A repeated frame would give two labeled frames for one image in the output file.
    """
    out = list(dict.fromkeys(values))
    return out, len(values) - len(out)


def _select_video_frames(frames: tuple[int, ...] | None, video: sio.Video | None,
                         n_frames: int | None, source: str) -> list[int]:
    """``--frames`` indices of one video (all frames without it), out-of-range ones skipped.

    The reference's reader stops at the first frame it cannot read (silently truncating the
    output); here every requested frame that exists is processed and the rest are reported.
    """
    available = _embedded_frames(video) if video is not None else None
    if frames is None:
        if available is not None:
            return available
        if n_frames is None:
            raise VideoDecodeError(f"cannot tell how many frames {source!r} has; pass --frames")
        return list(range(n_frames))
    wanted, repeats = _unique(frames)
    if repeats:
        log.warning("repeated --frames indices processed once", source=source, repeats=repeats)
    if available is not None:
        valid = set(available)
        kept = [f for f in wanted if f in valid]
    elif n_frames is not None:
        kept = [f for f in wanted if 0 <= f < n_frames]
    else:
        kept = wanted
    if len(kept) < len(wanted):
        kept_set = set(kept)
        missing = [f for f in wanted if f not in kept_set]
        log.warning("requested frames not in the video skipped", source=source,
                    n_frames=len(available) if available is not None else n_frames,
                    skipped=len(missing), first_skipped=missing[:5])
    return kept


def _user_points(lf: sio.LabeledFrame) -> np.ndarray | None:
    users = [inst for inst in lf.user_instances if not np.all(np.isnan(inst.numpy()))]
    if not users:
        return None
    return np.stack([inst.numpy()[:, :2] for inst in users]).astype(np.float64)


def _label_flags(cfg: InferenceConfig) -> list[str]:
    names = ("only_labeled_frames", "only_suggested_frames", "exclude_user_labeled",
             "only_predicted_frames")
    return [f"--{n}" for n in names if getattr(cfg, n)]


def _selection_method(cfg: InferenceConfig, applied: str | None) -> str:
    """The reference's ``frame_selection.method`` name for what was actually applied.

    sleap-nn reports labeled > suggested > predicted > specified > all from the flags alone;
    here a flag only counts when it selected the frames (it is ignored on video inputs and with
    ``--video_index``, and a lower-precedence flag loses to a higher one).
    """
    if applied in ("labeled", "suggested", "predicted"):
        return applied
    return "specified" if cfg.frames is not None else "all"


def plan_input(cfg: InferenceConfig, *, need_ground_truth: bool = False,
               labels: sio.Labels | None = None, video: sio.Video | None = None) -> InputPlan:
    """Resolve the input and the selection options into the frames to process.

    ``labels`` / ``video`` are in-memory inputs for the Python API (``input_labels`` /
    ``input_video`` of ``run_inference``); they take precedence over ``cfg.data_path`` in that
    order, as in sleap-nn.
    """
    if labels is not None:
        return _plan_labels(cfg, labels, None, need_ground_truth)
    if video is not None:
        return _plan_video_object(cfg, video, need_ground_truth)
    if not cfg.data_path:
        raise ConfigError("--data_path/-i is required")
    raw = cfg.data_path
    if glob.has_magic(raw) and not Path(raw).exists():
        return _plan_image_glob(cfg, raw, need_ground_truth)
    path = Path(raw)
    if not path.exists():
        raise ConfigError(f"input not found: {raw!r}")
    if path.name.lower().endswith(".slp"):
        if path.is_dir():
            raise ConfigError(f"{raw!r} is a folder, not a .slp labels file")
        return _plan_labels(cfg, _load_labels(path), raw, need_ground_truth)
    _check_video_input(cfg, path.name, need_ground_truth)
    suffix = path.suffix.lower()
    if path.is_dir():
        images = _find_images(path)
        if not images:
            raise VideoDecodeError(
                f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in folder {raw!r}")
        return _plan_sio_video(cfg, images, raw, "images")
    if suffix in IMAGE_SUFFIXES:
        return _plan_sio_video(cfg, raw, raw, "images")
    if suffix in HDF5_SUFFIXES:
        return _plan_sio_video(cfg, raw, raw, "hdf5")
    return _plan_media(cfg, raw)


def _check_video_input(cfg: InferenceConfig, name: str, need_gt: bool) -> None:
    """What a non-.slp input cannot do (spec §5.2), and the label flags it ignores."""
    if need_gt:
        raise ConfigError(
            "this model needs ground-truth instances (a centered-instance model alone uses labeled "
            f"centroids), so the input must be a .slp labels file, not {name!r}; or pass a "
            "centroid model too"
        )
    if cfg.only_predicted_frames:
        raise ConfigError("--only_predicted_frames requires a .slp input (labels know which frames "
                          "have predictions)")
    flags = _label_flags(cfg)
    if flags:
        log.warning("label filters need a .slp input; running on all frames (use --frames to "
                    "subset a video)", ignored=flags, input=name)


def _load_labels(path: Path) -> sio.Labels:
    try:
        return sio.load_slp(str(path))
    except Exception as exc:
        raise VideoDecodeError(f"cannot read labels file {str(path)!r}: {exc}") from exc


def _find_images(folder: Path) -> list[str]:
    """Images in a folder, sorted by name as sleap-io sorts them (suffix case ignored)."""
    return sorted(p.as_posix() for p in folder.iterdir()
                  if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def _plan_image_glob(cfg: InferenceConfig, pattern: str, need_gt: bool) -> InputPlan:
    images = sorted(Path(p).as_posix() for p in glob.glob(pattern)
                    if Path(p).suffix.lower() in IMAGE_SUFFIXES and Path(p).is_file())
    if not images:
        raise ConfigError(f"input not found: no images match {pattern!r}")
    _check_video_input(cfg, pattern, need_gt)
    return _plan_sio_video(cfg, images, pattern, "images")


def _plan_media(cfg: InferenceConfig, raw: str) -> InputPlan:
    path = Path(raw)
    info = probe_video(raw)
    filename = path.resolve().as_posix()
    # The metadata sleap-io itself writes for a MediaVideo, so SLEAP opens the output without
    # needing to open the video, and the in-memory labels can still read frames on demand.
    video = sio.Video(filename=filename, open_backend=False, backend_metadata={
        "type": "MediaVideo", "shape": [info.n_frames, info.height, info.width, info.channels],
        "filename": filename, "grayscale": info.channels == 1, "bgr": True, "dataset": "",
        "input_format": "", "fps": info.fps,
    })
    video.open_backend = True
    items = [WorkItem(0, f) for f in _select_video_frames(cfg.frames, None, info.n_frames, raw)]
    return InputPlan(kind="video", source_path=raw, videos=[video], items=items,
                     frame_selection_method=_selection_method(cfg, None))


def _plan_sio_video(cfg: InferenceConfig, source: str | list[str], raw: str, kind: str) -> InputPlan:
    kwargs: dict[str, Any] = {}
    if kind == "hdf5":
        if cfg.video_dataset:
            kwargs["dataset"] = cfg.video_dataset
        kwargs["input_format"] = cfg.video_input_format
    try:
        video = sio.load_video(source, **kwargs)
    except Exception as exc:
        raise VideoDecodeError(f"cannot open {kind} input {raw!r}: {exc}") from exc
    if kind == "hdf5":
        _check_hdf5(video, cfg, raw)
    n_frames = _frame_count(video)
    items = [WorkItem(0, f) for f in _select_video_frames(cfg.frames, video, n_frames, raw)]
    return InputPlan(kind=kind, source_path=raw, videos=[video], items=items,
                     frame_selection_method=_selection_method(cfg, None))


def _check_hdf5(video: sio.Video, cfg: InferenceConfig, raw: str) -> None:
    backend = video.backend
    dataset = getattr(backend, "dataset", None)
    if backend is None or dataset is None:
        hint = f"--video_dataset {cfg.video_dataset!r} is not in the file" if cfg.video_dataset \
            else "no rank-4 (frames, height, width, channels) dataset found; name one with --video_dataset"
        raise VideoDecodeError(f"cannot read HDF5 video {raw!r}: {hint}")
    try:
        import h5py

        with h5py.File(str(video.filename), "r") as f:
            if dataset not in f:
                raise VideoDecodeError(
                    f"cannot read HDF5 video {raw!r}: dataset {dataset!r} is not in the file")
            ds = f[dataset]
            embedded = "format" in ds.attrs
            if not embedded and ds.ndim != 4:
                raise VideoDecodeError(
                    f"HDF5 dataset {dataset!r} in {raw!r} has shape {ds.shape}; a video must be "
                    "rank 4: (frames, height, width, channels) with --video_input_format "
                    "channels_last, or (frames, channels, width, height) with channels_first")
            if not embedded:
                channels = ds.shape[3] if cfg.video_input_format == "channels_last" else ds.shape[1]
                if channels not in (1, 3):
                    raise VideoDecodeError(
                        f"HDF5 dataset {dataset!r} in {raw!r} has {channels} channels in the "
                        f"{cfg.video_input_format} layout (shape {ds.shape}); check "
                        "--video_input_format")
    except OSError as exc:
        raise VideoDecodeError(f"cannot read HDF5 video {raw!r}: {exc}") from exc


def _plan_video_object(cfg: InferenceConfig, video: sio.Video, need_gt: bool) -> InputPlan:
    """An in-memory ``sio.Video`` (``input_video``): decoded through PyAV when it is a media file."""
    name = _video_name(video)
    _check_video_input(cfg, name, need_gt)
    backend_type = type(video.backend).__name__ if video.backend is not None else \
        video.backend_metadata.get("type")
    is_media = backend_type == "MediaVideo" or (
        isinstance(video.filename, str) and Path(video.filename).suffix.lower() in VIDEO_SUFFIXES)
    if is_media:
        if not isinstance(video.filename, str) or not Path(video.filename).is_file():
            raise ConfigError(f"input video not found: {name!r}")
        info = probe_video(video.filename)
        items = [WorkItem(0, f) for f in _select_video_frames(cfg.frames, None, info.n_frames, name)]
        kind = "video"
    else:
        items = [WorkItem(0, f)
                 for f in _select_video_frames(cfg.frames, video, _frame_count(video), name)]
        kind = "hdf5" if backend_type == "HDF5Video" else "images"
    return InputPlan(kind=kind, source_path=None, videos=[video], items=items,
                     frame_selection_method=_selection_method(cfg, None))


def _check_videos_exist(videos: Iterable[sio.Video], source: str) -> None:
    missing = [_video_name(v) for v in videos if not v.exists()]
    if missing:
        raise ConfigError(
            f"{source} refers to video file(s) that cannot be found: {', '.join(missing)}. Move them "
            "back, or fix the paths in the labels file (e.g. with sleap-io's "
            "Labels.replace_filenames)")


def _plan_labels(cfg: InferenceConfig, labels: sio.Labels, raw: str | None,
                 need_gt: bool) -> InputPlan:
    source = repr(raw) if raw is not None else "the input labels"
    if cfg.video_index is not None:
        return _plan_labels_video(cfg, labels, raw, source, need_gt)
    video_ids = {id(v): i for i, v in enumerate(labels.videos)}
    frames_list = list(labels.labeled_frames)
    applied: str | None = None
    # First flag wins, in sleap-nn's order: labeled > suggested > exclude_user_labeled > predicted.
    if cfg.only_labeled_frames:
        frames_list = [lf for lf in frames_list if lf.has_user_instances]
        applied = "labeled"
    elif cfg.only_suggested_frames:
        labeled = {(id(lf.video), lf.frame_idx) for lf in labels.labeled_frames
                   if lf.has_user_instances}
        frames_list = [sio.LabeledFrame(video=s.video, frame_idx=s.frame_idx)
                       for s in labels.suggestions if (id(s.video), s.frame_idx) not in labeled]
        applied = "suggested"
    elif cfg.exclude_user_labeled:
        frames_list = [lf for lf in frames_list if not lf.has_user_instances]
        applied = "exclude_user_labeled"
    elif cfg.only_predicted_frames:
        frames_list = [lf for lf in frames_list if lf.has_predicted_instances]
        applied = "predicted"
    if cfg.frames is not None:
        # Without --video_index, --frames are positions in the (filtered) labeled-frame list.
        positions, repeats = _unique(cfg.frames)
        if repeats:
            log.warning("repeated --frames positions processed once", repeats=repeats)
        kept = [p for p in positions if 0 <= p < len(frames_list)]
        if len(kept) < len(positions):
            log.warning("--frames positions beyond the labeled frames skipped (without "
                        "--video_index, --frames counts labeled frames, not video frames)",
                        n_labeled_frames=len(frames_list), skipped=len(positions) - len(kept))
        frames_list = [frames_list[p] for p in kept]
    items = []
    for lf in frames_list:
        gt = _user_points(lf)  # centroid-only matching uses it even when frames are kept
        if need_gt and gt is None:
            continue
        if id(lf.video) not in video_ids:
            raise ConfigError(f"{source}: a frame refers to a video that is not in the file")
        items.append(WorkItem(video_ids[id(lf.video)], lf.frame_idx, gt))
    used = sorted({it.video_id for it in items})
    _check_videos_exist([labels.videos[i] for i in used], source)
    return InputPlan(kind="slp", source_path=raw, videos=list(labels.videos), items=items,
                     labels=labels, frame_selection_method=_selection_method(cfg, applied))


def _plan_labels_video(cfg: InferenceConfig, labels: sio.Labels, raw: str | None, source: str,
                       need_gt: bool) -> InputPlan:
    """``.slp`` + ``--video_index k``: every frame of video k (or ``--frames`` indices of it)."""
    k = cfg.video_index
    assert k is not None
    if not 0 <= k < len(labels.videos):
        raise ConfigError(f"--video_index {k} is out of range: {source} has "
                          f"{len(labels.videos)} video(s) (indices 0-{len(labels.videos) - 1})")
    ignored = [f for f in _label_flags(cfg) if f != "--exclude_user_labeled"]
    if ignored:
        log.warning("label filters are ignored with --video_index (as in sleap-nn track); "
                    "only --exclude_user_labeled applies", ignored=ignored)
    video = labels.videos[k]
    _check_videos_exist([video], source)
    frames = _select_video_frames(cfg.frames, video, _frame_count(video),
                                  f"{raw or 'labels'} video {k}")
    by_idx = {lf.frame_idx: lf for lf in labels.find(video)}
    if cfg.exclude_user_labeled:
        frames = [f for f in frames if not (f in by_idx and by_idx[f].has_user_instances)]
    items = [WorkItem(0, f, _user_points(by_idx[f]) if f in by_idx else None)
             for f in frames]
    if need_gt:
        items = [it for it in items if it.gt_points is not None]
    return InputPlan(kind="slp", source_path=raw, videos=[video], items=items, labels=labels,
                     frame_selection_method=_selection_method(cfg, None), video_index=k)


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
                labels = sio.load_slp(raw, open_videos=False)
                if 0 <= cfg.video_index < len(labels.videos):
                    video = labels.videos[cfg.video_index]
            except Exception:  # an unreadable input fails later, with a clearer error
                video = None
        if video is not None:
            name = _video_stem(video, cfg.video_index, raw)
            return str(path.parent / f"{path.stem}.{name}.predictions.slp")
    return str(path.with_suffix(".predictions.slp"))

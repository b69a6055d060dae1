"""Input planning: ``--data_path`` and the selection options → an :class:`InputPlan`.

The plan holds the videos the output file refers to and the exact ``(video, frame)`` list to
decode, following ``sleap-nn track`` (the legacy pipeline, spec §5.2/§7).
"""

from __future__ import annotations

import bisect
import glob
import stat
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import sleap_io as sio

from sleapflow.errors import ConfigError, InputNotFoundError, VideoDecodeError
from sleapflow.inputs.live import live_kind, plan_live
from sleapflow.inputs.media_limits import (
    check_array_frame,
    check_frame_size,
    check_image_file,
    check_input_path,
)
from sleapflow.inputs.readers import probe_video, video_name
from sleapflow.inputs.remote import check_remote_input, is_url, remote_suffix
from sleapflow.logs import get_logger
from sleapflow.messages import InputPlan, WorkItem
from sleapflow.options import frames as fr
from sleapflow.options.config import InferenceConfig
from sleapflow.outputs.slp_read import read_slp

__all__ = ("HDF5_SUFFIXES", "IMAGE_SUFFIXES", "VIDEO_SUFFIXES", "plan_input")


log = get_logger(__name__)

VIDEO_SUFFIXES = {".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv",
                  ".mj2", ".ts"}
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp"}
HDF5_SUFFIXES = {".h5", ".hdf5"}


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


def _select_video_frames(frames: fr.Selection | None, video: sio.Video | None,
                         n_frames: int | None, source: str) -> Sequence[int]:
    """``--frames`` indices of one video (all frames without it), out-of-range ones skipped.

    The reference's reader stops at the first frame it cannot read (silently truncating the
    output); here every requested frame that exists is processed and the rest are reported.
    The result is held as ranges (:class:`~sleapflow.options.frames.SpanSequence`) for videos.
    """
    available = _embedded_frames(video) if video is not None else None
    if frames is None:
        if available is not None:
            return available
        if n_frames is None:
            raise VideoDecodeError(f"cannot tell how many frames {source!r} has; pass --frames")
        return fr.SpanSequence([(0, n_frames)], int)
    spans, repeats, outside = fr.unique_spans(frames, None if available is not None else n_frames)
    if repeats:
        log.warning("repeated --frames indices processed once", source=source, repeats=repeats)
    kept: Sequence[int]
    if available is not None:
        ordered = available  # _embedded_frames returns them sorted
        kept = []
        for start, stop in spans:
            lo, hi = bisect.bisect_left(ordered, start), bisect.bisect_left(ordered, stop)
            kept.extend(ordered[lo:hi])
        outside = fr.span_count(spans) - len(kept)
    else:
        kept = fr.SpanSequence(spans, int)
    if outside:
        first = fr.first_outside(frames, n_frames) if available is None and n_frames is not None \
            else []
        log.warning("requested frames not in the video skipped", source=source,
                    n_frames=len(available) if available is not None else n_frames,
                    skipped=outside, first_skipped=first)
    return kept


def _work_items(frames: Sequence[int], video_id: int = 0) -> Sequence[WorkItem]:
    """Work items for one video's frames, lazily when the frames are held as ranges."""
    if isinstance(frames, fr.SpanSequence):
        return fr.SpanSequence(frames.spans, lambda f: WorkItem(video_id, f))
    return [WorkItem(video_id, f) for f in frames]


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
    if cfg.inputs:
        raise ConfigError("several inputs are planned by sleapflow.inputs.expand.plan_many, one "
                          "video at a time")
    if labels is not None:
        return _plan_labels(cfg, labels, None, need_ground_truth)
    if video is not None:
        return _plan_video_object(cfg, video, need_ground_truth)
    if not cfg.data_path:
        raise ConfigError("--data_path/-i is required")
    raw = cfg.data_path
    if live_kind(raw, cfg.live):
        return _plan_live(cfg, raw, need_ground_truth)
    if cfg.live is not None or cfg.duration is not None:
        flag = "--live" if cfg.live else "--no-live" if cfg.live is False else "--duration"
        raise ConfigError(f"{flag} applies to live sources (a camera /dev/videoN, an rtsp, udp, "
                          f"tcp, srt or http(s) stream, or -i - for stdin), not to {raw!r}")
    if is_url(raw):
        return _plan_remote(cfg, raw, need_ground_truth)
    if glob.has_magic(raw) and not Path(raw).exists():
        return _plan_image_glob(cfg, raw, need_ground_truth)
    path = Path(raw)
    st = check_input_path(raw)
    if st is None:
        raise InputNotFoundError(f"input not found: {raw!r}")
    is_dir = stat.S_ISDIR(st.st_mode)
    if path.name.lower().endswith(".slp"):
        if is_dir:
            raise ConfigError(f"{raw!r} is a folder, not a .slp labels file")
        return _plan_labels(cfg, read_slp(path), raw, need_ground_truth)
    _check_video_input(cfg, path.name, need_ground_truth)
    suffix = path.suffix.lower()
    if is_dir:
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


def _plan_live(cfg: InferenceConfig, raw: str, need_gt: bool) -> InputPlan:
    """A camera or stream: read once, in order, for as long as it runs (no frame selection)."""
    if cfg.frames is not None:
        raise ConfigError(f"--frames selects frames of a file; a live source ({raw!r}) is read "
                          "as it comes: use --duration to stop after some seconds")
    if cfg.shard is not None:
        raise ConfigError(f"--shard splits a file's frames; a live source ({raw!r}) cannot be "
                          "split")
    return plan_live(raw, live=cfg.live, need_ground_truth=need_gt)


def _plan_remote(cfg: InferenceConfig, url: str, need_gt: bool) -> InputPlan:
    """A video file named by a URL: no local checks, the object's existence asked of its server."""
    suffix = remote_suffix(url)
    if suffix not in VIDEO_SUFFIXES:
        what = "a .slp labels file" if suffix == ".slp" else "an image" \
            if suffix in IMAGE_SUFFIXES else "an HDF5 file" if suffix in HDF5_SUFFIXES else None
        raise ConfigError(
            f"-i {url!r}: only video files ({', '.join(sorted(VIDEO_SUFFIXES))}) are read from "
            f"URLs{f', not {what}' if what else ''}; copy it to a local disk first")
    _check_video_input(cfg, url, need_gt)
    check_remote_input(url)
    return _plan_media(cfg, url)


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


def _find_images(folder: Path) -> list[str]:
    """Images in a folder, sorted by name as sleap-io sorts them (suffix case ignored)."""
    return sorted(p.as_posix() for p in folder.iterdir()
                  if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def _plan_image_glob(cfg: InferenceConfig, pattern: str, need_gt: bool) -> InputPlan:
    images = sorted(Path(p).as_posix() for p in glob.glob(pattern)
                    if Path(p).suffix.lower() in IMAGE_SUFFIXES and Path(p).is_file())
    if not images:
        raise InputNotFoundError(f"input not found: no images match {pattern!r}")
    _check_video_input(cfg, pattern, need_gt)
    return _plan_sio_video(cfg, images, pattern, "images")


def _plan_media(cfg: InferenceConfig, raw: str) -> InputPlan:
    info = probe_video(raw)
    remote = is_url(raw)
    # A URL stays as given: it is the video's name in the output, and the source of provenance.
    filename = raw if remote else Path(raw).resolve().as_posix()
    # The metadata sleap-io itself writes for a MediaVideo, so SLEAP opens the output without
    # needing to open the video, and the in-memory labels can still read frames on demand.
    video = sio.Video(filename=filename, open_backend=False, backend_metadata={
        "type": "MediaVideo", "shape": [info.n_frames, info.height, info.width, info.channels],
        "filename": filename, "grayscale": info.channels == 1, "bgr": True, "dataset": "",
        "input_format": "", "fps": info.fps,
    })
    # sleap-io cannot open URLs: the labels' video stays closed (frames come from PyAVReader).
    video.open_backend = not remote
    items = _work_items(_select_video_frames(cfg.frames, None, info.n_frames, raw))
    return InputPlan(kind="video", source_path=raw, videos=[video], items=items,
                     frame_selection_method=_selection_method(cfg, None))


def _plan_sio_video(cfg: InferenceConfig, source: str | list[str], raw: str, kind: str) -> InputPlan:
    if kind == "images":
        # sleap-io decodes the first image to learn the frame shape: its header is checked first.
        check_image_file(source[0] if isinstance(source, list) else source)
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
    items = _work_items(_select_video_frames(cfg.frames, video, n_frames, raw))
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
            if embedded:
                height, width = ds.attrs.get("height"), ds.attrs.get("width")
                if height is not None and width is not None:
                    check_frame_size(int(width), int(height), f"HDF5 dataset {dataset!r} in {raw!r}")
            else:
                # The declared shape, not the data on disk: an unwritten chunked dataset of any
                # shape is a few bytes, and reading one of its frames allocates all of it.
                check_array_frame(ds.shape, ds.dtype.itemsize, f"HDF5 dataset {dataset!r} in {raw!r}")
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
    name = video_name(video)
    _check_video_input(cfg, name, need_gt)
    backend_type = type(video.backend).__name__ if video.backend is not None else \
        video.backend_metadata.get("type")
    is_media = backend_type == "MediaVideo" or (
        isinstance(video.filename, str) and Path(video.filename).suffix.lower() in VIDEO_SUFFIXES)
    if is_media:
        if not isinstance(video.filename, str) or not Path(video.filename).is_file():
            raise InputNotFoundError(f"input video not found: {name!r}")
        info = probe_video(video.filename)
        items = _work_items(_select_video_frames(cfg.frames, None, info.n_frames, name))
        kind = "video"
    else:
        items = _work_items(_select_video_frames(cfg.frames, video, _frame_count(video), name))
        kind = "hdf5" if backend_type == "HDF5Video" else "images"
    return InputPlan(kind=kind, source_path=None, videos=[video], items=items,
                     frame_selection_method=_selection_method(cfg, None))


def _check_videos_exist(videos: Iterable[sio.Video], source: str) -> None:
    missing = [video_name(v) for v in videos if not v.exists()]
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
        spans, repeats, outside = fr.unique_spans(cfg.frames, len(frames_list))
        if repeats:
            log.warning("repeated --frames positions processed once", repeats=repeats)
        if outside:
            log.warning("--frames positions beyond the labeled frames skipped (without "
                        "--video_index, --frames counts labeled frames, not video frames)",
                        n_labeled_frames=len(frames_list), skipped=outside)
        frames_list = [frames_list[p] for p in fr.iter_spans(spans)]
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

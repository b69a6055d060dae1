"""NWB export: predictions as ndx-pose ``PoseEstimation`` containers on the video's real frame times.

Layout of a file written by :func:`write_nwb`:

- ``/general``: session metadata and a ``Subject`` from :class:`NwbMetadata`. NWB files hold one
  subject; with nothing given, the subject is written with what is known (``subject_id``
  ``"unknown"``, sex ``"U"``, age ``"P0D/"``: zero days or older, i.e. unknown) so the file is
  valid and nwbinspector finds nothing critical, and its description says to pass
  ``--nwb_subject_id`` / ``--nwb_species`` / ``--nwb_sex`` / ``--nwb_age``.
- ``/acquisition/video_<i>``: an external-file ``ImageSeries`` per video file (path relative to
  the NWB file, as NWB recommends), carrying the time of every frame of the video, linked as each
  ``PoseEstimation``'s ``source_video``, with a ``camera_<i>`` device.
- ``/processing/behavior``: a ``Skeletons`` container (one ``Skeleton`` per skeleton) and the
  ``PoseEstimation`` containers, one ``PoseEstimationSeries`` per node (data ``(T, 2)`` in
  pixels, NaN for a node not found; confidence: the point scores, NaN there too). Rows are the
  frames where that container's animal has an instance; frames with no instance have no row.

  - Tracked data (a tracker's tracks, or a multi-class model's identities): one
    ``PoseEstimation`` per track, named ``track=<track name>``.
  - Untracked data with at most one instance per frame (single animal): one ``PoseEstimation``
    named ``PoseEstimation``.
  - Untracked multi-animal data: instances carry no identity, so they are not dressed up as
    tracks. Each frame's instances are ranked by instance score and the ``k``-th goes to
    ``untracked_instance_<k>``; the container's description says that its rows in different
    frames need not be the same animal (a rank, not an identity).

  A file made from several videos adds ``_video<i>`` to these names, and several skeletons add
  ``_<skeleton>``. Only predicted instances are written (user-labelled ones are training data).

Frame times: frame ``i`` (the ``i``-th frame in presentation order, as sleapflow's and sleap-io's
readers number frames) is at the ``i``-th smallest packet timestamp of the container's first video
stream, read by demuxing (no frame is decoded), in seconds of the container's clock. When the
packets carry no timestamps the time is ``i / fps`` from the stream's frame rate; when there is no
video file to read (image folders, a moved video) it is ``i / frame_rate`` with
:attr:`NwbMetadata.frame_rate`, and without that ``i`` seconds, which every series description
then states, because no frame time is known. ``session_start_time`` defaults to the container's
``creation_time`` tag (else the time of export), taken as the moment of the video's time zero.

Provenance (models, options, versions) goes into each ``PoseEstimation``'s ``description`` as a
JSON line after the human-readable text: ndx-pose defines that field as the description of the
estimation procedure, it travels with the pose data (a file may gather estimations from several
runs), and ``/general/notes`` is about the session rather than one estimation. ``scorer`` is a
short model summary, ``source_software`` is ``sleapflow`` with its version.

A labels object with no predicted instance is written as a valid file with the skeletons and no
``PoseEstimation`` (a run that found no animal is a result, not an error).
"""

from __future__ import annotations

import json
import os
import re
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import sleap_io as sio
import yaml

from sleapflow.errors import ConfigError, InputNotFoundError
from sleapflow.logs import get_logger
from sleapflow.outputs.provenance import MODEL_TYPE_NAMES, sleapflow_version

__all__ = ("NO_METADATA", "NwbMetadata", "load_nwb_metadata", "video_frame_times", "write_nwb")

log = get_logger(__name__)

#: ISO 8601 duration, as NWB wants ages (``P90D``, ``P2Y6M``, ``PT12H``).
_DURATION = re.compile(r"P(?=\d|T\d)(\d+(\.\d+)?Y)?(\d+(\.\d+)?M)?(\d+(\.\d+)?W)?(\d+(\.\d+)?D)?"
                       r"(T(?=\d)(\d+(\.\d+)?H)?(\d+(\.\d+)?M)?(\d+(\.\d+)?S)?)?")
_SEXES = ("M", "F", "U", "O")
#: C. elegans is the one species NWB records differently (male / hermaphrodite).
_C_ELEGANS = ("Caenorhabditis elegans", "C. elegans")
_C_ELEGANS_SEXES = ("XO", "XX")
_SUBJECT_HINT = ("pass --nwb_subject_id, --nwb_species, --nwb_sex and --nwb_age (or --nwb_metadata "
                 "FILE) to describe the animal")
_REFERENCE_FRAME = ("(x, y) in pixels of the video frame: x to the right, y down, (0, 0) at the "
                    "centre of the top-left pixel")
_CONFIDENCE = ("The point's score from the network (peak value of its confidence map, or the "
               "model's point score); NaN where the node was not found.")


def _is_duration(text: str) -> bool:
    if _DURATION.fullmatch(text):
        return True
    # NWB's extension for unknown or bounded ages: "P90D/P120D", "P90D/" (90 days or older).
    if text.count("/") == 1:
        low, high = text.split("/")
        return bool((not low or _DURATION.fullmatch(low)) and (not high or _DURATION.fullmatch(high))
                    and (low or high))
    return False


def _parse_time(text: str) -> datetime:
    try:
        when = datetime.fromisoformat(text)
    except ValueError as exc:
        raise ConfigError(f"NWB session_start_time {text!r} is not an ISO 8601 date and time "
                          "(e.g. 2024-05-01T09:30:00+02:00)") from exc
    # A time without a zone is read as local time, as the person typing it meant.
    return when if when.tzinfo is not None else when.astimezone()


class NwbMetadata(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Subject and session metadata for an NWB export; every field is optional.

    ``species``: a Latin binomial (``Mus musculus``) or an NCBI taxonomy URL. ``sex``: ``M``,
    ``F``, ``U`` (unknown) or ``O`` (other); ``XO`` / ``XX`` for C. elegans. ``age``: an ISO 8601
    duration (``P90D``) or a range (``P90D/P120D``, ``P90D/``). ``session_start_time``: ISO 8601,
    with a time zone (a time without one is local time). ``frame_rate``: frames per second for
    inputs without frame times (image folders); a video's own times always win.
    """

    subject_id: str | None = None
    species: str | None = None
    sex: str | None = None
    age: str | None = None
    subject_description: str | None = None
    session_description: str | None = None
    session_id: str | None = None
    session_start_time: str | None = None
    experimenter: str | tuple[str, ...] | None = None
    lab: str | None = None
    institution: str | None = None
    experiment_description: str | None = None
    identifier: str | None = None
    frame_rate: float | None = None

    def __post_init__(self) -> None:
        # Checked here so a bad value is a usage error before inference, not a CRITICAL finding
        # in the file afterwards.
        if self.sex is not None:
            allowed = _C_ELEGANS_SEXES if self.species in _C_ELEGANS else _SEXES
            if self.sex not in allowed:
                raise ConfigError(f"NWB sex {self.sex!r} is not one of {', '.join(allowed)} "
                                  "(M male, F female, U unknown, O other)")
        if self.age is not None and not _is_duration(self.age):
            raise ConfigError(f"NWB age {self.age!r} is not an ISO 8601 duration: write e.g. P90D "
                              "(90 days), P12W, P2Y, or a range P90D/P120D")
        if self.session_start_time is not None:
            when = _parse_time(self.session_start_time)
            if when > datetime.now(UTC):
                raise ConfigError(f"NWB session_start_time {self.session_start_time!r} is in "
                                  "the future")
        if self.frame_rate is not None and not (self.frame_rate > 0 and np.isfinite(self.frame_rate)):
            raise ConfigError(f"NWB frame_rate must be a positive number, not {self.frame_rate!r}")
        for name in ("subject_id", "identifier"):
            if getattr(self, name) == "":
                raise ConfigError(f"NWB {name} may not be empty")

    def merged(self, over: NwbMetadata) -> NwbMetadata:
        """These values with every field that ``over`` sets replacing them (explicit options
        over a metadata file's values)."""
        changes = {f: v for f in self.__struct_fields__ if (v := getattr(over, f)) is not None}
        return msgspec.structs.replace(self, **changes)


def load_nwb_metadata(path: str | Path) -> NwbMetadata:
    """:class:`NwbMetadata` from a JSON or YAML file holding one mapping of field names.

    YAML is read with every scalar as text, so ``subject_id: 001`` stays ``"001"`` and a date
    stays the text written; ``null``, ``~`` or nothing leave a field unset.
    """
    path = Path(path)
    if not path.is_file():
        raise InputNotFoundError(f"NWB metadata file {str(path)!r} does not exist")
    try:
        text = path.read_text(encoding="utf-8")
        # BaseLoader keeps every scalar as text and builds no Python objects.
        raw = json.loads(text) if path.suffix.lower() == ".json" else yaml.load(text, Loader=yaml.BaseLoader)
    except (OSError, UnicodeDecodeError, ValueError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read NWB metadata file {str(path)!r}: {exc}") from exc
    if raw is None or raw == "":
        raw = {}
    if not isinstance(raw, Mapping):
        raise ConfigError(f"NWB metadata file {str(path)!r} must hold a mapping of fields, "
                          f"not {type(raw).__name__}")
    valid = NwbMetadata.__struct_fields__
    unknown = [str(k) for k in raw if k not in valid]
    if unknown:
        raise ConfigError(f"NWB metadata file {str(path)!r}: unknown key {unknown[0]!r}; valid "
                          f"keys: {', '.join(valid)}")
    values = {k: _text(k, v) for k, v in raw.items() if v not in (None, "", "~", "null", "Null", "NULL")}
    try:
        # Not strict: YAML's text "30" is a frame rate of 30.
        return msgspec.convert(values, NwbMetadata, strict=False)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"NWB metadata file {str(path)!r}: {exc}") from exc


def _text(key: str, value: Any) -> Any:
    """A JSON number given for a text field (``"subject_id": 7``) as that text."""
    if key != "frame_rate" and isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return value


def video_frame_times(path: str | Path) -> tuple[np.ndarray | None, float | None]:
    """The time in seconds of every frame of the first video stream, by frame index, and the
    stream's frame rate; times are ``None`` where some packet carries no timestamp.

    Packets are demuxed, not decoded, so this reads a long video at disk speed. Packets arrive
    in decode order (B-frames come before the frames they follow), so frame ``i`` is at the
    ``i``-th smallest timestamp.
    """
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        rate = stream.average_rate or stream.guessed_rate
        fps = float(rate) if rate else None
        time_base = stream.time_base
        if time_base is None:
            return None, fps
        pts: list[int] = []
        for packet in container.demux(stream):
            # The demuxer ends with an empty flush packet; discard-flagged packets never decode.
            if not packet.size or getattr(packet, "is_discard", False):
                continue
            if packet.pts is None:
                return None, fps
            pts.append(packet.pts)
        times = np.sort(np.asarray(pts, dtype=np.int64)).astype(np.float64) * float(time_base)
        return times, fps


def _known_fps(video: sio.Video) -> float | None:
    try:
        fps = video.fps
    except (AttributeError, KeyError, OSError, RuntimeError, ValueError):  # a backend that cannot say
        return None
    return float(fps) if fps and np.isfinite(fps) and fps > 0 else None


class _VideoClock:
    """Frame index → seconds for one video, and what the times were taken from."""

    def __init__(self, video: sio.Video, frame_rate: float | None) -> None:
        import av

        self.path: Path | None = None
        self.times: np.ndarray | None = None
        self.fps: float | None = None
        self.created: datetime | None = None
        self.shape: tuple[int, int] | None = None
        self.source: str = ""
        # An embedded (.pkg.slp) video keeps the original's frame numbers: read that one.
        source = getattr(video, "source_video", None)
        for candidate in (video.filename, getattr(source, "filename", None)):
            if isinstance(candidate, str) and Path(candidate).is_file():
                try:
                    self._read(Path(candidate))
                    break
                except (av.error.FFmpegError, OSError, IndexError, ValueError) as exc:
                    log.warning("cannot read the video's frame times for NWB", video=candidate,
                                error=str(exc))
                    self.path, self.times, self.fps = None, None, None
        if self.times is not None:
            self.source = "the video container's frame timestamps"
            if not self.fps:  # no rate in the stream: its typical frame step, for extrapolation
                steps = np.diff(self.times)
                self.fps = float(1.0 / np.median(steps)) if len(steps) and np.median(steps) > 0 else 1.0
        elif self.fps:
            self.source = f"frame index / {self.fps:g} fps (the video's packets carry no timestamps)"
        elif fps := _known_fps(video):
            self.fps = fps
            self.source = f"frame index / {fps:g} fps (the frame rate sleap-io records for the video)"
        elif frame_rate:
            self.fps = frame_rate
            self.source = f"frame index / {frame_rate:g} fps (given frame_rate; the input has no frame times)"
        else:
            self.fps = 1.0
            self.source = ("frame index as seconds: the input has no frame times (no video file) "
                           "and no frame_rate was given")
            log.warning("NWB timestamps are frame indices: the input has no frame times; give a "
                        "frame rate (NwbMetadata.frame_rate) for real times", video=str(video.filename))

    def _read(self, path: Path) -> None:
        import av

        self.times, self.fps = video_frame_times(path)
        self.path = path
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            self.shape = (int(stream.width), int(stream.height))
            tag = container.metadata.get("creation_time") or stream.metadata.get("creation_time")
        if tag:
            try:
                created = datetime.fromisoformat(tag)
            except ValueError:
                created = None
            if created is not None:
                created = created if created.tzinfo else created.replace(tzinfo=UTC)
                # A camera with a wrong clock must not make the file claim a future session.
                self.created = created if created <= datetime.now(UTC) else None

    def __call__(self, frame_idx: np.ndarray) -> np.ndarray:
        idx = np.asarray(frame_idx, dtype=np.int64)
        assert self.fps is not None
        out = idx / self.fps
        if self.times is not None and len(self.times):
            inside = idx < len(self.times)
            out[inside] = self.times[idx[inside]]
            # Past the last packet (should not happen): continue from it at the frame rate.
            step = 1.0 / self.fps
            out[~inside] = self.times[-1] + (idx[~inside] - (len(self.times) - 1)) * step
        return out


def _name(text: str) -> str:
    """An NWB object name: no ``/`` (a path separator in HDF5) and no ``:``."""
    return re.sub(r"[/:]", "_", text) or "_"


def _scorer(provenance: Mapping[str, Any]) -> str:
    """``sleapflow top_down (model_a, model_b), tracked``: what made the poses, in one line."""
    source = provenance.get("input_provenance") if "model_paths" not in provenance else provenance
    source = source if isinstance(source, Mapping) else {}
    parts = ["sleapflow"]
    model_type = source.get("model_type")
    if model_type:
        parts.append(str(MODEL_TYPE_NAMES.get(str(model_type), model_type)))
    models = source.get("model_paths") or []
    if isinstance(models, str):
        models = [models]
    names = [Path(str(m)).name for m in models]
    text = " ".join(parts) + (f" ({', '.join(names)})" if names else "")
    if provenance.get("tracking_config"):
        text += ", tracked"
    return text


def _provenance_json(provenance: Mapping[str, Any]) -> str:
    return json.dumps(dict(provenance), default=str, separators=(",", ":"))


class _Group:
    """The rows of one ``PoseEstimation``: frame indices and each row's points and scores."""

    def __init__(self, name: str, skeleton: sio.Skeleton, kind: str, label: str) -> None:
        self.name = name
        self.skeleton = skeleton
        self.kind = kind
        self.label = label
        self.frames: list[int] = []
        self.points: list[np.ndarray] = []


def _groups(labels: sio.Labels, video: sio.Video, suffix: str) -> list[_Group]:
    frames = sorted((lf for lf in labels.labeled_frames if lf.video is video), key=lambda lf: lf.frame_idx)
    many_skeletons = len(labels.skeletons) > 1
    per_frame = [list(lf.predicted_instances) for lf in frames]
    untracked_max = max((sum(i.track is None for i in insts) for insts in per_frame), default=0)
    any_tracked = any(i.track is not None for insts in per_frame for i in insts)
    single = untracked_max == 1 and not any_tracked
    # Keyed by the track object, not its name: two tracks may share a name.
    groups: dict[tuple[str, int, str], _Group] = {}
    taken: set[str] = set()

    def group(kind: str, label: str, key: int, skeleton: sio.Skeleton) -> _Group:
        full_key = (kind, key, skeleton.name)
        if full_key not in groups:
            base = {"track": f"track={label}", "untracked": f"untracked_instance_{label}",
                    "single": "PoseEstimation"}[kind]
            name = _name(base + (f"_{skeleton.name}" if many_skeletons else "") + suffix)
            unique, n = name, 1
            while unique in taken or unique == "Skeletons":
                n += 1
                unique = f"{name}_{n}"
            taken.add(unique)
            groups[full_key] = _Group(unique, skeleton, kind, label)
        return groups[full_key]

    for lf, insts in zip(frames, per_frame):
        untracked = [i for i in insts if i.track is None]
        # Ranked by score, so slot k means "the k-th most confident instance" by the same rule
        # in every frame; NaN scores last.
        untracked.sort(key=lambda i: -i.score if np.isfinite(i.score) else np.inf)
        rank = {id(inst): k for k, inst in enumerate(untracked)}
        for inst in insts:
            if inst.track is not None:
                g = group("track", inst.track.name, id(inst.track), inst.skeleton)
            elif single:
                g = group("single", "", 0, inst.skeleton)
            else:
                k = rank[id(inst)]
                g = group("untracked", str(k), k, inst.skeleton)
            g.frames.append(int(lf.frame_idx))
            g.points.append(np.asarray(inst.numpy(scores=True), dtype=np.float64))
    order = {id(t): i for i, t in enumerate(labels.tracks)}
    kinds = {"single": 0, "track": 1, "untracked": 2}
    return [groups[k] for k in sorted(groups, key=lambda k: (
        kinds[k[0]], order.get(k[1], len(order)) if k[0] == "track" else k[1], k[2]))]


def _description(group: _Group, video_name: str, clock: _VideoClock, provenance: str) -> str:
    if group.kind == "track":
        what = (f"Poses of the animal with track (identity) {group.label!r}")
    elif group.kind == "single":
        what = "Poses of the one predicted instance per frame"
    else:
        what = (f"Untracked predictions: in each frame, the instance ranked {int(group.label) + 1} "
                "by instance score. These carry no identity: rows in different frames need not "
                "be the same animal")
    return (f"{what}, skeleton {group.skeleton.name!r}, in video {video_name}. Timestamps: "
            f"{clock.source}.\nsleapflow provenance (JSON): {provenance}")


def _clocks(labels: sio.Labels, metadata: NwbMetadata) -> list[_VideoClock]:
    return [_VideoClock(video, metadata.frame_rate) for video in labels.videos]


def _session_start(metadata: NwbMetadata, clocks: Sequence[_VideoClock]) -> tuple[datetime, str]:
    """The session's start, and (when it was not given) where it came from, for the record."""
    if metadata.session_start_time is not None:
        return _parse_time(metadata.session_start_time), ""
    for clock in clocks:
        if clock.created is not None:
            return clock.created, " Session start time: the video file's creation_time tag."
    return (datetime.now(UTC).replace(microsecond=0),
            " Session start time: the time of export (the recording time is not known).")


def _subject(metadata: NwbMetadata) -> Any:
    from pynwb.file import Subject

    told = any(getattr(metadata, f) is not None for f in ("subject_id", "species", "sex", "age"))
    description = metadata.subject_description
    if description is None and not told:
        description = f"Not described to sleapflow: {_SUBJECT_HINT}."
    return Subject(subject_id=metadata.subject_id or "unknown", species=metadata.species,
                   sex=metadata.sex or "U", age=metadata.age or "P0D/", description=description)


def _video_label(video: sio.Video) -> str:
    filename = video.filename
    if isinstance(filename, list):
        return f"{Path(filename[0]).parent.name or 'images'} (an image sequence)" if filename else "images"
    return Path(filename).name


#: No metadata given: the defaults the module docstring describes.
NO_METADATA = NwbMetadata()


def write_nwb(labels: sio.Labels, path: Path, metadata: NwbMetadata = NO_METADATA, *,
              software_version: str | None = None) -> None:
    """Write the predicted instances of ``labels`` to a new NWB file at ``path`` (see the module
    docstring for the layout); ``software_version`` defaults to this sleapflow's version."""
    from ndx_pose import PoseEstimation, PoseEstimationSeries, Skeleton, Skeletons
    from pynwb import NWBHDF5IO, NWBFile
    from pynwb.image import ImageSeries

    path = Path(path)
    version = software_version or sleapflow_version()
    clocks = _clocks(labels, metadata)
    names = ", ".join(_video_label(v) for v in labels.videos) or "no video"
    experimenter = metadata.experimenter
    if isinstance(experimenter, str):
        experimenter = (experimenter,)
    start, start_note = _session_start(metadata, clocks)
    nwbfile = NWBFile(
        session_description=metadata.session_description
        or f"Animal poses estimated by sleapflow {version} from {names}.{start_note}",
        identifier=metadata.identifier or str(uuid.uuid4()),
        session_start_time=start,
        session_id=metadata.session_id,
        experimenter=list(experimenter) if experimenter else None,
        lab=metadata.lab,
        institution=metadata.institution,
        experiment_description=metadata.experiment_description,
        subject=_subject(metadata),
    )

    skeletons: dict[str, Any] = {}
    groups_by_video = []
    suffix_many = len(labels.videos) > 1
    for i, video in enumerate(labels.videos):
        groups_by_video.append(_groups(labels, video, f"_video{i}" if suffix_many else ""))
    used = list(labels.skeletons)
    used += [g.skeleton for gs in groups_by_video for g in gs if g.skeleton not in used]
    behavior = None
    if used:
        behavior = nwbfile.create_processing_module(
            name="behavior", description="Animal pose estimates (ndx-pose) made by sleapflow.")
        for sk in used:
            if len(sk.node_names) > 256:
                raise ConfigError(f"skeleton {sk.name!r} has {len(sk.node_names)} nodes; NWB "
                                  "(ndx-pose) stores skeleton edges as 8-bit node numbers, so at "
                                  "most 256: use another --output_format")
            edges = np.asarray(sk.edge_inds, dtype=np.uint8).reshape(-1, 2)
            skeletons[sk.name] = Skeleton(name=_name(sk.name), nodes=[_name(n) for n in sk.node_names],
                                          edges=edges)
        behavior.add(Skeletons(skeletons=list(skeletons.values())))

    provenance = _provenance_json(labels.provenance)
    scorer = _scorer(labels.provenance)
    for i, (video, clock, groups) in enumerate(zip(labels.videos, clocks, groups_by_video)):
        if not groups or behavior is None:
            continue
        device = nwbfile.create_device(name=f"camera_{i}",
                                       description=f"The camera that recorded {_video_label(video)}.")
        source_video = None
        if clock.path is not None and clock.times is not None:
            source_video = ImageSeries(
                name=f"video_{i}", description=f"The video the poses were estimated from: "
                f"{clock.path.name}; timestamps: {clock.source}.",
                external_file=[_relative(clock.path, path)], format="external", starting_frame=[0],
                dimension=list(clock.shape) if clock.shape else None,
                device=device, unit="n.a.", **_timing(clock.times), **_count(clock.times))
            nwbfile.add_acquisition(source_video)
        for group in groups:
            behavior.add(_pose_estimation(
                group, clock, PoseEstimation, PoseEstimationSeries, skeleton=skeletons[group.skeleton.name],
                description=_description(group, _video_label(video), clock, provenance),
                scorer=scorer, version=version, device=device, source_video=source_video))

    with NWBHDF5IO(str(path), "w") as io:
        io.write(nwbfile)


def _relative(video: Path, nwb_path: Path) -> str:
    """The video's path relative to the NWB file's folder (NWB's advice, so the pair can move
    together); absolute where no relative path exists (another drive)."""
    try:
        return Path(os.path.relpath(video.resolve(), nwb_path.resolve().parent)).as_posix()
    except ValueError:
        return video.resolve().as_posix()


def _timing(times: np.ndarray) -> dict[str, Any]:
    """``timestamps``, or ``starting_time`` and ``rate`` where the times are evenly spaced (to
    a nanosecond): the same times, stored as NWB recommends for a constant rate."""
    steps = np.diff(times)
    if len(times) > 2 and steps[0] > 0 and np.abs(steps - steps[0]).max() <= 1e-9:
        return {"starting_time": float(times[0]), "rate": float(1.0 / steps[0])}
    return {"timestamps": times}


def _count(times: np.ndarray) -> dict[str, Any]:
    """An external video's frame count, which NWB needs when a rate stands in for timestamps."""
    return {"num_samples": len(times)} if "rate" in _timing(times) else {}


def _pose_estimation(group: _Group, clock: _VideoClock, pose_estimation: Any, series_type: Any, *,
                     skeleton: Any, description: str, scorer: str, version: str, device: Any,
                     source_video: Any) -> Any:
    frames = np.asarray(group.frames, dtype=np.int64)
    points = np.stack(group.points)  # (T, nodes, 3): x, y, score
    if len(frames) == 1:
        # A one-row (1, 2) array reads as transposed to NWB tools (nwbinspector calls it
        # CRITICAL), so a lone row gets its neighbouring frame (the one before, or after frame
        # 0) as a NaN row: true, as this animal has no instance there.
        gap = np.full_like(points, np.nan)
        if frames[0] > 0:
            frames, points = np.array([frames[0] - 1, frames[0]]), np.concatenate([gap, points])
        else:
            frames, points = np.array([0, 1]), np.concatenate([points, gap])
    timing = _timing(clock(frames))
    series = []
    first: Any = None
    for n, node in enumerate(group.skeleton.node_names):
        xy = points[:, n, :2]
        score = points[:, n, 2].copy()
        score[~np.isfinite(xy).all(axis=1)] = np.nan
        s = series_type(
            name=_name(node), description=f"Position of {node!r}.", data=xy, unit="pixels",
            reference_frame=_REFERENCE_FRAME, confidence=score, confidence_definition=_CONFIDENCE,
            # Every node of one animal shares its frames: one timestamps array, linked.
            **(timing if first is None else ({"timestamps": first} if "timestamps" in timing
                                             else timing)))
        if first is None:
            first = s
        series.append(s)
    kwargs: dict[str, Any] = {"name": group.name, "pose_estimation_series": series,
                              "description": description, "scorer": scorer,
                              "source_software": "sleapflow", "source_software_version": version,
                              "skeleton": skeleton, "device": device}
    if source_video is not None:
        kwargs["source_video"] = source_video
    return pose_estimation(**kwargs)

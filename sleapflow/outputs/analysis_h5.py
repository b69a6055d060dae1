"""SLEAP's analysis HDF5 (``--output_format analysis_h5``), laid out as SLEAP 1.x writes it.

What a file holds, as SLEAP's own export has it (h5py shapes; MATLAB reads them transposed):

=================  ===============================  ========  =================================
dataset            shape on disk                    dtype     notes
=================  ===============================  ========  =================================
tracks             (n_tracks, 2, n_nodes, n_frames) float64   x, y; NaN where nothing was found
track_occupancy    (n_frames, n_tracks)             uint8     1 where the track has an instance
point_scores       (n_tracks, n_nodes, n_frames)    float64   NaN for user instances
instance_scores    (n_tracks, n_frames)             float64   NaN for user instances
tracking_scores    (n_tracks, n_frames)             float64   NaN for user instances
track_names        (n_tracks,)                      S<len>    empty float64 (0,) when untracked
node_names         (n_nodes,)                       S<len>
edge_names         (n_edges, 2)                     S<len>    source, destination
edge_inds          (n_edges, 2)                     int32     node indices of edge_names
labels_path        scalar                           vlen str  the .slp written beside it
video_path         scalar                           vlen str  the video's path (first image)
video_ind          scalar                           int32     the video's index in the labels
provenance         scalar                           vlen str  the labels' provenance as JSON
=================  ===============================  ========  =================================

The five arrays are gzip (level 9) compressed, the rest are not, and nothing carries attributes,
again as in SLEAP's files. The frame axis runs from frame 0 to the video's last labelled frame
(empty frames a run kept count), not to the end of the video: a run over frames 0-99 of a long
video gives 100 frames. Tracks with no instance in the video are left out, as SLEAP leaves them.
Where SLEAP writes no file (a video with no labelled frame), this module writes one with an
empty frame axis, so a run that found nothing still leaves the output it was asked for.

Untracked data follow SLEAP's rule: when the labels have no tracks, the file has one unnamed slot
(``track_names`` empty) holding one instance per frame, so no reader takes an instance's place in
its frame for an identity. Where a frame holds several untracked instances, SLEAP keeps whichever
it met last; this module keeps the highest-scoring one (user instances first, as SLEAP prefers
them), and :func:`analysis_arrays` counts the instances left out (``left_out``) so a caller can
say so; keeping every animal of untracked multi-animal data needs tracking, or the CSV layout
written by :mod:`sleapflow.outputs.csv_table`. When the labels have tracks, instances without
one are left out, also as SLEAP does, and counted the same way.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import sleap_io as sio

from sleapflow.errors import ConfigError

__all__ = (
    "AnalysisArrays", "analysis_arrays", "exportable", "preferred_groups", "video_path_of",
    "write_analysis_h5",
)


@dataclass(frozen=True, slots=True)
class AnalysisArrays:
    """One video's instances as SLEAP's analysis matrices, in SLEAP's in-memory axis order
    (frame first; the file stores each array transposed)."""

    #: The skeleton's node names.
    node_names: tuple[str, ...]
    #: Names of the occupied tracks, one per slot; empty when the labels are untracked.
    track_names: tuple[str, ...]
    #: Whether slots are tracks (else at most one untracked slot).
    tracked: bool
    #: (n_tracks, n_frames) uint8.
    occupancy: np.ndarray
    #: (n_frames, n_nodes, 2, n_tracks) float64.
    locations: np.ndarray
    #: (n_frames, n_nodes, n_tracks) float64.
    point_scores: np.ndarray
    #: (n_frames, n_tracks) float64.
    instance_scores: np.ndarray
    #: (n_frames, n_tracks) float64.
    tracking_scores: np.ndarray
    #: Instances that have no slot: extra untracked ones, or untracked ones in tracked labels.
    left_out: int


def exportable(labels: sio.Labels, video: int) -> tuple[sio.Video, sio.Skeleton]:
    """The video and skeleton an export of ``labels.videos[video]`` reads; a
    :class:`~sleapflow.errors.ConfigError` when the labels lack either."""
    return _pick_video(labels, video), _skeleton(labels)


def _pick_video(labels: sio.Labels, video: int) -> sio.Video:
    if not labels.videos:
        raise ConfigError("the predictions hold no video, so there is nothing to export per video")
    if not 0 <= video < len(labels.videos):
        raise ConfigError(f"video index {video} is out of range: the predictions hold "
                          f"{len(labels.videos)} video(s)")
    return labels.videos[video]


def _skeleton(labels: sio.Labels) -> sio.Skeleton:
    if not labels.skeletons:
        raise ConfigError("the predictions have no skeleton, so their points cannot be exported")
    return labels.skeletons[0]


def video_path_of(video: sio.Video) -> str:
    """The path SLEAP records for a video: its file, or the first image of an image sequence."""
    name = video.filename
    if isinstance(name, list | tuple):
        return str(name[0]) if name else ""
    return str(name) if name is not None else ""


def preferred_groups(frame: sio.LabeledFrame) -> dict[sio.Track | None, list[sio.Instance]]:
    """The frame's instances grouped by track (``None``: untracked), user instances replacing
    predicted ones of the same track, as SLEAP's exports prefer what a person labelled."""
    groups: dict[sio.Track | None, list[sio.Instance]] = {}
    for inst in frame.instances:
        groups.setdefault(inst.track, []).append(inst)
    for track, members in groups.items():
        users = [i for i in members if not isinstance(i, sio.PredictedInstance)]
        if users:
            groups[track] = users
    return groups


def _best(members: Sequence[sio.Instance]) -> sio.Instance:
    # max() keeps the first of equal scores, so ties resolve in the frame's own order; a user
    # instance has no score, and groups never mix the two kinds (see preferred_groups).
    return max(members, key=lambda i: float(getattr(i, "score", 0.0)))


def _track_order(labels: sio.Labels, frames: Sequence[sio.LabeledFrame]) -> list[sio.Track]:
    # The labels' own order first; a track only an instance knows of (labels built by hand and
    # not re-scanned) still gets a slot rather than being dropped.
    order = list(labels.tracks)
    known = set(map(id, order))
    for frame in frames:
        for inst in frame.instances:
            if inst.track is not None and id(inst.track) not in known:
                order.append(inst.track)
                known.add(id(inst.track))
    return order


def analysis_arrays(labels: sio.Labels, video: int = 0) -> AnalysisArrays:
    """SLEAP's analysis matrices for ``labels.videos[video]`` (see the module's notes)."""
    vid, skeleton = exportable(labels, video)
    nodes = tuple(node.name for node in skeleton.nodes)
    frames = sorted(labels.find(vid), key=lambda lf: lf.frame_idx)
    tracks = _track_order(labels, frames)
    tracked = bool(tracks)
    slot_of = {id(t): i for i, t in enumerate(tracks)}
    n_slots = len(tracks) if tracked else 1
    n_frames = frames[-1].frame_idx + 1 if frames else 0
    n_nodes = len(nodes)

    occupancy = np.zeros((n_slots, n_frames), dtype=np.uint8)
    locations = np.full((n_frames, n_nodes, 2, n_slots), np.nan, dtype=np.float64)
    point_scores = np.full((n_frames, n_nodes, n_slots), np.nan, dtype=np.float64)
    instance_scores = np.full((n_frames, n_slots), np.nan, dtype=np.float64)
    tracking_scores = np.full((n_frames, n_slots), np.nan, dtype=np.float64)
    left_out = 0

    for frame in frames:
        f = frame.frame_idx
        for track, members in preferred_groups(frame).items():
            if tracked and track is None:
                left_out += len(members)
                continue
            slot = slot_of[id(track)] if track is not None else 0
            inst = _best(members)
            left_out += len(members) - 1
            occupancy[slot, f] = 1
            locations[f, :, :, slot] = inst.numpy()
            if isinstance(inst, sio.PredictedInstance):
                point_scores[f, :, slot] = inst.points["score"]
                instance_scores[f, slot] = inst.score
                tracking_scores[f, slot] = inst.tracking_score

    keep = occupancy.any(axis=1)
    names = tuple(t.name for t in tracks) if tracked else ()
    return AnalysisArrays(
        node_names=nodes,
        track_names=tuple(n for n, k in zip(names, keep) if k),
        tracked=tracked,
        occupancy=occupancy[keep],
        locations=locations[..., keep],
        point_scores=point_scores[..., keep],
        instance_scores=instance_scores[..., keep],
        tracking_scores=tracking_scores[..., keep],
        left_out=left_out,
    )


def _names(values: Sequence[str] | Sequence[tuple[str, str]]) -> np.ndarray:
    # SLEAP hands h5py a list of byte strings, which becomes fixed-length S<n>; an empty list
    # becomes an empty float64 array, and readers that test len() rely on neither more nor less.
    if not values:
        return np.zeros(0, dtype=np.float64)
    return np.array([
        v.encode() if isinstance(v, str) else tuple(s.encode() for s in v) for v in values
    ])


def write_analysis_h5(labels: sio.Labels, path: Path, *, labels_path: str, video: int = 0) -> None:
    """Write ``labels.videos[video]``'s predictions to ``path`` as SLEAP's analysis HDF5.

    ``labels_path`` is the ``.slp`` written beside it, recorded as SLEAP records its source.
    The file is replaced if it exists; callers wanting an atomic replace write to a temporary
    path and rename it.
    """
    vid, skeleton = exportable(labels, video)
    arrays = analysis_arrays(labels, video)
    edges = [(e.source.name, e.destination.name) for e in skeleton.edges]
    edge_inds = (np.array(skeleton.edge_inds, dtype=np.int32).reshape(-1, 2) if edges
                 else np.zeros(0, dtype=np.float64))
    matrices = {
        "tracks": arrays.locations,
        "track_occupancy": arrays.occupancy,
        "point_scores": arrays.point_scores,
        "instance_scores": arrays.instance_scores,
        "tracking_scores": arrays.tracking_scores,
    }
    with h5py.File(path, "w") as f:
        f.create_dataset("track_names", data=_names(arrays.track_names))
        f.create_dataset("node_names", data=_names(arrays.node_names))
        f.create_dataset("edge_names", data=_names(edges))
        f.create_dataset("edge_inds", data=edge_inds)
        for name, matrix in matrices.items():
            # Transposed for MATLAB's column-major reading, as SLEAP stores them.
            f.create_dataset(name, data=matrix.T, compression="gzip", compression_opts=9)
        f.create_dataset("labels_path", data=str(labels_path), dtype=h5py.string_dtype())
        f.create_dataset("video_path", data=video_path_of(vid),
                         dtype=h5py.string_dtype())
        f.create_dataset("video_ind", data=np.int32(video))
        f.create_dataset("provenance", data=json.dumps(dict(labels.provenance), default=str),
                         dtype=h5py.string_dtype())

"""``--output_format csv``: predictions as a CSV table in SLEAP's layout or DeepLabCut's.

``sleap`` (``--csv_format sleap``, the default): SLEAP's analysis CSV columns, in its order::

    track,frame_idx,instance.score,<node>.x,<node>.y,<node>.score,...

one row per instance, frames in order and, within a frame, tracked instances in track order
before untracked ones; nodes in skeleton order. ``track`` is the track's name, empty for an
untracked instance; scores are empty for user-labelled instances, and a point not found is an
empty x and y. Untracked multi-animal data keep every animal: several rows share a
``frame_idx`` with an empty ``track``, so nothing presents an instance's place in its frame as
an identity. Where a person labelled an animal (a user instance) the predicted instance of the
same track in that frame is not written, as SLEAP's export prefers user labels. SLEAP builds
its CSV from the analysis HDF5's matrices, so it has one row per track per frame (one per frame
when untracked) and skips instances with no point; this layout writes every instance instead.

``dlc`` (``--csv_format dlc``): DeepLabCut's predictions table, one row per frame from frame 0
to the video's last labelled frame (the analysis HDF5's frame axis), the first column the frame
number, and header rows as DeepLabCut writes them::

    scorer,      sleapflow, sleapflow, sleapflow,  ...
    individuals, <track>,   <track>,   <track>,    ...   (tracked data only)
    bodyparts,   <node>,    <node>,    <node>,     ...
    coords,      x,         y,         likelihood, ...

Tracked data use the multi-animal layout (four header rows), one individual per track that has
an instance in the video, named after the track. Untracked data use the single-animal layout
(three header rows): DeepLabCut's ``individuals`` are identities, and an instance's place in its
frame is not one, so as in SLEAP's analysis HDF5 each frame holds one animal, the
highest-scoring (:func:`sleapflow.outputs.analysis_h5.analysis_arrays` counts the others as
``left_out``). Read them with ``pandas.read_csv(path, header=[0, 1, 2, 3], index_col=0)`` or
``header=[0, 1, 2]``.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import sleap_io as sio

from sleapflow.errors import ConfigError
from sleapflow.outputs.analysis_h5 import analysis_arrays, exportable, preferred_groups

__all__ = ("CSV_LAYOUTS", "write_csv")

#: The layouts ``--csv_format`` names.
CSV_LAYOUTS = ("sleap", "dlc")


def _cell(value: float, missing: str = "") -> str:
    # repr round-trips a float exactly; NaN is an empty cell, which pandas reads back as NaN.
    value = float(value)
    return missing if math.isnan(value) else repr(value)


def _dlc_cell(value: float) -> str:
    # A written NaN, not an empty cell: pandas takes a first data row whose cells after the
    # frame number are all empty (a run that starts with frames without an animal) for the
    # index's name row, and drops it with its frame.
    return _cell(value, "NaN")


def _sleap_rows(labels: sio.Labels, video: int) -> Iterable[list[str]]:
    vid = labels.videos[video]
    skeleton = labels.skeletons[0]
    header = ["track", "frame_idx", "instance.score"]
    for node in skeleton.nodes:
        header += [f"{node.name}.x", f"{node.name}.y", f"{node.name}.score"]
    yield header
    rank = {id(t): i for i, t in enumerate(labels.tracks)}
    for frame in sorted(labels.find(vid), key=lambda lf: lf.frame_idx):
        groups = preferred_groups(frame)
        # Untracked last; a track the labels do not list still comes before them.
        order = sorted(groups, key=lambda t: (t is None, rank.get(id(t), len(rank))))
        for track in order:
            for inst in groups[track]:
                predicted = isinstance(inst, sio.PredictedInstance)
                xy = inst.numpy()
                scores = inst.points["score"] if predicted else np.full(len(xy), np.nan)
                row = ["" if track is None else track.name, str(frame.frame_idx),
                       _cell(inst.score) if predicted else ""]
                for (x, y), s in zip(xy, scores):
                    row += [_cell(x), _cell(y), _cell(s)]
                yield row


def _dlc_rows(labels: sio.Labels, video: int, scorer: str) -> Iterable[list[str]]:
    arrays = analysis_arrays(labels, video)
    coords = ("x", "y", "likelihood")
    individuals: Sequence[str | None] = arrays.track_names if arrays.tracked else (None,)
    columns = [(ind, node, c) for ind in individuals for node in arrays.node_names for c in coords]
    yield ["scorer"] + [scorer] * len(columns)
    if arrays.tracked:
        yield ["individuals"] + [str(ind) for ind, _, _ in columns]
    yield ["bodyparts"] + [node for _, node, _ in columns]
    yield ["coords"] + [c for _, _, c in columns]
    n_slots = arrays.locations.shape[-1]
    for f in range(arrays.locations.shape[0]):
        row = [str(f)]
        for slot in range(len(individuals)):
            for n in range(len(arrays.node_names)):
                if slot < n_slots:
                    x, y = arrays.locations[f, n, :, slot]
                    row += [_dlc_cell(x), _dlc_cell(y), _dlc_cell(arrays.point_scores[f, n, slot])]
                else:
                    # Untracked labels with no instance at all: the columns stay, all missing.
                    row += ["NaN", "NaN", "NaN"]
        yield row


def write_csv(labels: sio.Labels, path: Path, layout: str = "sleap", *, video: int = 0,
              scorer: str = "sleapflow") -> None:
    """Write ``labels.videos[video]``'s instances to ``path`` as a CSV table in ``layout``
    (``"sleap"`` or ``"dlc"``; see the module's notes). ``scorer`` fills DeepLabCut's scorer
    row. The file is replaced if it exists; callers wanting an atomic replace write to a
    temporary path and rename it."""
    if layout not in CSV_LAYOUTS:
        raise ConfigError(f"--csv_format {layout!r} is not one of {', '.join(CSV_LAYOUTS)}")
    # A bad video index or a missing skeleton fails here, before the file is opened.
    exportable(labels, video)
    rows = _dlc_rows(labels, video, scorer) if layout == "dlc" else _sleap_rows(labels, video)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        csv.writer(handle, lineterminator="\n").writerows(rows)

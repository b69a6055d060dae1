"""SLEAP's analysis HDF5 layout as its documentation gives it, checked field by field (shared by
the layout tests and the output matrix test)."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np

# SLEAP's analysis HDF5 as its documentation describes it (write_tracking_h5's module notes, the
# "Analysis examples" notebook): in memory "tracks" is frames * nodes * 2 * tracks, scores
# frames * nodes * tracks and frames * tracks, occupancy tracks * frames; every matrix is stored
# transposed ("column-major as expected by MATLAB") and gzip-compressed; names are byte strings;
# the metadata are scalars. Shapes are given for F frames, T tracks, N nodes, E edges.
Shape = Callable[[int, int, int, int], tuple[int, ...]]
MATRICES: dict[str, Shape] = {
    "tracks": lambda F, T, N, E: (T, 2, N, F),
    "track_occupancy": lambda F, T, N, E: (F, T),
    "point_scores": lambda F, T, N, E: (T, N, F),
    "instance_scores": lambda F, T, N, E: (T, F),
    "tracking_scores": lambda F, T, N, E: (T, F),
}
MATRIX_DTYPES = {"tracks": "float64", "track_occupancy": "uint8", "point_scores": "float64",
                 "instance_scores": "float64", "tracking_scores": "float64"}
NAMES: dict[str, Shape] = {
    "track_names": lambda F, T, N, E: (T,),
    "node_names": lambda F, T, N, E: (N,),
    "edge_names": lambda F, T, N, E: (E, 2),
}
SCALARS = {"labels_path": "str", "video_path": "str", "provenance": "str", "video_ind": "int32"}
ALL = set(MATRICES) | set(NAMES) | {"edge_inds"} | set(SCALARS)


def check_layout(path: Path, frames: int, tracks: int, nodes: int, edges: int, *,
                 untracked: bool = False) -> None:
    """Compare the file with the documented layout: names, shapes, dtypes, compression.
    Untracked data have a slot in the matrices but no name: ``track_names`` is empty."""
    dims = (frames, tracks, nodes, edges)
    with h5py.File(path, "r") as f:
        assert set(f.keys()) == ALL
        assert dict(f.attrs) == {}
        for name, shape in MATRICES.items():
            d = f[name]
            assert (name, d.shape) == (name, shape(*dims))
            assert d.dtype == np.dtype(MATRIX_DTYPES[name]), name
            assert (d.compression, d.compression_opts) == ("gzip", 9), name
            assert dict(d.attrs) == {}, name
        for name, shape in NAMES.items():
            d = f[name]
            expected = (0,) if untracked and name == "track_names" else shape(*dims)
            assert d.compression is None, name
            if math.prod(expected):
                # Fixed-length byte strings, as h5py stores a list of numpy byte strings.
                assert (d.shape, d.dtype.kind) == (expected, "S"), name
            else:
                # An empty list, as SLEAP hands it to h5py, is an empty float64 dataset.
                assert (d.shape, d.dtype) == ((0,), np.float64), name
        inds = f["edge_inds"]
        assert inds.shape == ((edges, 2) if edges else (0,))
        assert inds.dtype == (np.int32 if edges else np.float64)
        for name, kind in SCALARS.items():
            d = f[name]
            assert d.shape == (), name
            if kind == "str":
                assert h5py.check_string_dtype(d.dtype).length is None, name  # variable length
            else:
                assert d.dtype == np.dtype(kind), name

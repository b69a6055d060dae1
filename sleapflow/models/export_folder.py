"""Export folders (sleap-nn's layout, ``sleapflow export``): recognised, read, and their
networks loaded for ``sleapflow track -m DIR`` (the network class, which needs torch, is
:mod:`sleapflow.models.exported_network`).

The folder has sleap-nn 0.3.5's layout, so ``sleap-nn predict --runtime onnx`` and other readers
of its ``export_metadata.json`` run it:

- ``model.onnx``: input ``image`` uint8 (batch, C, height, width); the graph normalises,
  applies the input scale, runs the network(s), finds the peaks and, for top-down, cuts the
  crops; its outputs have sleap-nn's names and shapes for the model type.
- ``export_metadata.json``: sleap-nn's metadata fields (also embedded in the ONNX file's
  ``metadata_props`` as ``sleap_nn_metadata``, beside the ``training_config`` text).
- ``training_config.yaml`` (top-down: ``training_config_centroid.yaml`` and
  ``training_config_centered_instance.yaml``).

Beside them, ``sleapflow/<model_type>/`` holds each network alone (``network.onnx``: float maps
before the heads' final activations, batch/height/width dynamic) with its training config. That
is what ``track`` runs: the raw maps go through sleapflow's own peak finding, refinement, crops
and grouping, so a folder reproduces its checkpoints' predictions, whatever the options. The
writer is :mod:`sleapflow.backends.export_writer`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sleapflow.errors import ModelLoadError
from sleapflow.models.schema import ModelConfig

__all__ = (
    "FORMAT_VERSION", "METADATA_FIELDS", "METADATA_FILE", "NETWORKS_DIR", "NETWORK_CONFIG",
    "NETWORK_FILE", "ONNX_FILE", "TRT_FILE", "exported_network_dirs",
    "is_exported_folder", "is_network_folder", "network_config", "read_export_metadata",
)

METADATA_FILE = "export_metadata.json"
ONNX_FILE = "model.onnx"
TRT_FILE = "model.trt"
NETWORKS_DIR = "sleapflow"
NETWORK_FILE = "network.onnx"
NETWORK_CONFIG = "training_config.yaml"
#: The sleap-nn release whose export folder this one follows (its ``sleap_nn_version`` field).
FORMAT_VERSION = "0.3.5"

#: Every field of sleap-nn 0.3.5's ``export_metadata.json`` (its ``ExportMetadata``).
METADATA_FIELDS = (
    "anchor_part", "backbone", "backbone_source", "background_fill", "burn_in", "centroid_method",
    "checkpoint_path", "class_names", "crop_centering", "crop_size", "edge_inds", "embedding_dim",
    "export_format", "export_timestamp", "input_channels", "input_dtype", "input_scale",
    "max_batch_size", "max_height", "max_instances", "max_peaks_per_node", "max_width",
    "model_name", "model_type", "n_classes", "n_edges", "n_nodes", "node_names", "normalization",
    "normalize", "output_stride", "peak_threshold", "precision", "sleap_nn_version",
    "training_config_embedded", "training_config_hash",
)

# --------------------------------------------------------------------------------------------
# Reading a folder
# --------------------------------------------------------------------------------------------


def is_exported_folder(path: str | Path) -> bool:
    """Whether ``path`` is an export folder (sleap-nn's or sleapflow's): metadata + a model file."""
    p = Path(path).expanduser()
    try:
        return p.is_dir() and (p / METADATA_FILE).is_file() and (
            (p / ONNX_FILE).is_file() or (p / TRT_FILE).is_file())
    except OSError:  # a name too long to look up: not a folder; the model loader says why
        return False


def is_network_folder(path: str | Path) -> bool:
    """Whether ``path`` is one network of a sleapflow export (``network.onnx`` + its config)."""
    p = Path(path)
    try:
        return p.is_dir() and (p / NETWORK_FILE).is_file() and (p / NETWORK_CONFIG).is_file()
    except OSError:  # as above
        return False


def read_export_metadata(path: str | Path) -> dict[str, Any]:
    """The folder's ``export_metadata.json`` as a dict (a clear error if it is not JSON)."""
    f = Path(path) / METADATA_FILE
    try:
        data = json.loads(f.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelLoadError(f"cannot read the export metadata {str(f)!r}: {exc}") from None
    if not isinstance(data, dict):
        raise ModelLoadError(f"{str(f)!r} is not an export metadata file (not a JSON object)")
    return data


def exported_network_dirs(path: str | Path) -> list[Path]:
    """The network folders ``track`` runs from an export folder, centroid first.

    A folder ``sleap-nn export`` wrote has only the baked graph, whose fixed peak rule and crops
    cannot reproduce a checkpoint's predictions; that is refused with what to do instead.
    """
    p = Path(path).expanduser()
    root = p / NETWORKS_DIR
    dirs = sorted((d for d in root.iterdir() if is_network_folder(d)),
                  key=lambda d: (d.name != "centroid", d.name)) if root.is_dir() else []
    if not dirs:
        meta = read_export_metadata(p)
        raise ModelLoadError(
            f"{str(p)!r} is an export folder without sleapflow's networks (written by sleap-nn "
            f"{meta.get('sleap_nn_version') or '?'}, model type {meta.get('model_type') or '?'}): "
            "its graph has peak finding baked in, which sleapflow does not run; pass the "
            "checkpoint folder(s) it came from, or re-export them with `sleapflow export`")
    return dirs


def network_config(path: Path) -> ModelConfig:
    """The training config of one network folder of an export."""
    from sleapflow.models.normalise import config_from_yaml

    return config_from_yaml(path / NETWORK_CONFIG)


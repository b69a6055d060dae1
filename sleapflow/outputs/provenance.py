"""Provenance written into every output file: sleap-nn's keys (spec §4.1), sleapflow's values.

Keys appear only when their input is known, as in the reference. Versions: ``sleapflow_version``
and ``sleap_io_version``; there is deliberately no ``sleap_nn_version`` key, because sleap-nn did
not produce the file (see docs/COMPATIBILITY.md, "Provenance").
"""

from __future__ import annotations

import platform
import sys
from collections.abc import Mapping, Sequence
from datetime import datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import sleap_io as sio

from sleapflow.logs import get_logger
from sleapflow.outputs.remote import is_url

__all__ = (
    "FRAME_SELECTION_METHODS", "HEAD_TYPES", "MODEL_TYPE_NAMES", "add_seed_names", "dist_version",
    "inference_provenance", "sleapflow_version", "system_info", "tracking_only_provenance",
)


log = get_logger(__name__)

#: The reference's ``model_type`` names (its predictor class) for each graph. A lone
#: centered-instance model runs sleap-nn's top-down predictor on ground-truth centroids, so it is
#: ``top_down`` there too; ``track`` has no centroid-only predictor, so that keeps its own name.
MODEL_TYPE_NAMES = {
    "single_instance": "single_instance",
    "topdown": "top_down",
    "centroid": "centroid",
    "centered_instance": "top_down",
    "bottomup": "bottom_up",
    "multiclass_bottomup": "bottom_up_multi_class",
    "multiclass_topdown": "top_down_multi_class",
    "multiclass_centered_instance": "top_down_multi_class",
}

#: ``frame_selection.method`` values, in the reference's precedence order.
FRAME_SELECTION_METHODS = ("labeled", "suggested", "predicted", "specified", "all")


def sleapflow_version() -> str:
    try:
        return metadata.version("sleapflow")
    except metadata.PackageNotFoundError:
        return "0+unknown"


def system_info(*, full: bool = True) -> dict[str, Any]:
    """Python, platform and torch facts; ``full`` adds the CUDA version and the GPUs.

    Where no GPU can be present (:func:`~sleapflow.backends.device.accelerator_possible`) and
    the run has not loaded torch (ONNX Runtime on a warm cache), torch's facts come from its
    build file and torch stays unloaded.
    """
    from sleapflow.backends.device import accelerator_possible, torch_build

    if "torch" not in sys.modules and not accelerator_possible():
        build = torch_build()
        info = {"python_version": sys.version.split()[0], "platform": platform.platform(),
                "pytorch_version": build["version"]}
        if full:
            info["cuda_version"] = build["cuda"]
        info["accelerator"] = "cpu"
        if full:
            info["gpu_count"] = 0
        return info
    import torch

    info = {
        "python_version": sys.version.split()[0],
        "platform": platform.platform(),
        "pytorch_version": torch.__version__,
    }
    cuda = torch.cuda.is_available()
    mps = bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())
    if full:
        info["cuda_version"] = torch.version.cuda
    info["accelerator"] = "cuda" if cuda else ("mps" if mps else "cpu")
    if full:
        info["gpu_count"] = torch.cuda.device_count() if cuda else 0
        if cuda:
            info["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return info


def _clean(value: Any) -> Any:
    """JSON-friendly: None-valued keys dropped, Paths as POSIX strings, tuples as lists."""
    if isinstance(value, Mapping):
        return {str(k): _clean(v) for k, v in value.items() if v is not None}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, Path):
        return value.as_posix()
    if hasattr(value, "item") and callable(value.item):  # numpy scalars
        return value.item()
    return value


def _abs_posix(path: str | Path) -> str:
    if is_url(path):
        return str(path)  # a URL as the user gave it (Path would fold its '//')
    return Path(path).resolve().as_posix()


def inference_provenance(*, started: datetime, finished: datetime, model_paths: Sequence[str | Path],
                         graph: str, source_file: str | None, input_labels: sio.Labels | None,
                         frame_selection_method: str, frames_processed: int,
                         inference_config: Mapping[str, Any],
                         tracking_config: Mapping[str, Any] | None,
                         device: str, runtime: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The provenance dict of an inference run (``Labels.provenance`` of the output).

    ``source_file`` is the path the user gave (None for in-memory inputs); ``input_labels`` the
    loaded input ``.slp`` (its provenance is kept as ``input_provenance``); ``frames_processed``
    counts the output's frames before ``--no_empty_frames`` removes any.
    """
    if frame_selection_method not in FRAME_SELECTION_METHODS:
        raise ValueError(f"unknown frame selection method {frame_selection_method!r}")
    prov: dict[str, Any] = {
        "inference_start_timestamp": started.isoformat(),
        "inference_end_timestamp": finished.isoformat(),
        "inference_runtime_seconds": (finished - started).total_seconds(),
        "sleapflow_version": sleapflow_version(),
        "sleap_io_version": sio.__version__,
        "model_paths": [_abs_posix(p) for p in model_paths],
        "model_type": MODEL_TYPE_NAMES.get(graph, graph),
        "graph": graph,
    }
    if source_file is not None:
        prov["source_file"] = _abs_posix(source_file)
    if input_labels is not None and input_labels.provenance:
        prov["input_provenance"] = _clean(dict(input_labels.provenance))
        if "filename" in input_labels.provenance:
            prov["source_labels"] = input_labels.provenance["filename"]
    prov["frame_selection"] = {"method": frame_selection_method,
                               "frames_processed": int(frames_processed)}
    prov["inference_config"] = _clean(inference_config)
    if tracking_config is not None:
        prov["tracking_config"] = _clean(tracking_config)
    prov["device"] = device
    if runtime is not None:
        # Which network runtime ran, what was asked for and why (``auto`` resolves per device).
        prov["runtime"] = dict(runtime)
    try:
        prov["system_info"] = system_info()
    except Exception as exc:  # never fail a finished run over diagnostics (the reference omits it)
        log.debug("system_info unavailable", error=str(exc))
    return prov


#: Graph → the head(s) its models carry, as training configs name them.
HEAD_TYPES = {
    "single_instance": "single_instance",
    "topdown": ["centroid", "centered_instance"],
    "centroid": "centroid",
    "centered_instance": "centered_instance",
    "bottomup": "bottomup",
    "multiclass_bottomup": "multi_class_bottomup",
    "multiclass_topdown": ["centroid", "multi_class_topdown"],
    "multiclass_centered_instance": "multi_class_topdown",
}

#: Run settings a track-only output takes from the inference run that made its input.
_INHERITED = ("model_paths", "model_type", "head_type", "peak_threshold", "batch_size",
              "integral_refinement", "max_instances")


def _total_frames(videos: Sequence[sio.Video]) -> int | None:
    try:
        return int(sum(len(v) for v in videos))
    except Exception:  # a video whose file has gone cannot say its length; leave the key out
        return None


def add_seed_names(prov: dict[str, Any], labels: sio.Labels) -> dict[str, Any]:
    """``prov`` with the seed documentation's names added at the top level (sleap-nn's keys kept).

    The seed documents ``labels.provenance.get("runtime_sec")``, ``source_path``,
    ``peak_threshold``, ... while sleap-nn 0.3.5 writes other, partly nested names; both are
    written so either reader gets values. ``labels`` is the output (its videos give
    ``source_video_paths`` and ``total_frames``). Tracking settings become ``tracker_*`` keys.
    A track-only output takes the inference settings of its input's provenance, where known.
    """
    out = dict(prov)
    tracking_only = "tracking_start_timestamp" in prov
    prefix = "tracking" if tracking_only else "inference"
    system = prov.get("system_info") or {}
    inference = prov.get("inference_config") or {}
    selection = prov.get("frame_selection") or {}
    from sleapflow.backends.device import torch_build

    build = torch_build()
    names: dict[str, Any] = {
        "timestamp_start": prov.get(f"{prefix}_start_timestamp"),
        "timestamp_end": prov.get(f"{prefix}_end_timestamp"),
        "runtime_sec": prov.get(f"{prefix}_runtime_seconds"),
        "sleap_io_version": prov.get("sleap_io_version", sio.__version__),
        "torch_version": system.get("pytorch_version", build["version"]),
        "model_paths": prov.get("model_paths"),
        "model_type": prov.get("model_type"),
        "head_type": HEAD_TYPES.get(str(prov.get("graph"))),
        "source_path": prov.get("source_file"),
        "source_video_paths": [_abs_posix(v.filename) for v in labels.videos
                               if isinstance(v.filename, str)],
        "frame_selection_method": selection.get("method", "all" if tracking_only else None),
        "frames_predicted": selection.get("frames_processed", prov.get("frames_processed")),
        "total_frames": _total_frames(labels.videos),
        "peak_threshold": inference.get("peak_threshold"),
        "batch_size": inference.get("batch_size"),
        "integral_refinement": inference.get("integral_refinement", "none" if inference else None),
        "max_instances": inference.get("max_instances"),
        "device": prov.get("device", system.get("accelerator")),
        "python_version": system.get("python_version", sys.version.split()[0]),
        "cuda_version": system.get("cuda_version", build["cuda"]),
        "gpu_names": system.get("gpus", []),
    }
    if tracking_only:
        upstream = prov.get("input_provenance") or {}
        for key in _INHERITED:
            if names.get(key) is None and upstream.get(key) is not None:
                names[key] = upstream[key]
    for key, value in (prov.get("tracking_config") or {}).items():
        names[f"tracker_{key}"] = value
    # Every documented name is written, null where the value is unknown or unset (no
    # --max_instances limit, no CUDA), so a reader finds the key it was told to read.
    out.update(names)
    return out


def dist_version(dist: str) -> str | None:
    """The installed version of distribution ``dist``, or None when it is not installed."""
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def tracking_only_provenance(labels: sio.Labels, tracking_config: Mapping[str, Any], *,
                             start: datetime, end: datetime, frames_processed: int,
                             source_file: str | None = None) -> dict[str, Any]:
    """The provenance dict of a track-only run, with sleap-nn's keys (§4.2 of the spec).

    ``tracking_config`` is the tracker's legacy dict (``TrackerConfig.legacy_provenance()``);
    ``sleapflow_version`` takes the place of ``sleap_nn_version``.
    """
    prov: dict[str, Any] = {
        "tracking_start_timestamp": start.isoformat(),
        "tracking_end_timestamp": end.isoformat(),
        "tracking_runtime_seconds": (end - start).total_seconds(),
        "sleapflow_version": dist_version("sleapflow"),
        "sleap_io_version": sio.__version__,
        "pipeline_type": "tracking_only",
    }
    if source_file is not None:
        prov["source_file"] = _abs_posix(source_file)  # absolute, as inference records it
    input_prov = dict(labels.provenance or {})
    if input_prov:
        prov["input_provenance"] = input_prov
        if "filename" in input_prov:
            prov["source_labels"] = input_prov["filename"]
    prov["frames_processed"] = frames_processed
    prov["tracking_config"] = dict(tracking_config)
    prov["system_info"] = {
        "python_version": platform.python_version(),
        "platform": platform.platform(),
        # Read from the package metadata: a track-only run never imports torch.
        "pytorch_version": dist_version("torch"),
        "accelerator": "cpu",
    }
    return prov

"""Provenance metadata written into every output file (the reference's keys, sleapflow's values)."""

from __future__ import annotations

import platform
import sys
from datetime import datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import sleap_io as sio
import torch

#: The reference's ``model_type`` names for each graph.
MODEL_TYPE_NAMES = {
    "single_instance": "single_instance",
    "topdown": "top_down",
    "centroid": "centroid",
    "centered_instance": "centered_instance",
    "bottomup": "bottom_up",
    "multiclass_bottomup": "bottom_up_multi_class",
    "multiclass_topdown": "top_down_multi_class",
    "multiclass_centered_instance": "top_down_multi_class",
}


def sleapflow_version() -> str:
    try:
        return metadata.version("sleapflow")
    except metadata.PackageNotFoundError:
        return "0+unknown"


def system_info(*, full: bool = True) -> dict[str, Any]:
    info: dict[str, Any] = {
        "python_version": sys.version.split()[0],
        "platform": platform.platform(),
        "pytorch_version": torch.__version__,
    }
    cuda = torch.cuda.is_available()
    mps = bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())
    info["accelerator"] = "cuda" if cuda else ("mps" if mps else "cpu")
    if full:
        info["cuda_version"] = torch.version.cuda
        info["gpu_count"] = torch.cuda.device_count() if cuda else 0
        if cuda:
            info["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return info


def _clean(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items() if v is not None}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, Path):
        return value.as_posix()
    return value


def inference_provenance(*, started: datetime, finished: datetime, model_paths: list[Path],
                         graph: str, source_file: str | None, input_labels: sio.Labels | None,
                         frame_selection_method: str, frames_processed: int,
                         inference_config: dict[str, Any], tracking_config: dict[str, Any] | None,
                         device: str) -> dict[str, Any]:
    prov: dict[str, Any] = {
        "inference_start_timestamp": started.isoformat(),
        "inference_end_timestamp": finished.isoformat(),
        "inference_runtime_seconds": (finished - started).total_seconds(),
        "sleapflow_version": sleapflow_version(),
        "sleap_io_version": sio.__version__,
        "model_paths": [Path(p).resolve().as_posix() for p in model_paths],
        "model_type": MODEL_TYPE_NAMES.get(graph, graph),
        "graph": graph,
    }
    if source_file is not None:
        prov["source_file"] = Path(source_file).resolve().as_posix()
    if input_labels is not None and input_labels.provenance:
        prov["input_provenance"] = dict(input_labels.provenance)
        if "filename" in input_labels.provenance:
            prov["source_labels"] = input_labels.provenance["filename"]
    prov["frame_selection"] = {"method": frame_selection_method, "frames_processed": frames_processed}
    prov["inference_config"] = _clean(inference_config)
    if tracking_config is not None:
        prov["tracking_config"] = _clean(tracking_config)
    prov["device"] = device
    prov["system_info"] = system_info()
    return prov

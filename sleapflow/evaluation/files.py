"""Metric files: writing the ``.npz`` (+ JSON sibling), reading them back, and the summary."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from sleapflow.errors import ConfigError
from sleapflow.outputs.files import check_output_target

__all__ = (
    "check_metrics_paths", "format_summary", "headline", "json_safe", "load_metrics", "metrics_paths",
    "save_metrics", "write_metrics",
)


# Large per-pair arrays only useful offline; left out of the JSON sibling as sleap-nn does.
_JSON_PRUNE_KEYS: dict[str, tuple[str, ...]] = {"pck_metrics": ("pcks",)}


def json_safe(obj: Any) -> Any:
    """numpy → Python, arrays → nested lists, NaN/±Inf → None, keys → str."""
    if isinstance(obj, np.ndarray):
        return json_safe(obj.tolist())
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [json_safe(v) for v in obj]
    return obj


def metrics_paths(path: str | Path) -> tuple[Path, Path]:
    """The ``.npz`` and ``.json`` that ``--save_metrics path`` writes (numpy appends ``.npz``
    when missing; the JSON sibling uses the path as given, like sleap-nn)."""
    path = Path(path)
    return (path if str(path).endswith(".npz") else Path(f"{path}.npz")), path.with_suffix(".json")


def check_metrics_paths(path: str | Path) -> None:
    """Before any metric is computed: neither file may be a device, FIFO, socket or folder (a
    FIFO would block the write forever; a device would be replaced by a file)."""
    for target in (Path(path), *metrics_paths(path)):
        check_output_target(target, "--save_metrics")


def write_metrics(path: str | Path, metrics: dict[str, Any]) -> tuple[Path, Path]:
    path = Path(path)
    check_metrics_paths(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, metrics=metrics)
    npz_path, json_path = metrics_paths(path)
    safe = json_safe(metrics)
    for section, keys in _JSON_PRUNE_KEYS.items():
        if isinstance(safe.get(section), dict):
            for key in keys:
                safe[section].pop(key, None)
    with open(json_path, "w") as f:
        json.dump(safe, f)
    return npz_path, json_path


def save_metrics(metrics: dict[str, Any], path: str | Path) -> tuple[Path, Path]:
    """Write metrics as sleap-nn does: an ``.npz`` plus a JSON sibling.

    The ``.npz`` holds one key, ``metrics``, a pickled 0-d object array of the dict (numpy
    appends ``.npz`` if ``path`` lacks it). The JSON file is ``path.with_suffix(".json")``:
    the same dict with numpy values as plain numbers/lists, NaN/±Inf as ``null`` and
    ``pck_metrics.pcks`` left out. Parent folders are created.

    Returns:
        ``(npz_path, json_path)`` actually written.
    """
    return write_metrics(path, metrics)


def _find_metrics_file(model_dir: Path, split: str, dataset_idx: int) -> Path:
    for name in (f"metrics.{split}.{dataset_idx}.npz", f"{split}_{dataset_idx}_pred_metrics.npz"):
        if (model_dir / name).exists():
            return model_dir / name
    if split == "test":
        return _find_metrics_file(model_dir, "val", dataset_idx)
    return model_dir / f"metrics.{split}.{dataset_idx}.npz"


def load_metrics(path: str | Path, split: str = "test", dataset_idx: int = 0) -> dict[str, Any]:
    """Read metrics saved by ``save_metrics`` or by sleap-nn (also its old per-key layout).

    Args:
        path: A ``.npz`` file, or a model folder searched for ``metrics.{split}.{idx}.npz``,
            then ``{split}_{idx}_pred_metrics.npz``; ``test`` falls back to ``val``.
        split: Split name used for a model folder.
        dataset_idx: Dataset index used for a model folder.

    Raises:
        ConfigError: No metrics file exists there.
    """
    path = Path(path)
    file = path if path.suffix == ".npz" else _find_metrics_file(path, split, dataset_idx)
    if not file.exists():
        raise ConfigError(f"Metrics file not found at {file}.")
    with np.load(file, allow_pickle=True) as data:
        keys = list(data.keys())
        if "metrics" in keys:
            return data["metrics"].item()
        return {k: data[k].item() if data[k].ndim == 0 else data[k] for k in keys}


def headline(metrics: dict[str, Any]) -> dict[str, float | int]:
    """The numbers sleap-nn logs after an evaluation, as structured log fields."""
    dist = metrics["distance_metrics"]
    if "detection_metrics" in metrics:
        det = metrics["detection_metrics"]
        out = {k: det[k] for k in ("precision", "recall", "f1", "n_tp", "n_fp", "n_fn")}
        out.update({f"dist_{k}": dist[k] for k in ("avg", "p50", "p90", "p95", "p99")})
    else:
        voc, pck = metrics["voc_metrics"], metrics["pck_metrics"]
        vis = metrics["visibility_metrics"]
        out = {
            "mOKS": metrics["mOKS"]["mOKS"],
            "mAP": voc["oks_voc.mAP"],
            "mAR": voc["oks_voc.mAR"],
            **{f"dist_{k}": dist[k] for k in ("avg", "p50", "p95", "p99")},
            "mPCK": pck["mPCK"],
            "PCK@5": pck["PCK@5"],
            "PCK@10": pck["PCK@10"],
            "visibility_precision": vis["precision"],
            "visibility_recall": vis["recall"],
        }
    return {k: v if isinstance(v, int) else round(float(v), 4) for k, v in out.items()}


def _fmt(value: Any, digits: int) -> str:
    return f"{float(value):.{digits}f}"


def format_summary(metrics: dict[str, Any]) -> str:
    """A readable multi-line summary of ``Evaluator.evaluate()`` output (OKS or centroid mode).

    OKS mode lists mOKS, mAP/mAR (OKS VOC), average and p50/p95/p99 distance, mPCK, PCK@5/@10
    and visibility precision/recall, the lines sleap-nn logs.
    """
    dist = metrics["distance_metrics"]
    if "detection_metrics" in metrics:
        det = metrics["detection_metrics"]
        rows = [
            "Evaluation Results (centroid mode):",
            f"  Precision: {_fmt(det['precision'], 4)}",
            f"  Recall: {_fmt(det['recall'], 4)}",
            f"  F1: {_fmt(det['f1'], 4)}",
            f"  Counts: TP={det['n_tp']}, FP={det['n_fp']}, FN={det['n_fn']}",
            f"  Average Distance: {_fmt(dist['avg'], 2)} px",
        ]
        rows += [f"  dist.p{q}: {_fmt(dist[f'p{q}'], 2)} px" for q in (50, 90, 95, 99)]
        return "\n".join(rows)
    voc = metrics["voc_metrics"]
    pck = metrics["pck_metrics"]
    vis = metrics["visibility_metrics"]
    rows = [
        "Evaluation Results:",
        f"  mOKS: {_fmt(metrics['mOKS']['mOKS'], 4)}",
        f"  mAP (OKS VOC): {_fmt(voc['oks_voc.mAP'], 4)}",
        f"  mAR (OKS VOC): {_fmt(voc['oks_voc.mAR'], 4)}",
        f"  Average Distance: {_fmt(dist['avg'], 2)} px",
    ]
    rows += [f"  dist.p{q}: {_fmt(dist[f'p{q}'], 2)} px" for q in (50, 95, 99)]
    rows += [
        f"  mPCK: {_fmt(pck['mPCK'], 4)}",
        f"  PCK@5px: {_fmt(pck['PCK@5'], 4)}",
        f"  PCK@10px: {_fmt(pck['PCK@10'], 4)}",
        f"  Visibility Precision: {_fmt(vis['precision'], 4)}",
        f"  Visibility Recall: {_fmt(vis['recall'], 4)}",
    ]
    return "\n".join(rows)

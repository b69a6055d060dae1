"""``sleapflow info MODEL`` (what a model folder holds) and ``sleapflow system`` (versions and
devices): read-only reports, nothing is run."""

from __future__ import annotations

import csv
import platform
import sys
from pathlib import Path
from typing import Any

from sleapflow.models.loader import read_model_config, resolve_model_dir
from sleapflow.outputs.provenance import dist_version

__all__ = ("OPTIONAL_PACKAGES", "PACKAGES", "format_info", "format_system", "model_info", "system_report")


#: Packages whose versions ``system`` reports (distribution names): what every run imports.
PACKAGES = ("sleapflow", "torch", "sleap-io", "numpy", "av", "anyio", "msgspec", "scipy",
            "opencv-python-headless", "cyclopts", "structlog", "h5py", "pyyaml", "rich",
            "onnxruntime", "onnx", "platformdirs", "skia-python")

#: Packages that only some commands need, and the extra that installs each.
OPTIONAL_PACKAGES = {"onnxruntime-gpu": "gpu", "tensorrt": "tensorrt", "ray": "ray",
                     "starlette": "serve", "uvicorn": "serve", "websockets": "serve",
                     "h11": "serve", "fsspec": "remote", "s3fs": "remote"}


def _n_parameters(model_dir: Path, legacy: bool) -> int | None:
    if legacy:
        return None  # counting Keras weights needs the whole h5 walk; not worth it for a report
    from sleapflow.models.checkpoint import read_checkpoint

    return int(sum(t.numel() for t in read_checkpoint(model_dir / "best.ckpt").values()))


def _last_log_row(model_dir: Path) -> dict[str, str] | None:
    log = model_dir / "training_log.csv"
    if not log.is_file():
        return None
    with log.open(newline="") as f:
        rows = [r for r in csv.DictReader(f) if r.get("val_loss") or r.get("val/loss")]
    return rows[-1] if rows else None


def model_info(path: str | Path) -> dict[str, Any]:
    """A model folder's facts: type, backbone, skeleton, input, heads, size, training."""
    d = resolve_model_dir(path)
    cfg = read_model_config(d)
    weights = d / ("best_model.h5" if cfg.is_legacy else "best.ckpt")
    pre = cfg.preprocessing
    info: dict[str, Any] = {
        "path": d.resolve().as_posix(),
        "model_type": cfg.model_type,
        "format": "SLEAP <= 1.4 (Keras h5)" if cfg.is_legacy else "sleap-nn (best.ckpt)",
        "backbone": cfg.backbone_type,
        "max_stride": cfg.max_stride,
        "input_channels": cfg.in_channels,
        "input_scale": pre.scale,
        "max_height": pre.max_height,
        "max_width": pre.max_width,
        "crop_size": pre.crop_size,
        "skeleton": cfg.skeleton.name,
        "nodes": list(cfg.skeleton.node_names),
        "edges": [f"{a}-{b}" for a, b in cfg.skeleton.edges],
        "heads": {name: stride for name, stride in cfg.output_strides.items()},
        "sigma": cfg.confmaps.sigma,
        "anchor_part": cfg.confmaps.anchor_part,
        "weights_file": weights.name,
        "weights_mb": round(weights.stat().st_size / 1e6, 2),
        "parameters": _n_parameters(d, cfg.is_legacy),
    }
    if cfg.class_maps is not None or cfg.class_vectors is not None:
        classes = (cfg.class_maps or cfg.class_vectors).classes  # type: ignore[union-attr]
        info["classes"] = list(classes)
    row = _last_log_row(d)
    if row is not None:
        info["epochs_trained"] = int(float(row["epoch"])) + 1
        info["final_val_loss"] = float(row.get("val_loss") or row["val/loss"])
    info["training_config"] = (d / ("training_config.json" if cfg.is_legacy
                                    else "training_config.yaml")).as_posix()
    return info


def format_info(info: dict[str, Any]) -> str:
    """``model_info`` as aligned ``key: value`` lines."""
    width = max(len(k) for k in info)
    lines = []
    for key, value in info.items():
        if value is None:
            continue
        if isinstance(value, list):
            value = ", ".join(str(v) for v in value) or "(none)"
        elif isinstance(value, dict):
            value = ", ".join(f"{k} (stride {v})" for k, v in value.items())
        lines.append(f"{key:<{width}}  {value}")
    return "\n".join(lines)


def system_report() -> dict[str, Any]:
    """Python, platform, package versions and the devices torch can use."""
    import torch

    from sleapflow.backends.cache import cache_root

    report: dict[str, Any] = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "executable": sys.executable,
        "packages": {name: dist_version(name) for name in PACKAGES},
        "optional_packages": {name: dist_version(name) for name in OPTIONAL_PACKAGES},
        "export_cache": cache_root().as_posix(),
        "cuda_available": torch.cuda.is_available(),
        "cuda_version": torch.version.cuda,
        "cpu_threads": torch.get_num_threads(),
        "gpus": [],
        "mps_available": bool(getattr(torch.backends, "mps", None)
                              and torch.backends.mps.is_available()),
    }
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(i)
            report["gpus"].append({"index": i, "name": props.name,
                                   "memory_gb": round(props.total_memory / 2**30, 1)})
    report["auto_runtime"] = _auto_runtimes(report)
    return report


def _auto_runtimes(report: dict[str, Any]) -> dict[str, dict[str, str]]:
    """What ``--runtime auto`` resolves to on each device here, and why."""
    from sleapflow.backends.select import installed_runtimes, resolve_runtime

    devices = ["cpu"] + [f"cuda:{gpu['index']}" for gpu in report["gpus"]]
    if report["mps_available"]:
        devices.append("mps")
    out = {}
    for device in devices:
        choice = resolve_runtime("auto", device)
        out[device] = {"runtime": choice.name, "reason": choice.reason,
                       "installed": ", ".join(installed_runtimes(device.split(":", 1)[0]))}
    return out


def format_system(report: dict[str, Any]) -> str:
    """``system_report`` as readable lines (versions, then devices)."""
    lines = [f"Python    {report['python']} ({report['executable']})",
             f"Platform  {report['platform']}", "", "Packages:"]
    for name, version in report["packages"].items():
        lines.append(f"  {name:<24} {version or 'not installed'}")
    lines += ["", "Optional packages:"]
    for name, version in report["optional_packages"].items():
        extra = OPTIONAL_PACKAGES[name]
        hint = f'not installed (pip install "sleapflow[{extra}]")'
        lines.append(f"  {name:<24} {version or hint}")
    lines += ["", "Devices:", f"  cpu      {report['cpu_threads']} torch threads"]
    if report["cuda_available"]:
        for gpu in report["gpus"]:
            lines.append(f"  cuda:{gpu['index']}   {gpu['name']} ({gpu['memory_gb']} GB), "
                         f"CUDA {report['cuda_version']}")
    else:
        built = report["cuda_version"]
        lines.append("  cuda     not available" + (f" (torch built for CUDA {built})" if built else
                                                   " (this torch build is CPU-only)"))
    lines.append(f"  mps      {'available' if report['mps_available'] else 'not available'}")
    lines += ["", "Runtime picked by --runtime auto:"]
    for device, choice in report["auto_runtime"].items():
        lines.append(f"  {device:<8} {choice['runtime']} ({choice['reason']}; installed: "
                     f"{choice['installed']})")
    lines += ["", f"Export cache  {report['export_cache']}"]
    return "\n".join(lines)

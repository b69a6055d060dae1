"""``load_model``: config + architecture + weights (sleap-nn ckpt or legacy .h5) → eval module."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from sleapflow.errors import ConfigError, ModelLoadError
from sleapflow.lazy import lazy_module
from sleapflow.logs import get_logger
from sleapflow.models.normalise import config_from_yaml
from sleapflow.models.schema import ModelConfig

if TYPE_CHECKING:
    import torch
else:
    # Resolving folders and reading configs needs no torch; loading weights does.
    torch = lazy_module("torch")

__all__ = (
    "LoadedModel", "ModelCache", "apply_overrides", "load_model", "load_state_strict", "read_model_config",
    "resolve_model_dir",
)


log = get_logger(__name__)

_SHOW = 4  # how many offending keys an error message lists


# --------------------------------------------------------------------------------------------
# Folder resolution
# --------------------------------------------------------------------------------------------


def resolve_model_dir(path: str | Path) -> Path:
    """Resolve a model folder, its ``best.ckpt`` or its ``training_config.{yaml,json}`` to the folder."""
    p = Path(path).expanduser()
    try:
        exists = p.exists()
    except OSError as exc:  # a name too long for the file system, a folder that cannot be read
        text = str(p) if len(str(p)) <= 120 else f"{str(p)[:60]}...{str(p)[-60:]}"
        raise ModelLoadError(f"model path {text!r} ({len(str(p))} characters) cannot be used: "
                             f"{exc.strerror or exc}") from None
    from sleapflow.models.export_folder import is_network_folder

    if is_network_folder(p):  # one network of a `sleapflow export` folder
        return p
    if not exists:
        raise ModelLoadError(
            f"model path {str(p)!r} does not exist; pass a sleap-nn model folder (best.ckpt + "
            "training_config.yaml) or a SLEAP folder (best_model.h5 + training_config.json)"
        )
    if p.is_file():
        if p.suffix == ".ckpt" and p.name != "best.ckpt":
            # sleap-nn warns and still loads best.ckpt: the architecture comes from the folder.
            log.warning("non_best_checkpoint_ignored", path=str(p), loading=str(p.parent / "best.ckpt"))
        p = p.parent
    new_style = (p / "best.ckpt").is_file() and (p / "training_config.yaml").is_file()
    legacy = (p / "best_model.h5").is_file() and (p / "training_config.json").is_file()
    if new_style or legacy:
        return p
    if (p / "training_config.yaml").is_file():
        missing = "best.ckpt"
    elif (p / "training_config.json").is_file():
        missing = "best_model.h5"
    elif (p / "best.ckpt").is_file():
        missing = "training_config.yaml"
    elif (p / "best_model.h5").is_file():
        missing = "training_config.json"
    else:
        missing = "best.ckpt + training_config.yaml (or best_model.h5 + training_config.json)"
    raise ModelLoadError(
        f"model folder {str(p)!r} has no {missing}; pass the folder a sleap-nn training run wrote "
        "(best.ckpt + training_config.yaml) or a SLEAP model folder (best_model.h5 + "
        "training_config.json)"
    )



# --------------------------------------------------------------------------------------------
# Dispatch: which decoder reads a folder's config
# --------------------------------------------------------------------------------------------


def read_model_config(model_dir: str | Path) -> ModelConfig:
    """Read a model folder's training config (YAML, or legacy SLEAP JSON) without its weights."""
    d = resolve_model_dir(model_dir)
    if ((d / "training_config.yaml").is_file() and (d / "best.ckpt").is_file()) \
            or (d / "network.onnx").is_file():
        return config_from_yaml(d / "training_config.yaml")
    from sleapflow.models.legacy import read_legacy_config

    return read_legacy_config(d)


@dataclass(frozen=True)
class LoadedModel:
    """A ready-to-run model: ``module(x)`` maps float (B, C, H, W) in [0, 1] to head outputs."""

    path: Path
    config: ModelConfig
    module: torch.nn.Module


def _shape(t: torch.Tensor) -> tuple[int, ...]:
    return tuple(t.shape)


def _few(items: list[str]) -> str:
    more = f" (+{len(items) - _SHOW} more)" if len(items) > _SHOW else ""
    return ", ".join(items[:_SHOW]) + more


def _diff(
    ours: dict[str, torch.Tensor], theirs: dict[str, torch.Tensor]
) -> tuple[list[str], list[str], list[str]]:
    """(missing from theirs, unexpected in theirs, shape mismatches 'k: theirs vs ours')."""
    missing = [k for k in ours if k not in theirs]
    unexpected = [k for k in theirs if k not in ours]
    shapes = [
        f"{k}: {_shape(theirs[k])} vs {_shape(ours[k])}"
        for k in ours
        if k in theirs and _shape(theirs[k]) != _shape(ours[k])
    ]
    return missing, unexpected, shapes


def _describe(missing: list[str], unexpected: list[str], shapes: list[str]) -> str:
    parts = []
    if missing:
        parts.append(f"missing keys [{_few(missing)}]")
    if unexpected:
        parts.append(f"unexpected keys [{_few(unexpected)}]")
    if shapes:
        parts.append(f"shape mismatches (checkpoint vs config) [{_few(shapes)}]")
    return "; ".join(parts)


def load_state_strict(
    net: torch.nn.Module, state: dict[str, torch.Tensor], *, ckpt: Path, config: Path
) -> None:
    """``load_state_dict(strict=True)`` with a one-line error naming both sides on mismatch."""
    ours = net.state_dict()
    missing, unexpected, shapes = _diff(ours, state)
    if missing or unexpected or shapes:
        raise ModelLoadError(
            f"weights in {str(ckpt)!r} do not fit the architecture built from {str(config)!r}: "
            + _describe(missing, unexpected, shapes)
        )
    net.load_state_dict(state, strict=True)


def _override_file(path: str | Path, what: str) -> Path:
    p = Path(path).expanduser()
    if p.is_dir():
        p = p / "best.ckpt"
    if not p.is_file():
        raise ModelLoadError(f"{what} {str(p)!r} does not exist; pass a sleap-nn best.ckpt")
    return p


def _head_names_in(keys: list[str]) -> list[str]:
    """Head class names a state_dict's ``head_layers.*`` keys mention (for error messages)."""
    names: list[str] = []
    for k in keys:
        parts = k.split(".")
        if len(parts) > 2:
            name = "ClassVectorsHead" if parts[2].startswith("pre_classification") else parts[2]
            if name not in names:
                names.append(name)
    return names


def apply_overrides(
    net: torch.nn.Module,
    cfg: ModelConfig,
    *,
    backbone_ckpt_path: str | Path | None,
    head_ckpt_path: str | Path | None,
) -> None:
    """Load backbone and/or head weights from other sleap-nn checkpoints over the model's own.

    sleap-nn semantics: with both overrides the backbone checkpoint contributes only its
    ``backbone`` tensors; with a backbone override alone it contributes every tensor whose key
    the model has (heads included); a head override contributes its ``head_layers`` tensors.
    Unlike sleap-nn (``strict=False``, silent no-ops), the part being replaced must match the model
    key for key and shape for shape, so a checkpoint of another architecture or model type fails.
    """
    from sleapflow.models.checkpoint import read_checkpoint, strip_prefix

    ours = net.state_dict()
    model_cfg = Path(cfg.path) / ("training_config.json" if cfg.is_legacy else "training_config.yaml")
    updates: dict[str, torch.Tensor] = {}

    if backbone_ckpt_path is not None:
        bpath = _override_file(backbone_ckpt_path, "backbone checkpoint")
        theirs = strip_prefix(read_checkpoint(bpath))
        our_bb = {k: v for k, v in ours.items() if k.startswith("backbone.")}
        their_bb = {k: v for k, v in theirs.items() if k.startswith("backbone.")}
        missing, unexpected, shapes = _diff(our_bb, their_bb)
        if missing or unexpected or shapes:
            raise ModelLoadError(
                f"backbone checkpoint {str(bpath)!r} does not fit the {cfg.backbone_type} backbone "
                f"of {str(model_cfg)!r}: " + _describe(missing, unexpected, shapes)
            )
        updates.update(their_bb)
        if head_ckpt_path is None:
            # Mirror sleap-nn: the rest of the checkpoint is loaded where names match.
            for k, v in theirs.items():
                if k.startswith("backbone.") or k not in ours:
                    continue
                if _shape(v) != _shape(ours[k]):
                    raise ModelLoadError(
                        f"backbone checkpoint {str(bpath)!r} tensor {k} has shape {_shape(v)}, "
                        f"but {str(model_cfg)!r} needs {_shape(ours[k])}"
                    )
                updates[k] = v
        log.info("backbone_override_loaded", path=str(bpath), tensors=len(updates))

    if head_ckpt_path is not None:
        hpath = _override_file(head_ckpt_path, "head checkpoint")
        theirs = strip_prefix(read_checkpoint(hpath))
        our_h = {k: v for k, v in ours.items() if k.startswith("head_layers.")}
        their_h = {k: v for k, v in theirs.items() if k.startswith("head_layers.")}
        missing, unexpected, shapes = _diff(our_h, their_h)
        if missing or unexpected:
            raise ModelLoadError(
                f"head checkpoint {str(hpath)!r} has heads {_head_names_in(list(their_h))}, but "
                f"{str(model_cfg)!r} is a {cfg.model_type} model with heads {list(cfg.head_names)}"
            )
        if shapes:
            raise ModelLoadError(
                f"head checkpoint {str(hpath)!r} does not fit the heads of {str(model_cfg)!r}: "
                + _describe([], [], shapes)
            )
        updates.update(their_h)
        log.info("head_override_loaded", path=str(hpath), tensors=len(their_h))

    if updates:
        net.load_state_dict(updates, strict=False)


def _torch_device(device: str | torch.device) -> torch.device:
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ConfigError(f"invalid device {device!r}: {exc}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {device!r} requested but CUDA is not available")
    return dev


def load_model(
    path: str | Path,
    device: str | torch.device = "cpu",
    *,
    backbone_ckpt_path: str | Path | None = None,
    head_ckpt_path: str | Path | None = None,
) -> LoadedModel:
    """Load a sleap-nn model folder (or SLEAP ≤1.4 legacy folder) into an eval-mode module.

    The architecture comes from the training config, the weights from ``best.ckpt`` (restricted
    unpickler) or ``best_model.h5`` (h5py), loaded strictly; optional overrides come last.
    """
    dev = _torch_device(device)
    model_dir = resolve_model_dir(path)
    from sleapflow.models.export_folder import is_network_folder, network_config
    from sleapflow.models.exported_network import ExportedNetwork

    if is_network_folder(model_dir):  # a network of a `sleapflow export` folder: ONNX Runtime
        if backbone_ckpt_path is not None or head_ckpt_path is not None:
            raise ConfigError("--backbone_ckpt_path / --head_ckpt_path replace a checkpoint's "
                              "weights; an export folder has none: pass the checkpoint folder")
        if dev.type not in ("cpu", "cuda"):
            raise ConfigError(f"an export folder runs on ONNX Runtime (cpu or cuda), not {dev.type}")
        cfg = network_config(model_dir)
        module = ExportedNetwork(model_dir, cfg, dev, threads=torch.get_num_threads())
        return LoadedModel(path=model_dir, config=cfg, module=module)
    from sleapflow.models.checkpoint import read_checkpoint, strip_prefix
    from sleapflow.models.network import PoseNetwork

    cfg = read_model_config(model_dir)
    net = PoseNetwork(cfg)
    if cfg.is_legacy:
        from sleapflow.models.legacy import load_legacy_weights

        load_legacy_weights(net, model_dir / "best_model.h5")
    else:
        state = strip_prefix(read_checkpoint(model_dir / "best.ckpt"))
        load_state_strict(
            net, state, ckpt=model_dir / "best.ckpt", config=model_dir / "training_config.yaml"
        )
    if backbone_ckpt_path is not None or head_ckpt_path is not None:
        apply_overrides(
            net, cfg, backbone_ckpt_path=backbone_ckpt_path, head_ckpt_path=head_ckpt_path
        )
    net.eval()
    # Inference only: no autograd bookkeeping even if a caller forgets inference_mode().
    net.requires_grad_(False)
    net.to(dev)
    return LoadedModel(path=model_dir, config=cfg, module=net)


class ModelCache:
    """A :func:`load_model` that loads each (model, device, overrides) once and hands the same
    loaded model to every later call: a long-lived worker (a Ray actor) injects it into the
    graphs it builds, so their forward stages reuse what it loaded."""

    def __init__(self) -> None:
        self._loaded: dict[tuple[str, str, str | None, str | None], LoadedModel] = {}

    def __call__(self, path: str | Path, device: str | torch.device = "cpu", *,
                 backbone_ckpt_path: str | Path | None = None,
                 head_ckpt_path: str | Path | None = None) -> LoadedModel:
        key = (str(path), str(device), None if backbone_ckpt_path is None else str(backbone_ckpt_path),
               None if head_ckpt_path is None else str(head_ckpt_path))
        model = self._loaded.get(key)
        if model is None:
            model = self._loaded[key] = load_model(path, device, backbone_ckpt_path=backbone_ckpt_path,
                                                   head_ckpt_path=head_ckpt_path)
        return model

    def __len__(self) -> int:
        return len(self._loaded)

"""SLEAP ≤1.4 models (``training_config.json`` + ``best_model.h5``) without TensorFlow (spec §7)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import h5py
import msgspec
import numpy as np
import torch

from sleapflow.errors import ConfigError, ModelLoadError
from sleapflow.logs import get_logger
from sleapflow.models.file_schema import (
    FileClassMaps,
    FileClassVectors,
    FileConfmaps,
    FileHead,
    FilePafs,
    FilePreprocessing,
    convert,
)
from sleapflow.models.normalise import normalise_backbone, normalise_config
from sleapflow.models.schema import ModelConfig, SkeletonConfig, UNetConfig

__all__ = ("load_legacy_weights", "read_legacy_config")


log = get_logger(__name__)

# sleap-nn's legacy head precedence (``create_model_from_legacy_config``) and the model type each
# SLEAP head maps to.
_LEGACY_HEADS: tuple[tuple[str, str], ...] = (
    ("centroid", "centroid"),
    ("centered_instance", "centered_instance"),
    ("single_instance", "single_instance"),
    ("multi_instance", "bottomup"),
    ("multi_class_topdown", "multi_class_topdown"),
    ("multi_class_bottomup", "multi_class_bottomup"),
)
_FIRST_CONV = ("stack0_enc0_conv0", "stem0_conv0")
_HEAD_SUFFIX = re.compile(r"_\d+$")


class _LegacyUNet(msgspec.Struct, frozen=True):
    # Defaults are sleap-nn's ``model_mapper`` defaults; kernel_size / convs_per_block are not
    # SLEAP options and stay 3 / 2.
    filters: int = 32
    filters_rate: float = 1.5
    max_stride: int = 16
    stem_stride: int | None = None
    middle_block: bool = True
    up_interpolate: bool = True
    stacks: int = 1
    output_stride: int = 1


class _LegacyFlatHead(msgspec.Struct, frozen=True):
    part_names: list[str] | None = None
    anchor_part: str | None = None
    sigma: float = 5.0
    output_stride: int = 1


class _LegacyConfmaps(msgspec.Struct, frozen=True):
    part_names: list[str] | None = None
    anchor_part: str | None = None
    sigma: float = 5.0
    output_stride: int = 1


class _LegacyPafs(msgspec.Struct, frozen=True):
    edges: list[tuple[str, str]]
    sigma: float = 15.0
    output_stride: int = 1


class _LegacyClassMaps(msgspec.Struct, frozen=True):
    classes: list[str]
    sigma: float = 15.0
    output_stride: int = 1


class _LegacyClassVectors(msgspec.Struct, frozen=True):
    classes: list[str]
    num_fc_layers: int = 2
    num_fc_units: int = 1024
    global_pool: bool = True
    output_stride: int = 1


class _LegacyNested(msgspec.Struct, frozen=True):
    confmaps: _LegacyConfmaps = _LegacyConfmaps()
    pafs: _LegacyPafs | None = None
    class_maps: _LegacyClassMaps | None = None
    class_vectors: _LegacyClassVectors | None = None


class _LegacyPreprocessing(msgspec.Struct, frozen=True):
    ensure_rgb: bool = False
    ensure_grayscale: bool = False
    target_height: int | None = None
    target_width: int | None = None
    input_scaling: float = 1.0


class _LegacyCropping(msgspec.Struct, frozen=True):
    crop_size: int | None = None


class _LegacyLabels(msgspec.Struct, frozen=True):
    skeletons: list[Any]


class _LegacyData(msgspec.Struct, frozen=True):
    labels: _LegacyLabels
    preprocessing: _LegacyPreprocessing = _LegacyPreprocessing()
    instance_cropping: _LegacyCropping = _LegacyCropping()


class _LegacyModel(msgspec.Struct, frozen=True):
    backbone: dict[str, Any]
    heads: dict[str, Any]


class _LegacyTrainingConfig(msgspec.Struct, frozen=True):
    data: _LegacyData
    model: _LegacyModel


def _open_h5(path: Path) -> h5py.File:
    try:
        return h5py.File(path, "r")
    except OSError as exc:
        raise ModelLoadError(f"cannot open {str(path)!r} as HDF5: {exc}") from None


def _weight_datasets(f: h5py.File, path: Path) -> list[tuple[str, np.ndarray]]:
    """``(dataset path, array)`` under ``model_weights/`` in h5py's (sorted) visit order."""
    if "model_weights" not in f:
        raise ModelLoadError(
            f"{str(path)!r} is not a SLEAP model: it has no `model_weights` group "
            "(expected a Keras model saved by SLEAP <= 1.4)"
        )
    out: list[tuple[str, np.ndarray]] = []

    def visit(name: str, obj: Any) -> None:
        if isinstance(obj, h5py.Dataset):
            out.append((f"model_weights/{name}", obj[()]))

    f["model_weights"].visititems(visit)
    return out


def _first_conv_in_channels(path: Path) -> int:
    with _open_h5(path) as f:
        if "model_weights" not in f:
            raise ModelLoadError(
                f"{str(path)!r} is not a SLEAP model: it has no `model_weights` group"
            )
        found: list[int] = []

        def visit(name: str, obj: Any) -> None:
            layer = name.split("/")[0]
            if (
                not found
                and isinstance(obj, h5py.Dataset)
                and layer in _FIRST_CONV
                and "kernel" in name.rsplit("/", 1)[-1]
                and obj.ndim == 4
            ):
                found.append(int(obj.shape[2]))

        f["model_weights"].visititems(visit)
    if not found:
        raise ModelLoadError(
            f"{str(path)!r} is not a SLEAP UNet model: no `stack0_enc0_conv0` kernel found"
        )
    return found[0]


def _skeleton(raw: list[Any], source: str) -> SkeletonConfig:
    from sleap_io.io.skeleton import SkeletonDecoder

    if not raw:
        raise ConfigError(f"{source}: `data.labels.skeletons` is empty")
    try:
        decoded = SkeletonDecoder().decode(raw)
    except Exception as exc:
        raise ConfigError(f"{source}: cannot decode `data.labels.skeletons`: {exc}") from None
    sk = decoded[0] if isinstance(decoded, list) else decoded
    return SkeletonConfig(
        name=sk.name or "Skeleton-0",
        node_names=tuple(sk.node_names),
        edges=tuple((e.source.name, e.destination.name) for e in sk.edges),
        # A Symmetry holds a set of nodes: order the pair by node index to be deterministic.
        symmetries=tuple(
            tuple(sorted((n.name for n in s.nodes), key=sk.node_names.index))  # type: ignore[misc]
            for s in sk.symmetries
        ),
    )


def read_legacy_config(model_dir: Path) -> ModelConfig:
    """Map a SLEAP ``training_config.json`` onto ``ModelConfig`` (sleap-nn's legacy mapping)."""
    cfg_path = model_dir / "training_config.json"
    source = str(cfg_path)
    try:
        raw = json.loads(cfg_path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ModelLoadError(f"cannot read {source}: {exc}") from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{source} is not valid JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: expected an object at the top level")
    tc = convert(raw, _LegacyTrainingConfig, prefix="", source=source)

    active = [(k, v) for k, v in tc.model.backbone.items() if v is not None]
    if not active:
        raise ConfigError(f"{source}: `model.backbone` has no non-null backbone")
    btype, braw = active[0]
    if btype != "unet":
        raise ConfigError(
            f"{source}: legacy backbone `{btype}` is not supported; only SLEAP UNet models can be "
            "converted (retrain with sleap-nn for other backbones)"
        )
    lu = convert(braw, _LegacyUNet, prefix="model.backbone.unet", source=source)
    in_channels = _first_conv_in_channels(model_dir / "best_model.h5")
    unet: UNetConfig = normalise_backbone(  # type: ignore[assignment]
        "unet",
        {
            "filters": lu.filters,
            "filters_rate": lu.filters_rate,
            "max_stride": lu.max_stride,
            "stem_stride": lu.stem_stride,
            "middle_block": lu.middle_block,
            "up_interpolate": lu.up_interpolate,
            "stacks": lu.stacks,
            "output_stride": lu.output_stride,
            "in_channels": in_channels,
        },
        source,
    )

    heads = tc.model.heads
    chosen = next(
        ((key, mtype) for key, mtype in _LEGACY_HEADS if heads.get(key) is not None), None
    )
    if chosen is None:
        other = [k for k, v in heads.items() if v is not None]
        raise ConfigError(
            f"{source}: no supported head in `model.heads` (found {other or 'none'}); sleapflow "
            f"converts {', '.join(k for k, _ in _LEGACY_HEADS)}"
        )
    key, mtype = chosen
    prefix = f"model.heads.{key}"
    if mtype in ("centroid", "centered_instance", "single_instance"):
        flat = convert(heads[key], _LegacyFlatHead, prefix=prefix, source=source)
        head = FileHead(
            confmaps=FileConfmaps(
                output_stride=flat.output_stride,
                part_names=flat.part_names,
                anchor_part=flat.anchor_part,
                sigma=flat.sigma,
            )
        )
    else:
        nested = convert(heads[key], _LegacyNested, prefix=prefix, source=source)
        cm = nested.confmaps
        head = FileHead(
            confmaps=FileConfmaps(
                output_stride=cm.output_stride,
                part_names=cm.part_names,
                anchor_part=cm.anchor_part,
                sigma=cm.sigma,
            ),
            pafs=(
                FilePafs(
                    edges=list(nested.pafs.edges),
                    output_stride=nested.pafs.output_stride,
                    sigma=nested.pafs.sigma,
                )
                if nested.pafs is not None
                else None
            ),
            class_maps=(
                FileClassMaps(
                    classes=list(nested.class_maps.classes),
                    output_stride=nested.class_maps.output_stride,
                    sigma=nested.class_maps.sigma,
                )
                if nested.class_maps is not None
                else None
            ),
            class_vectors=(
                FileClassVectors(
                    classes=list(nested.class_vectors.classes),
                    output_stride=nested.class_vectors.output_stride,
                    num_fc_layers=nested.class_vectors.num_fc_layers,
                    num_fc_units=nested.class_vectors.num_fc_units,
                    global_pool=nested.class_vectors.global_pool,
                )
                if nested.class_vectors is not None
                else None
            ),
        )

    pp = tc.data.preprocessing
    return normalise_config(
        model_type=mtype,
        backbone_type="unet",
        backbone=unet,
        preprocessing=FilePreprocessing(
            ensure_rgb=pp.ensure_rgb,
            ensure_grayscale=pp.ensure_grayscale,
            max_height=pp.target_height,
            max_width=pp.target_width,
            scale=pp.input_scaling,
            crop_size=tc.data.instance_cropping.crop_size,
        ),
        skeleton=_skeleton(tc.data.labels.skeletons, source),
        head=head,
        head_prefix=prefix,
        is_legacy=True,
        path=model_dir,
        source=source,
    )


def _convert_weight(kind: str, arr: np.ndarray) -> torch.Tensor:
    """Keras → torch layout: conv and transposed-conv kernels (kh,kw,a,b)→(b,a,kh,kw); dense .T."""
    if kind == "weight" and arr.ndim == 4:
        arr = arr.transpose(3, 2, 0, 1)
    elif kind == "weight" and arr.ndim == 2:
        arr = arr.T
    return torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32))


def load_legacy_weights(net: torch.nn.Module, h5_path: Path) -> None:
    """Copy Keras weights into ``net`` by layer-name substring + converted-shape match.

    Unmatched legacy tensors (offset-refinement heads, which sleap-nn never uses) are skipped; every
    parameter of ``net`` must be filled exactly once, else the file is not this model.
    """
    with _open_h5(h5_path) as f:
        datasets = _weight_datasets(f, h5_path)
    params = list(net.named_parameters())
    assigned: dict[str, torch.Tensor] = {}
    skipped: list[str] = []
    for dpath, arr in datasets:
        parts = dpath.split("/")
        if len(parts) < 3:
            continue
        layer, leaf = parts[1], parts[-1]
        kind = "weight" if "kernel" in leaf else "bias"
        if "Head" in layer:
            layer = _HEAD_SUFFIX.sub("", layer)
        value = _convert_weight(kind, arr)
        target = next(
            (
                name
                for name, p in params
                if layer in name and name.endswith(f".{kind}") and tuple(p.shape) == value.shape
            ),
            None,
        )
        if target is None:
            skipped.append(f"{layer}/{leaf}")
            continue
        if target in assigned:
            raise ModelLoadError(
                f"{str(h5_path)!r}: two legacy tensors map to {target}; the file does not match "
                "its training_config.json"
            )
        assigned[target] = value
    # Offset-refinement heads are expected leftovers (sleap-nn always refines by integral).
    unexpected = [s for s in skipped if not s.startswith("OffsetRefinementHead")]
    if unexpected:
        log.warning("legacy_weights_unused", path=str(h5_path), tensors=unexpected)
    missing = [name for name, _ in params if name not in assigned]
    if missing:
        if not assigned:
            raise ModelLoadError(
                f"{str(h5_path)!r} is not a SLEAP model for this config: none of its weights match "
                "the network built from training_config.json"
            )
        shown = ", ".join(missing[:4]) + (f" (+{len(missing) - 4} more)" if len(missing) > 4 else "")
        raise ModelLoadError(
            f"{str(h5_path)!r} does not fit the network built from "
            f"{str(h5_path.parent / 'training_config.json')!r}: no weights for [{shown}]"
        )
    net.load_state_dict(assigned, strict=False)

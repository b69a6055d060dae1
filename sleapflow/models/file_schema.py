"""Structs shaped like ``training_config.yaml``, and strict decoding into them with clear errors."""

from __future__ import annotations

import re
from typing import Any

import msgspec

from sleapflow.errors import ConfigError

__all__ = (
    "BACKBONE_STRUCTS", "REQUIRED_SUBHEADS", "FileClassMaps", "FileClassVectors", "FileConfmaps",
    "FileConvNeXt", "FileHead", "FilePafs", "FilePreprocessing", "FileSkeleton", "FileTrainingConfig",
    "FileUNet", "convert", "first_non_null", "is_pow2",
)


# --------------------------------------------------------------------------------------------
# File-shaped structs: mirror training_config.yaml; unknown (training-only) fields are ignored.
# Required fields are the ones that decide the architecture; the rest carry sleap-nn's defaults.
# --------------------------------------------------------------------------------------------


class FilePreprocessing(msgspec.Struct, frozen=True):
    ensure_rgb: bool = False
    ensure_grayscale: bool = False
    max_height: int | None = None
    max_width: int | None = None
    # sleap-nn's validator also accepts a list of floats; inference uses it as a scalar.
    scale: float | list[float] = 1.0
    crop_size: int | None = None


class _FileNodeRef(msgspec.Struct, frozen=True):
    name: str


class _FileEdge(msgspec.Struct, frozen=True):
    source: _FileNodeRef
    destination: _FileNodeRef


class FileSkeleton(msgspec.Struct, frozen=True):
    nodes: list[_FileNodeRef]
    edges: list[_FileEdge] = []
    symmetries: list[Any] = []
    name: str | None = None


class _FileDataConfig(msgspec.Struct, frozen=True):
    skeletons: list[FileSkeleton] | dict[str, FileSkeleton]
    preprocessing: FilePreprocessing = FilePreprocessing()


class FileUNet(msgspec.Struct, frozen=True):
    filters: int
    filters_rate: float
    max_stride: int
    output_stride: int
    in_channels: int = 1
    kernel_size: int = 3
    stem_stride: int | None = None
    middle_block: bool = True
    up_interpolate: bool = True
    stacks: int = 1
    convs_per_block: int = 2
    block_contraction: bool = False


class _FilePatchBackbone(msgspec.Struct, frozen=True):
    """The fields ConvNeXt and SwinT share: a patch stem, a preset or arch, a UNet-like decoder."""

    output_stride: int
    max_stride: int
    model_type: str = "tiny"
    stem_patch_stride: int = 2
    in_channels: int = 1
    kernel_size: int = 3
    filters_rate: float = 2.0
    convs_per_block: int = 2
    up_interpolate: bool = True
    block_contraction: bool = False


class _FileConvNeXtArch(msgspec.Struct, frozen=True):
    depths: list[int]
    channels: list[int]


class FileConvNeXt(_FilePatchBackbone, frozen=True):
    arch: _FileConvNeXtArch | None = None
    stem_patch_kernel: int = 4


class _FileSwinTArch(msgspec.Struct, frozen=True):
    embed: int
    depths: list[int]
    num_heads: list[int]


class _FileSwinT(_FilePatchBackbone, frozen=True):
    arch: _FileSwinTArch | None = None
    patch_size: int = 4
    window_size: int = 7


class FileConfmaps(msgspec.Struct, frozen=True):
    output_stride: int
    part_names: list[str] | None = None
    anchor_part: str | None = None
    sigma: float = 5.0


class FilePafs(msgspec.Struct, frozen=True):
    edges: list[tuple[str, str]]
    output_stride: int
    sigma: float = 15.0


class FileClassMaps(msgspec.Struct, frozen=True):
    classes: list[str]
    output_stride: int
    sigma: float = 5.0


class FileClassVectors(msgspec.Struct, frozen=True):
    classes: list[str]
    output_stride: int
    num_fc_layers: int = 1
    num_fc_units: int = 64
    global_pool: bool = True


class FileHead(msgspec.Struct, frozen=True):
    confmaps: FileConfmaps
    pafs: FilePafs | None = None
    class_maps: FileClassMaps | None = None
    class_vectors: FileClassVectors | None = None


class _FileModelConfig(msgspec.Struct, frozen=True):
    backbone_config: dict[str, Any]
    head_configs: dict[str, Any]


class FileTrainingConfig(msgspec.Struct, frozen=True):
    data_config: _FileDataConfig
    model_config: _FileModelConfig


BACKBONE_STRUCTS: dict[str, type[msgspec.Struct]] = {
    "unet": FileUNet,
    "convnext": FileConvNeXt,
    "swint": _FileSwinT,
}

# Which extra sub-heads each model type must carry beside ``confmaps``.
REQUIRED_SUBHEADS: dict[str, tuple[str, ...]] = {
    "single_instance": (),
    "centroid": (),
    "centered_instance": (),
    "bottomup": ("pafs",),
    "multi_class_bottomup": ("class_maps",),
    "multi_class_topdown": ("class_vectors",),
}

_AT_RE = re.compile(r"^(?P<msg>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.S)
_MISSING_RE = re.compile(r"Object missing required field `(?P<field>[^`]+)`")


def convert(raw: Any, typ: Any, *, prefix: str, source: str) -> Any:
    """``msgspec.convert`` whose errors name the dotted field path and the file."""
    try:
        return msgspec.convert(raw, typ)
    except msgspec.ValidationError as exc:
        m = _AT_RE.match(str(exc))
        msg = m.group("msg") if m else str(exc)
        sub = (m.group("path") or "") if m else ""
        missing = _MISSING_RE.search(msg)
        # msgspec paths look like ``$.a.b[0].c``; join them onto the caller's dotted prefix.
        path = (prefix + sub).lstrip(".")
        if missing:
            path = f"{path}.{missing.group('field')}" if path else missing.group("field")
            raise ConfigError(f"{source}: required field `{path}` is missing") from None
        raise ConfigError(f"{source}: field `{path or '<root>'}`: {msg}") from None


def first_non_null(mapping: dict[str, Any]) -> tuple[str, Any] | None:
    """First key with a non-null value in file order (sleap-nn's type detection rule)."""
    for key, value in mapping.items():
        if value is not None:
            return key, value
    return None


def is_pow2(v: int) -> bool:
    return v >= 1 and (v & (v - 1)) == 0

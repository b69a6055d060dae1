"""The normalised model config: what the rest of sleapflow reads about a trained model."""

from __future__ import annotations

from typing import Literal

import msgspec

__all__ = (
    "CONVNEXT_PRESETS", "HEAD_NAMES", "MODEL_TYPES", "SWINT_PRESETS", "UNSUPPORTED_HEADS", "BackboneType",
    "ClassMapsConfig", "ClassVectorsConfig", "ConfmapsConfig", "ConvNeXtConfig", "ModelConfig", "PafsConfig",
    "PreprocessingConfig", "SkeletonConfig", "SwinTConfig", "UNetConfig",
)


MODEL_TYPES: tuple[str, ...] = (
    "single_instance",
    "centroid",
    "centered_instance",
    "bottomup",
    "multi_class_bottomup",
    "multi_class_topdown",
)

# Head types sleap-nn knows but sleapflow does not run as pose models; named in the error so
# users know why (embedding models run as a branch beside them: sleapflow.models.embedding).
UNSUPPORTED_HEADS = (
    "bottomup_segmentation",
    "centered_instance_segmentation",
    "semantic_segmentation",
    "embedding",
    "bbox_centernet",
    "bbox_ssd",
)

BackboneType = Literal["unet", "convnext", "swint"]

# Output dict keys of the network, per model type, in head_layers order (spec §2.6).
HEAD_NAMES: dict[str, tuple[str, ...]] = {
    "single_instance": ("SingleInstanceConfmapsHead",),
    "centroid": ("CentroidConfmapsHead",),
    "centered_instance": ("CenteredInstanceConfmapsHead",),
    "bottomup": ("MultiInstanceConfmapsHead", "PartAffinityFieldsHead"),
    "multi_class_bottomup": ("MultiInstanceConfmapsHead", "ClassMapsHead"),
    "multi_class_topdown": ("CenteredInstanceConfmapsHead", "ClassVectorsHead"),
}

CONVNEXT_PRESETS: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = {
    "tiny": ((3, 3, 9, 3), (96, 192, 384, 768)),
    "small": ((3, 3, 27, 3), (96, 192, 384, 768)),
    "base": ((3, 3, 27, 3), (128, 256, 512, 1024)),
    "large": ((3, 3, 27, 3), (192, 384, 768, 1536)),
}

SWINT_PRESETS: dict[str, tuple[int, tuple[int, ...], tuple[int, ...]]] = {
    "tiny": (96, (2, 2, 6, 2), (3, 6, 12, 24)),
    "small": (96, (2, 2, 18, 2), (3, 6, 12, 24)),
    "base": (128, (2, 2, 18, 2), (4, 8, 16, 32)),
}


# --------------------------------------------------------------------------------------------
# Normalised config: what the rest of sleapflow reads.
# --------------------------------------------------------------------------------------------


class UNetConfig(msgspec.Struct, frozen=True, tag_field="type", tag="unet"):
    """UNet hyper-parameters (sleap-nn ``backbone_config.unet``)."""

    in_channels: int
    kernel_size: int
    filters: int
    filters_rate: float
    max_stride: int
    stem_stride: int | None
    middle_block: bool
    up_interpolate: bool
    stacks: int
    convs_per_block: int
    output_stride: int


class ConvNeXtConfig(msgspec.Struct, frozen=True, tag_field="type", tag="convnext"):
    """ConvNeXt hyper-parameters with the preset already resolved into depths and channels."""

    model_type: str
    depths: tuple[int, ...]
    channels: tuple[int, ...]
    stem_patch_kernel: int
    stem_patch_stride: int
    in_channels: int
    kernel_size: int
    filters_rate: float
    convs_per_block: int
    up_interpolate: bool
    output_stride: int
    max_stride: int


class SwinTConfig(msgspec.Struct, frozen=True, tag_field="type", tag="swint"):
    """SwinT hyper-parameters with the preset already resolved into embed, depths and heads."""

    model_type: str
    embed: int
    depths: tuple[int, ...]
    num_heads: tuple[int, ...]
    patch_size: int
    stem_patch_stride: int
    window_size: int
    in_channels: int
    kernel_size: int
    filters_rate: float
    convs_per_block: int
    up_interpolate: bool
    output_stride: int
    max_stride: int


class PreprocessingConfig(msgspec.Struct, frozen=True):
    """The preprocessing fields inference reads (spec §1.3)."""

    ensure_rgb: bool = False
    ensure_grayscale: bool = False
    max_height: int | None = None
    max_width: int | None = None
    scale: float = 1.0
    crop_size: int | None = None


class SkeletonConfig(msgspec.Struct, frozen=True):
    """The output skeleton (``data_config.skeletons[0]``)."""

    name: str
    node_names: tuple[str, ...]
    edges: tuple[tuple[str, str], ...]
    symmetries: tuple[tuple[str, str], ...]


class ConfmapsConfig(msgspec.Struct, frozen=True):
    """Confidence-map head; ``part_names`` is None for the centroid head (one channel)."""

    part_names: tuple[str, ...] | None
    anchor_part: str | None
    sigma: float
    output_stride: int


class PafsConfig(msgspec.Struct, frozen=True):
    """Part-affinity-field head: channel 2k is x and 2k+1 is y of edge k."""

    edges: tuple[tuple[str, str], ...]
    output_stride: int


class ClassMapsConfig(msgspec.Struct, frozen=True):
    """Class-map head (multi-class bottom-up)."""

    classes: tuple[str, ...]
    output_stride: int


class ClassVectorsConfig(msgspec.Struct, frozen=True):
    """Class-vector head (multi-class top-down)."""

    classes: tuple[str, ...]
    num_fc_layers: int
    num_fc_units: int
    global_pool: bool
    output_stride: int


class ModelConfig(msgspec.Struct, frozen=True):
    """Everything inference needs to know about one trained model, without its weights."""

    model_type: str
    backbone_type: str
    backbone: UNetConfig | ConvNeXtConfig | SwinTConfig
    preprocessing: PreprocessingConfig
    max_stride: int
    in_channels: int
    skeleton: SkeletonConfig
    confmaps: ConfmapsConfig
    pafs: PafsConfig | None
    class_maps: ClassMapsConfig | None
    class_vectors: ClassVectorsConfig | None
    head_names: tuple[str, ...]
    is_legacy: bool
    path: str

    @property
    def output_strides(self) -> dict[str, int]:
        """Output stride of each head, keyed like the network's output dict."""
        strides = [self.confmaps.output_stride]
        for extra in (self.pafs, self.class_maps, self.class_vectors):
            if extra is not None:
                strides.append(extra.output_stride)
        return dict(zip(self.head_names, strides))

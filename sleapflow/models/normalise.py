"""Normalisation: a decoded training config (YAML, or legacy SLEAP JSON) → a ``ModelConfig``."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from sleapflow.errors import ConfigError
from sleapflow.models.config_file import read_yaml_mapping
from sleapflow.models.file_schema import (
    BACKBONE_STRUCTS,
    REQUIRED_SUBHEADS,
    FileConvNeXt,
    FileHead,
    FilePreprocessing,
    FileSkeleton,
    FileTrainingConfig,
    FileUNet,
    convert,
    first_non_null,
    is_pow2,
)
from sleapflow.models.schema import (
    CONVNEXT_PRESETS,
    HEAD_NAMES,
    MODEL_TYPES,
    SWINT_PRESETS,
    UNSUPPORTED_HEADS,
    ClassMapsConfig,
    ClassVectorsConfig,
    ConfmapsConfig,
    ConvNeXtConfig,
    ModelConfig,
    PafsConfig,
    PreprocessingConfig,
    SkeletonConfig,
    SwinTConfig,
    UNetConfig,
)

__all__ = ("config_from_yaml", "decoder_strides", "normalise_backbone", "normalise_config")


# --------------------------------------------------------------------------------------------
# Normalisation
# --------------------------------------------------------------------------------------------


def _skeleton_from_file(sk: FileSkeleton, default_name: str, source: str) -> SkeletonConfig:
    names = tuple(n.name for n in sk.nodes)
    edges = tuple((e.source.name, e.destination.name) for e in sk.edges)
    syms: list[tuple[str, str]] = []
    for i, s in enumerate(sk.symmetries):
        pair = [x["name"] if isinstance(x, dict) else x for x in s] if isinstance(s, list) else []
        if len(pair) != 2 or not all(isinstance(x, str) for x in pair):
            raise ConfigError(
                f"{source}: field `data_config.skeletons[0].symmetries[{i}]` must be a pair of nodes"
            )
        syms.append((pair[0], pair[1]))
    for a, b in (*edges, *syms):
        for n in (a, b):
            if n not in names:
                raise ConfigError(
                    f"{source}: skeleton edge/symmetry names node {n!r}, which is not in "
                    f"data_config.skeletons[0].nodes {list(names)}"
                )
    return SkeletonConfig(
        name=sk.name or default_name, node_names=names, edges=edges, symmetries=tuple(syms)
    )


def normalise_backbone(
    btype: str, raw: Any, source: str
) -> UNetConfig | ConvNeXtConfig | SwinTConfig:
    prefix = f"model_config.backbone_config.{btype}"
    fb = convert(raw, BACKBONE_STRUCTS[btype], prefix=prefix, source=source)
    if fb.block_contraction:
        raise ConfigError(f"{source}: `{prefix}.block_contraction: true` is not supported")
    for field in ("in_channels", "kernel_size", "output_stride", "max_stride"):
        if getattr(fb, field) < 1:
            raise ConfigError(f"{source}: `{prefix}.{field}` must be >= 1, got {getattr(fb, field)}")
    if fb.convs_per_block < 2:
        raise ConfigError(
            f"{source}: `{prefix}.convs_per_block` must be >= 2 (sleap-nn's middle block cannot "
            f"run with {fb.convs_per_block})"
        )
    if not is_pow2(fb.output_stride):
        raise ConfigError(f"{source}: `{prefix}.output_stride` must be a power of 2")
    if isinstance(fb, FileUNet):
        # Configurations sleap-nn builds but cannot run (spec §2.4), or that no trainer emits.
        if fb.stacks != 1:
            raise ConfigError(f"{source}: `{prefix}.stacks` must be 1 (got {fb.stacks})")
        if not fb.middle_block:
            raise ConfigError(
                f"{source}: `{prefix}.middle_block: false` is not runnable in sleap-nn "
                "(the decoder expects the middle block's channels)"
            )
        if fb.stem_stride is not None:
            raise ConfigError(
                f"{source}: `{prefix}.stem_stride` is not supported (must be null); sleap-nn's "
                "stem changes the true network stride"
            )
        if not is_pow2(fb.max_stride) or fb.max_stride < 2 or fb.output_stride > fb.max_stride:
            raise ConfigError(
                f"{source}: `{prefix}.max_stride` must be a power of 2, >= 2 and >= output_stride "
                f"(got max_stride {fb.max_stride}, output_stride {fb.output_stride})"
            )
        if fb.filters < 1 or fb.filters_rate <= 0:
            raise ConfigError(f"{source}: `{prefix}.filters`/`filters_rate` must be positive")
        return UNetConfig(
            in_channels=fb.in_channels,
            kernel_size=fb.kernel_size,
            filters=fb.filters,
            filters_rate=fb.filters_rate,
            max_stride=fb.max_stride,
            stem_stride=None,
            middle_block=True,
            up_interpolate=fb.up_interpolate,
            stacks=1,
            convs_per_block=fb.convs_per_block,
            output_stride=fb.output_stride,
        )
    if not is_pow2(fb.stem_patch_stride):
        raise ConfigError(f"{source}: `{prefix}.stem_patch_stride` must be a power of 2")
    if fb.output_stride > 16 * fb.stem_patch_stride:
        raise ConfigError(
            f"{source}: `{prefix}.output_stride` ({fb.output_stride}) exceeds the network stride "
            f"({16 * fb.stem_patch_stride})"
        )
    shared: dict[str, Any] = {
        "model_type": fb.model_type, "stem_patch_stride": fb.stem_patch_stride,
        "in_channels": fb.in_channels, "kernel_size": fb.kernel_size,
        "filters_rate": fb.filters_rate, "convs_per_block": fb.convs_per_block,
        "up_interpolate": fb.up_interpolate, "output_stride": fb.output_stride,
        "max_stride": fb.max_stride,
    }
    if isinstance(fb, FileConvNeXt):
        if fb.model_type in CONVNEXT_PRESETS:
            depths, channels = CONVNEXT_PRESETS[fb.model_type]
        elif fb.arch is not None:
            depths, channels = tuple(fb.arch.depths), tuple(fb.arch.channels)
        else:
            depths, channels = CONVNEXT_PRESETS["tiny"]
        if len(depths) != 4 or len(channels) != 4:
            raise ConfigError(
                f"{source}: `{prefix}.arch` must give 4 depths and 4 channels "
                f"(got {list(depths)}, {list(channels)})"
            )
        return ConvNeXtConfig(depths=depths, channels=channels,
                              stem_patch_kernel=fb.stem_patch_kernel, **shared)
    if fb.model_type in SWINT_PRESETS:
        embed, depths, heads = SWINT_PRESETS[fb.model_type]
    elif fb.arch is not None:
        embed, depths, heads = fb.arch.embed, tuple(fb.arch.depths), tuple(fb.arch.num_heads)
    else:
        embed, depths, heads = SWINT_PRESETS["tiny"]
    if len(depths) != 4 or len(heads) != 4:
        raise ConfigError(f"{source}: `{prefix}.arch` must give 4 depths and 4 num_heads")
    for i, h in enumerate(heads):
        if (embed * 2**i) % h:
            raise ConfigError(
                f"{source}: `{prefix}.arch.num_heads[{i}]` ({h}) must divide the stage width "
                f"{embed * 2**i}"
            )
    return SwinTConfig(embed=embed, depths=depths, num_heads=heads, patch_size=fb.patch_size,
                       window_size=fb.window_size, **shared)


def decoder_strides(backbone: UNetConfig | ConvNeXtConfig | SwinTConfig) -> tuple[int, ...]:
    """Strides of the decoder outputs, coarse to fine; empty when the decoder has no blocks."""
    if isinstance(backbone, UNetConfig):
        top = backbone.max_stride
        n_up = int(math.log2(backbone.max_stride // backbone.output_stride))
    else:
        sps = backbone.stem_patch_stride
        top = sps * 16
        # sleap-nn: log2(max / (sps * os)) + log2(sps), each truncated to int.
        n_up = int(math.log2(top / (sps * backbone.output_stride))) + int(math.log2(sps))
    return tuple(top // 2 ** (b + 1) for b in range(n_up))


def _check_head_strides(cfg_heads: list[tuple[str, int]], backbone: Any, source: str) -> None:
    strides = decoder_strides(backbone)
    for name, stride in cfg_heads:
        if name == "class_vectors":
            continue  # reads the middle output whatever its stated stride
        if strides and stride not in strides:
            raise ConfigError(
                f"{source}: head `{name}` has output_stride {stride}, but the backbone's decoder "
                f"produces strides {list(strides)}"
            )
        if not strides and isinstance(backbone, UNetConfig) and stride != backbone.max_stride:
            raise ConfigError(
                f"{source}: head `{name}` has output_stride {stride}, but the backbone has no "
                f"decoder (output at max_stride {backbone.max_stride})"
            )


def normalise_config(
    *,
    model_type: str,
    backbone_type: str,
    backbone: UNetConfig | ConvNeXtConfig | SwinTConfig,
    preprocessing: FilePreprocessing,
    skeleton: SkeletonConfig,
    head: FileHead,
    head_prefix: str,
    is_legacy: bool,
    path: Path,
    source: str,
) -> ModelConfig:
    """Build the public ``ModelConfig`` from decoded parts (shared by YAML and legacy JSON)."""
    for sub in REQUIRED_SUBHEADS[model_type]:
        if getattr(head, sub) is None:
            raise ConfigError(f"{source}: required field `{head_prefix}.{sub}` is missing")
    cm = head.confmaps
    if model_type == "centroid":
        part_names = None
    elif cm.part_names is not None:
        part_names = tuple(cm.part_names)
    else:
        # sleap-nn training fills part_names from the skeleton; do the same for hand-written files.
        part_names = skeleton.node_names
    if part_names is not None and len(part_names) == 0:
        raise ConfigError(f"{source}: `{head_prefix}.confmaps.part_names` is empty")
    confmaps = ConfmapsConfig(
        part_names=part_names,
        anchor_part=cm.anchor_part,
        sigma=float(cm.sigma),
        output_stride=cm.output_stride,
    )
    pafs = class_maps = class_vectors = None
    strides: list[tuple[str, int]] = [("confmaps", cm.output_stride)]
    if model_type == "bottomup":
        assert head.pafs is not None
        if not head.pafs.edges:
            raise ConfigError(f"{source}: `{head_prefix}.pafs.edges` is empty")
        pafs = PafsConfig(
            edges=tuple((a, b) for a, b in head.pafs.edges), output_stride=head.pafs.output_stride
        )
        strides.append(("pafs", pafs.output_stride))
    elif model_type == "multi_class_bottomup":
        assert head.class_maps is not None
        class_maps = ClassMapsConfig(
            classes=tuple(head.class_maps.classes), output_stride=head.class_maps.output_stride
        )
        strides.append(("class_maps", class_maps.output_stride))
    elif model_type == "multi_class_topdown":
        cv = head.class_vectors
        assert cv is not None
        if cv.num_fc_layers < 1 or cv.num_fc_units < 1:
            # sleap-nn sizes the classifier from num_fc_units, so 0 fc layers cannot run.
            raise ConfigError(
                f"{source}: `{head_prefix}.class_vectors.num_fc_layers`/`num_fc_units` must be >= 1"
            )
        class_vectors = ClassVectorsConfig(
            classes=tuple(cv.classes),
            num_fc_layers=cv.num_fc_layers,
            num_fc_units=cv.num_fc_units,
            global_pool=cv.global_pool,
            output_stride=cv.output_stride,
        )
        strides.append(("class_vectors", cv.output_stride))
    for name, classes in (("class_maps", class_maps), ("class_vectors", class_vectors)):
        if classes is not None and not classes.classes:
            raise ConfigError(f"{source}: `{head_prefix}.{name}.classes` is empty")
    _check_head_strides(strides, backbone, source)

    scale = preprocessing.scale
    if isinstance(scale, list):
        if not scale:
            raise ConfigError(f"{source}: `data_config.preprocessing.scale` is an empty list")
        scale = scale[0]
    if scale <= 0:
        raise ConfigError(f"{source}: `data_config.preprocessing.scale` must be > 0, got {scale}")
    pre = PreprocessingConfig(
        ensure_rgb=preprocessing.ensure_rgb,
        ensure_grayscale=preprocessing.ensure_grayscale,
        max_height=preprocessing.max_height,
        max_width=preprocessing.max_width,
        scale=float(scale),
        crop_size=preprocessing.crop_size,
    )
    return ModelConfig(
        model_type=model_type,
        backbone_type=backbone_type,
        backbone=backbone,
        preprocessing=pre,
        max_stride=backbone.max_stride,
        in_channels=backbone.in_channels,
        skeleton=skeleton,
        confmaps=confmaps,
        pafs=pafs,
        class_maps=class_maps,
        class_vectors=class_vectors,
        head_names=HEAD_NAMES[model_type],
        is_legacy=is_legacy,
        path=str(path),
    )


def config_from_yaml(cfg_path: str | Path) -> ModelConfig:
    """Decode one sleap-nn ``training_config.yaml`` (no folder checks, no weights)."""
    cfg_path = Path(cfg_path)
    model_dir = cfg_path.parent
    source = str(cfg_path)
    raw = read_yaml_mapping(cfg_path)
    tc = convert(raw, FileTrainingConfig, prefix="", source=source)

    bb = first_non_null(tc.model_config.backbone_config)
    if bb is None:
        raise ConfigError(f"{source}: `model_config.backbone_config` has no non-null backbone")
    btype, braw = bb
    if btype not in BACKBONE_STRUCTS:
        raise ConfigError(
            f"{source}: backbone `{btype}` is not supported (sleapflow runs unet, convnext, swint)"
        )
    backbone = normalise_backbone(btype, braw, source)

    hd = first_non_null(tc.model_config.head_configs)
    if hd is None:
        raise ConfigError(f"{source}: `model_config.head_configs` has no non-null head")
    mtype, hraw = hd
    if mtype == "embedding":
        raise ConfigError(f"{source}: an embedding (re-ID) model gives appearance vectors, not "
                          "poses: pass it with -m beside the pose models (e.g. -m centroid -m "
                          "centered_instance -m embedding)")
    if mtype not in MODEL_TYPES:
        what = "segmentation/detection" if mtype in UNSUPPORTED_HEADS else "unknown"
        raise ConfigError(
            f"{source}: model type `{mtype}` ({what}) is not supported; sleapflow runs "
            f"{', '.join(MODEL_TYPES)}"
        )
    head_prefix = f"model_config.head_configs.{mtype}"
    head = convert(hraw, FileHead, prefix=head_prefix, source=source)

    sks = tc.data_config.skeletons
    if isinstance(sks, dict):
        # Stale (pre-list) layout keyed by skeleton name; still decode it.
        items = list(sks.items())
        if not items:
            raise ConfigError(f"{source}: `data_config.skeletons` is empty")
        sk_name, sk = items[0]
    else:
        if not sks:
            raise ConfigError(f"{source}: `data_config.skeletons` is empty")
        sk_name, sk = "Skeleton-0", sks[0]
    skeleton = _skeleton_from_file(sk, sk_name, source)

    return normalise_config(
        model_type=mtype,
        backbone_type=btype,
        backbone=backbone,
        preprocessing=tc.data_config.preprocessing,
        skeleton=skeleton,
        head=head,
        head_prefix=head_prefix,
        is_legacy=False,
        path=model_dir,
        source=source,
    )

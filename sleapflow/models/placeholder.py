"""Placeholder model configs for dry builds: a graph's shape without any trained model."""

from __future__ import annotations

from sleapflow.models.schema import (
    HEAD_NAMES,
    ClassMapsConfig,
    ClassVectorsConfig,
    ConfmapsConfig,
    ModelConfig,
    PafsConfig,
    PreprocessingConfig,
    SkeletonConfig,
    UNetConfig,
)

__all__ = ("placeholder_model_config",)


_NODES = ("head", "tail")


def placeholder_model_config(model_type: str) -> ModelConfig:
    """A two-node config of ``model_type`` with every head its stages read; never loaded."""
    if model_type not in HEAD_NAMES:
        raise ValueError(f"unknown model type {model_type!r}; known: {sorted(HEAD_NAMES)}")
    classes = ("class_0", "class_1")
    backbone = UNetConfig(in_channels=1, kernel_size=3, filters=16, filters_rate=2.0,
                          max_stride=16, stem_stride=None, middle_block=True, up_interpolate=True,
                          stacks=1, convs_per_block=2, output_stride=2)
    is_centroid = model_type == "centroid"
    return ModelConfig(
        model_type=model_type, backbone_type="unet", backbone=backbone,
        preprocessing=PreprocessingConfig(crop_size=None if is_centroid else 64),
        max_stride=16, in_channels=1,
        skeleton=SkeletonConfig(name="placeholder", node_names=_NODES, edges=(_NODES,),
                                symmetries=()),
        confmaps=ConfmapsConfig(part_names=None if is_centroid else _NODES,
                                anchor_part=None, sigma=2.5, output_stride=2),
        pafs=PafsConfig(edges=(_NODES,), output_stride=4) if model_type == "bottomup" else None,
        class_maps=(ClassMapsConfig(classes=classes, output_stride=2)
                    if model_type == "multi_class_bottomup" else None),
        class_vectors=(ClassVectorsConfig(classes=classes, num_fc_layers=1, num_fc_units=64,
                                          global_pool=True, output_stride=16)
                       if model_type == "multi_class_topdown" else None),
        head_names=HEAD_NAMES[model_type], is_legacy=False, path=f"<{model_type} model>",
    )

"""Model loading: config decoding, safe checkpoints, legacy .h5, backbones and heads."""

from sleapflow.models.config import (
    MODEL_TYPES,
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
    read_model_config,
    resolve_model_dir,
)
from sleapflow.models.loader import LoadedModel, load_model

__all__ = [
    "MODEL_TYPES",
    "ClassMapsConfig",
    "ClassVectorsConfig",
    "ConfmapsConfig",
    "ConvNeXtConfig",
    "LoadedModel",
    "ModelConfig",
    "PafsConfig",
    "PreprocessingConfig",
    "SkeletonConfig",
    "SwinTConfig",
    "UNetConfig",
    "load_model",
    "read_model_config",
    "resolve_model_dir",
]

"""Models: the config schema (schema.py), its file shape (file_schema.py) and normalisation
(normalise.py), safe checkpoints, legacy .h5, backbones and heads; the loader dispatches."""

from sleapflow.models.loader import LoadedModel, load_model, read_model_config, resolve_model_dir
from sleapflow.models.schema import (
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
)

__all__ = (
    "MODEL_TYPES", "ClassMapsConfig", "ClassVectorsConfig", "ConfmapsConfig", "ConvNeXtConfig", "LoadedModel",
    "ModelConfig", "PafsConfig", "PreprocessingConfig", "SkeletonConfig", "SwinTConfig", "UNetConfig",
    "load_model", "read_model_config", "resolve_model_dir",
)

"""sleap-nn ``embedding`` (re-ID) model folders: what inference reads from their config, without torch."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec

from sleapflow.errors import ConfigError, ModelLoadError
from sleapflow.models.config_file import read_yaml_mapping
from sleapflow.models.file_schema import BACKBONE_STRUCTS, convert, first_non_null
from sleapflow.models.schema import ConvNeXtConfig, SwinTConfig, UNetConfig

__all__ = ("EmbeddingModelConfig", "is_embedding_folder", "read_embedding_config")


class EmbeddingModelConfig(msgspec.Struct, frozen=True):
    """What inference reads about an embedding model (``head_configs.embedding.embedding``)."""

    path: str
    backbone_type: str
    backbone: UNetConfig | ConvNeXtConfig | SwinTConfig
    embedding_dim: int
    num_fc_layers: int
    num_fc_units: int
    pool: str
    normalize: bool
    crop_size: int
    max_height: int | None
    max_width: int | None
    ensure_rgb: bool
    anchor_part: str | None
    burn_in: bool

    @property
    def model_type(self) -> str:
        return "embedding"

    @property
    def in_channels(self) -> int:
        """Channels the crops carry (grayscale unless the model was trained on RGB)."""
        return 3 if self.ensure_rgb else 1


class _FileEmbeddingHead(msgspec.Struct, frozen=True):
    embedding_dim: int = 128
    num_fc_layers: int = 1
    num_fc_units: int = 256
    pool: str | None = None
    normalize: bool = True
    output_stride: int = 32
    anchor_part: str | None = None


class _FilePre(msgspec.Struct, frozen=True):
    ensure_rgb: bool = False
    max_height: int | None = None
    max_width: int | None = None
    crop_size: int | None = None
    burn_in: bool = False


def _head_type(raw: dict[str, Any]) -> str | None:
    heads = (raw.get("model_config") or {}).get("head_configs") or {}
    found = first_non_null(heads) if isinstance(heads, dict) else None
    return None if found is None else found[0]


def is_embedding_folder(path: str | Path) -> bool:
    """Whether ``path`` is a sleap-nn model folder (or its config/ckpt) of the embedding type."""
    p = Path(path).expanduser()
    try:
        cfg = (p.parent if p.is_file() else p) / "training_config.yaml"
        if not cfg.is_file():
            return False
    except OSError:  # a name too long, a folder it may not read: the model loader says so
        return False
    try:
        return _head_type(read_yaml_mapping(cfg)) == "embedding"
    except (ConfigError, ModelLoadError):
        return False


def read_embedding_config(model_dir: str | Path) -> EmbeddingModelConfig:
    """Decode an embedding model folder's ``training_config.yaml`` (no weights)."""
    from sleapflow.models.normalise import normalise_backbone

    d = Path(model_dir).expanduser()
    if d.is_file():
        d = d.parent
    cfg_path = d / "training_config.yaml"
    if not (d / "best.ckpt").is_file() or not cfg_path.is_file():
        raise ModelLoadError(f"embedding model folder {str(d)!r} needs best.ckpt and training_config.yaml")
    source = str(cfg_path)
    raw = read_yaml_mapping(cfg_path)
    if _head_type(raw) != "embedding":
        raise ConfigError(f"{source}: not an embedding model (head_configs.embedding is null)")
    model = raw["model_config"]
    bb = first_non_null(model.get("backbone_config") or {})
    if bb is None or bb[0] not in BACKBONE_STRUCTS:
        raise ConfigError(f"{source}: the embedding model's backbone must be one of {list(BACKBONE_STRUCTS)}")
    backbone = normalise_backbone(bb[0], bb[1], source)
    leaf = (model["head_configs"]["embedding"] or {}).get("embedding")
    if leaf is None:
        raise ConfigError(f"{source}: required field "
                          "`model_config.head_configs.embedding.embedding` is missing")
    head = convert(leaf, _FileEmbeddingHead, prefix="model_config.head_configs.embedding.embedding",
                   source=source)
    pre = convert((raw.get("data_config") or {}).get("preprocessing") or {}, _FilePre,
                  prefix="data_config.preprocessing", source=source)
    # sleap-nn writes the resolved pool into the saved config; a hand-written one may omit it,
    # and then the native backbones use GeM.
    pool = head.pool or "gem"
    if pool not in ("gem", "max", "avg"):
        raise ConfigError(f"{source}: embedding pool {pool!r} is not one of gem, max, avg")
    if head.num_fc_layers < 0 or head.num_fc_units < 1 or head.embedding_dim < 1:
        raise ConfigError(f"{source}: embedding num_fc_layers/num_fc_units/embedding_dim must be positive")
    if pre.crop_size is None or pre.crop_size < 1:
        raise ConfigError(f"{source}: the embedding model has no data_config.preprocessing.crop_size")
    if isinstance(backbone, UNetConfig) and backbone.output_stride != backbone.max_stride:
        # The pooled head reads the middle output; sleap-nn builds no decoder for it.
        backbone = msgspec.structs.replace(backbone, output_stride=backbone.max_stride)
    return EmbeddingModelConfig(
        path=str(d), backbone_type=bb[0], backbone=backbone, embedding_dim=head.embedding_dim,
        num_fc_layers=head.num_fc_layers, num_fc_units=head.num_fc_units, pool=pool,
        normalize=head.normalize, crop_size=int(pre.crop_size), max_height=pre.max_height,
        max_width=pre.max_width, ensure_rgb=pre.ensure_rgb, anchor_part=head.anchor_part,
        burn_in=pre.burn_in,
    )

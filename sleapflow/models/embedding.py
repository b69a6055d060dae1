"""sleap-nn ``embedding`` (re-ID) models: config, network (crop → unit vector) and loading."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import torch
import torch.nn.functional as F
import yaml
from torch import nn

from sleapflow.errors import ConfigError, ModelLoadError
from sleapflow.models.checkpoint import read_checkpoint, strip_prefix
from sleapflow.models.file_schema import BACKBONE_STRUCTS, convert, first_non_null
from sleapflow.models.schema import ConvNeXtConfig, SwinTConfig, UNetConfig

__all__ = (
    "EMBEDDING_HEAD", "EmbeddingModelConfig", "EmbeddingNetwork", "LoadedEmbedding", "is_embedding_folder",
    "load_embedding_model", "read_embedding_config", "standardize_crops",
)

#: The network's output key, as sleap-nn names the head.
EMBEDDING_HEAD = "EmbeddingHead"
# sleap-nn's GeM clamps its learnable exponent to this range at inference.
_GEM_P_RANGE = (1.0, 6.0)
_GEM_EPS = 1e-6
# sleap-nn's per-crop standardisation: eps added to the std, and a floor of one grey level so a
# flat crop does not blow up.
_STD_EPS = 1e-5
_STD_FLOOR = 1.0


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


def _load_yaml(path: Path) -> dict[str, Any]:
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ModelLoadError(f"cannot read {path}: {exc}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return raw


def _head_type(raw: dict[str, Any]) -> str | None:
    heads = (raw.get("model_config") or {}).get("head_configs") or {}
    found = first_non_null(heads) if isinstance(heads, dict) else None
    return None if found is None else found[0]


def is_embedding_folder(path: str | Path) -> bool:
    """Whether ``path`` is a sleap-nn model folder (or its config/ckpt) of the embedding type."""
    p = Path(path).expanduser()
    cfg = (p.parent if p.is_file() else p) / "training_config.yaml"
    if not cfg.is_file():
        return False
    try:
        return _head_type(_load_yaml(cfg)) == "embedding"
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
    raw = _load_yaml(cfg_path)
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


class _GeM(nn.Module):
    """Generalised-mean pooling with a learnable exponent ``p`` (state key ``p``)."""

    def __init__(self) -> None:
        super().__init__()
        self.p = nn.Parameter(torch.ones(1) * 3.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = self.p.clamp(*_GEM_P_RANGE)
        return F.adaptive_avg_pool2d(x.clamp(min=_GEM_EPS).pow(p), 1).pow(1.0 / p).flatten(1)


class _L2Norm(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(x, dim=1)


def standardize_crops(x: torch.Tensor) -> torch.Tensor:
    """Per-crop, per-channel standardisation of 0..255 crops, as sleap-nn's embedder does it."""
    mu = x.mean(dim=(2, 3), keepdim=True)
    std = ((x - mu) ** 2).mean(dim=(2, 3), keepdim=True).sqrt() + _STD_EPS
    return (x - mu) / std.clamp(min=_STD_FLOOR)


def _pool(kind: str) -> nn.Module:
    if kind == "gem":
        return _GeM()
    return nn.AdaptiveMaxPool2d(1) if kind == "max" else nn.AdaptiveAvgPool2d(1)


class EmbeddingNetwork(nn.Module):
    """Backbone + pooled embedding head; ``forward`` maps crops in [0, 1] to ``{EmbeddingHead: (N, D)}``.

    The module names match sleap-nn's (``backbone.*``, ``head_layers.0.*``) so its checkpoint
    loads strictly.
    """

    def __init__(self, cfg: EmbeddingModelConfig) -> None:
        super().__init__()
        from sleapflow.models.network import build_backbone

        self.cfg = cfg
        self.in_channels = cfg.backbone.in_channels
        # build_backbone reads only the backbone fields, which this stand-in carries.
        self.backbone = build_backbone(_BackboneOnly(cfg))  # type: ignore[arg-type]
        middle: int = self.backbone.middle_channels  # type: ignore[assignment]
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        layers["pre_embedding_pool"] = _pool(cfg.pool)
        layers["pre_embedding_flatten"] = nn.Flatten(start_dim=1)
        width = middle
        for i in range(cfg.num_fc_layers):
            layers[f"pre_embedding{i}_fc"] = nn.Linear(width, cfg.num_fc_units)
            layers[f"pre_embedding{i}_relu"] = nn.ReLU()
            width = cfg.num_fc_units
        layers[EMBEDDING_HEAD] = nn.Linear(width, cfg.embedding_dim)
        if cfg.normalize:
            layers["l2norm"] = _L2Norm()
        self.head_layers = nn.ModuleList([nn.Sequential(layers)])

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        # The runners hand over [0, 1]; sleap-nn standardises crops on the 0..255 scale, where
        # its std floor of one grey level is defined.
        x = x.contiguous().reshape(x.shape).float() * 255.0
        c = x.shape[-3]
        if c == 3 and not self.cfg.ensure_rgb:
            r, g, b = x.unbind(dim=-3)
            x = r.mul(0.2989).add_(g, alpha=0.587).add_(b, alpha=0.114).unsqueeze(-3)
        elif c == 1 and self.cfg.ensure_rgb:
            x = x.repeat(1, 3, 1, 1)
        x = standardize_crops(x)
        if x.shape[-3] != self.in_channels:
            x = x.repeat(1, 3, 1, 1) if x.shape[-3] == 1 else x.mean(dim=-3, keepdim=True)
        feats = self.backbone(x)
        return {EMBEDDING_HEAD: self.head_layers[0](feats.middle)}


class _BackboneOnly:
    """The two fields :func:`build_backbone` reads, from an embedding config."""

    def __init__(self, cfg: EmbeddingModelConfig) -> None:
        self.backbone = cfg.backbone
        self.backbone_type = cfg.backbone_type
        self.path = cfg.path


@dataclass(frozen=True)
class LoadedEmbedding:
    """A ready-to-run embedding model (same shape as ``LoadedModel``, for the forward stage)."""

    path: Path
    config: EmbeddingModelConfig
    module: torch.nn.Module


def load_embedding_model(path: str | Path, device: str | torch.device = "cpu") -> LoadedEmbedding:
    """Load an embedding model folder strictly (train-only tensors such as the projection dropped)."""
    from sleapflow.models.loader import load_state_strict

    cfg = read_embedding_config(path)
    d = Path(cfg.path)
    net = EmbeddingNetwork(cfg)
    state = strip_prefix(read_checkpoint(d / "best.ckpt"))
    # The contrastive projection head only exists for training; inference never runs it.
    state = {k: v for k, v in state.items() if k.startswith(("backbone.", "head_layers."))}
    load_state_strict(net, state, ckpt=d / "best.ckpt", config=d / "training_config.yaml")
    net.eval()
    net.requires_grad_(False)
    net.to(torch.device(device))
    return LoadedEmbedding(path=d, config=cfg, module=net)

"""sleap-nn ``embedding`` (re-ID) models: config, network (crop → unit vector) and loading."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from sleapflow.models.checkpoint import read_checkpoint, strip_prefix
from sleapflow.models.embedding_config import EmbeddingModelConfig, is_embedding_folder, read_embedding_config

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

"""sleap-nn's ConvNeXt backbone (spec §2.7), torchvision-compatible names, no torchvision import."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from sleapflow.models.layers import BackboneOutput, Decoder, SamePadMaxPool2d, middle_blocks
from sleapflow.models.schema import ConvNeXtConfig

__all__ = (
    "CNBlock", "ConvNeXtBackbone", "ConvNeXtEncoder", "LayerNorm2d", "Permute", "transformer_decoder_layout",
)



class Permute(nn.Module):
    """``torchvision.ops.misc.Permute``: a parameter-free ``torch.permute`` entry."""

    def __init__(self, dims: list[int]) -> None:
        super().__init__()
        self.dims = dims

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.permute(x, self.dims)


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channel axis of an NCHW tensor (torchvision's ``LayerNorm2d``)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.permute(0, 2, 3, 1)
        x = F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


class CNBlock(nn.Module):
    """ConvNeXt block: depthwise 7×7, LayerNorm, MLP ×4 with GELU, layer scale, residual.

    Stochastic depth is the identity at inference, so it has no entry here (it has no params).
    """

    def __init__(self, dim: int, layer_scale: float = 1e-6) -> None:
        super().__init__()
        self.block = nn.Sequential(
            nn.Conv2d(dim, dim, kernel_size=7, padding=3, groups=dim, bias=True),
            Permute([0, 2, 3, 1]),
            nn.LayerNorm(dim, eps=1e-6),
            nn.Linear(dim, 4 * dim, bias=True),
            nn.GELU(),
            nn.Linear(4 * dim, dim, bias=True),
            Permute([0, 3, 1, 2]),
        )
        self.layer_scale = nn.Parameter(torch.ones(dim, 1, 1) * layer_scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer_scale * self.block(x) + x


class ConvNeXtEncoder(nn.Module):
    """``features``: stem, then stage/downsample alternating (8 entries for 4 stages)."""

    def __init__(self, cfg: ConvNeXtConfig) -> None:
        super().__init__()
        ch = cfg.channels
        layers: list[nn.Module] = [
            nn.Sequential(
                # sleap-nn pads the stem by 1 where torchvision pads by 0.
                nn.Conv2d(
                    cfg.in_channels,
                    ch[0],
                    kernel_size=cfg.stem_patch_kernel,
                    stride=cfg.stem_patch_stride,
                    padding=1,
                    bias=True,
                ),
                LayerNorm2d(ch[0], eps=1e-6),
            )
        ]
        for i, depth in enumerate(cfg.depths):
            layers.append(nn.Sequential(*(CNBlock(ch[i]) for _ in range(depth))))
            if i < len(cfg.depths) - 1:
                layers.append(
                    nn.Sequential(
                        LayerNorm2d(ch[i], eps=1e-6),
                        nn.Conv2d(ch[i], ch[i + 1], kernel_size=2, stride=2),
                    )
                )
        self.features = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        out = []
        for layer in self.features:
            x = layer(x)
            out.append(x)
        return out


def transformer_decoder_layout(
    stem_patch_stride: int, output_stride: int
) -> tuple[int, int]:
    """(true network stride, number of decoder blocks) for ConvNeXt/SwinT wrappers."""
    top = stem_patch_stride * 16
    up = int(math.log2(top / (stem_patch_stride * output_stride))) + int(
        math.log2(stem_patch_stride)
    )
    return top, up


class ConvNeXtBackbone(nn.Module):
    """ConvNeXt encoder + extra pool + middle blocks + UNet-style decoder.

    Skips are the stem output and the three downsampling outputs (before each stage's blocks).
    The network stride is ``16 · stem_patch_stride`` whatever the config's ``max_stride`` says.
    """

    def __init__(self, cfg: ConvNeXtConfig) -> None:
        super().__init__()
        ch = cfg.channels
        top, up = transformer_decoder_layout(cfg.stem_patch_stride, cfg.output_stride)
        mid = int(ch[-1] * cfg.filters_rate)
        self.enc = ConvNeXtEncoder(cfg)
        self.additional_pool = SamePadMaxPool2d()
        self.middle_blocks = middle_blocks(
            "convnext_middle_expand",
            "convnext_middle_contract",
            ch[-1],
            mid,
            cfg.convs_per_block,
            cfg.kernel_size,
        )
        self.dec = Decoder(
            prefix="dec",
            x_in=mid,
            top_stride=top,
            filters=ch[0],
            filters_rate=cfg.filters_rate,
            down_blocks=len(ch) - 1,
            stem_blocks=1,
            up_blocks=up,
            convs_per_block=cfg.convs_per_block,
            kernel_size=cfg.kernel_size,
            up_interpolate=cfg.up_interpolate,
            skip_channels=list(ch[::-1]),
        )
        self.stride_to_filters = dict(self.dec.stride_to_filters)
        self.strides: list[int] = list(self.dec.strides)
        self.middle_channels = mid

    def forward(self, x: torch.Tensor) -> BackboneOutput:
        feats = self.enc(x)
        skips = feats[::2][::-1]
        x = self.additional_pool(feats[-1])
        for block in self.middle_blocks:
            x = block(x)
        return BackboneOutput(self.dec(x, skips), self.strides, x)

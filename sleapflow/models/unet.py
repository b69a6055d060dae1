"""sleap-nn's UNet backbone (spec §2.2–2.5), with its exact module names."""

from __future__ import annotations

import math
from collections import OrderedDict

import torch
from torch import nn

from sleapflow.models.layers import (
    BackboneOutput,
    ConvBlock,
    Decoder,
    SamePadMaxPool2d,
    middle_blocks,
)
from sleapflow.models.schema import UNetConfig

__all__ = ("UNet",)



class _Encoder(nn.Module):
    """Conv blocks 0..D-1 (blocks ≥ 1 pool first) plus a final pool-only entry."""

    def __init__(self, cfg: UNetConfig, down_blocks: int) -> None:
        super().__init__()
        self.encoder_stack = nn.ModuleList()
        prev = cfg.in_channels
        for b in range(down_blocks):
            out = _filters(cfg, b)
            self.encoder_stack.append(
                ConvBlock(
                    f"stack0_enc{b}",
                    prev,
                    out,
                    cfg.convs_per_block,
                    cfg.kernel_size,
                    pool_before=b > 0,
                )
            )
            prev = out
        self.encoder_stack.append(
            nn.Sequential(OrderedDict({f"stack0_enc{down_blocks}_last_pool": SamePadMaxPool2d()}))
        )

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        features = []
        for block in self.encoder_stack[:-1]:
            x = block(x)
            features.append(x)
        x = self.encoder_stack[-1](x)
        # Deepest skip first, as the decoder consumes them.
        return x, features[::-1]


def _filters(cfg: UNetConfig, e: int) -> int:
    # sleap-nn truncates: 8·1.5⁴ = 40.5 → 40.
    return int(cfg.filters * (cfg.filters_rate**e))


class UNet(nn.Module):
    """UNet with one stack, a middle block and ``log2(max_stride/output_stride)`` up blocks."""

    def __init__(self, cfg: UNetConfig) -> None:
        super().__init__()
        down = int(math.log2(cfg.max_stride))
        up = int(math.log2(cfg.max_stride // cfg.output_stride))
        self.cfg = cfg
        # Registration order (encoders, decoders, middle_blocks) mirrors sleap-nn's key order.
        self.encoders = nn.ModuleList()
        self.decoders = nn.ModuleList()
        mid = _filters(cfg, down)
        self.middle_blocks = middle_blocks(
            f"stack0_enc{down + 1}_middle_expand",
            f"stack0_enc{down + 2 if cfg.convs_per_block > 1 else down + 1}_middle_contract",
            _filters(cfg, down - 1) if down > 0 else cfg.in_channels,
            mid,
            cfg.convs_per_block,
            cfg.kernel_size,
        )
        self.encoders.append(_Encoder(cfg, down))
        self.decoders.append(
            Decoder(
                prefix="stack0_dec",
                x_in=mid,
                top_stride=cfg.max_stride,
                filters=cfg.filters,
                filters_rate=cfg.filters_rate,
                down_blocks=down,
                stem_blocks=0,
                up_blocks=up,
                convs_per_block=cfg.convs_per_block,
                kernel_size=cfg.kernel_size,
                up_interpolate=cfg.up_interpolate,
            )
        )
        self.stride_to_filters = dict(self.decoders[0].stride_to_filters)
        self.middle_channels = mid
        self.strides: list[int] = list(self.decoders[0].strides)

    def forward(self, x: torch.Tensor) -> BackboneOutput:
        x, features = self.encoders[0](x)
        for block in self.middle_blocks:
            x = block(x)
        outputs = self.decoders[0](x, features)
        return BackboneOutput(outputs, self.decoders[0].strides, x)

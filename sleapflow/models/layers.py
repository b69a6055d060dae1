"""Shared building blocks of sleap-nn's backbones: same-padded pool, conv blocks, the decoder."""

from __future__ import annotations

import math
from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ("BackboneOutput", "ConvBlock", "Decoder", "SamePadMaxPool2d", "UpsampleBlock", "middle_blocks")



class SamePadMaxPool2d(nn.Module):
    """2×2/2 max-pool with TF-style "same" zero padding (``MaxPool2dWithSamePadding``).

    Padding is ``max((ceil(i/2) - 1)·2 + 2 - i, 0)`` per axis (1 for odd sizes), split ``pad//2``
    before and the rest after. The padding is zeros, which matters for negative features.
    """

    def __init__(self) -> None:
        super().__init__()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        ph = max((math.ceil(h / 2) - 1) * 2 + 2 - h, 0)
        pw = max((math.ceil(w / 2) - 1) * 2 + 2 - w, 0)
        if ph or pw:
            x = F.pad(x, (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2))
        return F.max_pool2d(x, kernel_size=2, stride=2)


class ConvBlock(nn.Module):
    """``SimpleConvBlock``: optional leading pool, then ``num_convs`` × (conv "same" + ReLU).

    Entries live in ``self.blocks`` under sleap-nn's names so state_dict keys line up.
    """

    def __init__(
        self,
        prefix: str,
        in_channels: int,
        filters: int,
        num_convs: int,
        kernel_size: int,
        *,
        pool_before: bool = False,
    ) -> None:
        super().__init__()
        self.filters = filters
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        if pool_before:
            layers[f"{prefix}_pool"] = SamePadMaxPool2d()
        for i in range(num_convs):
            layers[f"{prefix}_conv{i}"] = nn.Conv2d(
                in_channels if i == 0 else filters, filters, kernel_size, padding="same"
            )
            layers[f"{prefix}_act{i}_relu"] = nn.ReLU()
        self.blocks = nn.Sequential(layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(x)


class UpsampleBlock(nn.Module):
    """``SimpleUpsamplingBlock``: ×2 upsample, concat ``[skip, x]``, refine convs.

    Interpolation mode has one upsampling entry; transposed mode has the transposed conv and its
    ReLU (``padding=1, output_padding=1``: sleap-nn's alignment, one pixel off Keras).
    """

    def __init__(
        self,
        prefix: str,
        x_in: int,
        filters: int,
        skip_channels: int | None,
        refine_convs: int,
        kernel_size: int,
        up_interpolate: bool,
    ) -> None:
        super().__init__()
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        if up_interpolate:
            layers[f"{prefix}_interp_bilinear"] = nn.Upsample(
                scale_factor=2, mode="bilinear", align_corners=False
            )
            upsampled = x_in
            self._n_up = 1
        else:
            layers[f"{prefix}_trans_conv"] = nn.ConvTranspose2d(
                x_in, filters, kernel_size=3, stride=2, padding=1, output_padding=1
            )
            layers[f"{prefix}_trans_conv_act_relu"] = nn.ReLU()
            upsampled = filters
            self._n_up = 2
        first_in = upsampled + skip_channels if skip_channels is not None else upsampled
        for i in range(refine_convs):
            layers[f"{prefix}_refine_conv{i}"] = nn.Conv2d(
                first_in if i == 0 else filters, filters, kernel_size, padding="same"
            )
            layers[f"{prefix}_refine_conv{i}_act_relu"] = nn.ReLU()
        self.blocks = nn.Sequential(layers)
        self.filters = filters

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None) -> torch.Tensor:
        for i, layer in enumerate(self.blocks):
            if i == self._n_up and skip is not None:
                if x.shape[-2:] != skip.shape[-2:]:
                    # Only reachable when the input was not padded to the true network stride.
                    x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
                x = torch.cat((skip, x), dim=1)
            x = layer(x)
        return x


class Decoder(nn.Module):
    """sleap-nn ``Decoder``: a stack of ``UpsampleBlock`` from ``top_stride`` down.

    Block ``b`` outputs ``int(filters · rate**max(0, down + stem - 1 - b))`` channels. Blocks past
    the last skip feature (only with a stem) have one refine conv and no concatenation.
    """

    def __init__(
        self,
        *,
        prefix: str,
        x_in: int,
        top_stride: int,
        filters: int,
        filters_rate: float,
        down_blocks: int,
        stem_blocks: int,
        up_blocks: int,
        convs_per_block: int,
        kernel_size: int,
        up_interpolate: bool,
        skip_channels: list[int] | None = None,
    ) -> None:
        super().__init__()
        self.decoder_stack = nn.ModuleList()
        self.strides: list[int] = []
        self.stride_to_filters: dict[int, int] = {top_stride: x_in}
        stride = top_stride
        prev = x_in
        n_skips = down_blocks + stem_blocks
        for b in range(up_blocks):
            out = int(filters * (filters_rate ** max(0, down_blocks + stem_blocks - 1 - b)))
            nxt = stride // 2
            name = f"{prefix}{b}_s{stride}_to_s{nxt}"
            if stem_blocks > 0 and b >= n_skips:
                block = UpsampleBlock(name, prev, out, None, 1, kernel_size, up_interpolate)
            else:
                skip = skip_channels[b] if skip_channels is not None else out
                block = UpsampleBlock(
                    name, prev, out, skip, convs_per_block, kernel_size, up_interpolate
                )
            self.decoder_stack.append(block)
            self.stride_to_filters[nxt] = out
            self.strides.append(nxt)
            stride = nxt
            prev = out

    def forward(self, x: torch.Tensor, features: list[torch.Tensor]) -> list[torch.Tensor]:
        outputs = []
        for i, block in enumerate(self.decoder_stack):
            x = block(x, features[i] if i < len(features) else None)
            outputs.append(x)
        return outputs


def middle_blocks(
    prefix_expand: str,
    prefix_contract: str,
    in_channels: int,
    filters: int,
    convs_per_block: int,
    kernel_size: int,
) -> nn.ModuleList:
    """Middle expand (``convs_per_block - 1`` convs) and contract (1 conv) blocks at ``filters``."""
    blocks = nn.ModuleList()
    if convs_per_block > 1:
        blocks.append(
            ConvBlock(prefix_expand, in_channels, filters, convs_per_block - 1, kernel_size)
        )
    blocks.append(ConvBlock(prefix_contract, filters, filters, 1, kernel_size))
    return blocks


class BackboneOutput:
    """What a backbone hands the heads: decoder outputs and strides, plus the middle output."""

    __slots__ = ("middle", "outputs", "strides")

    def __init__(
        self, outputs: list[torch.Tensor], strides: list[int], middle: torch.Tensor
    ) -> None:
        self.outputs = outputs
        self.strides = strides
        self.middle = middle

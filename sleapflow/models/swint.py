"""sleap-nn's SwinT backbone (spec §2.8): torchvision Swin v1 blocks re-written, same names."""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import nn

from sleapflow.models.convnext import Permute, transformer_decoder_layout
from sleapflow.models.layers import BackboneOutput, Decoder, SamePadMaxPool2d, middle_blocks
from sleapflow.models.schema import SwinTConfig

__all__ = (
    "PatchMerging", "ShiftedWindowAttention", "SwinTBackbone", "SwinTEncoder", "SwinTransformerBlock",
    "relative_position_index",
)



def relative_position_index(window: int) -> torch.Tensor:
    """Flattened (w²·w²,) int64 index into the (2w-1)² bias table, as torchvision builds it."""
    ys, xs = torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")
    coords = torch.stack((ys.flatten(), xs.flatten()))  # (2, N)
    rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0)  # (N, N, 2)
    dy = rel[..., 0] + (window - 1)
    dx = rel[..., 1] + (window - 1)
    return (dy * (2 * window - 1) + dx).flatten()


@functools.lru_cache(maxsize=64)
def _shift_mask(pad_h: int, pad_w: int, window: int, shift: tuple[int, int],
                device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """(nW, N, N) additive mask: -100 between tokens that came from different regions.

    Cached per geometry/device: it depends only on sizes, and every shifted block reuses it.
    """
    region = torch.zeros((pad_h, pad_w), device=device, dtype=dtype)
    label = 0
    for hs in ((0, -window), (-window, -shift[0]), (-shift[0], None)):
        for ws in ((0, -window), (-window, -shift[1]), (-shift[1], None)):
            region[hs[0]:hs[1], ws[0]:ws[1]] = label
            label += 1
    region = region.view(pad_h // window, window, pad_w // window, window)
    region = region.permute(0, 2, 1, 3).reshape(-1, window * window)
    diff = region.unsqueeze(1) - region.unsqueeze(2)
    return diff.masked_fill(diff != 0, -100.0).masked_fill(diff == 0, 0.0)


class ShiftedWindowAttention(nn.Module):
    """Window multi-head self-attention with relative position bias and cyclic shift (v1)."""

    def __init__(self, dim: int, window: int, shift: int, num_heads: int) -> None:
        super().__init__()
        self.window = window
        self.shift = shift
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=True)
        self.proj = nn.Linear(dim, dim, bias=True)
        self.relative_position_bias_table = nn.Parameter(
            torch.zeros((2 * window - 1) ** 2, num_heads)
        )
        # A persistent buffer: it is part of sleap-nn's state_dict and must load strictly.
        self.register_buffer("relative_position_index", relative_position_index(window))

    def _bias(self) -> torch.Tensor:
        n = self.window * self.window
        bias = self.relative_position_bias_table[self.relative_position_index]
        return bias.view(n, n, -1).permute(2, 0, 1).contiguous().unsqueeze(0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, h, w, c = x.shape
        win = self.window
        pad_r = (win - w % win) % win
        pad_b = (win - h % win) % win
        x = F.pad(x, (0, 0, 0, pad_r, 0, pad_b))
        _, ph, pw, _ = x.shape
        # No shift along an axis the window already covers whole.
        shift = (0 if win >= ph else self.shift, 0 if win >= pw else self.shift)
        if sum(shift) > 0:
            x = torch.roll(x, shifts=(-shift[0], -shift[1]), dims=(1, 2))
        n_win = (ph // win) * (pw // win)
        x = x.view(b, ph // win, win, pw // win, win, c).permute(0, 1, 3, 2, 4, 5)
        x = x.reshape(b * n_win, win * win, c)

        heads = self.num_heads
        qkv = F.linear(x, self.qkv.weight, self.qkv.bias)
        qkv = qkv.reshape(x.size(0), x.size(1), 3, heads, c // heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        q = q * (c // heads) ** -0.5
        attn = q.matmul(k.transpose(-2, -1)) + self._bias()
        if sum(shift) > 0:
            mask = _shift_mask(ph, pw, win, shift, x.device, x.dtype)
            attn = attn.view(x.size(0) // n_win, n_win, heads, x.size(1), x.size(1))
            attn = attn + mask.unsqueeze(1).unsqueeze(0)
            attn = attn.view(-1, heads, x.size(1), x.size(1))
        attn = F.softmax(attn, dim=-1)
        x = attn.matmul(v).transpose(1, 2).reshape(x.size(0), x.size(1), c)
        x = F.linear(x, self.proj.weight, self.proj.bias)

        x = x.view(b, ph // win, pw // win, win, win, c).permute(0, 1, 3, 2, 4, 5)
        x = x.reshape(b, ph, pw, c)
        if sum(shift) > 0:
            x = torch.roll(x, shifts=(shift[0], shift[1]), dims=(1, 2))
        return x[:, :h, :w, :].contiguous()


class SwinTransformerBlock(nn.Module):
    """Pre-norm attention + MLP block on NHWC tensors (``mlp.0``/``mlp.3`` are the Linears)."""

    def __init__(self, dim: int, num_heads: int, window: int, shift: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-5)
        self.attn = ShiftedWindowAttention(dim, window, shift, num_heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-5)
        # Same indices as torchvision's MLP: Linear, GELU, Dropout, Linear, Dropout.
        self.mlp = nn.Sequential(
            nn.Linear(dim, 4 * dim), nn.GELU(), nn.Dropout(0.0), nn.Linear(4 * dim, dim),
            nn.Dropout(0.0),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class PatchMerging(nn.Module):
    """2×2 neighbourhood concat (zero-padding odd sizes), LayerNorm(4C), Linear 4C→2C."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)
        self.norm = nn.LayerNorm(4 * dim, eps=1e-5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-3:-1]
        x = F.pad(x, (0, 0, 0, w % 2, 0, h % 2))
        x = torch.cat(
            (x[..., 0::2, 0::2, :], x[..., 1::2, 0::2, :], x[..., 0::2, 1::2, :],
             x[..., 1::2, 1::2, :]),
            dim=-1,
        )
        return self.reduction(self.norm(x))


class SwinTEncoder(nn.Module):
    """``features``: patch stem, then stage/merge alternating; ``norm`` on the last stage."""

    def __init__(self, cfg: SwinTConfig) -> None:
        super().__init__()
        layers: list[nn.Module] = [
            nn.Sequential(
                nn.Conv2d(
                    cfg.in_channels,
                    cfg.embed,
                    kernel_size=cfg.patch_size,
                    stride=cfg.stem_patch_stride,
                    padding=1,
                ),
                Permute([0, 2, 3, 1]),
                nn.LayerNorm(cfg.embed, eps=1e-5),
            )
        ]
        for i, depth in enumerate(cfg.depths):
            dim = cfg.embed * 2**i
            layers.append(
                nn.Sequential(
                    *(
                        SwinTransformerBlock(
                            dim,
                            cfg.num_heads[i],
                            cfg.window_size,
                            0 if j % 2 == 0 else cfg.window_size // 2,
                        )
                        for j in range(depth)
                    )
                )
            )
            if i < len(cfg.depths) - 1:
                layers.append(PatchMerging(dim))
        self.features = nn.Sequential(*layers)
        self.norm = nn.LayerNorm(cfg.embed * 2 ** (len(cfg.depths) - 1), eps=1e-5)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        out = []
        last = len(self.features) - 1
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i == last:
                x = self.norm(x)
            out.append(x.permute(0, 3, 1, 2))
        return out


class SwinTBackbone(nn.Module):
    """SwinT encoder + extra pool + middle blocks (``convnext_middle_*`` names) + decoder."""

    def __init__(self, cfg: SwinTConfig) -> None:
        super().__init__()
        top, up = transformer_decoder_layout(cfg.stem_patch_stride, cfg.output_stride)
        n_stages = len(cfg.depths)
        last = cfg.embed * 2 ** (n_stages - 1)
        mid = int(last * cfg.filters_rate)
        self.enc = SwinTEncoder(cfg)
        self.additional_pool = SamePadMaxPool2d()
        self.middle_blocks = middle_blocks(
            "convnext_middle_expand",
            "convnext_middle_contract",
            last,
            mid,
            cfg.convs_per_block,
            cfg.kernel_size,
        )
        self.dec = Decoder(
            prefix="dec",
            x_in=mid,
            top_stride=top,
            filters=cfg.embed,
            filters_rate=cfg.filters_rate,
            down_blocks=n_stages - 1,
            stem_blocks=1,
            up_blocks=up,
            convs_per_block=cfg.convs_per_block,
            kernel_size=cfg.kernel_size,
            up_interpolate=cfg.up_interpolate,
            skip_channels=[cfg.embed * 2 ** (n_stages - 1 - i) for i in range(n_stages)],
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

"""Numerically-neutral rewrites that make a loaded network faster at inference."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ("explicit_same_padding", "prepare_for_inference")



def explicit_same_padding(module: nn.Module) -> int:
    """Replace ``padding="same"`` by the equivalent symmetric integer padding where it exists.

    For odd kernels with stride 1 and dilation 1 the two pad identically, but the integer form
    takes torch's fast convolution paths (the string form pads separately first). Returns how
    many layers changed.
    """
    changed = 0
    for layer in module.modules():
        if isinstance(layer, nn.Conv2d) and layer.padding == "same":
            kh, kw = layer.kernel_size
            if kh % 2 and kw % 2 and layer.dilation == (1, 1) and layer.padding_mode == "zeros":
                layer.padding = (kh // 2, kw // 2)
                changed += 1
    return changed


def prepare_for_inference(module: nn.Module, device: torch.device, *,
                          channels_last: bool = False) -> nn.Module:
    """Eval mode and integer padding (bit-identical); optionally channels-last memory.

    Channels-last makes oneDNN's CPU convolutions 2-4x faster but sums in another order: maps
    move by ~1e-5, which can flip a near-tied peak (measured: one point score off by 0.03 on the
    legacy top-down clip), so it is opt-in and parity runs leave it off.
    """
    module.eval()
    explicit_same_padding(module)
    if channels_last:
        module.to(memory_format=torch.channels_last)
    return module

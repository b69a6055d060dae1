"""The full network: backbone + heads, with sleap-nn ``Model.forward`` semantics (spec §2.6)."""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from sleapflow.errors import ConfigError
from sleapflow.models.schema import ModelConfig, UNetConfig

__all__ = ("PoseNetwork", "build_backbone")



def _spatial_head(name: str, in_channels: int, out_channels: int, sigmoid: bool) -> nn.Sequential:
    # Keys: head_layers.{i}.{name}.0.weight|bias (conv) then the activation at index 1.
    act: nn.Module = nn.Sigmoid() if sigmoid else nn.Identity()
    conv = nn.Conv2d(in_channels, out_channels, kernel_size=1, padding="same")
    return nn.Sequential(OrderedDict({name: nn.Sequential(conv, act)}))


def _class_vectors_head(
    in_channels: int, n_classes: int, num_fc_layers: int, num_fc_units: int, global_pool: bool
) -> nn.Sequential:
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    if global_pool:
        layers["pre_classification_global_pool"] = nn.AdaptiveMaxPool2d(1)
    layers["pre_classification_flatten"] = nn.Flatten(start_dim=1)
    for j in range(num_fc_layers):
        layers[f"pre_classification{j}_fc"] = nn.Linear(
            in_channels if j == 0 else num_fc_units, num_fc_units
        )
        layers[f"pre_classification{j}_relu"] = nn.ReLU()
    layers["ClassVectorsHead"] = nn.Linear(num_fc_units, n_classes)
    layers["softmax"] = nn.Softmax(dim=-1)
    return nn.Sequential(layers)


def build_backbone(cfg: ModelConfig) -> nn.Module:
    """Instantiate the configured backbone (weights uninitialised-random)."""
    bb = cfg.backbone
    if isinstance(bb, UNetConfig):
        from sleapflow.models.unet import UNet

        return UNet(bb)
    if cfg.backbone_type == "convnext":
        from sleapflow.models.convnext import ConvNeXtBackbone

        return ConvNeXtBackbone(bb)  # type: ignore[arg-type]
    if cfg.backbone_type == "swint":
        from sleapflow.models.swint import SwinTBackbone

        return SwinTBackbone(bb)  # type: ignore[arg-type]
    raise ConfigError(f"{cfg.path}: backbone {cfg.backbone_type!r} is not supported")


class PoseNetwork(nn.Module):
    """``backbone`` + ``head_layers``; ``forward`` returns ``{HeadClassName: tensor}``."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.in_channels = cfg.in_channels
        self.head_names = cfg.head_names
        self.backbone = build_backbone(cfg)
        stride_to_filters: dict[int, int] = self.backbone.stride_to_filters  # type: ignore[assignment]
        middle_channels: int = self.backbone.middle_channels  # type: ignore[assignment]
        has_decoder = len(self.backbone.strides) > 0  # type: ignore[arg-type]

        specs: list[tuple[str, int, int]] = []  # (head name, output stride, channels)
        n_parts = len(cfg.confmaps.part_names) if cfg.confmaps.part_names is not None else 1
        specs.append((cfg.head_names[0], cfg.confmaps.output_stride, n_parts))
        if cfg.pafs is not None:
            specs.append((cfg.head_names[1], cfg.pafs.output_stride, 2 * len(cfg.pafs.edges)))
        if cfg.class_maps is not None:
            specs.append(
                (cfg.head_names[1], cfg.class_maps.output_stride, len(cfg.class_maps.classes))
            )

        self.head_layers = nn.ModuleList()
        # Per head: index into the decoder outputs, or -1 for the middle output.
        self._head_sources: list[int] = []
        strides: list[int] = list(self.backbone.strides)  # type: ignore[arg-type]
        for name, stride, channels in specs:
            if has_decoder:
                in_ch = stride_to_filters[stride]
                self._head_sources.append(strides.index(stride))
            else:
                in_ch = middle_channels
                self._head_sources.append(-1)
            self.head_layers.append(
                _spatial_head(name, in_ch, channels, sigmoid=name == "ClassMapsHead")
            )
        if cfg.class_vectors is not None:
            cv = cfg.class_vectors
            self.head_layers.append(
                _class_vectors_head(
                    middle_channels,
                    len(cv.classes),
                    cv.num_fc_layers,
                    cv.num_fc_units,
                    cv.global_pool,
                )
            )
            self._head_sources.append(-1)
        # Per head: the layers before its final activation, and that activation (a plain list,
        # so the modules stay registered once, under head_layers).
        self._head_split: list[tuple[nn.Module, nn.Module]] = [
            (layer[:-1], layer[-1]) if "softmax" in layer._modules else (layer[0][0], layer[0][1])
            for layer in self.head_layers
        ]

    def head_activations(self) -> dict[str, nn.Module]:
        """Each head's final activation (class maps' sigmoid, class vectors' softmax), by name."""
        return {name: act for name, (_, act) in zip(self.head_names, self._head_split)
                if not isinstance(act, nn.Identity)}

    def forward(self, x: torch.Tensor, *, activations: bool = True) -> dict[str, torch.Tensor]:
        """Run the network on float ``(B, C, H, W)`` in [0, 1].

        ``activations=False`` leaves out each head's final activation (see
        :meth:`head_activations`): exported runtimes return those pre-activation maps and torch
        applies the activation, because ONNX Runtime's sigmoid flushes outputs below ~1e-20 to
        exactly 0, and the identity matching breaks those ties differently from torch.
        """
        # Canonical NCHW strides: a channels-last-strided input (e.g. an HWC frame permuted, even
        # with C=1) would route convs to other kernels and drift ~1e-5 from sleap-nn's outputs.
        # ``reshape`` after ``contiguous`` re-derives the strides without a copy when possible.
        x = x.contiguous().reshape(x.shape)
        c = x.shape[-3]
        if c != self.in_channels:
            if c == 1:
                x = x.repeat(1, 3, 1, 1)
            elif c == 3:
                # torchvision's float rgb_to_grayscale: no rounding, this exact op order.
                r, g, b = x.unbind(dim=-3)
                x = r.mul(0.2989).add_(g, alpha=0.587).add_(b, alpha=0.114).unsqueeze(-3)
        feats = self.backbone(x)
        out: dict[str, torch.Tensor] = {}
        for name, (body, act), src in zip(self.head_names, self._head_split, self._head_sources):
            y = body(feats.middle if src < 0 else feats.outputs[src])
            out[name] = act(y) if activations else y
        return out

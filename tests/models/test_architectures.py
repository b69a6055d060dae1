"""Architectures built from configs alone: key names, shapes and strides (UNet, ConvNeXt, SwinT)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from sleapflow.models.layers import SamePadMaxPool2d
from sleapflow.models.network import PoseNetwork
from sleapflow.models.normalise import ModelConfig, config_from_yaml
from sleapflow.models.swint import relative_position_index


def _config(tmp_path: Path, ckpts: Path, backbone: dict, heads: dict | None = None) -> ModelConfig:
    """The bottom-up YAML with its backbone (and optionally heads) replaced."""
    raw = yaml.safe_load((ckpts / "minimal_instance_bottomup/training_config.yaml").read_text())
    raw["model_config"]["backbone_config"] = {"unet": None, "convnext": None, "swint": None,
                                              **backbone}
    if heads is not None:
        raw["model_config"]["head_configs"] = heads
    path = tmp_path / "training_config.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return config_from_yaml(path)


def _shapes(net: torch.nn.Module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in net.state_dict().items()}


def test_swint_matches_sleap_nn_state_dict(ckpts: Path) -> None:
    folder = ckpts / "minimal_instance_swint_centered_instance"
    cfg = config_from_yaml(folder / "training_config.yaml")
    with torch.device("meta"):  # 87.6 M parameters: shapes only
        net = PoseNetwork(cfg)
    expected = json.loads((folder / "state_dict_keys.json").read_text())
    ours = {f"model.{k}": list(v) for k, v in _shapes(net).items()}
    assert list(ours) == list(expected)  # same keys, same registration order
    assert ours == expected
    assert any("relative_position_index" in k for k in net.state_dict())


def test_relative_position_index_values() -> None:
    w = 7
    idx = relative_position_index(w)
    assert idx.dtype == torch.int64 and idx.shape == (w**4,)
    coords = [(i, j) for i in range(w) for j in range(w)]
    brute = [
        (a[0] - b[0] + w - 1) * (2 * w - 1) + (a[1] - b[1] + w - 1) for a in coords for b in coords
    ]
    assert idx.tolist() == brute


def test_swint_custom_forward_odd_sizes(tmp_path: Path, ckpts: Path) -> None:
    """Window padding, cyclic shift masks and patch-merging padding on non-multiple sizes."""
    cfg = _config(
        tmp_path,
        ckpts,
        {"swint": {"model_type": "custom",
                   "arch": {"embed": 8, "depths": [2, 2, 2, 2], "num_heads": [1, 2, 2, 4]},
                   "max_stride": 32, "output_stride": 2, "window_size": 3}},
        heads={"bottomup": {"confmaps": {"part_names": ["A", "B"], "output_stride": 2},
                            "pafs": {"edges": [["A", "B"]], "output_stride": 4}}},
    )
    torch.manual_seed(0)
    net = PoseNetwork(cfg).eval()
    with torch.inference_mode():
        out = net(torch.rand(1, 1, 96, 64))
        odd = net(torch.rand(1, 1, 90, 70))
    assert out["MultiInstanceConfmapsHead"].shape == (1, 2, 48, 32)
    assert out["PartAffinityFieldsHead"].shape == (1, 2, 24, 16)
    assert odd["MultiInstanceConfmapsHead"].shape[1] == 2
    assert torch.isfinite(odd["MultiInstanceConfmapsHead"]).all()


def test_convnext_tiny_preset(tmp_path: Path, ckpts: Path) -> None:
    """The build the spec verified: tiny, output_stride 2, 128×128 input."""
    cfg = _config(
        tmp_path,
        ckpts,
        {"convnext": {"model_type": "tiny", "max_stride": 32, "output_stride": 2}},
        heads={"centered_instance": {"confmaps": {"part_names": ["A", "B"], "output_stride": 2}}},
    )
    with torch.device("meta"):  # skip the (slow) random init of 30 M parameters
        net = PoseNetwork(cfg).eval()
    net = net.to_empty(device="cpu")
    for p in net.parameters():
        p.data.zero_()
    shapes = _shapes(net)
    assert shapes["backbone.dec.decoder_stack.0.blocks.dec0_s32_to_s16_refine_conv0.weight"] == (
        768, 2304, 3, 3
    )
    assert shapes["backbone.enc.features.0.0.weight"] == (96, 1, 4, 4)
    assert sum(1 for k in shapes if k.endswith("layer_scale")) == 3 + 3 + 9 + 3
    with torch.inference_mode():
        feats = net.backbone(torch.rand(1, 1, 128, 128))
    assert [tuple(o.shape[1:]) for o in feats.outputs] == [
        (768, 8, 8), (384, 16, 16), (192, 32, 32), (96, 64, 64)
    ]
    assert tuple(feats.middle.shape[1:]) == (1536, 4, 4)


def test_convnext_output_stride_1_has_skipless_block(tmp_path: Path, ckpts: Path) -> None:
    cfg = _config(
        tmp_path,
        ckpts,
        {"convnext": {"model_type": "custom",
                      "arch": {"depths": [1, 1, 1, 1], "channels": [8, 16, 32, 64]},
                      "max_stride": 32, "output_stride": 1}},
        heads={"single_instance": {"confmaps": {"part_names": ["A", "B"], "output_stride": 1}}},
    )
    net = PoseNetwork(cfg).eval()
    keys = _shapes(net)
    last = "backbone.dec.decoder_stack.4.blocks.dec4_s2_to_s1_refine_conv"
    assert keys[f"{last}0.weight"] == (8, 8, 3, 3)
    assert f"{last}1.weight" not in keys
    with torch.inference_mode():
        out = net(torch.rand(1, 1, 64, 64))["SingleInstanceConfmapsHead"]
    assert out.shape == (1, 2, 64, 64)


@pytest.mark.parametrize("up_interpolate", [True, False])
def test_unet_options(tmp_path: Path, ckpts: Path, up_interpolate: bool) -> None:
    cfg = _config(
        tmp_path,
        ckpts,
        {"unet": {"in_channels": 1, "kernel_size": 5, "filters": 16, "filters_rate": 1.5,
                  "max_stride": 8, "stem_stride": None, "middle_block": True,
                  "up_interpolate": up_interpolate, "stacks": 1, "convs_per_block": 3,
                  "output_stride": 1}},
        heads={"single_instance": {"confmaps": {"part_names": ["A", "B"], "output_stride": 1}}},
    )
    net = PoseNetwork(cfg).eval()
    keys = _shapes(net)
    enc = "backbone.encoders.0.encoder_stack"
    assert keys[f"{enc}.0.blocks.stack0_enc0_conv2.weight"] == (16, 16, 5, 5)
    assert keys["backbone.middle_blocks.0.blocks.stack0_enc4_middle_expand_conv1.weight"] == (
        54, 54, 5, 5
    )
    assert "backbone.middle_blocks.1.blocks.stack0_enc5_middle_contract_conv0.weight" in keys
    dec = "backbone.decoders.0.decoder_stack"
    refine0 = keys[f"{dec}.0.blocks.stack0_dec0_s8_to_s4_refine_conv0.weight"]
    assert refine0 == ((36, 54 + 36, 5, 5) if up_interpolate else (36, 72, 5, 5))
    assert (f"{dec}.2.blocks.stack0_dec2_s2_to_s1_trans_conv.weight" in keys) != up_interpolate
    with torch.inference_mode():
        out = net(torch.rand(1, 1, 32, 40))["SingleInstanceConfmapsHead"]
    assert out.shape == (1, 2, 32, 40)


def test_same_pad_max_pool() -> None:
    pool = SamePadMaxPool2d()
    x = -torch.ones(1, 1, 5, 7)
    y = pool(x)
    assert y.shape == (1, 1, 3, 4)
    # Zero padding goes bottom/right: the last row/column windows see a 0.
    assert y[0, 0, :2, :3].eq(-1).all() and y[0, 0, 2, :].eq(0).all() and y[0, 0, :, 3].eq(0).all()
    assert pool(torch.rand(1, 2, 8, 6)).shape == (1, 2, 4, 3)

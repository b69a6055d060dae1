"""SLEAP ≤1.4 models: JSON mapping, h5 weight conversion, and the errors for what is unsupported."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from sleapflow.errors import ConfigError, ModelLoadError
from sleapflow.models import LoadedModel, load_model, read_model_config

ModelFn = Callable[[Path], LoadedModel]
ForwardFn = Callable[[LoadedModel, torch.Tensor], dict[str, np.ndarray]]

LEGACY_EXPECTED = {
    "minimal_instance.UNet.bottomup": ("bottomup", 1, 8, ("MultiInstanceConfmapsHead",
                                                         "PartAffinityFieldsHead")),
    "minimal_instance.UNet.centroid": ("centroid", 1, 8, ("CentroidConfmapsHead",)),
    "minimal_instance.UNet.centered_instance": ("centered_instance", 1, 8,
                                                ("CenteredInstanceConfmapsHead",)),
    "minimal_robot.UNet.single_instance": ("single_instance", 3, 4,
                                           ("SingleInstanceConfmapsHead",)),
}


@pytest.mark.parametrize("folder", sorted(LEGACY_EXPECTED))
def test_legacy_loads(
    folder: str, legacy_dir: Path, model: ModelFn, forward: ForwardFn
) -> None:
    mtype, in_ch, max_stride, heads = LEGACY_EXPECTED[folder]
    m = model(legacy_dir / folder)
    cfg = m.config
    assert cfg.is_legacy and cfg.model_type == mtype and cfg.backbone_type == "unet"
    assert cfg.in_channels == in_ch and cfg.max_stride == max_stride and cfg.head_names == heads
    assert cfg.skeleton.node_names == ("A", "B") and cfg.skeleton.edges == (("A", "B"),)
    out = forward(m, torch.rand(1, in_ch, 64, 64))
    assert tuple(out) == heads


def test_legacy_mapping_details(legacy_dir: Path) -> None:
    ci = read_model_config(legacy_dir / "minimal_instance.UNet.centered_instance")
    assert ci.preprocessing.crop_size == 96 and ci.confmaps.part_names == ("A", "B")
    robot = read_model_config(legacy_dir / "minimal_robot.UNet.single_instance")
    assert robot.preprocessing.scale == 0.5 and robot.backbone.up_interpolate is True
    bu = read_model_config(legacy_dir / "minimal_instance.UNet.bottomup")
    assert bu.pafs is not None and bu.pafs.edges == (("A", "B"),) and bu.pafs.output_stride == 4


def test_legacy_kernel_layouts(legacy_dir: Path, model: ModelFn) -> None:
    """Conv and transposed-conv kernels both go (kh, kw, a, b) → (b, a, kh, kw), no flip."""
    folder = legacy_dir / "minimal_instance.UNet.bottomup"
    sd = model(folder).module.state_dict()
    with h5py.File(folder / "best_model.h5", "r") as f:
        w = f["model_weights"]
        trans = w["stack0_dec0_s8_to_s4_trans_conv/stack0_dec0_s8_to_s4_trans_conv/kernel:0"][()]
        head = w["MultiInstanceConfmapsHead_0/MultiInstanceConfmapsHead_0/kernel:0"][()]
    key = "backbone.decoders.0.decoder_stack.0.blocks.stack0_dec0_s8_to_s4_trans_conv.weight"
    assert np.array_equal(sd[key].numpy(), trans.transpose(3, 2, 0, 1))
    assert np.array_equal(
        sd["head_layers.0.MultiInstanceConfmapsHead.0.weight"].numpy(), head.transpose(3, 2, 0, 1)
    )


def _copy_legacy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def test_non_unet_backbone_rejected(legacy_dir: Path, tmp_path: Path) -> None:
    d = _copy_legacy(legacy_dir / "minimal_instance.UNet.centroid", tmp_path / "m")
    raw = json.loads((d / "training_config.json").read_text())
    raw["model"]["backbone"]["unet"] = None
    raw["model"]["backbone"]["resnet"] = {"version": "ResNet50"}
    (d / "training_config.json").write_text(json.dumps(raw))
    with pytest.raises(ConfigError, match="resnet") as exc:
        load_model(d)
    assert str(d / "training_config.json") in str(exc.value)


def test_legacy_bad_field_named(legacy_dir: Path, tmp_path: Path) -> None:
    d = _copy_legacy(legacy_dir / "minimal_instance.UNet.centroid", tmp_path / "m")
    raw = json.loads((d / "training_config.json").read_text())
    raw["model"]["backbone"]["unet"]["filters"] = "sixteen"
    (d / "training_config.json").write_text(json.dumps(raw))
    with pytest.raises(ConfigError, match=r"model\.backbone\.unet\.filters"):
        read_model_config(d)


def test_h5_that_is_not_a_sleap_model(legacy_dir: Path, tmp_path: Path) -> None:
    d = tmp_path / "m"
    d.mkdir()
    shutil.copy(legacy_dir / "minimal_instance.UNet.centroid/training_config.json", d)
    with h5py.File(d / "best_model.h5", "w") as f:
        f["data"] = np.zeros(3)
    with pytest.raises(ModelLoadError, match="not a SLEAP model"):
        load_model(d)
    (d / "best_model.h5").write_bytes(b"not hdf5 at all")
    with pytest.raises(ModelLoadError, match="HDF5"):
        load_model(d)


def test_h5_missing_a_layer(legacy_dir: Path, tmp_path: Path) -> None:
    d = _copy_legacy(legacy_dir / "minimal_instance.UNet.centroid", tmp_path / "m")
    with h5py.File(d / "best_model.h5", "a") as f:
        del f["model_weights/stack0_enc1_conv1"]
    with pytest.raises(ModelLoadError, match="stack0_enc1_conv1"):
        load_model(d)


def test_h5_of_another_architecture(legacy_dir: Path, tmp_path: Path) -> None:
    """Weights of the robot model under the centroid config: nothing fits."""
    d = _copy_legacy(legacy_dir / "minimal_instance.UNet.centroid", tmp_path / "m")
    shutil.copy(legacy_dir / "minimal_robot.UNet.single_instance/best_model.h5", d)
    with pytest.raises(ModelLoadError):
        load_model(d)

"""``backbone_ckpt_path`` / ``head_ckpt_path``: sleap-nn's override semantics, with strict checks."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from sleapflow.errors import ModelLoadError
from sleapflow.models import load_model
from sleapflow.models.checkpoint import read_checkpoint, strip_prefix

# Same UNet backbone (16 filters, rate 1.5, max_stride 8, output_stride 2, transposed conv).
BOTTOMUP = "minimal_instance_bottomup"
CENTERED = "minimal_instance_centered_instance"
CENTROID = "minimal_instance_centroid"  # output_stride 4: one decoder block fewer


def _state(ckpts: Path, folder: str) -> dict[str, torch.Tensor]:
    return strip_prefix(read_checkpoint(ckpts / folder / "best.ckpt"))


def _equal_part(sd: dict, ref: dict, prefix: str) -> bool:
    keys = [k for k in sd if k.startswith(prefix)]
    return bool(keys) and all(torch.equal(sd[k], ref[k]) for k in keys)


def test_backbone_override(ckpts: Path) -> None:
    m = load_model(ckpts / BOTTOMUP, backbone_ckpt_path=ckpts / CENTERED / "best.ckpt")
    sd = m.module.state_dict()
    assert _equal_part(sd, _state(ckpts, CENTERED), "backbone.")
    # The centered-instance head has another name, so the model keeps its own heads.
    assert _equal_part(sd, _state(ckpts, BOTTOMUP), "head_layers.")
    assert not _equal_part(sd, _state(ckpts, BOTTOMUP), "backbone.")


def test_backbone_only_override_also_loads_matching_heads(ckpts: Path) -> None:
    """sleap-nn loads every tensor of the backbone checkpoint when no head override is given."""
    m = load_model(ckpts / BOTTOMUP, backbone_ckpt_path=ckpts / BOTTOMUP)
    assert _equal_part(m.module.state_dict(), _state(ckpts, BOTTOMUP), "")


def test_head_override(ckpts: Path, tmp_path: Path) -> None:
    m = load_model(ckpts / CENTERED, head_ckpt_path=ckpts / CENTERED / "best.ckpt")
    assert _equal_part(m.module.state_dict(), _state(ckpts, CENTERED), "")


def test_both_overrides(ckpts: Path) -> None:
    m = load_model(
        ckpts / BOTTOMUP,
        backbone_ckpt_path=ckpts / CENTERED / "best.ckpt",
        head_ckpt_path=ckpts / BOTTOMUP / "best.ckpt",
    )
    sd = m.module.state_dict()
    assert _equal_part(sd, _state(ckpts, CENTERED), "backbone.")
    assert _equal_part(sd, _state(ckpts, BOTTOMUP), "head_layers.")


def test_backbone_override_mismatch(ckpts: Path) -> None:
    other = ckpts / CENTROID / "best.ckpt"
    with pytest.raises(ModelLoadError) as exc:
        load_model(ckpts / BOTTOMUP, backbone_ckpt_path=other)
    msg = str(exc.value)
    assert str(other) in msg and str(ckpts / BOTTOMUP / "training_config.yaml") in msg
    assert "missing keys" in msg and "\n" not in msg


def test_backbone_override_shape_mismatch(ckpts: Path, tmp_path: Path) -> None:
    state = read_checkpoint(ckpts / BOTTOMUP / "best.ckpt")
    key = "model.backbone.encoders.0.encoder_stack.0.blocks.stack0_enc0_conv0.weight"
    state[key] = torch.zeros(16, 3, 3, 3)  # as if trained on RGB
    other = tmp_path / "rgb.ckpt"
    torch.save({"state_dict": state}, other)
    with pytest.raises(ModelLoadError, match="shape mismatches") as exc:
        load_model(ckpts / BOTTOMUP, backbone_ckpt_path=other)
    assert "(16, 3, 3, 3) vs (16, 1, 3, 3)" in str(exc.value)


def test_head_override_shape_mismatch(ckpts: Path, tmp_path: Path) -> None:
    state = read_checkpoint(ckpts / BOTTOMUP / "best.ckpt")
    state["model.head_layers.0.MultiInstanceConfmapsHead.0.weight"] = torch.zeros(3, 24, 1, 1)
    state["model.head_layers.0.MultiInstanceConfmapsHead.0.bias"] = torch.zeros(3)
    other = tmp_path / "three_parts.ckpt"
    torch.save({"state_dict": state}, other)
    with pytest.raises(ModelLoadError, match=r"\(3, 24, 1, 1\) vs \(2, 24, 1, 1\)"):
        load_model(ckpts / BOTTOMUP, head_ckpt_path=other)
    # A backbone-only override carries heads along where names match, so it fails too.
    with pytest.raises(ModelLoadError, match="MultiInstanceConfmapsHead"):
        load_model(ckpts / BOTTOMUP, backbone_ckpt_path=other)


def test_head_override_of_another_model_type(ckpts: Path) -> None:
    other = ckpts / CENTROID / "best.ckpt"
    with pytest.raises(ModelLoadError) as exc:
        load_model(ckpts / BOTTOMUP, head_ckpt_path=other)
    msg = str(exc.value)
    assert "CentroidConfmapsHead" in msg and "bottomup" in msg and str(other) in msg
    assert "MultiInstanceConfmapsHead" in msg and "\n" not in msg


def test_override_file_missing(ckpts: Path, tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="does not exist"):
        load_model(ckpts / BOTTOMUP, head_ckpt_path=tmp_path / "nope.ckpt")

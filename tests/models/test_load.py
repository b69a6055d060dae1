"""``load_model``: every shipped model loads strictly; shapes, channel adaptation, errors."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from sleapflow.errors import ConfigError, ModelLoadError
from sleapflow.models import LoadedModel, load_model
from sleapflow.models.checkpoint import read_checkpoint, strip_prefix

ModelFn = Callable[[Path], LoadedModel]
ForwardFn = Callable[[LoadedModel, torch.Tensor], dict[str, np.ndarray]]

# (folder, input (C, H, W), {head: output shape without batch})
SHAPES = {
    "minimal_instance_bottomup": (
        (1, 384, 384),
        {"MultiInstanceConfmapsHead": (2, 192, 192), "PartAffinityFieldsHead": (2, 96, 96)},
    ),
    "minimal_instance_centroid": ((1, 384, 384), {"CentroidConfmapsHead": (1, 96, 96)}),
    "minimal_instance_centered_instance": (
        (1, 96, 96), {"CenteredInstanceConfmapsHead": (2, 48, 48)}
    ),
    "minimal_instance_single_instance": (
        (3, 160, 280), {"SingleInstanceConfmapsHead": (2, 40, 70)}
    ),
    "minimal_instance_multiclass_bottomup": (
        (1, 192, 192),
        {"MultiInstanceConfmapsHead": (2, 96, 96), "ClassMapsHead": (2, 96, 96)},
    ),
    "minimal_instance_multiclass_centered_instance": (
        (1, 128, 128), {"CenteredInstanceConfmapsHead": (2, 64, 64), "ClassVectorsHead": (2,)}
    ),
    "minimal_instance_convnext_bottomup": (
        (1, 384, 384),
        {"MultiInstanceConfmapsHead": (2, 96, 96), "PartAffinityFieldsHead": (2, 96, 96)},
    ),
}


@pytest.mark.parametrize("folder", sorted(SHAPES))
def test_loads_strictly_with_right_shapes(
    folder: str, ckpts: Path, model: ModelFn, forward: ForwardFn
) -> None:
    m = model(ckpts / folder)
    assert isinstance(m, LoadedModel) and m.path == ckpts / folder
    assert not m.module.training
    assert not any(p.requires_grad for p in m.module.parameters())
    # Strict: every checkpoint tensor is in the module, bit for bit, and nothing else is.
    state = strip_prefix(read_checkpoint(ckpts / folder / "best.ckpt"))
    ours = m.module.state_dict()
    assert list(ours) == list(state)
    assert all(torch.equal(ours[k], state[k]) for k in state)
    shape_in, heads = SHAPES[folder]
    out = forward(m, torch.rand(2, *shape_in))
    assert tuple(out) == m.config.head_names
    assert {k: v.shape[1:] for k, v in out.items()} == heads


def test_accepts_ckpt_and_config_paths(ckpts: Path) -> None:
    d = ckpts / "minimal_instance_centroid"
    for p in (d / "best.ckpt", d / "training_config.yaml", str(d)):
        assert load_model(p).path == d


def test_channel_adaptation(ckpts: Path, model: ModelFn) -> None:
    rgb_model = model(ckpts / "minimal_instance_single_instance").module  # in_channels 3
    gray = torch.rand(1, 1, 64, 64)
    with torch.inference_mode():
        a = rgb_model(gray)["SingleInstanceConfmapsHead"]
        b = rgb_model(gray.repeat(1, 3, 1, 1))["SingleInstanceConfmapsHead"]
    assert torch.equal(a, b)

    gray_model = model(ckpts / "minimal_instance_centroid").module  # in_channels 1
    rgb = torch.rand(1, 3, 64, 64)
    lum = 0.2989 * rgb[:, 0:1] + 0.587 * rgb[:, 1:2] + 0.114 * rgb[:, 2:3]
    with torch.inference_mode():
        a = gray_model(rgb)["CentroidConfmapsHead"]
        b = gray_model(lum)["CentroidConfmapsHead"]
    torch.testing.assert_close(a, b, rtol=0, atol=1e-6)


def test_channels_last_input_is_canonicalised(ckpts: Path, model: ModelFn) -> None:
    """An HWC frame permuted to NCHW must give the same result as a contiguous copy."""
    m = model(ckpts / "minimal_instance_multiclass_bottomup").module
    hwc = torch.rand(1, 64, 64, 1)
    x_view = hwc.permute(0, 3, 1, 2)
    x_copy = torch.empty(x_view.shape)
    x_copy.copy_(x_view)
    with torch.inference_mode():
        a, b = m(x_view), m(x_copy)
    assert all(torch.equal(a[k], b[k]) for k in a)


def _copy_with_config(src: Path, dst: Path, edit: Callable[[dict], object]) -> Path:
    dst.mkdir()
    raw = yaml.safe_load((src / "training_config.yaml").read_text())
    edit(raw)
    (dst / "training_config.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    (dst / "best.ckpt").symlink_to(src / "best.ckpt")
    return dst


def test_state_dict_mismatch_names_both_sides(ckpts: Path, tmp_path: Path) -> None:
    d = _copy_with_config(
        ckpts / "minimal_instance_bottomup",
        tmp_path / "m",
        lambda r: r["model_config"]["backbone_config"]["unet"].update(filters=8),
    )
    with pytest.raises(ModelLoadError) as exc:
        load_model(d)
    msg = str(exc.value)
    assert str(d / "best.ckpt") in msg and str(d / "training_config.yaml") in msg
    assert "shape mismatches" in msg and "stack0_enc0_conv0.weight" in msg and "\n" not in msg


def test_missing_and_unexpected_keys(ckpts: Path, tmp_path: Path) -> None:
    d = _copy_with_config(
        ckpts / "minimal_instance_bottomup",
        tmp_path / "m",
        lambda r: r["model_config"]["backbone_config"]["unet"].update(max_stride=16),
    )
    with pytest.raises(ModelLoadError, match="missing keys") as exc:
        load_model(d)
    assert "unexpected keys" in str(exc.value) and "(+" in str(exc.value)


def test_missing_checkpoint(tmp_path: Path, ckpts: Path) -> None:
    d = tmp_path / "m"
    d.mkdir()
    shutil.copy(ckpts / "minimal_instance_centroid/training_config.yaml", d)
    with pytest.raises(ModelLoadError, match=r"best\.ckpt"):
        load_model(d)


def test_bad_device(ckpts: Path) -> None:
    with pytest.raises(ConfigError, match="device"):
        load_model(ckpts / "minimal_instance_centroid", device="nonsense")


def test_a_model_cache_injected_into_runs_loads_each_model_once(assets: Path) -> None:
    """What a Ray worker does: every run it prepares gets its cache, so the second run's
    forward stage takes the model the first one loaded."""
    import anyio

    from sleapflow.jobs.job import plan_job, run_job
    from sleapflow.models.loader import ModelCache
    from sleapflow.options.boundary import build_config

    cache = ModelCache()
    asked: list[str] = []

    def loader(path: object, device: object, **overrides: object) -> object:
        asked.append(str(path))
        return cache(path, device, **overrides)  # type: ignore[arg-type]

    model = assets / "model_ckpts/minimal_instance_single_instance"
    cfg = build_config(data_path=str(assets / "datasets/small_robot.mp4"), model_paths=[str(model)],
                       frames="0-3", device="cpu", runtime="torch")
    outputs = []
    for _ in range(2):
        outputs.append(anyio.run(run_job, plan_job(cfg, announce=False, model_loader=loader)))
    assert asked == [str(model)] * 2 and len(cache) == 1
    assert cache(model, "cpu") is cache(str(model), "cpu")
    assert [len(o.labels.labeled_frames) for o in outputs] == [4, 4]

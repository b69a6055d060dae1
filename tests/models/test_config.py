"""Config decoding: normalised fields, folder resolution, and errors that name field and file."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import msgspec
import pytest
import yaml

from sleapflow.errors import ConfigError, ModelLoadError
from sleapflow.models import (
    MODEL_TYPES,
    ConvNeXtConfig,
    ModelConfig,
    UNetConfig,
    read_model_config,
    resolve_model_dir,
)
from sleapflow.models.normalise import config_from_yaml
from sleapflow.testing import captured_logs


def _copy_model(src: Path, dst: Path) -> Path:
    dst.mkdir()
    shutil.copy(src / "training_config.yaml", dst / "training_config.yaml")
    (dst / "best.ckpt").symlink_to(src / "best.ckpt")
    return dst


def _edit_yaml(folder: Path, edit: Callable[[dict], object]) -> Path:
    path = folder / "training_config.yaml"
    raw = yaml.safe_load(path.read_text())
    edit(raw)
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def test_bottomup_fields(ckpts: Path) -> None:
    cfg = read_model_config(ckpts / "minimal_instance_bottomup")
    assert isinstance(cfg, ModelConfig)
    assert cfg.model_type == "bottomup" and cfg.model_type in MODEL_TYPES
    assert cfg.backbone_type == "unet" and isinstance(cfg.backbone, UNetConfig)
    assert cfg.backbone.filters == 16 and cfg.backbone.filters_rate == 1.5
    assert cfg.backbone.up_interpolate is False
    assert cfg.max_stride == 8 and cfg.in_channels == 1
    assert cfg.preprocessing.max_height == 384 and cfg.preprocessing.scale == 1.0
    assert cfg.preprocessing.crop_size is None
    assert cfg.skeleton.node_names == ("A", "B") and cfg.skeleton.edges == (("A", "B"),)
    assert cfg.skeleton.name == "Skeleton-0"
    assert cfg.confmaps.part_names == ("A", "B") and cfg.confmaps.output_stride == 2
    assert cfg.pafs is not None and cfg.pafs.edges == (("A", "B"),) and cfg.pafs.output_stride == 4
    assert cfg.class_maps is None and cfg.class_vectors is None
    assert cfg.head_names == ("MultiInstanceConfmapsHead", "PartAffinityFieldsHead")
    assert cfg.output_strides == {"MultiInstanceConfmapsHead": 2, "PartAffinityFieldsHead": 4}
    assert cfg.is_legacy is False and cfg.path == str(ckpts / "minimal_instance_bottomup")
    with pytest.raises(AttributeError):
        cfg.model_type = "centroid"  # type: ignore[misc]
    # The config is plain data: it round-trips through msgspec.
    assert msgspec.json.decode(msgspec.json.encode(cfg), type=ModelConfig) == cfg


@pytest.mark.parametrize(
    ("folder", "model_type", "heads", "extra"),
    [
        ("minimal_instance_centroid", "centroid", ("CentroidConfmapsHead",), None),
        ("minimal_instance_single_instance", "single_instance", ("SingleInstanceConfmapsHead",),
         None),
        ("minimal_instance_centered_instance", "centered_instance",
         ("CenteredInstanceConfmapsHead",), None),
        ("minimal_instance_multiclass_bottomup", "multi_class_bottomup",
         ("MultiInstanceConfmapsHead", "ClassMapsHead"), "class_maps"),
        ("minimal_instance_multiclass_centered_instance", "multi_class_topdown",
         ("CenteredInstanceConfmapsHead", "ClassVectorsHead"), "class_vectors"),
    ],
)
def test_model_types(
    ckpts: Path, folder: str, model_type: str, heads: tuple[str, ...], extra: str | None
) -> None:
    cfg = read_model_config(ckpts / folder)
    assert cfg.model_type == model_type and cfg.head_names == heads
    if extra:
        assert getattr(cfg, extra).classes == ("female", "male")
    if model_type == "centroid":
        assert cfg.confmaps.part_names is None and cfg.confmaps.anchor_part is None
    if model_type == "multi_class_topdown":
        cv = cfg.class_vectors
        assert (cv.num_fc_layers, cv.num_fc_units, cv.global_pool) == (3, 64, True)
        assert cfg.confmaps.anchor_part == "A" and cfg.preprocessing.crop_size == 128
    if model_type == "single_instance":
        assert cfg.in_channels == 3 and cfg.preprocessing.scale == 0.5
        assert (cfg.preprocessing.max_height, cfg.preprocessing.max_width) == (320, 560)


def test_convnext_and_swint_configs(ckpts: Path) -> None:
    cfg = read_model_config(ckpts / "minimal_instance_convnext_bottomup")
    assert cfg.backbone_type == "convnext" and isinstance(cfg.backbone, ConvNeXtConfig)
    assert cfg.backbone.depths == (1, 1, 2, 1) and cfg.backbone.channels == (16, 32, 64, 128)
    assert cfg.max_stride == 32
    sw = config_from_yaml(ckpts / "minimal_instance_swint_centered_instance/training_config.yaml")
    assert sw.backbone_type == "swint"
    assert (sw.backbone.embed, sw.backbone.depths, sw.backbone.num_heads) == (
        96, (2, 2, 6, 2), (3, 6, 12, 24)
    )


def test_resolve_model_dir_forms(ckpts: Path, tmp_path: Path) -> None:
    d = ckpts / "minimal_instance_centroid"
    assert resolve_model_dir(d) == d
    assert resolve_model_dir(d / "best.ckpt") == d
    assert resolve_model_dir(d / "training_config.yaml") == d
    assert resolve_model_dir(str(d)) == d
    # Another .ckpt: warn and still use the folder's best.ckpt (sleap-nn behaviour).
    other = _copy_model(d, tmp_path / "m")
    (other / "last.ckpt").symlink_to(d / "best.ckpt")
    with captured_logs() as logs:
        assert resolve_model_dir(other / "last.ckpt") == other
    assert any(e["log_level"] == "warning" for e in logs)


def test_resolve_errors(tmp_path: Path, ckpts: Path) -> None:
    with pytest.raises(ModelLoadError, match="does not exist"):
        resolve_model_dir(tmp_path / "nope")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ModelLoadError, match=r"best\.ckpt") as exc:
        resolve_model_dir(empty)
    assert str(empty) in str(exc.value) and "\n" not in str(exc.value)
    only_cfg = tmp_path / "only_cfg"
    only_cfg.mkdir()
    shutil.copy(ckpts / "minimal_instance_centroid/training_config.yaml", only_cfg)
    with pytest.raises(ModelLoadError, match=r"has no best\.ckpt"):
        read_model_config(only_cfg)


def test_missing_field_names_path_and_file(tmp_path: Path, ckpts: Path) -> None:
    d = _copy_model(ckpts / "minimal_instance_bottomup", tmp_path / "m")
    cfg_file = _edit_yaml(d, lambda r: r["model_config"]["backbone_config"]["unet"].pop("filters"))
    with pytest.raises(ConfigError) as exc:
        read_model_config(d)
    msg = str(exc.value)
    assert "model_config.backbone_config.unet.filters" in msg and str(cfg_file) in msg


def test_wrong_type_names_path_and_file(tmp_path: Path, ckpts: Path) -> None:
    d = _copy_model(ckpts / "minimal_instance_bottomup", tmp_path / "m")
    cfg_file = _edit_yaml(
        d, lambda r: r["model_config"]["head_configs"]["bottomup"]["pafs"].update(output_stride="4")
    )
    with pytest.raises(ConfigError) as exc:
        read_model_config(d)
    msg = str(exc.value)
    assert "model_config.head_configs.bottomup.pafs.output_stride" in msg
    assert str(cfg_file) in msg and "int" in msg


def test_skeleton_symmetries(tmp_path: Path, ckpts: Path) -> None:
    d = _copy_model(ckpts / "minimal_instance_bottomup", tmp_path / "m")

    def add(r: dict) -> None:
        sk = r["data_config"]["skeletons"][0]
        sk["nodes"] += [{"name": "L"}, {"name": "R"}]
        sk["symmetries"] = [[{"name": "L"}, {"name": "R"}]]

    _edit_yaml(d, add)
    cfg = read_model_config(d)
    assert cfg.skeleton.node_names == ("A", "B", "L", "R")
    assert cfg.skeleton.symmetries == (("L", "R"),)


def test_missing_skeleton_node_name(tmp_path: Path, ckpts: Path) -> None:
    d = _copy_model(ckpts / "minimal_instance_bottomup", tmp_path / "m")
    _edit_yaml(d, lambda r: r["data_config"]["skeletons"][0]["nodes"][1].pop("name"))
    with pytest.raises(ConfigError, match=r"data_config\.skeletons\[0\]\.nodes\[1\]\.name"):
        read_model_config(d)


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda r: r["model_config"]["head_configs"].update(
            bottomup=None, semantic_segmentation={"confmaps": {}}), "not supported"),
        (lambda r: r["model_config"]["head_configs"].update(bottomup=None), "no non-null head"),
        (lambda r: r["model_config"]["backbone_config"].update(unet=None), "no non-null backbone"),
        (lambda r: r["model_config"]["backbone_config"]["unet"].update(stacks=2), "stacks"),
        (lambda r: r["model_config"]["backbone_config"]["unet"].update(middle_block=False),
         "middle_block"),
        (lambda r: r["model_config"]["backbone_config"]["unet"].update(convs_per_block=1),
         "convs_per_block"),
        (lambda r: r["model_config"]["backbone_config"]["unet"].update(stem_stride=2),
         "stem_stride"),
        (lambda r: r["model_config"]["backbone_config"]["unet"].update(max_stride=12),
         "max_stride"),
        (lambda r: r["model_config"]["head_configs"]["bottomup"]["pafs"].update(output_stride=16),
         "output_stride 16"),
        (lambda r: r["model_config"]["head_configs"]["bottomup"].pop("pafs"),
         r"model_config\.head_configs\.bottomup\.pafs"),
    ],
)
def test_rejected_configs(
    tmp_path: Path, ckpts: Path, edit: Callable[[dict], object], match: str
) -> None:
    d = _copy_model(ckpts / "minimal_instance_bottomup", tmp_path / "m")
    _edit_yaml(d, edit)
    with pytest.raises(ConfigError, match=match):
        read_model_config(d)


def test_first_non_null_in_file_order(tmp_path: Path, ckpts: Path) -> None:
    """The model type is the first non-null head_configs key in *file* order."""
    d = _copy_model(ckpts / "minimal_instance_bottomup", tmp_path / "m")

    def reorder(r: dict) -> None:
        heads = r["model_config"]["head_configs"]
        heads["centroid"] = {"confmaps": {"sigma": 1.5, "output_stride": 4}}
        r["model_config"]["head_configs"] = {"bottomup": heads.pop("bottomup"), **heads}

    _edit_yaml(d, reorder)
    assert read_model_config(d).model_type == "bottomup"


def test_invalid_yaml(tmp_path: Path, ckpts: Path) -> None:
    d = _copy_model(ckpts / "minimal_instance_bottomup", tmp_path / "m")
    (d / "training_config.yaml").write_text("data_config: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        read_model_config(d)

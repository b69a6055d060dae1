"""``sleapflow export``: the folder's layout and metadata, its baked graph, ``track -m DIR``."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import sleap_io as sio
import torch

from sleapflow.cli.app import main

CKPTS = Path(__file__).resolve().parents[3] / "shared" / "assets" / "model_ckpts"
DATASETS = CKPTS.parent / "datasets"

#: sleap-nn 0.3.5's export_metadata.json fields (its ``ExportMetadata`` dataclass, as
#: documented for ``sleap-nn export``), written out here: sleap-nn is not installed in CI.
SLEAP_NN_FIELDS = {
    "sleap_nn_version", "export_timestamp", "export_format", "model_type", "model_name",
    "checkpoint_path", "backbone", "n_nodes", "n_edges", "node_names", "edge_inds",
    "input_scale", "input_channels", "output_stride", "crop_size", "max_instances",
    "max_peaks_per_node", "max_batch_size", "precision", "peak_threshold", "input_dtype",
    "normalization", "n_classes", "class_names", "anchor_part", "centroid_method",
    "embedding_dim", "normalize", "backbone_source", "burn_in", "background_fill",
    "crop_centering", "max_height", "max_width", "training_config_embedded",
    "training_config_hash",
}
#: The baked graph's outputs sleap-nn's runtime reads, per model type.
OUTPUTS = {
    "single_instance": ["peaks", "peak_vals"],
    "topdown": ["centroids", "centroid_vals", "peaks", "peak_vals", "instance_valid"],
    "bottomup": ["peaks", "peak_vals", "peak_mask", "line_scores", "candidate_mask"],
}
TOPDOWN = [str(CKPTS / "minimal_instance_centroid"), str(CKPTS / "minimal_instance_centered_instance")]
SINGLE = [str(CKPTS / "minimal_instance_single_instance")]
BOTTOMUP = [str(CKPTS / "minimal_instance_bottomup")]


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("exports")
    out = {"single_instance": root / "single", "topdown": root / "topdown",
           "bottomup": root / "bottomup"}
    assert main(["export", *SINGLE, "-o", str(out["single_instance"])]) == 0
    # Two animals in the clip: 4 centroid slots keep the graph's crops (and its checks) few.
    assert main(["export", *TOPDOWN, "-o", str(out["topdown"]), "--batch", "4",
                 "--input_size", "192", "--max_instances", "4"]) == 0
    # A small trace size keeps the export's own checks quick; every frame size still runs.
    assert main(["export", *BOTTOMUP, "-o", str(out["bottomup"]), "--input_size", "96x128"]) == 0
    return out


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _dims(value_info: onnx.ValueInfoProto) -> list[str | int]:
    return [d.dim_param or d.dim_value for d in value_info.type.tensor_type.shape.dim]


def test_layout_and_metadata_follow_sleap_nn(exported: dict[str, Path]) -> None:
    single, topdown = exported["single_instance"], exported["topdown"]
    assert {p.name for p in single.iterdir()} == {
        "model.onnx", "export_metadata.json", "training_config.yaml", "sleapflow"}
    assert {p.name for p in topdown.iterdir()} == {
        "model.onnx", "export_metadata.json", "training_config_centroid.yaml",
        "training_config_centered_instance.yaml", "sleapflow"}
    assert sorted(p.name for p in (topdown / "sleapflow").iterdir()) == ["centered_instance",
                                                                        "centroid"]

    meta = json.loads((single / "export_metadata.json").read_text())
    assert set(meta) - {"sleapflow"} == SLEAP_NN_FIELDS
    assert meta["model_type"] == "single_instance" and meta["export_format"] == "onnx"
    assert meta["input_dtype"] == "uint8" and meta["normalization"] == "0_to_1"
    assert meta["node_names"] == ["A", "B"] and meta["n_nodes"] == 2
    assert meta["edge_inds"] == [[0, 1]] and meta["n_edges"] == 1
    assert meta["input_scale"] == 0.5 and meta["output_stride"] == 4 and meta["precision"] == "fp32"
    assert meta["training_config_embedded"] is True
    assert meta["training_config_hash"] == _sha256(single / "training_config.yaml")
    assert (single / "training_config.yaml").read_bytes() == \
        (Path(SINGLE[0]) / "training_config.yaml").read_bytes()

    meta = json.loads((topdown / "export_metadata.json").read_text())
    assert set(meta) - {"sleapflow"} == SLEAP_NN_FIELDS
    assert meta["model_type"] == "topdown" and meta["crop_size"] == [96, 96]
    assert meta["max_instances"] == 4 and meta["max_batch_size"] == 4
    assert meta["centroid_method"] == "center_of_mass" and meta["anchor_part"] is None
    assert meta["training_config_hash"] == (
        f"centroid:{_sha256(topdown / 'training_config_centroid.yaml')};"
        f"centered_instance:{_sha256(topdown / 'training_config_centered_instance.yaml')}")
    assert meta["backbone"] == "centroid:unet;centered_instance:unet"


@pytest.mark.parametrize("kind", ["single_instance", "topdown", "bottomup"])
def test_graph_io_and_embedded_metadata(exported: dict[str, Path], kind: str) -> None:
    model = onnx.load(str(exported[kind] / "model.onnx"))
    (inp,) = model.graph.input
    assert inp.name == "image" and inp.type.tensor_type.elem_type == onnx.TensorProto.UINT8
    dims = _dims(inp)
    # A model that resizes frames is built for one frame size (its exact uint8 resize).
    assert dims[0] == "batch" and dims[1] == (3 if kind == "single_instance" else 1)
    if kind == "bottomup":
        meta = json.loads((exported[kind] / "export_metadata.json").read_text())
        assert meta["max_peaks_per_node"] == 20 and meta["edge_inds"] == [[0, 1]]
    assert dims[2:] == ([320, 560] if kind == "single_instance" else ["height", "width"])
    assert [o.name for o in model.graph.output] == OUTPUTS[kind]
    props = {p.key: p.value for p in model.metadata_props}
    file_meta = json.loads((exported[kind] / "export_metadata.json").read_text())
    assert json.loads(props["sleap_nn_metadata"]) == file_meta
    assert "training_config" in props


def _points(path: Path) -> dict[int, np.ndarray]:
    labels = sio.load_slp(str(path))
    return {lf.frame_idx: np.stack([i.numpy() for i in lf.instances]) for lf in labels
            if lf.instances}


def _matched_diff(a: np.ndarray, b: np.ndarray) -> float:
    """Largest point difference after pairing instances by nearest mean distance."""
    assert a.shape == b.shape
    worst = 0.0
    for inst in a:
        j = int(np.nanargmin([np.nanmean(np.abs(inst - other)) for other in b]))
        assert np.array_equal(np.isnan(inst), np.isnan(b[j]))
        worst = max(worst, float(np.nanmax(np.abs(inst - b[j]))))
    return worst


@pytest.mark.parametrize(("kind", "models", "video"), [
    ("single_instance", SINGLE, "small_robot.mp4"),
    ("topdown", TOPDOWN, "centered_pair_small.mp4"),
    ("bottomup", BOTTOMUP, "centered_pair_small.mp4"),
])
def test_track_on_the_folder_reproduces_the_checkpoint(
        exported: dict[str, Path], tmp_path: Path, kind: str, models: list[str],
        video: str) -> None:
    common = ["track", "-i", str(DATASETS / video), "--frames", "0-3"]
    want, got = tmp_path / "ckpt.slp", tmp_path / "exported.slp"
    assert main([*common, *[a for m in models for a in ("-m", m)], "-o", str(want),
                 "--runtime", "torch"]) == 0
    assert main([*common, "-m", str(exported[kind]), "-o", str(got)]) == 0
    ckpt, ours = _points(want), _points(got)
    assert sorted(ckpt) == sorted(ours) and ckpt
    assert max(_matched_diff(ckpt[f], ours[f]) for f in ckpt) <= 1e-4
    labels = sio.load_slp(str(got))
    assert labels.skeleton.node_names == ["A", "B"]
    # What ran is what provenance says: the folder's ONNX networks, on ONNX Runtime.
    assert labels.provenance["runtime"]["name"] == "onnx"


def test_track_on_the_folder_refuses_another_runtime(
        exported: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "o.slp"
    assert main(["track", "-i", str(DATASETS / "small_robot.mp4"), "--frames", "0-1", "-m",
                 str(exported["single_instance"]), "-o", str(out), "--runtime", "torch"]) == 2
    err = capsys.readouterr().err
    assert [ln for ln in err.splitlines() if ln.startswith("Error:")] == [
        "Error: --runtime torch --precision fp32: an export folder's networks run on ONNX "
        "Runtime in fp32; use --runtime auto or onnx, or pass the checkpoint folder"]
    assert "Traceback" not in err and not out.exists()


def test_baked_graph_gives_sleapflows_points(exported: dict[str, Path], tmp_path: Path) -> None:
    """What ``sleap-nn predict --runtime onnx`` reads from the graph: the same points as a
    sleapflow run of the checkpoints (peak rule, refinement and crops are sleapflow's)."""
    out = tmp_path / "ckpt.slp"
    video = DATASETS / "centered_pair_small.mp4"
    assert main(["track", "-i", str(video), "--frames", "0-1",
                 *[a for m in TOPDOWN for a in ("-m", m)], "-o", str(out)]) == 0
    frames = np.stack([sio.load_video(str(video))[i] for i in (0, 1)]).transpose(0, 3, 1, 2)
    session = ort.InferenceSession(str(exported["topdown"] / "model.onnx"),
                                   providers=["CPUExecutionProvider"])
    _, _, peaks, _, valid = session.run(None, {"image": np.ascontiguousarray(frames)})
    want = _points(out)
    for f in (0, 1):
        got = peaks[f][valid[f]]
        assert _matched_diff(want[f], got) <= 1e-3


def _one_error(capsys: pytest.CaptureFixture[str], *words: str) -> str:
    err = capsys.readouterr().err
    errors = [ln for ln in err.splitlines() if ln.startswith("Error:")]
    assert len(errors) == 1 and "Traceback" not in err, err
    assert all(w in errors[0] for w in words), errors[0]
    return errors[0]


def test_bad_exports_are_one_error(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "out"
    assert main(["export", str(tmp_path), "-o", str(out)]) == 2
    _one_error(capsys, "best.ckpt")
    assert main(["export", str(CKPTS / "minimal_instance_multiclass_bottomup"), "-o",
                 str(out)]) == 2
    _one_error(capsys, "multi_class_bottomup")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert main(["export", *SINGLE, "-o", str(out), "--format", "tensorrt"]) == 2
    _one_error(capsys, "tensorrt", "CUDA")
    assert main(["export", *SINGLE, "-o", str(out), "--precision", "fp16"]) == 2
    _one_error(capsys, "fp16")
    assert main(["export", *SINGLE, "-o", str(out), "--input_size", "12x"]) == 2
    _one_error(capsys, "--input_size")
    assert main(["export", *SINGLE, "-o", str(out), "--peak_threshold", "-1"]) == 2
    _one_error(capsys, "--peak_threshold")
    assert not out.exists()


def test_outputs_are_guarded(tmp_path: Path, exported: dict[str, Path],
                             capsys: pytest.CaptureFixture[str]) -> None:
    model = tmp_path / "model"
    shutil.copytree(SINGLE[0], model)
    assert main(["export", str(model), "-o", str(model / "exported")]) == 2
    _one_error(capsys, "inside the model folder")
    assert not (model / "exported").exists()
    assert main(["export", str(model), "-o", str(tmp_path)]) == 2  # would hold the model
    _one_error(capsys)

    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("keep me")
    for extra in ([], ["--force"]):
        assert main(["export", str(model), "-o", str(busy), *extra]) == 2
        _one_error(capsys, "not empty")
        assert [p.name for p in busy.iterdir()] == ["notes.txt"]
        assert (busy / "notes.txt").read_text() == "keep me"

    target = tmp_path / "again"
    shutil.copytree(exported["topdown"], target)
    assert main(["export", str(model), "-o", str(target), "--force"]) == 0  # an export: replaced
    assert json.loads((target / "export_metadata.json").read_text())["model_type"] == \
        "single_instance"
    assert not (target / "training_config_centroid.yaml").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no scratch left


def test_folder_without_sleapflow_networks_is_one_error(
        exported: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A folder sleap-nn wrote has only the baked graph: track says what to pass instead."""
    folder = tmp_path / "sleap_nn_export"
    shutil.copytree(exported["single_instance"], folder)
    shutil.rmtree(folder / "sleapflow")
    out = tmp_path / "x.slp"
    assert main(["track", "-i", str(DATASETS / "small_robot.mp4"), "--frames", "0",
                 "-m", str(folder), "-o", str(out)]) == 2
    _one_error(capsys, "sleap-nn", "sleapflow export")
    assert not out.exists()

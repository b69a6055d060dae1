"""ONNX Runtime and torch agree (two graph types, a few frames: the graph suite runs every
parity case under ``auto``, onnx on CPU); the torch runtime still matches the reference."""

from __future__ import annotations

from pathlib import Path

import pytest

from parity import compare_labels, load_reference, run_pipeline

CKPT = "model_ckpts/minimal_instance_"
PKG = "datasets/minimal_instance.pkg.slp"
ROBOT = "datasets/small_robot_minimal.slp"

#: One small input per graph type: every labeled frame of the test .slp files. Two types keep
#: this short: one model on whole frames, and two models with crop batches between them.
GRAPHS = {
    "single_instance": (ROBOT, ["single_instance"]),
    "topdown": (PKG, ["centroid", "centered_instance"]),
}


def _run(assets: Path, graph: str, runtime: str) -> object:
    data, models = GRAPHS[graph]
    return run_pipeline(data_path=str(assets / data), runtime=runtime,
                        model_paths=tuple(str(assets / f"{CKPT}{m}") for m in models))


@pytest.mark.parametrize("graph", sorted(GRAPHS))
def test_onnx_and_torch_agree(graph: str, assets: Path) -> None:
    onnx = _run(assets, graph, "onnx")
    torch_ = _run(assets, graph, "torch")
    report = compare_labels(onnx, torch_, check_tracks=False)
    report.assert_ok()
    assert report.frames_ours == report.frames_ref > 0
    assert report.keypoint_max < 1e-3  # on these inputs the two differ only by float rounding


@pytest.mark.parametrize(("case", "graph"), [
    ("single_instance__small_robot_minimal", "single_instance"),
    ("topdown__minimal_instance", "topdown"),
])
def test_torch_runtime_matches_reference(case: str, graph: str, assets: Path,
                                         reference: Path) -> None:
    # The default suite runs auto (onnx on CPU); these keep the bit-exact torch path checked.
    report = compare_labels(_run(assets, graph, "torch"), load_reference(reference, case))
    report.assert_ok()
    assert report.keypoint_max < 1e-3


def test_saturated_class_maps_keep_torchs_tiny_values(assets: Path, tmp_path: Path) -> None:
    """ONNX Runtime's sigmoid returns exactly 0 below ~1e-20, where torch's returns e.g. 2e-23;
    the identity matching compares those values, so exports leave the sigmoid to torch."""
    import torch

    from sleapflow.models import load_model
    from sleapflow.runtimes.cache import ExportCache
    from sleapflow.runtimes.runners import OnnxRunner, TorchRunner

    module = load_model(assets / f"{CKPT}multiclass_bottomup").module
    x = torch.randint(0, 256, (2, 1, 192, 192), dtype=torch.uint8,
                      generator=torch.Generator().manual_seed(0))
    ref = TorchRunner(module, torch.device("cpu"))(x)["ClassMapsHead"]
    got = OnnxRunner(module, torch.device("cpu"), threads=1, precision="fp32",
                     cache=ExportCache("onnx", tmp_path))(x)["ClassMapsHead"]
    tiny = (ref > 0) & (ref < 1e-20)
    assert int(tiny.sum()) > 100  # this model saturates: the case the fix is for
    assert bool((got[tiny] > 0).all())
    torch.testing.assert_close(got, ref, rtol=1e-3, atol=1e-5)

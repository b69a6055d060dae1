"""On a CUDA machine, the single-instance and top-down graphs still match the reference."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from parity import compare_labels, load_reference, run_pipeline

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.mark.parametrize(("case", "data", "models"), [
    ("single_instance__small_robot", "datasets/small_robot.mp4", ["minimal_instance_single_instance"]),
    ("topdown__centered_pair_small", "datasets/centered_pair_small.mp4",
     ["minimal_instance_centroid", "minimal_instance_centered_instance"]),
])
def test_cuda_graph_matches_reference(case: str, data: str, models: list[str], assets: Path,
                                      reference: Path) -> None:
    labels = run_pipeline(data_path=str(assets / data), frames="0-299",
                          model_paths=tuple(str(assets / "model_ckpts" / m) for m in models),
                          device_override="cuda")
    compare_labels(labels, load_reference(reference, case)).assert_ok()

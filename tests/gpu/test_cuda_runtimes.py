"""On a CUDA machine: every runtime and precision against torch fp32 maps, and a graph with each."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from sleapflow.backends import installed_runtimes, make_runner, resolve_runtime
from sleapflow.models import load_model

from parity import compare_labels, load_reference, run_pipeline

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

MODEL = "model_ckpts/minimal_instance_bottomup"


def _available() -> list[tuple[str, str]]:
    out = [("torch", "fp32"), ("torch", "fp16"), ("torch", "bf16")]
    have = installed_runtimes("cuda") if torch.cuda.is_available() else []
    if "onnx" in have:
        out.append(("onnx", "fp32"))
    if "tensorrt" in have:
        out += [("tensorrt", "fp32"), ("tensorrt", "fp16")]
    return out


@pytest.mark.parametrize(("runtime", "precision"), _available())
def test_maps_match_torch_fp32(runtime: str, precision: str, assets: Path, tmp_path: Path,
                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLEAPFLOW_CACHE_DIR", str(tmp_path))
    x = torch.randint(0, 256, (4, 1, 384, 384), dtype=torch.uint8)  # host uint8, as the graph sends
    ref = make_runner(resolve_runtime("torch", "cuda"), load_model(assets / MODEL, "cuda").module,
                      "cuda")(x)
    got = make_runner(resolve_runtime(runtime, "cuda", precision=precision),
                      load_model(assets / MODEL, "cuda").module, "cuda", max_batch=4)(x)
    tol = 1e-4 if precision == "fp32" else 5e-2
    for k in ref:
        assert got[k].device.type == "cuda" and got[k].dtype == torch.float32
        assert float((got[k] - ref[k]).abs().max()) <= tol * max(1.0, float(ref[k].abs().max()))


@pytest.mark.parametrize(("runtime", "precision"), _available())
def test_bottomup_graph_parity_per_runtime(runtime: str, precision: str, assets: Path,
                                           reference: Path) -> None:
    labels = run_pipeline(data_path=str(assets / "datasets/centered_pair_small.mp4"), frames="0-299",
                          model_paths=(str(assets / MODEL),), device_override="cuda",
                          runtime=runtime, precision=precision)
    report = compare_labels(labels, load_reference(reference, "bottomup__centered_pair_small"))
    print(runtime, precision, report)  # the figures for RESULTS.md when run on a GPU
    report.assert_ok()

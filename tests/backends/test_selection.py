"""Which runtime ``auto`` picks and why, the errors for impossible choices, and where it is recorded."""

from __future__ import annotations

from pathlib import Path

import pytest

from sleapflow.backends import installed_runtimes, resolve_runtime
from sleapflow.backends.select import AUTO_EXCLUDE
from sleapflow.cli.app import main
from sleapflow.errors import ConfigError
from sleapflow.testing import captured_logs


def test_auto_on_cpu_picks_onnx_runtime_because_it_passes_parity() -> None:
    assert "onnx" in installed_runtimes("cpu")  # a core dependency
    choice = resolve_runtime("auto", "cpu", graph="bottomup")
    assert (choice.name, choice.requested) == ("onnx", "auto")
    assert "parity" in choice.reason


def test_every_graph_auto_picks_onnx_on_cpu() -> None:
    # The whole parity suite passes under onnx, legacy top-down included (RESULTS.md).
    for graph in ("topdown", "legacy_topdown", "bottomup", "multiclass_bottomup",
                  "multiclass_topdown", "single_instance", "legacy_single_instance"):
        assert resolve_runtime("auto", "cpu", graph=graph).name == "onnx", graph


def test_auto_skips_a_runtime_that_failed_parity_for_that_graph(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(AUTO_EXCLUDE, ("cpu", "legacy_topdown"),
                        {"onnx": "legacy top-down fails parity under onnx"})
    legacy = resolve_runtime("auto", "cpu", graph="legacy_topdown")
    assert legacy.name == "torch" and "legacy" in legacy.reason
    assert resolve_runtime("auto", "cpu", graph="topdown").name == "onnx"
    # Asked for by name it still runs.
    assert resolve_runtime("onnx", "cpu", graph="legacy_topdown").name == "onnx"


def test_auto_keeps_torch_for_torch_only_options() -> None:
    assert resolve_runtime("auto", "cpu", channels_last=True).name == "torch"
    assert resolve_runtime("torch", "cpu").name == "torch"


@pytest.mark.parametrize(("runtime", "device", "precision", "message"), [
    ("tensorrt", "cpu", "fp32", "needs an NVIDIA GPU"),
    ("onnx", "cpu", "fp16", "needs a CUDA device"),
    ("jax", "cpu", "fp32", "unknown runtime"),
    ("torch", "cpu", "fp64", "unknown precision"),
])
def test_impossible_choices_are_config_errors(runtime: str, device: str, precision: str,
                                              message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        resolve_runtime(runtime, device, precision=precision)


def test_channels_last_with_onnx_is_an_error() -> None:
    with pytest.raises(ConfigError, match="--runtime torch only"):
        resolve_runtime("onnx", "cpu", channels_last=True)


def test_cli_rejects_bad_runtime_with_one_line(assets: Path, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "o.slp"
    rc = main(["track", "-i", str(assets / "datasets/small_robot_minimal.slp"),
               "-m", str(assets / "model_ckpts/minimal_instance_single_instance"),
               "--runtime", "tensorrt", "--device", "cpu", "-o", str(out)])
    err = capsys.readouterr().err
    assert rc == 2
    assert "Error: --runtime tensorrt needs an NVIDIA GPU" in err
    assert "Traceback" not in err
    assert not out.exists()


def test_auto_sees_legacy_models(assets: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from sleapflow.graphs.build import prepare
    from sleapflow.options.config import InferenceConfig

    # An exclusion for legacy top-down only: auto must see that these .h5 models are legacy.
    monkeypatch.setitem(AUTO_EXCLUDE, ("cpu", "legacy_topdown"), {"onnx": "legacy excluded"})
    legacy = assets / "legacy_models"
    cfg = InferenceConfig(data_path=str(assets / "datasets/minimal_instance.pkg.slp"), device="cpu",
                          model_paths=(str(legacy / "minimal_instance.UNet.centroid"),
                                       str(legacy / "minimal_instance.UNet.centered_instance")))
    run = prepare(cfg)
    assert run.ctx.runtime is not None and run.ctx.runtime.name == "torch"
    assert "legacy" in run.ctx.runtime.reason


def test_auto_choice_is_logged_and_in_provenance(assets: Path, tmp_path: Path) -> None:
    from sleapflow.predict import run_inference

    with captured_logs() as logs:
        labels = run_inference(data_path=str(assets / "datasets/small_robot_minimal.slp"),
                               model_paths=[str(assets / "model_ckpts/minimal_instance_single_instance")],
                               device="cpu", output_path=str(tmp_path / "o.slp"))
    chosen = [e for e in logs if e["event"] == "runtime selected"]
    assert len(chosen) == 1
    assert chosen[0]["runtime"] == "onnx" and chosen[0]["requested"] == "auto"
    prov = labels.provenance["runtime"]
    assert prov["name"] == "onnx" and prov["requested"] == "auto"
    assert "parity" in prov["reason"]
    assert labels.provenance["inference_config"]["runtime"] == "auto"


def test_open_graph_takes_the_runtime_keyword(assets: Path) -> None:
    from sleapflow.session import open_graph

    model = str(assets / "model_ckpts/minimal_instance_single_instance")
    with pytest.raises(ConfigError, match="--runtime must be one of"):
        open_graph(model, runtime="bogus")
    open_graph(model, runtime="torch")  # accepted (nothing runs until entered)


def test_bf16_on_the_cpu_runs_through_torch_where_the_cpu_has_bf16_units() -> None:
    from sleapflow.backends.select import cpu_has_bf16

    if cpu_has_bf16():
        for requested in ("auto", "torch"):
            choice = resolve_runtime(requested, "cpu", precision="bf16")
            assert (choice.name, choice.precision) == ("torch", "bf16")
        assert "oneDNN" in resolve_runtime("auto", "cpu", precision="bf16").reason
    else:
        with pytest.raises(ConfigError, match="no bf16 instructions"):
            resolve_runtime("auto", "cpu", precision="bf16")
    with pytest.raises(ConfigError, match="runs through --runtime torch"):
        resolve_runtime("onnx", "cpu", precision="bf16")
    with pytest.raises(ConfigError, match="--precision fp16 needs a CUDA device"):
        resolve_runtime("auto", "cpu", precision="fp16")

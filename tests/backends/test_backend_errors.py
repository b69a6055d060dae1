"""Failures of a network runtime are BackendErrors that say what to do, and the CLI reports one
as a single ``Error:`` line with exit code 1 (a run-time failure; user errors exit 2)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from sleapflow.backends import resolve_runtime
from sleapflow.backends.cache import ExportCache
from sleapflow.backends.runners import OnnxRunner, make_runner
from sleapflow.cli.app import main
from sleapflow.errors import BackendError, ConfigError, SleapflowError
from sleapflow.models import load_model
from sleapflow.testing import write_synthetic_model

MODEL = "model_ckpts/minimal_instance_single_instance"
UNSUPPORTED = "Exporting the operator 'aten::frobnicate' to ONNX opset version 17 is not supported."


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_synthetic_model(tmp_path_factory.mktemp("model"), "single_instance", n_nodes=2,
                                 filters=4, filters_rate=1.5, max_stride=8)


def _batch() -> torch.Tensor:
    return torch.zeros((1, 1, 64, 64), dtype=torch.uint8)


def _unexportable(monkeypatch: pytest.MonkeyPatch) -> None:
    """torch.onnx.export fails the way it does for an operator without an ONNX form."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise RuntimeError(UNSUPPORTED + "\n<the graph dump torch appends>")

    monkeypatch.setattr(torch.onnx, "export", refuse)


def test_an_export_failure_is_a_backend_error_naming_the_way_out(
        tiny: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _unexportable(monkeypatch)
    runner = OnnxRunner(load_model(tiny).module, torch.device("cpu"), threads=1, precision="fp32",
                        cache=ExportCache("onnx", tmp_path))
    with pytest.raises(BackendError) as caught:
        runner(_batch())
    text = str(caught.value)
    assert "cannot export this model to ONNX" in text and "--runtime torch" in text
    assert UNSUPPORTED.rstrip(".") in text and "graph dump" not in text  # the first line, not the dump
    assert isinstance(caught.value.__cause__, RuntimeError)
    assert caught.value.exit_code == 1
    # Nothing half-built is left for a later run to pick up.
    assert not [p for p in (tmp_path / "onnx").iterdir() if not p.name.startswith(".")]


def test_an_export_failure_under_runtime_onnx_is_one_error_line_and_exit_1(
        assets: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("SLEAPFLOW_CACHE_DIR", str(tmp_path / "cache"))  # no cached export to reuse
    _unexportable(monkeypatch)
    out = tmp_path / "out.slp"
    rc = main(["track", "-i", str(assets / "datasets/small_robot.mp4"), "-m", str(assets / MODEL),
               "--runtime", "onnx", "--frames", "0-3", "-o", str(out)])
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.startswith("Error:")]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    assert "cannot export this model to ONNX" in lines[0] and "--runtime torch" in lines[0]
    assert rc == 1
    assert not out.exists()


def test_an_unwritable_export_cache_is_a_backend_error(tiny: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("the cache folder cannot be made under a file")
    runner = OnnxRunner(load_model(tiny).module, torch.device("cpu"), threads=1, precision="fp32",
                        cache=ExportCache("onnx", blocker))
    with pytest.raises(BackendError, match="SLEAPFLOW_CACHE_DIR") as caught:
        runner(_batch())
    assert isinstance(caught.value.__cause__, OSError)


def test_an_unknown_runtime_is_a_config_error(tiny: Path) -> None:
    bogus = dataclasses.replace(resolve_runtime("torch", "cpu"), name="tpu-magic")
    with pytest.raises(ConfigError, match="tpu-magic"):
        make_runner(bogus, load_model(tiny).module, "cpu")
    assert issubclass(BackendError, SleapflowError) and issubclass(BackendError, RuntimeError)

"""One configuration boundary: CLI flags and run_inference keywords become the same config, the
sub-configs partition it, and config.py stays free of torch and the tracker."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from sleapflow.cli.app import main
from sleapflow.options import boundary as options_module
from sleapflow.options.config import (
    ExecutionOptions,
    FilterOptions,
    GroupingOptions,
    InferenceConfig,
    InputOptions,
    OutputOptions,
    PeakOptions,
    PreprocessingOptions,
    TrackingOptions,
)
from sleapflow.predict import run_inference

SUBCONFIGS = {
    "input": InputOptions, "preprocessing": PreprocessingOptions, "peaks": PeakOptions,
    "grouping": GroupingOptions, "filters": FilterOptions, "tracking_options": TrackingOptions,
    "output": OutputOptions, "execution": ExecutionOptions,
}


_REAL_BUILD_CONFIG = options_module.build_config


class _Stop(Exception):
    pass


def _captured(monkeypatch: pytest.MonkeyPatch, call: Any) -> InferenceConfig:
    seen: list[InferenceConfig] = []
    real = _REAL_BUILD_CONFIG

    def spy(**options: Any) -> InferenceConfig:
        seen.append(real(**options))
        raise _Stop

    monkeypatch.setattr(options_module, "build_config", spy)
    monkeypatch.setattr("sleapflow.predict.build_config", spy)
    with pytest.raises(_Stop):
        call()
    assert len(seen) == 1
    return seen[0]


def test_cli_and_run_inference_build_the_same_config(monkeypatch: pytest.MonkeyPatch) -> None:
    from_cli = _captured(monkeypatch, lambda: main([
        "track", "-i", "clip.mp4", "-m", "model_a", "-m", "model_b", "-o", "out.slp",
        "--batch-size", "2", "--frames", "0-3,7", "--peak-threshold", "0.3",
        "--integral-refinement", "none", "--tracking", "--tracking-window-size", "7",
        "--max-tracks", "2", "--filter-min-instance-score", "0.25", "--device", "cpu"]))
    from_api = _captured(monkeypatch, lambda: run_inference(
        data_path="clip.mp4", model_paths=["model_a", "model_b"], output_path="out.slp",
        batch_size=2, frames="0-3,7", peak_threshold=0.3, integral_refinement="none",
        tracking=True, tracking_window_size=7, max_tracks=2, filter_min_instance_score=0.25,
        device="cpu"))
    assert from_cli == from_api
    assert from_cli.frames == ((0, 3), 7) and from_cli.integral_refinement is None  # ranges kept
    assert from_cli.tracker.window_size == 7 and from_cli.tracker.max_tracks == 2


def test_sub_configs_partition_the_options() -> None:
    fields = [f for sub in SUBCONFIGS.values() for f in sub.__struct_fields__]
    assert sorted(fields) == sorted(InferenceConfig.__struct_fields__)
    cfg = InferenceConfig(batch_size=3, crop_size=64, n_points=5, filter_overlapping=True,
                          peak_threshold=(0.1, 0.4), frames=(1, 2), forward_workers=2)
    for attr, sub in SUBCONFIGS.items():
        view = getattr(cfg, attr)
        assert isinstance(view, sub)
        assert all(getattr(view, f) == getattr(cfg, f) for f in sub.__struct_fields__)
    assert (cfg.peaks.centroid_threshold, cfg.peaks.instance_threshold) == (0.1, 0.4)


def test_config_imports_neither_torch_nor_the_tracker() -> None:
    code = ("import sys, sleapflow.options.config, sleapflow.options.boundary; "
            "bad = [m for m in sys.modules if m == 'torch' or m.startswith('sleapflow.tracking')]; "
            "print(bad); sys.exit(1 if bad else 0)")
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                          timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr

"""Bad input gives one line on stderr, exit code 2, no traceback, and quickly."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

from sleapflow.cli.app import main

MODEL = "model_ckpts/minimal_instance_single_instance"


def run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    start = time.perf_counter()
    rc = main(args)
    assert time.perf_counter() - start < 5
    err = capsys.readouterr().err
    return rc, err


def _error_line(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.startswith("Error:")]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


def test_missing_model_folder(assets: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, err = run(["track", "-i", str(assets / "datasets/small_robot.mp4"), "-m",
                   str(tmp_path / "nope")], capsys)
    assert rc == 2
    assert "does not exist" in _error_line(err)


@pytest.mark.parametrize("missing", ["best.ckpt", "training_config.yaml"])
def test_folder_without_checkpoint_or_config(assets: Path, tmp_path: Path, missing: str,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "model"
    shutil.copytree(assets / MODEL, folder)
    (folder / missing).unlink()
    rc, err = run(["track", "-i", str(assets / "datasets/small_robot.mp4"), "-m", str(folder)], capsys)
    assert rc == 2
    assert missing in _error_line(err)


def test_not_a_video(assets: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bogus = tmp_path / "notes.mp4"
    bogus.write_text("this is not a video")
    rc, err = run(["track", "-i", str(bogus), "-m", str(assets / MODEL)], capsys)
    assert rc == 2
    assert "notes.mp4" in _error_line(err)


@pytest.mark.parametrize("frames", ["0-10,x", "5-2", "1;2"])
def test_bad_frames(assets: Path, frames: str, capsys: pytest.CaptureFixture[str]) -> None:
    rc, err = run(["track", "-i", str(assets / "datasets/small_robot.mp4"), "-m", str(assets / MODEL),
                   "--frames", frames], capsys)
    assert rc == 2
    assert "--frames" in _error_line(err)


def test_unknown_device(assets: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, err = run(["track", "-i", str(assets / "datasets/small_robot.mp4"), "-m", str(assets / MODEL),
                   "--device", "tpu"], capsys)
    assert rc == 2
    assert "tpu" in _error_line(err)


def test_unknown_option_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    rc, _ = run(["track", "-i", "x.mp4", "--no-such-option", "1"], capsys)
    assert rc == 2


def test_hyphenated_aliases_are_accepted(assets: Path, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "o.slp"
    rc, _ = run(["track", "--data-path", str(assets / "datasets/small_robot.mp4"), "--model-paths",
                 str(assets / MODEL), "--output-path", str(out), "--batch-size", "2",
                 "--frames", "0-3", "--peak-threshold", "0.3"], capsys)
    assert rc == 0
    assert out.exists()


def test_graphs_lists_and_describes(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["graphs"]) == 0
    listing = capsys.readouterr().out
    for name in ("single_instance", "topdown", "bottomup", "multiclass_topdown", "track_only"):
        assert name in listing
    assert main(["graphs", "topdown", "--forward-workers", "1"]) == 0
    shown = capsys.readouterr().out
    assert "centroid_forward -> crop" in shown and "instance_forward" in shown
    rc, err = run(["graphs", "nope"], capsys)
    assert rc == 2 and "unknown graph" in err

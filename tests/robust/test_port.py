"""Issue #18 on the redesigned code: --resume and the output guard with several inputs, frame
ranges through the one config boundary, and the stage catalogue behind graphs/ and runtime/."""

from __future__ import annotations

import ast
import os
from pathlib import Path

import pytest

from sleapflow.cli.app import main
from sleapflow.options.boundary import build_config
from sleapflow.testing import write_synthetic_video

PACKAGE = Path(__file__).resolve().parents[2] / "sleapflow"
SINGLE = "model_ckpts/minimal_instance_single_instance"


def _error_lines(err: str) -> list[str]:
    return [ln for ln in err.splitlines() if ln.startswith("Error:")]


def test_resume_with_several_inputs_and_overwrite_is_refused_in_one_line(
        assets: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # --resume continues each video's journal and skips finished outputs; --overwrite would
    # redo them.
    clips = [write_synthetic_video(tmp_path / f"c{k}.mp4", n_frames=3) for k in range(2)]
    rc = main(["track", "-i", str(clips[0]), "-i", str(clips[1]), "-m", str(assets / SINGLE),
               "--device", "cpu", "-o", f"{tmp_path}/out/", "--resume", "--overwrite"])
    assert rc == 2
    (line,) = _error_lines(capsys.readouterr().err)
    assert "--resume" in line and "--overwrite" in line
    assert not (tmp_path / "out").exists()


def test_a_live_run_on_a_per_video_output_is_refused(
        assets: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    clips = [write_synthetic_video(tmp_path / f"c{k}.mp4", n_frames=3) for k in range(2)]
    out = tmp_path / "out"
    out.mkdir()
    # Another live process (our parent) holds the second video's output.
    (out / ".c1.predictions.slp.lock").write_text(f"{os.getppid()}\n")
    rc = main(["track", "-i", str(clips[0]), "-i", str(clips[1]), "-m", str(assets / SINGLE),
               "--device", "cpu", "-o", f"{out}/"])
    assert rc == 2
    (line,) = _error_lines(capsys.readouterr().err)
    assert "another sleapflow run" in line
    assert not (out / ".c0.predictions.slp.lock").exists()  # the one taken was released
    assert not list(out.glob("*.predictions.slp"))


def test_frame_ranges_stay_ranges_through_build_config() -> None:
    assert build_config(frames="0-99999999,5").frames == ((0, 99999999), 5)
    assert build_config(frames=[(0, 3), 7, [9, 12]]).frames == ((0, 3), 7, (9, 12))
    cfg = build_config(frames="2-4", max_failed_frames=3, resume=True)
    assert cfg.input.frames == ((2, 4),) and cfg.input.max_failed_frames == 3
    assert cfg.output.resume is True


def test_only_graphs_and_runtime_import_the_stage_catalogue() -> None:
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        part = path.relative_to(PACKAGE).parts[0]
        if part in ("graphs", "runtime", "stages"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                     [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            if any(n == "sleapflow.stages" or n.startswith("sleapflow.stages.") for n in names):
                offenders.append(str(path.relative_to(PACKAGE)))
    assert offenders == []

"""sleapflow as a library logs through the standard ``logging`` module: nothing on stdout, and the
importing program decides what reaches stderr."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

MODEL = "model_ckpts/minimal_instance_single_instance"
VIDEO = "datasets/small_robot.mp4"

# Frames 0-2 exist; 10**6 does not, so planning warns that it is skipped. The runtime choice is
# logged at info level.
_SCRIPT = """
import logging, sys
{setup}
from sleapflow.predict import run_inference

labels = run_inference(data_path=sys.argv[1], model_paths=[sys.argv[2]], frames=[0, 1, 2, 10**6],
                       output_path=sys.argv[3], device="cpu")
assert len(labels) == 3, len(labels)
"""


def _run(assets: Path, tmp_path: Path, setup: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, "-c", _SCRIPT.format(setup=setup), str(assets / VIDEO), str(assets / MODEL),
         str(tmp_path / "out.slp")], capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr
    return result


@pytest.mark.timeout(300)
def test_run_inference_writes_nothing_to_stdout_and_warns_on_stderr(assets: Path,
                                                                     tmp_path: Path) -> None:
    result = _run(assets, tmp_path, setup="")
    assert result.stdout == ""
    # Unconfigured logging shows warnings (Python's last-resort handler), not info lines.
    assert "not in the video" in result.stderr
    assert "runtime selected" not in result.stderr


@pytest.mark.timeout(300)
def test_the_sleapflow_logger_controls_what_is_shown(assets: Path, tmp_path: Path) -> None:
    silenced = _run(assets, tmp_path, setup='logging.getLogger("sleapflow").setLevel(logging.CRITICAL)')
    assert silenced.stdout == ""
    assert "not in the video" not in silenced.stderr

    verbose = _run(assets, tmp_path, setup="logging.basicConfig(level=logging.INFO, "
                                           "format='%(name)s|%(levelname)s|%(message)s')")
    assert verbose.stdout == ""
    lines = verbose.stderr.splitlines()
    # Each record comes from the emitting module's logger, message rendered with its key-values.
    assert any(line.startswith("sleapflow.") and "|INFO|runtime selected" in line
               and "runtime=onnx" in line for line in lines), verbose.stderr
    assert any("|WARNING|" in line and "not in the video" in line for line in lines), verbose.stderr

"""``sleapflow demo`` runs the real track job with the embedded model on the generated clip, and
its predictions reach the scores recorded in sleapflow/demo/README.md, measured by ``sleapflow
eval`` against the clip's exact keypoints."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import pytest
import sleap_io as sio

from sleapflow.cli import main
from sleapflow.demo import run as demo
from sleapflow.models.loader import read_model_config

#: Recorded on the committed model (sleapflow/demo/README.md); the test allows a small margin
#: for encoder and platform differences, never a worse model.
RECORDED = {"mOKS": 0.367, "PCK@10": 0.75, "dist_p50": 2.41}


@pytest.fixture(scope="module")
def result(tmp_path_factory: pytest.TempPathFactory) -> demo.DemoResult:
    """``sleapflow demo`` as a user runs it; the paths are the ones it reports."""
    out = tmp_path_factory.mktemp("demo")
    assert main(["demo", "-o", str(out), "--device", "cpu"]) == 0
    pred = out / "demo_clip.predictions.slp"
    return demo.DemoResult(clip=out / "demo_clip.mp4", ground_truth=out / "demo_clip.ground_truth.slp",
                           predictions=pred, video=pred.with_suffix(".mp4"),
                           picture=pred.with_suffix(".png"), map_oks=float("nan"),
                           mean_oks=float("nan"))


def test_embedded_model_is_an_unchanged_sleap_nn_folder() -> None:
    files = sorted(p.name for p in demo.MODEL_DIR.iterdir())
    assert files == ["best.ckpt", "training_config.yaml"]
    assert sum(p.stat().st_size for p in demo.MODEL_DIR.iterdir()) < 2_000_000
    cfg = read_model_config(demo.MODEL_DIR)
    assert cfg.model_type == "single_instance"
    assert cfg.skeleton.node_names == ("head", "thorax", "abdomen", "tail")


def test_demo_writes_predictions_and_pictures(result: demo.DemoResult) -> None:
    labels = sio.load_slp(str(result.predictions))
    assert len(labels.labeled_frames) == demo.CLIP_FRAMES
    assert labels.provenance["model_paths"] == [demo.MODEL_DIR.as_posix()]
    video = sio.load_video(str(result.video))
    assert len(video) == demo.CLIP_FRAMES and video.shape[1] == 160
    img = cv2.imread(str(result.picture))
    assert img is not None and img.shape[:2] == (320, 320)  # drawn at 2x


def test_demo_predictions_reach_the_recorded_scores(result: demo.DemoResult, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    metrics = tmp_path / "metrics.npz"
    assert main(["eval", "-g", str(result.ground_truth), "-p", str(result.predictions),
                 "-s", str(metrics)]) == 0
    assert "mOKS" in capsys.readouterr().out
    m = json.loads(metrics.with_suffix(".json").read_text())
    assert m["mOKS"]["mOKS"] >= RECORDED["mOKS"] - 0.02
    assert m["pck_metrics"]["PCK@10"] >= RECORDED["PCK@10"] - 0.03
    assert m["distance_metrics"]["p50"] <= RECORDED["dist_p50"] + 0.5

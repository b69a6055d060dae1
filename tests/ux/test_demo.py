"""``sleapflow demo`` runs the real track job with the embedded model on the generated clip, and
its predictions reach the scores recorded in sleapflow/demo/README.md, measured by ``sleapflow
eval`` against the clip's exact keypoints."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import sleap_io as sio

from sleapflow.cli.app import main
from sleapflow.demo import run as demo
from sleapflow.demo import synth
from sleapflow.models.loader import read_model_config

#: Recorded on the committed model (sleapflow/demo/README.md); the test allows a small margin
#: for encoder and platform differences, never a worse model.
RECORDED = {"mAP": 0.890, "mOKS": 0.931, "PCK@5": 1.0, "dist_p50": 1.29, "dist_p95": 2.76}


@pytest.fixture(scope="module")
def ran(tmp_path_factory: pytest.TempPathFactory) -> tuple[demo.DemoResult, str]:
    """``sleapflow demo`` as a user runs it, and what it printed; the paths are the ones it
    reports."""
    out = tmp_path_factory.mktemp("demo")
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert main(["demo", "-o", str(out), "--device", "cpu"]) == 0
    pred = out / "demo_clip.predictions.slp"
    return demo.DemoResult(clip=out / "demo_clip.mp4", ground_truth=out / "demo_clip.ground_truth.slp",
                           predictions=pred, video=pred.with_suffix(".mp4"),
                           picture=pred.with_suffix(".png"), map_oks=float("nan"),
                           mean_oks=float("nan")), printed.getvalue()


@pytest.fixture(scope="module")
def result(ran: tuple[demo.DemoResult, str]) -> demo.DemoResult:
    return ran[0]


def test_embedded_model_is_an_unchanged_sleap_nn_folder() -> None:
    files = sorted(p.name for p in demo.MODEL_DIR.iterdir())
    assert files == ["best.ckpt", "training_config.yaml"]
    assert sum(p.stat().st_size for p in demo.MODEL_DIR.iterdir()) < 2_000_000
    cfg = read_model_config(demo.MODEL_DIR)
    assert cfg.model_type == "single_instance"
    assert cfg.skeleton.node_names == synth.NODES


def test_demo_writes_predictions_and_pictures(result: demo.DemoResult) -> None:
    labels = sio.load_slp(str(result.predictions))
    assert len(labels.labeled_frames) == demo.CLIP_FRAMES
    assert labels.provenance["model_paths"] == [demo.MODEL_DIR.as_posix()]
    video = sio.load_video(str(result.video))
    assert len(video) == demo.CLIP_FRAMES and video.shape[1] == synth.SIZE
    img = cv2.imread(str(result.picture))
    assert img is not None and img.shape[:2] == (2 * synth.SIZE, 2 * synth.SIZE)  # drawn at 2x


def test_demo_predictions_reach_the_recorded_scores(result: demo.DemoResult, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    metrics = tmp_path / "metrics.npz"
    assert main(["eval", "-g", str(result.ground_truth), "-p", str(result.predictions),
                 "-s", str(metrics)]) == 0
    assert "mOKS" in capsys.readouterr().out
    m = json.loads(metrics.with_suffix(".json").read_text())
    assert m["voc_metrics"]["oks_voc.mAP"] >= RECORDED["mAP"] - 0.03
    assert m["mOKS"]["mOKS"] >= RECORDED["mOKS"] - 0.02
    assert m["pck_metrics"]["PCK@5"] >= RECORDED["PCK@5"] - 0.03
    assert m["distance_metrics"]["p50"] <= RECORDED["dist_p50"] + 0.3
    assert m["distance_metrics"]["p95"] <= RECORDED["dist_p95"] + 0.6


def test_demo_says_where_its_outputs_are(ran: tuple[demo.DemoResult, str]) -> None:
    r, printed = ran
    for path in (r.clip, r.ground_truth, r.predictions, r.video, r.picture):
        assert str(path) in printed and path.is_file()
    assert "watch this" in printed and "OKS mAP" in printed


def test_the_map_floor_rejects_a_model_that_confuses_left_and_right(
        result: demo.DemoResult, tmp_path: Path) -> None:
    """The recorded floor means something: the same predictions with the wing tips swapped
    (a model that cannot tell left from right, every other point exact as predicted) fall well
    below it, because each wing tip is then a wingspan away."""
    labels = sio.load_slp(str(result.predictions))
    left, right = synth.NODES.index("left_wing"), synth.NODES.index("right_wing")
    for lf in labels.labeled_frames:
        for inst in lf.instances:
            pts = inst.numpy()
            pts[[left, right]] = pts[[right, left]]
            inst.points["xy"] = pts
    swapped = tmp_path / "swapped.slp"
    sio.save_slp(labels, str(swapped), verbose=False)
    metrics = tmp_path / "metrics.npz"
    assert main(["eval", "-g", str(result.ground_truth), "-p", str(swapped), "-s", str(metrics)]) == 0
    m = json.loads(metrics.with_suffix(".json").read_text())
    assert np.isfinite(m["voc_metrics"]["oks_voc.mAP"])
    assert m["voc_metrics"]["oks_voc.mAP"] < RECORDED["mAP"] - 0.3

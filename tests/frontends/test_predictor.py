"""Predictor: one frame per call gives what ``track`` gives on the same frames (points, scores,
and with tracking the same identities), for single-instance and top-down models."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import sleap_io as sio

import sleapflow
from sleapflow.cli.app import main
from sleapflow.errors import ConfigError
from sleapflow.inputs import PyAVReader
from sleapflow.predict import Poses

N_FRAMES = 4
CASES = {
    "single_instance": ("datasets/small_robot.mp4", ["model_ckpts/minimal_instance_single_instance"]),
    "topdown": ("datasets/centered_pair_small.mp4", ["model_ckpts/minimal_instance_centroid",
                                                     "model_ckpts/minimal_instance_centered_instance"]),
}


def _frames(video: Path) -> list[np.ndarray]:
    reader = PyAVReader(str(video))
    try:
        return [reader.read(i) for i in range(N_FRAMES)]
    finally:
        reader.close()


def _by_x(points: np.ndarray) -> np.ndarray:
    """Instances in a fixed order (by their mean x), for comparing untracked results."""
    return np.argsort(np.nanmean(points[:, :, 0], axis=1), kind="stable")


@pytest.mark.parametrize("case", sorted(CASES))
def test_predict_frame_by_frame_equals_track(case: str, assets: Path, tmp_path: Path) -> None:
    clip, models = CASES[case]
    video, model_paths = assets / clip, [str(assets / m) for m in models]
    out = tmp_path / "track.slp"
    assert main(["track", "-i", str(video), *(a for m in model_paths for a in ("-m", m)),
                 "--frames", f"0-{N_FRAMES - 1}", "--tracking", "--batch_size", "1",
                 "--device", "cpu", "-o", str(out)]) == 0
    written = sio.load_slp(str(out), open_videos=False)
    labels = {lf.frame_idx: lf for lf in written}
    frames = _frames(video)

    with sleapflow.Predictor(model_paths, device="cpu", tracking=True) as tracked, \
            sleapflow.Predictor(model_paths, device="cpu") as plain:
        assert tracked.node_names == tuple(written.skeleton.node_names)
        # One frame in flight: the map stages run as one (runtime/chaining.py), the poses equal.
        chained = [s.name for s in plain.statistics().stages if "+" in s.name]
        assert chained and any("forward" in name for name in chained)
        seen_tracks: set[int] = set()
        for i, frame in enumerate(frames):
            got = tracked.predict(frame)
            untracked = plain.predict(frame)
            assert isinstance(got, Poses) and got.frame_idx == i == untracked.frame_idx
            assert untracked.track_ids is None and untracked.track_names is None
            assert got.track_ids is not None
            ref = labels[i].instances if i in labels else []
            assert got.n_instances == untracked.n_instances == len(ref)
            if not ref:
                continue
            ref_points = np.stack([inst.numpy() for inst in ref])
            ref_scores = np.stack([inst.numpy(scores=True)[:, 2] for inst in ref])
            # With tracking: the same instances in the same order, with the same track names.
            np.testing.assert_allclose(got.points, ref_points, rtol=1e-6, atol=1e-4)
            np.testing.assert_allclose(got.point_scores, ref_scores, rtol=1e-5, atol=1e-5)
            np.testing.assert_allclose(got.instance_scores, [inst.score for inst in ref],
                                       rtol=1e-5, atol=1e-6)
            assert [f"track_{t}" for t in got.track_ids] == [inst.track.name for inst in ref]
            assert got.track_names == tuple(inst.track.name for inst in ref)
            seen_tracks.update(got.track_ids.tolist())
            # Without: the same instances (tracking may only reorder them).
            np.testing.assert_allclose(untracked.points[_by_x(untracked.points)],
                                       ref_points[_by_x(ref_points)], rtol=1e-6, atol=1e-4)
        assert len(seen_tracks) == (1 if case == "single_instance" else 2)


def test_predictor_refuses_what_it_cannot_do(assets: Path) -> None:
    model = str(assets / CASES["single_instance"][1][0])
    with pytest.raises(ConfigError, match="max_gap"):
        sleapflow.Predictor(model, tracking=True, max_gap=3)
    with pytest.raises(ConfigError, match="link_tracklets"):
        sleapflow.Predictor(model, tracking=True, link_tracklets=True)
    with pytest.raises(ConfigError, match="unknown option"):
        sleapflow.Predictor(model, frames_per_second=3)
    with sleapflow.Predictor(model, device="cpu") as p:
        with pytest.raises(ConfigError, match="uint8"):
            p.predict(np.zeros((64, 64, 3), dtype=np.float32))
        # A bad frame leaves the graph working.
        assert p.predict(np.zeros((64, 64, 3), dtype=np.uint8)).points.shape[1:] == (2, 2)
        assert p.latency() is None  # no frame came with a capture time
        captured = time.time() - 0.5  # a frame captured half a second ago
        p.predict(np.zeros((64, 64, 3), dtype=np.uint8), capture_time=captured)
        figures = p.latency()
        assert figures is not None and figures.frames == 1 and figures.p50_ms >= 500
    with pytest.raises(sleapflow.SleapflowError, match="closed"):
        p.predict(np.zeros((64, 64, 3), dtype=np.uint8))


def test_a_predictor_closed_before_its_first_frame_lets_the_process_exit_cleanly(
        assets: Path) -> None:
    """With a warm export cache the sessions open in a background thread while the graph
    starts; a process that ends before they are open must wait for them, not abort (it died
    of SIGABRT: the thread inherited daemon from the worker that started it)."""
    model = str(assets / "model_ckpts" / "minimal_instance_single_instance")
    warm = (f"import numpy as np, sleapflow\n"
            f"with sleapflow.Predictor([{model!r}], device='cpu', runtime='onnx') as p:\n"
            f"    p.predict(np.zeros((320, 560, 3), np.uint8))\n")
    closed_at_once = (f"import sleapflow\n"
                      f"sleapflow.Predictor([{model!r}], device='cpu', runtime='onnx').close()\n")
    for script in (warm, closed_at_once, closed_at_once):
        done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                              timeout=120)
        assert done.returncode == 0, done.stderr[-3000:]
        assert "terminate called" not in done.stderr

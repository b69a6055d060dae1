"""``track --output_format ... --render --gui`` and ``render``: every format loads back with the
same points as the .slp; the overlay is a playable mp4 of the right length and size, and a PNG;
``--gui`` prints sleap-nn's JSON progress lines; ``info`` and ``system`` report."""

from __future__ import annotations

import importlib.metadata
import json
import os
from pathlib import Path

import cv2
import h5py
import numpy as np
import pandas as pd
import pytest
import sleap_io as sio

from sleapflow.cli.app import main

MODEL = "model_ckpts/minimal_instance_single_instance"
CLIP = "datasets/small_robot.mp4"
FRAMES = 6


@pytest.fixture(scope="module")
def run(assets: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    out_dir = tmp_path_factory.mktemp("outputs")
    out = out_dir / "robot.slp"
    import contextlib
    import io

    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        rc = main(["track", "-i", str(assets / CLIP), "-m", str(assets / MODEL), "-o", str(out),
                   "--frames", f"0-{FRAMES - 1}", "--device", "cpu", "--output_format", "slp",
                   "--output_format", "csv", "--output_format", "analysis_h5",
                   "--output_format", "nwb", "--render", "--gui"])
    assert rc == 0, stderr.getvalue()
    labels = sio.load_slp(str(out))
    return {"dir": out_dir, "labels": labels, "stdout": stdout.getvalue(),
            "stderr": stderr.getvalue()}


def _slp_points(labels: sio.Labels) -> dict[int, np.ndarray]:
    return {lf.frame_idx: lf.instances[0].numpy() for lf in labels.labeled_frames}


def test_slp_has_the_frames(run: dict) -> None:
    assert sorted(_slp_points(run["labels"])) == list(range(FRAMES))


def test_csv_matches_slp(run: dict) -> None:
    df = pd.read_csv(run["dir"] / "robot.csv")
    slp = _slp_points(run["labels"])
    nodes = run["labels"].skeleton.node_names
    assert sorted(df["frame_idx"]) == sorted(slp)
    for _, row in df.iterrows():
        xy = np.array([[row[f"{n}.x"], row[f"{n}.y"]] for n in nodes])
        np.testing.assert_allclose(xy, slp[int(row["frame_idx"])], rtol=1e-6)


def test_analysis_h5_matches_slp(run: dict) -> None:
    with h5py.File(run["dir"] / "robot.analysis.h5") as f:
        tracks = f["tracks"][:]  # (tracks, xy, nodes, frames)
        names = [n.decode() if isinstance(n, bytes) else str(n) for n in f["node_names"][:]]
    assert names == list(run["labels"].skeleton.node_names)
    for frame, points in _slp_points(run["labels"]).items():
        np.testing.assert_allclose(tracks[0, :, :, frame].T, points, rtol=1e-6)
    # The frame axis ends at the last predicted frame, as SLEAP's (not at the video's end).
    assert tracks.shape == (1, 2, len(names), FRAMES)


def test_nwb_matches_slp(run: dict) -> None:
    import ndx_pose  # noqa: F401  (registers ndx-pose's types with pynwb)
    from pynwb import NWBHDF5IO

    slp = _slp_points(run["labels"])
    nodes = run["labels"].skeleton.node_names
    with NWBHDF5IO(str(run["dir"] / "robot.nwb"), "r") as nwb_io:
        pose = nwb_io.read().processing["behavior"]["PoseEstimation"]
        series = [pose.pose_estimation_series[n] for n in nodes]
        got = np.stack([np.asarray(s.data[:]) for s in series], axis=1)  # (frames, nodes, 2)
        assert series[0].rate == pytest.approx(run["labels"].video.fps)  # seconds, not indices
    assert len(got) == len(slp)
    for i, frame in enumerate(sorted(slp)):
        np.testing.assert_allclose(got[i], slp[frame], rtol=1e-6)


def test_render_preview_is_a_playable_mp4(run: dict, assets: Path) -> None:
    video = sio.load_video(str(run["dir"] / "robot.mp4"))
    source = sio.load_video(str(assets / CLIP))
    assert len(video) == FRAMES
    assert video.shape[1:3] == source.shape[1:3]
    first = video[0]
    assert first.std() > 1  # real pixels, not a blank frame
    # The overlay differs from the source frame where the skeleton is drawn.
    assert np.abs(first.astype(int) - source[0].astype(int)).max() > 50


def test_render_command_png_and_frames(run: dict, assets: Path) -> None:
    slp = run["dir"] / "robot.slp"
    png = run["dir"] / "frame2.png"
    assert main(["render", str(slp), "-o", str(png), "--frames", "2"]) == 0
    img = cv2.imread(str(png))
    assert img is not None and img.shape[:2] == sio.load_video(str(assets / CLIP)).shape[1:3]
    mp4 = run["dir"] / "two.mp4"
    assert main(["render", str(slp), "-o", str(mp4), "--frames", "1-2", "--scale", "0.5"]) == 0
    clip = sio.load_video(str(mp4))
    h, w = sio.load_video(str(assets / CLIP)).shape[1:3]
    assert len(clip) == 2 and clip.shape[1] == h // 2
    assert w // 2 <= clip.shape[2] < w // 2 + 16  # H.264 pads the width to whole macroblocks


def test_render_bad_input_is_one_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["render", str(tmp_path / "missing.slp")]) == 2
    err = capsys.readouterr().err
    assert err.count("Error:") == 1 and "missing.slp" in err


def test_gui_progress_lines(run: dict) -> None:
    lines = [json.loads(ln) for ln in run["stdout"].splitlines() if ln.startswith("{")]
    assert lines, run["stdout"]
    assert all(set(ln) == {"n_processed", "n_total", "rate", "eta"} for ln in lines)
    assert lines[-1]["n_processed"] == lines[-1]["n_total"] == FRAMES
    assert lines[-1]["eta"] == 0


def test_start_banner(run: dict) -> None:
    # A log line (stderr), so the same line reaches a library user's logging.
    banner = [ln for ln in run["stderr"].splitlines() if "] sleapflow " in ln and "| graph " in ln]
    assert len(banner) == 1
    assert "torch " in banner[0] and "device cpu" in banner[0] and "graph single_instance" in banner[0]


def test_only_other_formats_leave_no_slp(assets: Path, tmp_path: Path) -> None:
    out = tmp_path / "only.slp"
    assert main(["track", "-i", str(assets / CLIP), "-m", str(assets / MODEL), "-o", str(out),
                 "--frames", "0-1", "--device", "cpu", "--output_format", "csv"]) == 0
    assert not out.exists() and (tmp_path / "only.csv").exists()
    assert not list(tmp_path.glob(".*tmp*"))  # the temporary files were renamed away


def test_an_output_named_for_its_format_is_that_file(assets: Path, tmp_path: Path) -> None:
    """-o x.csv --output_format csv writes x.csv (not x.csv.csv); with slp too, the .slp is x.slp."""
    base = ["track", "-i", str(assets / CLIP), "-m", str(assets / MODEL), "--frames", "0-1",
            "--device", "cpu"]
    assert main([*base, "-o", str(tmp_path / "only.csv"), "--output_format", "csv"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["only.csv"]
    both = tmp_path / "both"
    both.mkdir()
    assert main([*base, "-o", str(both / "x.csv"), "--output_format", "slp",
                 "--output_format", "csv"]) == 0
    assert sorted(p.name for p in both.iterdir()) == ["x.csv", "x.slp"]
    assert len(sio.load_slp(str(both / "x.slp")).labeled_frames) == 2


def test_info_and_system(assets: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["info", str(assets / MODEL), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["model_type"] == "single_instance"
    assert info["nodes"] == ["A", "B"] and info["edges"] == ["A-B"]
    assert info["input_scale"] == 0.5 and info["max_height"] == 320 and info["max_width"] == 560
    assert info["parameters"] > 1000 and info["epochs_trained"] >= 1
    assert main(["info", str(assets / MODEL), str(assets / "model_ckpts/minimal_instance_centroid")]) == 0
    text = capsys.readouterr().out
    assert "single_instance" in text and "centroid" in text
    assert main(["system", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["packages"]["torch"] and report["packages"]["sleap-io"] == sio.__version__
    # Every run-time dependency, installed or not, the export cache and auto's pick per device.
    for name in ("onnxruntime", "onnx", "platformdirs"):
        assert report["packages"][name] == importlib.metadata.version(name)
    assert set(report["optional_packages"]) >= {"ray", "starlette", "uvicorn", "tensorrt"}
    installed = {d.metadata["Name"].lower() for d in importlib.metadata.distributions()}
    for name, version in report["optional_packages"].items():
        assert (version is not None) == (name in installed), name
    assert report["export_cache"] == os.environ["SLEAPFLOW_CACHE_DIR"]
    assert report["auto_runtime"]["cpu"]["runtime"] == "onnx"
    assert "parity suite" in report["auto_runtime"]["cpu"]["reason"]
    assert main(["system"]) == 0
    text = capsys.readouterr().out
    assert "Devices:" in text and "Export cache" in text
    if "tensorrt" not in installed:
        assert "tensorrt                 not installed (pip install \"sleapflow[tensorrt]\")" in text
    assert "  cpu      onnx (" in text

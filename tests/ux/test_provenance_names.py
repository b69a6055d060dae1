"""The seed documentation's provenance snippet works on every graph's output file: its top-level
names (``runtime_sec``, ``source_path``, ``peak_threshold``, ...) hold values, beside sleap-nn's
own keys, and every path is absolute."""

from __future__ import annotations

from pathlib import Path

import pytest
import sleap_io as sio

from sleapflow.cli.app import main

from parity import CKPT, INFERENCE_CASES, VIDEO

CASES = INFERENCE_CASES

#: Names every output carries; track-only outputs take the inference ones from their input.
ALWAYS = ("timestamp_start", "timestamp_end", "runtime_sec", "sleap_io_version", "torch_version",
          "model_paths", "model_type", "head_type", "source_path", "source_video_paths",
          "frame_selection_method", "frames_predicted", "total_frames", "peak_threshold",
          "batch_size", "integral_refinement", "device", "python_version", "gpu_names")


def _track(argv: list[str], out: Path) -> sio.Labels:
    assert main(["track", *argv, "-o", str(out), "--device", "cpu"]) == 0
    return sio.load_slp(str(out))


def _check(prov: dict, *, source: Path) -> None:
    missing = [key for key in ALWAYS if prov.get(key) is None]
    assert not missing, missing
    assert prov["runtime_sec"] >= 0
    assert prov["timestamp_start"] <= prov["timestamp_end"]
    assert prov["source_path"] == source.resolve().as_posix()
    for path in [*prov["model_paths"], *prov["source_video_paths"], prov["source_path"]]:
        assert Path(path).is_absolute(), path
    assert prov["frames_predicted"] >= 0
    assert prov["total_frames"] >= prov["frames_predicted"]


@pytest.mark.parametrize("graph", sorted(CASES))
def test_seed_names_on_every_graph(graph: str, assets: Path, tmp_path: Path) -> None:
    data, models = CASES[graph]
    argv = ["-i", str(assets / data), "--frames", "0-1", "--batch_size", "2",
            "--peak_threshold", "0.3", "--graph", graph]
    for m in models:
        argv += ["-m", str(assets / (CKPT + m))]
    prov = _track(argv, tmp_path / "out.slp").provenance
    _check(prov, source=assets / data)
    assert prov["peak_threshold"] == prov["inference_config"]["peak_threshold"] == 0.3
    assert prov["batch_size"] == 2
    assert prov["frames_predicted"] == prov["frame_selection"]["frames_processed"]
    assert prov["runtime_sec"] == prov["inference_runtime_seconds"]  # sleap-nn's keys are kept
    assert prov["model_type"] and prov["device"] == "cpu"
    assert not any(key.startswith("tracker_") for key in prov)


def test_seed_names_tracked_and_track_only(assets: Path, tmp_path: Path) -> None:
    """A tracked run adds ``tracker_*``; re-tracking it (track-only, relative input path) keeps
    the inference settings from the input's provenance, which is carried as
    ``input_provenance``."""
    first = tmp_path / "first.slp"
    prov = _track(["-i", str(assets / VIDEO), "-m", str(assets / (CKPT + "bottomup")),
                   "--frames", "0-2", "--tracking", "--max_tracks", "2"], first).provenance
    _check(prov, source=assets / VIDEO)
    assert prov["tracker_max_tracks"] == 2
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(tmp_path)
        again = _track(["-i", "first.slp", "--tracking"], tmp_path / "again.slp").provenance
    _check(again, source=first)
    assert again["pipeline_type"] == "tracking_only"
    assert again["input_provenance"]["runtime_sec"] == prov["runtime_sec"]
    assert again["peak_threshold"] == prov["peak_threshold"]
    assert again["model_paths"] == prov["model_paths"]
    assert again["frames_predicted"] == 3
    assert any(key.startswith("tracker_") for key in again)

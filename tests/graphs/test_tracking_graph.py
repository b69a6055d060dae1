"""Tracking as graph stages: the track-only workflow and inference + tracking, vs sleap-nn."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import sleap_io as sio

from sleapflow.cli.app import main
from sleapflow.tracking import TrackerConfig

from parity import compare_labels, load_reference, run_pipeline

CKPT = "model_ckpts/minimal_instance_"


def _trackonly_cases(reference: Path) -> dict[str, list[str]]:
    manifest = json.loads((reference / "manifest.json").read_text())
    return {k: v["cli_options"] for k, v in manifest.items() if k.startswith("trackonly_")}


@pytest.fixture(scope="module")
def topdown_predictions(tmp_path_factory: pytest.TempPathFactory, assets: Path, reference: Path) -> Path:
    """The track-only input with its video path pointing at the real clip (for optical flow)."""
    labels = sio.load_slp(str(reference / "topdown__centered_pair_small.slp"), open_videos=False)
    labels.replace_filenames(new_filenames=[str(assets / "datasets/centered_pair_small.mp4")])
    path = tmp_path_factory.mktemp("trackonly") / "topdown.slp"
    sio.save_slp(labels, str(path))
    return path


def test_every_trackonly_reference_is_covered(reference: Path) -> None:
    assert len(_trackonly_cases(reference)) == 8


@pytest.mark.parametrize("case", ["trackonly_centroids_euclid", "trackonly_connect_breaks",
                                  "trackonly_default", "trackonly_flow",
                                  "trackonly_greedy_iou_bboxes", "trackonly_local_queues_max2",
                                  "trackonly_robust_cosine", "trackonly_window10_minpts1"])
def test_track_only_cli_matches_reference(case: str, reference: Path, topdown_predictions: Path,
                                          tmp_path: Path) -> None:
    options = _trackonly_cases(reference)[case]
    out = tmp_path / "tracked.slp"
    assert main(["track", "-i", str(topdown_predictions), "-t", *options, "-o", str(out)]) == 0
    ours = sio.load_slp(str(out), open_videos=False)
    ref = load_reference(reference, case)
    report = compare_labels(ours, ref, check_tracks=True)
    report.assert_ok()
    assert report.track_counts[0] == report.track_counts[1]
    assert ours.provenance["pipeline_type"] == "tracking_only"
    if "--max_tracks" in options:
        assert len(ours.tracks) <= int(options[options.index("--max_tracks") + 1])


@pytest.mark.parametrize(("case", "models", "tracker"), [
    ("track_topdown_default", ("centroid", "centered_instance"), {}),
    ("track_bottomup_local_queues_max2", ("bottomup",),
     {"candidates_method": "local_queues", "max_tracks": 2}),
])
def test_inference_and_tracking_in_one_run(case: str, models: tuple[str, ...], tracker: dict,
                                           assets: Path, reference: Path) -> None:
    labels = run_pipeline(data_path=str(assets / "datasets/centered_pair_small.mp4"), frames="0-299",
                          model_paths=tuple(str(assets / f"{CKPT}{m}") for m in models),
                          tracking=True, tracker=TrackerConfig(**tracker))
    report = compare_labels(labels, load_reference(reference, case), check_tracks=True)
    report.assert_ok()
    assert report.track_counts[0] == report.track_counts[1]
    assert labels.provenance["tracking_config"]["candidates_method"] == \
        tracker.get("candidates_method", "fixed_window")


def test_tracking_without_models_needs_labels(assets: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["track", "-i", str(assets / "datasets/centered_pair_small.mp4"), "-t"])
    assert rc == 2
    assert ".slp" in capsys.readouterr().err


def test_bad_tracker_option_is_a_clear_error(topdown_predictions: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["track", "-i", str(topdown_predictions), "-t", "--scoring_method", "nope"])
    assert rc == 2
    err = capsys.readouterr().err
    assert "scoring_method" in err and "nope" in err

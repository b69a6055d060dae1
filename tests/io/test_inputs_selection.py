"""Frame selection on .slp inputs and videos: sleap-nn track's (legacy) semantics, spec §5.2/§7."""

from __future__ import annotations

from pathlib import Path

import pytest
import sleap_io as sio
from inputs_helpers import two_video_labels

from sleapflow.errors import ConfigError
from sleapflow.inputs import plan_input
from sleapflow.options.config import InferenceConfig, parse_frames
from sleapflow.testing import captured_logs, write_synthetic_video


@pytest.fixture(scope="module")
def labels_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, list]]:
    return two_video_labels(tmp_path_factory.mktemp("labels"))


def _pairs(plan) -> list[tuple[int, int]]:
    return [(it.video_id, it.frame_idx) for it in plan.items]


def _cfg(path: Path | str, **kw) -> InferenceConfig:
    return InferenceConfig(data_path=str(path), **kw)


@pytest.mark.parametrize(("flag", "key", "method"), [
    (None, "all", "all"),
    ("only_labeled_frames", "labeled", "labeled"),
    ("only_suggested_frames", "suggested", "suggested"),
    ("exclude_user_labeled", "exclude_user_labeled", "all"),
    ("only_predicted_frames", "predicted", "predicted"),
])
def test_label_flags(labels_file, flag: str | None, key: str, method: str) -> None:
    path, expected = labels_file
    plan = plan_input(_cfg(path, **({flag: True} if flag else {})))
    assert _pairs(plan) == expected[key]
    assert plan.kind == "slp"
    assert plan.frame_selection_method == method
    # every video of the file, in its order, is in the output (the reference's LabelsReader)
    assert [Path(v.filename).name for v in plan.videos] == ["cam0.mp4", "cam1.mp4"]


def test_flag_precedence_first_wins(labels_file) -> None:
    path, expected = labels_file
    # labeled > suggested > exclude_user_labeled > predicted
    plan = plan_input(_cfg(path, only_suggested_frames=True, only_predicted_frames=True))
    assert _pairs(plan) == expected["suggested"]
    plan = plan_input(_cfg(path, exclude_user_labeled=True, only_predicted_frames=True))
    assert _pairs(plan) == expected["exclude_user_labeled"]
    assert plan.frame_selection_method == "all"
    plan = plan_input(_cfg(path, only_labeled_frames=True, only_suggested_frames=True))
    assert _pairs(plan) == expected["labeled"]


def test_labeled_and_exclude_are_exclusive(labels_file) -> None:
    path, _ = labels_file
    with pytest.raises(ConfigError, match="mutually exclusive"):
        plan_input(_cfg(path, only_labeled_frames=True, exclude_user_labeled=True))


def test_frames_are_positions_without_video_index(labels_file) -> None:
    path, expected = labels_file
    with captured_logs() as logs:
        plan = plan_input(_cfg(path, frames=(4, 0, 2, 99)))
    assert _pairs(plan) == [expected["all"][4], expected["all"][0], expected["all"][2]]
    assert plan.frame_selection_method == "specified"
    assert any("positions beyond" in e["event"] for e in logs)
    # positions count in the filtered list
    plan = plan_input(_cfg(path, only_labeled_frames=True, frames=(1,)))
    assert _pairs(plan) == [expected["labeled"][1]]
    assert plan.frame_selection_method == "labeled"


def test_video_index_selects_every_frame_of_that_video(labels_file) -> None:
    path, _ = labels_file
    plan = plan_input(_cfg(path, video_index=1))
    assert _pairs(plan) == [(0, f) for f in range(15)]
    assert [Path(v.filename).name for v in plan.videos] == ["cam1.mp4"]
    assert plan.video_index == 1
    assert plan.frame_selection_method == "all"


def test_video_index_frames_are_frame_indices(labels_file) -> None:
    path, _ = labels_file
    with captured_logs() as logs:
        plan = plan_input(_cfg(path, video_index=0, frames=parse_frames("3-5,18-25")))
    assert _pairs(plan) == [(0, f) for f in (3, 4, 5, 18, 19)]
    assert plan.frame_selection_method == "specified"
    assert any(e["event"].startswith("requested frames not in the video") for e in logs)


def test_video_index_honours_only_exclude_user_labeled(labels_file) -> None:
    path, _ = labels_file
    plan = plan_input(_cfg(path, video_index=1, exclude_user_labeled=True))
    assert [f for _, f in _pairs(plan)] == [f for f in range(15) if f not in (1, 7)]
    with captured_logs() as logs:
        plan = plan_input(_cfg(path, video_index=0, only_labeled_frames=True))
    # ignored, as in sleap-nn track, but said
    assert len(plan.items) == 20
    assert plan.frame_selection_method == "all"
    assert any("ignored with --video_index" in e["event"] for e in logs)


def test_video_index_out_of_range(labels_file) -> None:
    path, _ = labels_file
    with pytest.raises(ConfigError, match=r"--video_index 2 is out of range.*2 video"):
        plan_input(_cfg(path, video_index=2))


def test_repeated_frames_processed_once(labels_file, tmp_path: Path) -> None:
    path, _ = labels_file
    plan = plan_input(_cfg(path, video_index=0, frames=(3, 1, 3, 1)))
    assert [f for _, f in _pairs(plan)] == [3, 1]
    plan = plan_input(_cfg(path, frames=(1, 1, 0)))
    assert len(plan.items) == 2


def test_ground_truth_mode_keeps_frames_with_user_instances(labels_file) -> None:
    path, expected = labels_file
    plan = plan_input(_cfg(path), need_ground_truth=True)
    assert _pairs(plan) == expected["labeled"]
    assert all(it.gt_points is not None and it.gt_points.shape[1:] == (2, 2) for it in plan.items)


def test_missing_video_file_is_a_clear_error(tmp_path: Path) -> None:
    video = write_synthetic_video(tmp_path / "gone.mp4", n_frames=4)
    v = sio.load_video(str(video))
    sk = sio.Skeleton(nodes=["A"])
    labels = sio.Labels(labeled_frames=[sio.LabeledFrame(video=v, frame_idx=1)], videos=[v],
                        skeletons=[sk])
    sio.save_slp(labels, str(tmp_path / "l.slp"), verbose=False)
    v.close()
    video.unlink()
    with pytest.raises(ConfigError, match=r"cannot be found: .*gone\.mp4"):
        plan_input(_cfg(tmp_path / "l.slp"))


# ---- video inputs ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_synthetic_video(tmp_path_factory.mktemp("clip") / "clip.mp4", n_frames=30)


def test_video_frames_ranges_and_lists(clip: Path) -> None:
    plan = plan_input(_cfg(clip, frames=parse_frames("0-3,10-12,20")))
    assert [it.frame_idx for it in plan.items] == [0, 1, 2, 3, 10, 11, 12, 20]
    assert plan.frame_selection_method == "specified"
    plan = plan_input(_cfg(clip))
    assert [it.frame_idx for it in plan.items] == list(range(30))
    assert plan.frame_selection_method == "all"


def test_video_frames_out_of_range_warn_and_skip(clip: Path) -> None:
    with captured_logs() as logs:
        plan = plan_input(_cfg(clip, frames=parse_frames("25-299")))
    assert [it.frame_idx for it in plan.items] == [25, 26, 27, 28, 29]
    warning = next(e for e in logs if e["log_level"] == "warning")
    assert warning["skipped"] == 270 and warning["n_frames"] == 30


def test_only_predicted_frames_needs_labels(clip: Path) -> None:
    with pytest.raises(ConfigError, match=r"--only_predicted_frames requires a \.slp"):
        plan_input(_cfg(clip, only_predicted_frames=True))


def test_label_flags_on_a_video_are_ignored_with_a_warning(clip: Path) -> None:
    with captured_logs() as logs:
        plan = plan_input(_cfg(clip, only_labeled_frames=True))
    assert len(plan.items) == 30
    assert plan.frame_selection_method == "all"
    assert any(e.get("ignored") == ["--only_labeled_frames"] for e in logs)


def test_ground_truth_needs_labels(clip: Path) -> None:
    with pytest.raises(ConfigError, match="needs ground-truth"):
        plan_input(_cfg(clip), need_ground_truth=True)


def test_missing_input(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="input not found"):
        plan_input(_cfg(tmp_path / "nope.mp4"))
    with pytest.raises(ConfigError, match="required"):
        plan_input(InferenceConfig())

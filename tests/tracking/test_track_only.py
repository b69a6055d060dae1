"""The track-only driver: frame selection, user-instance preference, output Labels, provenance."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import sleap_io as sio

from sleapflow.errors import ConfigError
from sleapflow.tracking import TrackerConfig, track_labels
from sleapflow.tracking.track_only import resolve_track_only_config, select_frames

SKELETON = sio.Skeleton(["a", "b"])


def predicted(x: float, y: float, score: float = 0.9, track: sio.Track | None = None
              ) -> sio.PredictedInstance:
    pts = np.array([[x, y], [x + 10, y + 5]])
    return sio.PredictedInstance.from_numpy(pts, skeleton=SKELETON, score=score, track=track)


def user(x: float, y: float) -> sio.Instance:
    return sio.Instance.from_numpy(np.array([[x, y], [x + 10, y + 5]]), skeleton=SKELETON)


@pytest.fixture
def labels() -> sio.Labels:
    v0, v1 = sio.Video(filename="v0.mp4"), sio.Video(filename="v1.mp4")
    old = sio.Track(name="old")
    frames = [
        sio.LabeledFrame(video=v0, frame_idx=2, instances=[predicted(0, 0), predicted(100, 0)]),
        sio.LabeledFrame(video=v0, frame_idx=0, instances=[predicted(0, 0), predicted(100, 0)]),
        sio.LabeledFrame(video=v1, frame_idx=1, instances=[predicted(1, 0), predicted(101, 0)]),
        sio.LabeledFrame(video=v0, frame_idx=3, instances=[
            predicted(300, 300, track=old), user(1, 1), user(101, 1)]),
    ]
    return sio.Labels(labeled_frames=frames, videos=[v0, v1], skeletons=[SKELETON],
                      provenance={"filename": "in.slp", "model_type": "top_down"})


def test_frames_are_sorted_by_frame_index_across_videos(labels: sio.Labels) -> None:
    lfs = select_frames(labels)
    assert [(labels.videos.index(lf.video), lf.frame_idx) for lf in lfs] == [
        (0, 0), (1, 1), (0, 2), (0, 3)]
    assert [lf.frame_idx for lf in select_frames(labels, video_index=0)] == [0, 2, 3]
    assert [lf.frame_idx for lf in select_frames(labels, frames=[3, 1, 7])] == [1, 3]
    with pytest.raises(ConfigError, match="out of range"):
        select_frames(labels, video_index=2)


def test_track_labels_output(labels: sio.Labels) -> None:
    before = [[(i.track, i.tracking_score) for i in lf.instances] for lf in labels]
    out = track_labels(labels, TrackerConfig())
    assert [lf.frame_idx for lf in out] == [0, 1, 2, 3]
    assert out.videos == labels.videos and out.skeletons == labels.skeletons
    names = [[i.track.name if i.track else None for i in lf.instances] for lf in out]
    assert names[:3] == [["track_0", "track_1"]] * 3
    # Frame 3 has user instances: they are tracked; the predicted one is kept untouched, first.
    assert names[3] == ["old", "track_0", "track_1"]
    assert isinstance(out[3].instances[0], sio.PredictedInstance)
    assert all(type(i) is sio.Instance for i in out[3].instances[1:])
    assert out[0].instances[0].tracking_score == 1.0
    # One Track object per id for the whole run.
    assert out[0].instances[0].track is out[3].instances[1].track
    # The input is not modified.
    assert [[(i.track, i.tracking_score) for i in lf.instances] for lf in labels] == before


def test_track_labels_frame_selection(labels: sio.Labels) -> None:
    out = track_labels(labels, TrackerConfig(), video_index=0, frames=[2, 3])
    assert [lf.frame_idx for lf in out] == [2, 3]
    assert len(out.videos) == 2  # every input video is kept


def test_provenance(labels: sio.Labels) -> None:
    out = track_labels(labels, TrackerConfig(max_tracks=2), source_file="in.slp")
    prov = out.provenance
    assert prov["pipeline_type"] == "tracking_only"
    assert prov["frames_processed"] == 4
    # The path the user typed is recorded absolute (as inference records it); the input's own
    # provenance keeps the name it was saved under.
    assert prov["source_file"] == Path("in.slp").resolve().as_posix()
    assert prov["source_labels"] == "in.slp"
    assert prov["input_provenance"]["model_type"] == "top_down"
    assert prov["tracking_config"]["max_tracks"] == 2
    assert prov["tracking_config"]["candidates_method"] == "fixed_window"
    for key in ("tracking_start_timestamp", "tracking_end_timestamp", "tracking_runtime_seconds",
                "sleap_io_version", "system_info"):
        assert key in prov


def test_local_queue_first_frame_keeps_old_track_on_small_instances() -> None:
    old = sio.Track(name="old")
    small = sio.PredictedInstance.from_numpy(np.array([[0.0, 0.0], [np.nan, np.nan]]),
                                             skeleton=SKELETON, score=0.5, track=old)
    video = sio.Video(filename="v.mp4")
    labels = sio.Labels(labeled_frames=[
        sio.LabeledFrame(video=video, frame_idx=0, instances=[small, predicted(50, 50)])])
    out = track_labels(labels, TrackerConfig(candidates_method="local_queues",
                                             min_new_track_points=1))
    assert [i.track.name for i in out[0].instances] == ["old", "track_0"]


def test_max_instances_defaults() -> None:
    cfg = resolve_track_only_config(TrackerConfig(post_connect_single_breaks=True),
                                    max_instances=2)
    assert cfg.max_tracks == 2 and cfg.tracking_target_instance_count == 2
    with pytest.raises(ConfigError, match="tracking_target_instance_count"):
        resolve_track_only_config(TrackerConfig(post_connect_single_breaks=True))
    assert resolve_track_only_config(TrackerConfig(), max_instances=3) == TrackerConfig()


def test_post_cleanup_runs_per_frame() -> None:
    video = sio.Video(filename="v.mp4")
    frames = [
        sio.LabeledFrame(video=video, frame_idx=i, instances=[
            predicted(0, 0, 0.9), predicted(200, 0, 0.8), predicted(400, 400, 0.1)])
        for i in range(3)
    ]
    labels = sio.Labels(labeled_frames=frames)
    out = track_labels(labels, TrackerConfig(tracking_clean_instance_count=2))
    assert [len(lf.instances) for lf in out] == [2, 2, 2]
    assert all(i.score > 0.5 for lf in out for i in lf.instances)


def test_instance_filter_hook(labels: sio.Labels) -> None:
    out = track_labels(labels, TrackerConfig(), instance_filter=lambda insts: insts[:1])
    assert [len(lf.instances) for lf in out] == [1, 1, 1, 1]


def test_output_round_trips_through_slp(labels: sio.Labels, tmp_path: Path) -> None:
    out = track_labels(labels, TrackerConfig())
    path = tmp_path / "tracked.slp"
    sio.save_slp(out, str(path))
    back = sio.load_slp(str(path))
    assert [[i.track.name if i.track else None for i in lf.instances] for lf in back] == [
        [i.track.name if i.track else None for i in lf.instances] for lf in out]
    assert back.provenance["pipeline_type"] == "tracking_only"

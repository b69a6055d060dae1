"""TrackerConfig: sleap-nn defaults, eager validation, resolution rules."""

from __future__ import annotations

import msgspec
import pytest

from sleapflow.errors import ConfigError
from sleapflow.testing import captured_logs
from sleapflow.tracking import Tracker, TrackerConfig


def test_defaults_match_sleap_nn() -> None:
    cfg = TrackerConfig()
    assert (cfg.window_size, cfg.min_new_track_points, cfg.candidates_method) == (
        5, 0, "fixed_window")
    assert (cfg.features, cfg.scoring_method, cfg.scoring_reduction) == ("keypoints", "oks", "mean")
    assert cfg.robust_best_instance == 1.0
    assert cfg.track_matching_method == "hungarian"
    assert cfg.max_tracks is None and not cfg.use_flow
    assert (cfg.of_img_scale, cfg.of_window_size, cfg.of_max_levels) == (1.0, 21, 3)
    assert cfg.oks_stddev is None and cfg.effective_oks_stddev == 0.025
    assert cfg.tracking_target_instance_count is None
    assert cfg.tracking_pre_cull_to_target == 0 and cfg.tracking_clean_instance_count == 0
    assert not cfg.post_connect_single_breaks and not cfg.use_kalman


def test_frozen() -> None:
    with pytest.raises(AttributeError):
        TrackerConfig().window_size = 3  # type: ignore[misc]


@pytest.mark.parametrize(("option", "value"), [
    ("candidates_method", "sliding"),
    ("features", "pixels"),
    ("scoring_method", "l1"),
    ("scoring_reduction", "weighted"),
    ("track_matching_method", "auction"),
])
def test_invalid_names_name_option_value_and_choices(option: str, value: str) -> None:
    with pytest.raises(ConfigError) as err:
        TrackerConfig(**{option: value})
    msg = str(err.value)
    assert option in msg and repr(value) in msg and "choose one of" in msg


def test_masks_are_refused_with_a_reason() -> None:
    with pytest.raises(ConfigError, match="segmentation-mask"):
        TrackerConfig(features="masks")
    with pytest.raises(ConfigError, match="segmentation-mask"):
        TrackerConfig(scoring_method="mask_iou")


@pytest.mark.parametrize(("features", "scoring"), [
    ("centroids", "oks"), ("keypoints", "iou"), ("bboxes", "oks"), ("image", "iou"),
])
def test_incompatible_feature_and_scoring_are_refused(features: str, scoring: str) -> None:
    with pytest.raises(ConfigError, match="cannot compare"):
        TrackerConfig(features=features, scoring_method=scoring)


@pytest.mark.parametrize(("features", "scoring"), [
    ("keypoints", "oks"), ("bboxes", "iou"), ("centroids", "euclidean_dist"),
    ("keypoints", "cosine_sim"), ("image", "cosine_sim"), ("bboxes", "cosine_sim"),
])
def test_compatible_pairs(features: str, scoring: str) -> None:
    TrackerConfig(features=features, scoring_method=scoring)


def test_kalman_needs_a_target_count_and_no_flow() -> None:
    with pytest.raises(ConfigError, match="known number of animals"):
        TrackerConfig(use_kalman=True)
    with pytest.raises(ConfigError, match="mutually exclusive"):
        TrackerConfig(use_kalman=True, use_flow=True, max_tracks=2)
    cfg = TrackerConfig(use_kalman=True, max_tracks=2, kf_track_features="keypoints",
                        kf_init_frame_count=3, kf_node_indices=(0, 1))
    assert cfg.effective_oks_stddev == 0.1  # sleap-nn's default for keypoint filters
    TrackerConfig(kf_track_features="keypoints", kf_init_frame_count=3, kf_node_indices=(0, 1))


@pytest.mark.parametrize(("option", "value"), [
    ("window_size", 0), ("min_new_track_points", -1), ("min_match_points", -1),
    ("max_tracks", 0), ("of_img_scale", 0.0), ("of_window_size", 1), ("of_max_levels", -1),
    ("oks_stddev", 0.0), ("robust_best_instance", 1.5), ("robust_best_instance", -0.1),
    ("tracking_clean_instance_count", -2), ("tracking_target_instance_count", -1),
])
def test_numeric_ranges(option: str, value: float) -> None:
    with pytest.raises(ConfigError, match=option):
        TrackerConfig(**{option: value})


def test_decoding_is_strict_and_validated() -> None:
    cfg = msgspec.convert({"window_size": 7, "scoring_method": "iou", "features": "bboxes"},
                          TrackerConfig)
    assert cfg.window_size == 7
    with pytest.raises(msgspec.ValidationError, match="unknown field"):
        msgspec.convert({"windowsize": 7}, TrackerConfig)
    with pytest.raises(ConfigError):
        msgspec.convert({"features": "nope"}, TrackerConfig)
    assert msgspec.json.decode(msgspec.json.encode(cfg), type=TrackerConfig) == cfg


def test_max_tracks_switches_fixed_window_to_local_queues() -> None:
    cfg = TrackerConfig(max_tracks=2)
    assert cfg.candidates_method == "fixed_window"  # the user's value is kept (provenance)
    assert cfg.effective_candidates_method == "local_queues"
    with captured_logs() as logs:
        tracker = Tracker(cfg)
    assert tracker.is_local_queue
    switched = [e for e in logs if e["event"] == "tracking.candidates_method_switched"]
    assert switched and switched[0]["using"] == "local_queues" and switched[0]["max_tracks"] == 2
    assert switched[0]["log_level"] == "info"


def test_legacy_provenance_keys() -> None:
    prov = TrackerConfig(max_tracks=2).legacy_provenance()
    assert list(prov) == ["window_size", "min_new_track_points", "candidates_method",
                          "min_match_points", "features", "scoring_method", "scoring_reduction",
                          "robust_best_instance", "track_matching_method", "max_tracks",
                          "use_flow", "post_connect_single_breaks"]
    assert prov["candidates_method"] == "fixed_window"
    assert "max_tracks" not in TrackerConfig().legacy_provenance()


def test_needs_image() -> None:
    assert not TrackerConfig().needs_image
    assert TrackerConfig(use_flow=True).needs_image
    assert TrackerConfig(features="image", scoring_method="cosine_sim").needs_image

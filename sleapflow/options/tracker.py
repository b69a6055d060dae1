"""Tracker options: one frozen, strictly validated struct with sleap-nn's option names and defaults.

Unlike sleap-nn, which only discovers a bad ``features``/``scoring_method``/... value the first time
it is used (often on the second processed frame), every option is checked here, eagerly, when the
struct is built or decoded, and the error names the option, the bad value and the choices.
"""

from __future__ import annotations

from typing import Any

import msgspec

from sleapflow.errors import ConfigError

__all__ = (
    "CANDIDATE_METHODS", "FEATURES", "KALMAN_FEATURES", "MATCHING_METHODS", "SCORING_METHODS",
    "SCORING_REDUCTIONS", "TRACKERS", "TrackerConfig", "parse_node_indices",
)


CANDIDATE_METHODS = ("fixed_window", "local_queues")
FEATURES = ("keypoints", "centroids", "bboxes", "image")
SCORING_METHODS = ("oks", "cosine_sim", "iou", "euclidean_dist")
SCORING_REDUCTIONS = ("mean", "max", "robust_quantile")
MATCHING_METHODS = ("hungarian", "greedy")
KALMAN_FEATURES = ("centroid", "keypoints")
TRACKERS = ("classic", "sort", "bytetrack", "ocsort")

# Which feature representations each scoring function can compare. sleap-nn crashes (shape
# errors) on the second processed frame for the other pairs; we refuse them up front instead.
# cosine_sim on keypoints is what sleap-nn 0.3.5 computes (flattened (x, y) vectors), so it stays.
_COMPATIBLE_FEATURES: dict[str, tuple[str, ...]] = {
    "oks": ("keypoints",),
    "iou": ("bboxes",),
    "cosine_sim": ("keypoints", "centroids", "bboxes", "image"),
    "euclidean_dist": ("keypoints", "centroids", "bboxes", "image"),
}

# Values sleap-nn documents but does not implement for pose tracking (segmentation masks).
_UNSUPPORTED = {
    ("features", "masks"): "segmentation-mask tracking is not supported by sleapflow",
    ("scoring_method", "mask_iou"): "segmentation-mask tracking is not supported by sleapflow",
}


def _choice(option: str, value: str, choices: tuple[str, ...]) -> None:
    if value in choices:
        return
    why = _UNSUPPORTED.get((option, value))
    detail = f" ({why})" if why else ""
    raise ConfigError(
        f"Invalid {option}={value!r}{detail}; choose one of: {', '.join(choices)}."
    )


def _at_least(option: str, value: float | None, minimum: float, *, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if value is None or value < minimum:
        raise ConfigError(f"Invalid {option}={value!r}; it must be >= {minimum}.")


def parse_node_indices(text: str | None) -> tuple[int, ...] | None:
    """``--kf_node_indices "0,1,2"`` → ``(0, 1, 2)``; empty or None → None (all nodes)."""
    if text is None or not text.strip():
        return None
    try:
        return tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise ConfigError(f"Invalid kf_node_indices={text!r}; give comma-separated node indices, "
                          "e.g. 0,1,2.") from None


class TrackerConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Every tracking option of ``sleap-nn track`` (same names and defaults as the CLI).

    ``window_size`` is ``--tracking_window_size`` on the command line. ``tracking_*`` options and
    ``post_connect_single_breaks`` drive the pre-tracking cull and the post-tracking clean-up
    (:mod:`sleapflow.tracking.cleanup`). Kalman options are accepted so configs written for
    sleap-nn decode.

    ``use_kalman`` and ``kf_*`` drive the classic tracker's constant-velocity candidate shift
    (:mod:`sleapflow.tracking.kalman`). ``tracker`` picks the classic tracker or a motion-model
    one (:mod:`sleapflow.tracking.motion`), tuned by ``track_buffer`` ... ``min_match_similarity``.
    ``max_gap`` / ``fill_gaps`` enable gap-aware re-linking after any tracker
    (:mod:`sleapflow.tracking.linking`).
    """

    window_size: int = 5
    min_new_track_points: int = 0
    candidates_method: str = "fixed_window"
    min_match_points: int = 0
    features: str = "keypoints"
    scoring_method: str = "oks"
    scoring_reduction: str = "mean"
    robust_best_instance: float = 1.0
    track_matching_method: str = "hungarian"
    max_tracks: int | None = None
    use_flow: bool = False
    of_img_scale: float = 1.0
    of_window_size: int = 21
    of_max_levels: int = 3
    oks_stddev: float | None = None
    use_kalman: bool = False
    kf_track_features: str = "centroid"
    kf_init_frame_count: int = 10
    kf_node_indices: tuple[int, ...] | None = None
    kf_reset_gap_size: int = 5
    tracking_target_instance_count: int | None = None
    tracking_pre_cull_to_target: int = 0
    tracking_pre_cull_iou_threshold: float = 0.0
    tracking_clean_instance_count: int = 0
    tracking_clean_iou_threshold: float = 0.0
    post_connect_single_breaks: bool = False
    tracker: str = "classic"
    track_buffer: int = 30
    min_hits: int = 3
    track_high_threshold: float = 0.5
    track_low_threshold: float = 0.1
    new_track_threshold: float = 0.6
    min_match_similarity: float = 0.3
    max_gap: int = 0
    fill_gaps: int = 0

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise :class:`ConfigError` for the first invalid option (called on every construction)."""
        _choice("candidates_method", self.candidates_method, CANDIDATE_METHODS)
        _choice("features", self.features, FEATURES)
        _choice("scoring_method", self.scoring_method, SCORING_METHODS)
        _choice("scoring_reduction", self.scoring_reduction, SCORING_REDUCTIONS)
        _choice("track_matching_method", self.track_matching_method, MATCHING_METHODS)
        _choice("kf_track_features", self.kf_track_features, KALMAN_FEATURES)
        if self.features not in _COMPATIBLE_FEATURES[self.scoring_method]:
            raise ConfigError(
                f"scoring_method={self.scoring_method!r} cannot compare features="
                f"{self.features!r}; with {self.scoring_method!r} use features="
                f"{' or '.join(repr(f) for f in _COMPATIBLE_FEATURES[self.scoring_method])}."
            )
        _choice("tracker", self.tracker, TRACKERS)
        if self.use_kalman:
            if self.use_flow:
                raise ConfigError("use_kalman and use_flow are mutually exclusive; pick one motion "
                                  "model (drop --use_flow or --use_kalman).")
            if self.tracker != "classic":
                raise ConfigError(f"use_kalman applies to the classic tracker; --tracker "
                                  f"{self.tracker} has its own Kalman filter (drop --use_kalman).")
            if self.tracking_target_instance_count is None and self.max_tracks is None:
                raise ConfigError("use_kalman requires a known number of animals: add "
                                  "--max_tracks N or --tracking_target_instance_count N.")
        if self.tracker != "classic" and (self.use_flow or self.max_tracks is not None):
            raise ConfigError(f"--tracker {self.tracker} does not use "
                              f"{'--use_flow' if self.use_flow else '--max_tracks'}; those belong "
                              "to --tracker classic.")
        if self.kf_node_indices is not None and (
                any(i < 0 for i in self.kf_node_indices)
                or len(set(self.kf_node_indices)) != len(self.kf_node_indices)):
            raise ConfigError(f"Invalid kf_node_indices={list(self.kf_node_indices)!r}; give "
                              "distinct node indices >= 0, e.g. 0,1,2.")
        _at_least("kf_init_frame_count", self.kf_init_frame_count, 0)
        _at_least("kf_reset_gap_size", self.kf_reset_gap_size, 0)
        _at_least("track_buffer", self.track_buffer, 1)
        _at_least("min_hits", self.min_hits, 1)
        _at_least("max_gap", self.max_gap, 0)
        _at_least("fill_gaps", self.fill_gaps, 0)
        for name in ("track_high_threshold", "track_low_threshold", "new_track_threshold",
                     "min_match_similarity"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ConfigError(f"Invalid {name}={value!r}; it must be in [0, 1].")
        if self.track_low_threshold > self.track_high_threshold:
            raise ConfigError(f"track_low_threshold={self.track_low_threshold} is above "
                              f"track_high_threshold={self.track_high_threshold}; the low "
                              "threshold must not exceed the high one.")
        _at_least("window_size", self.window_size, 1)
        _at_least("min_new_track_points", self.min_new_track_points, 0)
        _at_least("min_match_points", self.min_match_points, 0)
        _at_least("max_tracks", self.max_tracks, 1, allow_none=True)
        _at_least("of_img_scale", self.of_img_scale, 1e-6)
        _at_least("of_window_size", self.of_window_size, 3)
        _at_least("of_max_levels", self.of_max_levels, 0)
        _at_least("oks_stddev", self.oks_stddev, 1e-12, allow_none=True)
        _at_least("tracking_target_instance_count", self.tracking_target_instance_count, 0,
                  allow_none=True)
        _at_least("tracking_pre_cull_to_target", self.tracking_pre_cull_to_target, 0)
        _at_least("tracking_pre_cull_iou_threshold", self.tracking_pre_cull_iou_threshold, 0)
        _at_least("tracking_clean_instance_count", self.tracking_clean_instance_count, 0)
        _at_least("tracking_clean_iou_threshold", self.tracking_clean_iou_threshold, 0)
        if not 0.0 <= self.robust_best_instance <= 1.0:
            raise ConfigError(
                f"Invalid robust_best_instance={self.robust_best_instance!r}; it is a quantile and "
                "must be in [0, 1]."
            )

    @property
    def effective_candidates_method(self) -> str:
        """The candidate maker actually used: a track cap only exists for local queues."""
        if self.max_tracks is not None and self.candidates_method == "fixed_window":
            return "local_queues"
        return self.candidates_method

    @property
    def effective_oks_stddev(self) -> float:
        """``oks_stddev`` with sleap-nn's ``None`` default resolved: 0.1 for a Kalman filter on
        keypoints (their predictions are noisier), 0.025 otherwise."""
        if self.oks_stddev is not None:
            return float(self.oks_stddev)
        return 0.1 if self.use_kalman and self.kf_track_features == "keypoints" else 0.025

    @property
    def needs_image(self) -> bool:
        """Whether :meth:`Tracker.track` must be given the frame image."""
        return self.use_flow or self.features == "image"

    @property
    def pre_cull_enabled(self) -> bool:
        """sleap-nn pre-culls only when both the target count and the flag are truthy."""
        return bool(self.tracking_target_instance_count) and bool(self.tracking_pre_cull_to_target)

    def legacy_provenance(self) -> dict[str, Any]:
        """The ``tracking_config`` dict legacy ``sleap-nn track`` stores in provenance.

        Twelve keys, ``None`` values dropped, ``candidates_method`` as the user gave it (before the
        ``max_tracks`` switch to local queues).
        """
        keys = ("window_size", "min_new_track_points", "candidates_method", "min_match_points",
                "features", "scoring_method", "scoring_reduction", "robust_best_instance",
                "track_matching_method", "max_tracks", "use_flow", "post_connect_single_breaks")
        return {k: getattr(self, k) for k in keys if getattr(self, k) is not None}

"""Tracker options: one frozen, strictly validated struct with sleap-nn's option names and defaults.

Unlike sleap-nn, which only discovers a bad ``features``/``scoring_method``/... value the first time
it is used (often on the second processed frame), every option is checked here, eagerly, when the
struct is built or decoded, and the error names the option, the bad value and the choices.
"""

from typing import Annotated, Any, Literal, get_args

import msgspec

from sleapflow.errors import ConfigError
from sleapflow.options.mot import APPEARANCE_TRACKERS, resolve_mot_params
from sleapflow.options.role import SLEAP_NN, SLEAPFLOW, Role
from sleapflow.options.spelling import opt
from sleapflow.options.validation import check_bounds

# No ``from __future__ import annotations``: the fields' markers are built once (see config.py).

__all__ = (
    "APPEARANCE_TRACKERS", "CANDIDATE_METHODS", "FEATURES", "KALMAN_FEATURES", "MATCHING_METHODS",
    "SCORING_METHODS", "SCORING_REDUCTIONS", "SLEAPFLOW_SERVE", "SLEAP_NN_SERVE", "TRACKERS",
    "CandidatesMethod", "Features", "MatchingMethod", "ScoringMethod", "ScoringReduction",
    "TrackerConfig", "parse_node_indices",
)


CandidatesMethod = Literal["fixed_window", "local_queues"]
Features = Literal["keypoints", "centroids", "bboxes", "image"]
ScoringMethod = Literal["oks", "cosine_sim", "iou", "euclidean_dist"]
ScoringReduction = Literal["mean", "max", "robust_quantile"]
MatchingMethod = Literal["hungarian", "greedy"]
CANDIDATE_METHODS: tuple[str, ...] = get_args(CandidatesMethod)
FEATURES: tuple[str, ...] = get_args(Features)
SCORING_METHODS: tuple[str, ...] = get_args(ScoringMethod)
SCORING_REDUCTIONS: tuple[str, ...] = get_args(ScoringReduction)
MATCHING_METHODS: tuple[str, ...] = get_args(MatchingMethod)
# The fields with choices stay ``str`` in the struct, so that decoding a config with a bad value
# raises TrackerConfig's own ConfigError (which names the choices, and says why "masks" is not
# one) rather than msgspec's; the command line takes the Literal types (cli_type), so its help
# lists the choices. Kalman features and tracker names are plain text there too.
KALMAN_FEATURES = ("centroid", "keypoints")
TRACKERS = ("classic", "sort", "bytetrack", "ocsort", "botsort", "deepsort", "strongsort",
            "deepocsort")
#: The trackers that read each detection's appearance (re-ID) vector: they need an embedding
#: model beside the pose models.
# Defined beside the MOT parameters they read (sleapflow.options.mot); re-exported here.

# Which feature representations each scoring function can compare. sleap-nn crashes (shape
# errors) on the second processed frame for the other pairs; we refuse them up front instead.
# cosine_sim on keypoints is what sleap-nn 0.3.5 computes (flattened (x, y) vectors), so it stays.
_COMPATIBLE_FEATURES: dict[str, tuple[str, ...]] = {
    "oks": ("keypoints",),
    "iou": ("bboxes",),
    "cosine_sim": ("keypoints", "centroids", "bboxes", "image"),
    "euclidean_dist": ("keypoints", "centroids", "bboxes", "image"),
}

# serve tracks each websocket stream (and each video request) with its own tracker, so it takes
# every tracker option but gap linking: max_gap / fill_gaps hold frames back to look ahead, and
# serve answers each frame as soon as it is predicted.
SLEAP_NN_SERVE = SLEAP_NN | {"serve"}
SLEAPFLOW_SERVE = SLEAPFLOW | {"serve"}

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

    Fields are declared as :class:`~sleapflow.options.config.InferenceConfig`'s are, in sleap-nn
    ``run_inference``'s keyword order; front ends take them flat. ``window_size`` is
    ``--tracking_window_size`` on the command line. ``tracking_*`` options and
    ``post_connect_single_breaks`` drive the pre-tracking cull and the post-tracking clean-up
    (:mod:`sleapflow.tracking.cleanup`). Kalman options are accepted so configs written for
    sleap-nn decode.

    ``use_kalman`` and ``kf_*`` drive the classic tracker's constant-velocity candidate shift
    (:mod:`sleapflow.tracking.kalman`). ``tracker`` picks the classic tracker or a motion-model
    one (:mod:`sleapflow.tracking.motion`), tuned by ``track_buffer`` ... ``min_match_similarity``.
    ``max_gap`` / ``fill_gaps`` enable gap-aware re-linking after any tracker
    (:mod:`sleapflow.tracking.linking`).
    """

    window_size: Annotated[int, opt(
        "tracking_window_size", help="Past frames compared against when matching animals to "
                                     "tracks."),
        Role("tracking", fronts=SLEAP_NN_SERVE, bounds=(1, 10_000))] = 5
    min_new_track_points: Annotated[int, opt(
        "min_new_track_points", help="An unmatched animal starts a new track only with at least "
                                     "this many body parts."),
        Role("tracking", fronts=SLEAP_NN_SERVE, bounds=(0, None))] = 0
    candidates_method: Annotated[str, opt(
        "candidates_method", help="Which past animals a detection may match: fixed_window (the "
                                  "last frames) or local_queues (the last appearances of each "
                                  "track)."),
        Role("tracking", fronts=SLEAP_NN_SERVE, cli_type=CandidatesMethod)] = "fixed_window"
    min_match_points: Annotated[int, opt(
        "min_match_points", help="Body parts two detections must share to be compared."),
        Role("tracking", fronts=SLEAP_NN_SERVE, bounds=(0, None))] = 0
    features: Annotated[str, opt(
        "features", help="What is compared between frames: keypoints, centroids, bboxes or image "
                         "(appearance)."),
        Role("tracking", fronts=SLEAP_NN_SERVE, cli_type=Features)] = "keypoints"
    scoring_method: Annotated[str, opt(
        "scoring_method", help="How similar two detections are: oks, cosine_sim, iou or "
                               "euclidean_dist."),
        Role("tracking", fronts=SLEAP_NN_SERVE, cli_type=ScoringMethod)] = "oks"
    scoring_reduction: Annotated[str, opt(
        "scoring_reduction", help="How scores against a track's past detections are combined: "
                                  "mean, max or robust_quantile."),
        Role("tracking", fronts=SLEAP_NN_SERVE, cli_type=ScoringReduction)] = "mean"
    robust_best_instance: Annotated[float, opt(
        "robust_best_instance", help="With robust_quantile: the quantile used (1.0 = the best "
                                     "match)."),
        Role("tracking", fronts=SLEAP_NN_SERVE, bounds=(0.0, 1.0))] = 1.0
    oks_stddev: Annotated[float | None, opt(
        "oks_stddev", help="Spread (standard deviation) of keypoint similarity, as a fraction of "
                           "the animal's size."),
        Role("tracking", fronts=SLEAP_NN_SERVE, bounds=(1e-06, None))] = None
    track_matching_method: Annotated[str, opt(
        "track_matching_method", help="How detections are assigned to tracks: hungarian (best "
                                      "overall) or greedy (best first)."),
        Role("tracking", fronts=SLEAP_NN_SERVE, cli_type=MatchingMethod)] = "hungarian"
    max_tracks: Annotated[int | None, opt(
        "max_tracks", help="At most this many tracks (animals) in the whole video. Default: no "
                           "limit."),
        Role("tracking", fronts=SLEAP_NN_SERVE, bounds=(1, 10_000))] = None
    use_flow: Annotated[bool, opt(
        "use_flow", help="Predict where each animal moved with optical flow before matching."),
        Role("tracking", fronts=SLEAP_NN_SERVE)] = False
    of_img_scale: Annotated[float, opt(
        "of_img_scale", help="Optical flow: scale frames by this before computing flow (smaller "
                             "is faster)."),
        Role("tracking", fronts=SLEAP_NN_SERVE, bounds=(0.01, 10.0))] = 1.0
    of_window_size: Annotated[int, opt(
        "of_window_size", help="Optical flow: search window in pixels."),
        Role("tracking", fronts=SLEAP_NN_SERVE, bounds=(3, 1001))] = 21
    of_max_levels: Annotated[int, opt(
        "of_max_levels", help="Optical flow: pyramid levels (more follows faster motion)."),
        Role("tracking", fronts=SLEAP_NN_SERVE, bounds=(0, 16))] = 3
    use_kalman: Annotated[bool, opt(
        "use_kalman", help="Classic tracker: move each track's candidates to a constant-velocity "
                           "Kalman prediction. Needs --max_tracks or "
                           "--tracking_target_instance_count."),
        Role("tracking", fronts=SLEAP_NN_SERVE)] = False
    kf_track_features: Annotated[str, opt(
        "kf_track_features", help="What the Kalman filters follow: centroid or keypoints."),
        Role("tracking", fronts=SLEAP_NN_SERVE)] = "centroid"
    kf_init_frame_count: Annotated[int, opt(
        "kf_init_frame_count", help="Frames tracked without the Kalman shift first."),
        Role("tracking", fronts=SLEAP_NN_SERVE, bounds=(0, None))] = 10
    kf_node_indices: Annotated[tuple[int, ...] | None, opt(
        "kf_node_indices", help="Comma-separated node indices for the Kalman centroid (default: "
                                "all)."),
        Role("tracking", fronts=SLEAP_NN_SERVE, cli_type=str | None)] = None
    kf_reset_gap_size: Annotated[int, opt(
        "kf_reset_gap_size", help="Frames unseen after which a track's Kalman filter is reset."),
        Role("tracking", fronts=SLEAP_NN_SERVE, bounds=(0, None))] = 5
    post_connect_single_breaks: Annotated[bool, opt(
        "post_connect_single_breaks", help="After tracking, join a track that breaks for one "
                                           "frame when only one track is missing."),
        Role("tracking", fronts=SLEAP_NN_SERVE)] = False
    tracking_target_instance_count: Annotated[int | None, opt(
        "tracking_target_instance_count", help="How many animals are expected per frame (used by "
                                               "the clean-up options)."),
        Role("tracking", fronts=SLEAP_NN_SERVE, bounds=(0, 10_000))] = None
    tracking_pre_cull_to_target: Annotated[int, opt(
        "tracking_pre_cull_to_target", help="Before tracking, keep only the expected number of "
                                            "animals per frame (0 = off)."),
        Role("tracking", fronts=SLEAP_NN_SERVE, bounds=(0, None))] = 0
    tracking_pre_cull_iou_threshold: Annotated[float, opt(
        "tracking_pre_cull_iou_threshold", help="Before tracking, remove detections overlapping "
                                                "more than this (0 = off)."),
        Role("tracking", fronts=SLEAP_NN_SERVE, bounds=(0.0, 1.0))] = 0.0
    tracking_clean_instance_count: Annotated[int, opt(
        "tracking_clean_instance_count", help="After tracking, keep at most this many animals "
                                              "per frame (0 = off)."),
        Role("tracking", fronts=SLEAP_NN_SERVE, bounds=(0, None))] = 0
    tracking_clean_iou_threshold: Annotated[float, opt(
        "tracking_clean_iou_threshold", help="After tracking, remove instances overlapping more "
                                             "than this (0 = off)."),
        Role("tracking", fronts=SLEAP_NN_SERVE, bounds=(0.0, 1.0))] = 0.0
    # sleapflow's own tracking options (not in sleap-nn's run_inference).
    tracker: Annotated[str, opt(
        "tracker", help="classic (sleap-nn's candidate tracker, the default), a motion-model "
                        "tracker: sort, bytetrack or ocsort, or an appearance tracker that also "
                        "compares re-ID vectors (needs an embedding model, -m): botsort, "
                        "deepsort, strongsort or deepocsort."),
        Role("tracking", fronts=SLEAPFLOW_SERVE, keyword="tracker_name")] = "classic"
    appearance_weight: Annotated[float, opt(
        "appearance_weight", help="Classic tracker: weight of appearance (cosine similarity of "
                                  "the embedding model's re-ID vectors) blended with the "
                                  "geometric score: 0.0 (default) is geometry only, 0.15-0.5 "
                                  "uses appearance as a complementary cue, 1.0 is appearance "
                                  "only. Needs an embedding model (-m) and a bounded "
                                  "--scoring_method (oks or iou)."),
        Role("tracking", fronts=SLEAPFLOW_SERVE, bounds=(0.0, 1.0))] = 0.0
    track_buffer: Annotated[int, opt(
        "track_buffer", help="Motion trackers: frames a lost track is kept for re-association."),
        Role("tracking", fronts=SLEAPFLOW_SERVE, bounds=(1, None))] = 30
    min_hits: Annotated[int, opt(
        "min_hits", help="Motion trackers: consecutive matches before a track gets an id "
                         "(earlier detections stay untracked)."),
        Role("tracking", fronts=SLEAPFLOW_SERVE, bounds=(1, None))] = 3
    track_high_threshold: Annotated[float, opt(
        "track_high_threshold", help="bytetrack: score at or above which a detection is matched "
                                     "first."),
        Role("tracking", fronts=SLEAPFLOW_SERVE, bounds=(0.0, 1.0))] = 0.5
    track_low_threshold: Annotated[float, opt(
        "track_low_threshold", help="Motion trackers: detections scoring at or below are "
                                    "ignored."),
        Role("tracking", fronts=SLEAPFLOW_SERVE, bounds=(0.0, 1.0))] = 0.1
    new_track_threshold: Annotated[float, opt(
        "new_track_threshold", help="Motion trackers: minimum score to start a track."),
        Role("tracking", fronts=SLEAPFLOW_SERVE, bounds=(0.0, 1.0))] = 0.6
    min_match_similarity: Annotated[float, opt(
        "min_match_similarity", help="Motion trackers: minimum keypoint similarity in [0, 1] for "
                                     "a match."),
        Role("tracking", fronts=SLEAPFLOW_SERVE, bounds=(0.0, 1.0))] = 0.3
    max_gap: Annotated[int, opt(
        "max_gap", help="Re-link a track that ended to one starting within N frames (motion + "
                        "pose); 0 = off."),
        Role("tracking", fronts=SLEAPFLOW, bounds=(0, None))] = 0
    fill_gaps: Annotated[int, opt(
        "fill_gaps", help="Interpolate gaps of at most K frames inside a track (marked with score "
                          "-1); adds K frames of latency."),
        Role("tracking", fronts=SLEAPFLOW, bounds=(0, 10_000))] = 0
    link_tracklets: Annotated[bool, opt(
        "link_tracklets", help="Identity linking after tracking (any --tracker): re-joins tracks "
                               "broken by gaps or occlusions (motion, pose shape, appearance "
                               "where instances carry it) and corrects identity swaps at "
                               "crossings; uses --max_tracks as the animal count when given. "
                               "Holds --link_window frames."),
        Role("tracking", fronts=SLEAPFLOW)] = False
    link_window: Annotated[int, opt(
        "link_window", help="With --link_tracklets: frames held back and linked together (the "
                            "latency and memory bound); 0 = the whole video (offline linking). "
                            "Shown in --stats."),
        Role("tracking", fronts=SLEAPFLOW, bounds=(0, 1_000_000))] = 0
    mot_param: Annotated[tuple[str, ...], opt(
        "mot_param", help="KEY=VALUE, repeatable: sleap-nn 0.3.5's MOT parameters, e.g. "
                          "preset=paper, track_buffer=20, link_swap_correction=false, "
                          "body_size=40. Overrides the matching flags."),
        Role("tracking", fronts=SLEAPFLOW)] = ()

    def __post_init__(self) -> None:
        if self.mot_param:
            # Resolved once, here: the struct then holds the values every stage reads.
            for name, value in resolve_mot_params(self.tracker, self.mot_param).items():
                msgspec.structs.force_setattr(self, name, value)
        self.validate()

    def validate(self) -> None:
        """Raise :class:`ConfigError` for the first invalid option (called on every construction)."""
        check_bounds(self)
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
        if self.tracker != "classic" and self.use_flow:
            raise ConfigError(f"--tracker {self.tracker} does not use --use_flow; it belongs to "
                              "--tracker classic.")
        if self.tracker != "classic" and self.max_tracks is not None and not self.link_tracklets:
            raise ConfigError(f"--tracker {self.tracker} takes --max_tracks only with "
                              "--link_tracklets (identity linking enforces the animal count); "
                              "add --link_tracklets or drop --max_tracks.")
        if self.link_window and not self.link_tracklets:
            raise ConfigError("--link_window applies to --link_tracklets; add --link_tracklets "
                              "or drop --link_window.")
        if self.appearance_weight > 0:
            if self.tracker != "classic":
                raise ConfigError(f"--appearance_weight applies to the classic tracker; --tracker "
                                  f"{self.tracker} does not blend scores (the appearance trackers "
                                  "botsort, deepsort, strongsort and deepocsort use the vectors "
                                  "their own way). Drop --appearance_weight.")
            if self.use_flow or self.use_kalman:
                raise ConfigError("--appearance_weight does not combine with --use_flow / "
                                  "--use_kalman: the motion models score shifted poses, which "
                                  "the appearance blend has no counterpart for; drop one.")
            if self.scoring_method not in ("oks", "iou"):
                raise ConfigError(f"--appearance_weight needs a bounded geometric score to blend "
                                  f"with; --scoring_method {self.scoring_method} is not one: use "
                                  "oks (keypoints) or iou (bboxes).")
        if self.kf_node_indices is not None and (
                any(i < 0 for i in self.kf_node_indices)
                or len(set(self.kf_node_indices)) != len(self.kf_node_indices)):
            raise ConfigError(f"Invalid kf_node_indices={list(self.kf_node_indices)!r}; give "
                              "distinct node indices >= 0, e.g. 0,1,2.")
        if self.track_low_threshold > self.track_high_threshold:
            raise ConfigError(f"--track_low_threshold {self.track_low_threshold} is above "
                              f"--track_high_threshold {self.track_high_threshold}; the low "
                              "threshold must not exceed the high one.")

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
    def uses_appearance(self) -> bool:
        """Whether the tracker reads the detections' re-ID vectors."""
        return self.appearance_weight > 0 or self.tracker in APPEARANCE_TRACKERS

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

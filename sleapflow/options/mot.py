"""``--mot_param KEY=VALUE``: sleap-nn 0.3.5's MOT parameter names, presets and value types."""

from __future__ import annotations

import math
from typing import Any

from sleapflow.errors import ConfigError

__all__ = ("APPEARANCE_KEYS", "APPEARANCE_TRACKERS", "LINKING_KEYS", "MOT_KEYS", "PRESETS",
           "SLEAP_NN_ONLY_KEYS", "appearance_overrides", "linking_overrides", "parse_mot_param",
           "resolve_mot_params")

# Keys sleapflow applies: those the motion trackers read (TrackerConfig fields of the same
# name), those identity linking reads, and the preset.
_TRACKER_KEYS: dict[str, type] = {
    "track_buffer": int, "min_hits": int, "track_high_threshold": float,
    "track_low_threshold": float, "new_track_threshold": float, "min_match_similarity": float,
}
#: Keys identity linking reads (with any tracker, the classic one included).
LINKING_KEYS: dict[str, type] = {
    "link_tracklets": bool, "max_tracks": int, "link_swap_correction": bool, "body_size": float,
}
#: Keys the appearance trackers read (sleapflow.tracking.appearance.AppearanceParams).
APPEARANCE_KEYS: dict[str, type] = {
    "appearance_threshold": float, "ema_alpha": float, "adaptive_ema": bool, "gallery_budget": int,
    "proximity_threshold": float, "mc_lambda": float, "w_assoc_emb": float, "rescue": bool,
    "rescue_min_similarity": float,
}
APPEARANCE_TRACKERS = ("botsort", "deepsort", "strongsort", "deepocsort")
#: Every key sleapflow accepts.
MOT_KEYS: tuple[str, ...] = ("preset", *_TRACKER_KEYS, *LINKING_KEYS, *APPEARANCE_KEYS)
#: sleap-nn 0.3.5's other MOTParams fields: parts of its trackers (Kalman parameterisation,
#: appearance galleries, OC-SORT / Deep OC-SORT terms) that sleapflow's trackers do not have.
SLEAP_NN_ONLY_KEYS: tuple[str, ...] = (
    "similarity", "oks_stddev", "box_padding", "score_mode", "normalize_scores", "kalman",
    "time_base", "low_stage_min_similarity", "unconfirmed_min_similarity",
    "duplicate_similarity", "fuse_score", "gallery_size", "nsa",
    "delta_t", "inertia", "use_byte", "aw_param", "aw_off",
    # sleap-nn lifts its linker's spatial gate after this many steps; sleapflow's linker has a
    # gap-dependent tolerance instead, so the key would mean something else here.
    "link_spatial_gate_frames",
)
_OPTIONAL = ("max_tracks", "body_size")

# sleap-nn 0.3.5's presets, restricted to the parameters sleapflow's trackers have: "paper"
# (each algorithm's published constants) and "animal" (sleap-nn's default, tuned for animals).
_PAPER: dict[str, dict[str, Any]] = {
    "sort": {"min_hits": 3, "track_buffer": 1, "track_high_threshold": 0.0,
             "track_low_threshold": 0.0, "new_track_threshold": 0.0,
             "min_match_similarity": 0.3},
    "bytetrack": {"min_hits": 2, "track_buffer": 30, "track_high_threshold": 0.5,
                  "track_low_threshold": 0.1, "new_track_threshold": 0.6,
                  "min_match_similarity": 0.2},
    "ocsort": {"min_hits": 3, "track_buffer": 30, "track_high_threshold": 0.6,
               "track_low_threshold": 0.1, "new_track_threshold": 0.6,
               "min_match_similarity": 0.3},
    # The appearance trackers (issue #27's other half), for when sleapflow offers them.
    "deepsort": {"min_hits": 3, "track_buffer": 30, "track_high_threshold": 0.8,
                 "track_low_threshold": 0.8, "new_track_threshold": 0.8,
                 "min_match_similarity": 0.3},
    "strongsort": {"min_hits": 3, "track_buffer": 30, "track_high_threshold": 0.6,
                   "track_low_threshold": 0.6, "new_track_threshold": 0.6,
                   "min_match_similarity": 0.3},
    "botsort": {"min_hits": 2, "track_buffer": 30, "track_high_threshold": 0.6,
                "track_low_threshold": 0.1, "new_track_threshold": 0.7,
                "min_match_similarity": 0.2},
    "deepocsort": {"min_hits": 3, "track_buffer": 30, "track_high_threshold": 0.6,
                   "track_low_threshold": 0.1, "new_track_threshold": 0.6,
                   "min_match_similarity": 0.3},
}
_ANIMAL: dict[str, dict[str, Any]] = {
    "sort": {"track_buffer": 30, "track_high_threshold": 0.1, "track_low_threshold": 0.1,
             "new_track_threshold": 0.1},
    "deepsort": {"track_high_threshold": 0.5, "track_low_threshold": 0.1,
                 "new_track_threshold": 0.1},
    "strongsort": {"track_high_threshold": 0.5, "track_low_threshold": 0.1,
                   "new_track_threshold": 0.1},
}
PRESETS = ("animal", "paper")


def _value(key: str, raw: str, kind: type) -> Any:
    lowered = raw.strip().lower()
    if lowered == "none":
        if key in _OPTIONAL:
            return None
        raise ConfigError(f"--mot_param {key}={raw}: {key} cannot be none.")
    if kind is bool:
        if lowered in ("true", "1", "yes", "on"):
            return True
        if lowered in ("false", "0", "no", "off"):
            return False
        raise ConfigError(f"--mot_param {key}={raw}: {key} expects true or false.")
    try:
        value = kind(raw)
    except ValueError:
        what = "an integer" if kind is int else "a number"
        raise ConfigError(f"--mot_param {key}={raw}: {key} expects {what}.") from None
    if kind is float and not math.isfinite(value):
        raise ConfigError(f"--mot_param {key}={raw}: {key} expects a finite number.")
    return value


def parse_mot_param(text: str) -> tuple[str, Any]:
    """One ``KEY=VALUE`` as ``(key, typed value)``.

    Raises:
        ConfigError: no ``=``, a key sleap-nn does not know (the message lists the valid
            keys), a sleap-nn key sleapflow does not implement, or a value of the wrong type.
    """
    if "=" not in text:
        raise ConfigError(f"--mot_param {text!r}: expected KEY=VALUE, e.g. preset=paper.")
    key, raw = (part.strip() for part in text.split("=", 1))
    if key == "preset":
        if raw not in PRESETS:
            raise ConfigError(f"--mot_param preset={raw}: choose one of {', '.join(PRESETS)}.")
        return key, raw
    kind = _TRACKER_KEYS.get(key) or LINKING_KEYS.get(key) or APPEARANCE_KEYS.get(key)
    if kind is None:
        if key in SLEAP_NN_ONLY_KEYS:
            raise ConfigError(f"--mot_param {key}: a sleap-nn parameter of trackers sleapflow "
                              f"does not implement; sleapflow accepts: {', '.join(MOT_KEYS)}.")
        raise ConfigError(f"--mot_param {key}: unknown parameter; valid parameters: "
                          f"{', '.join(MOT_KEYS)}.")
    value = _value(key, raw, kind)
    if key == "body_size" and value is not None and value <= 0:
        raise ConfigError(f"--mot_param body_size={raw}: body_size must be > 0 (px).")
    if key == "max_tracks" and value is not None and value < 1:
        raise ConfigError(f"--mot_param {key}={raw}: {key} must be >= 1.")
    return key, value


def resolve_mot_params(tracker: str, texts: tuple[str, ...]) -> dict[str, Any]:
    """The TrackerConfig fields ``texts`` set for ``tracker``: the preset's values first, then
    each explicit key (the last one given wins). Linking-only keys are checked, not returned.

    Raises:
        ConfigError: a bad ``KEY=VALUE``, or a motion-tracker key with the classic tracker.
    """
    parsed = [parse_mot_param(t) for t in texts]
    if tracker not in APPEARANCE_TRACKERS:
        odd = [k for k, _ in parsed if k in APPEARANCE_KEYS]
        if odd:
            raise ConfigError(f"--mot_param {odd[0]} applies to the appearance trackers (--tracker "
                              f"{' / '.join(APPEARANCE_TRACKERS)}), not --tracker {tracker}.")
    if tracker == "classic":
        odd = [k for k, _ in parsed if k not in LINKING_KEYS]
        if odd:
            raise ConfigError(f"--mot_param {odd[0]} applies to the motion trackers (--tracker "
                              f"sort / bytetrack / ocsort); with --tracker classic only "
                              f"{', '.join(LINKING_KEYS)} (read by --link_tracklets).")
    out: dict[str, Any] = {}
    preset = next((v for k, v in reversed(parsed) if k == "preset"), None)
    if preset is not None:
        out.update(_PAPER.get(tracker, {}))
        if preset == "animal":
            out.update(_ANIMAL.get(tracker, {}))
    for key, value in parsed:
        if key in _TRACKER_KEYS or key in ("link_tracklets", "max_tracks"):
            out[key] = value
    return out


def linking_overrides(texts: tuple[str, ...]) -> dict[str, Any]:
    """The linking-only keys among ``texts`` (already validated), last one winning."""
    return {k: v for k, v in map(parse_mot_param, texts)
            if k in ("link_swap_correction", "body_size")}


def appearance_overrides(texts: tuple[str, ...]) -> dict[str, Any]:
    """The appearance keys among ``texts`` (already validated), last one winning."""
    return {k: v for k, v in map(parse_mot_param, texts) if k in APPEARANCE_KEYS}

"""Appearance for the motion-model trackers: per-track re-ID memory and how each appearance
tracker (``botsort``, ``deepsort``, ``strongsort``, ``deepocsort``) mixes it with geometry.

The four build on :mod:`sleapflow.tracking.motion`'s trackers (BoT-SORT on ByteTrack, DeepSORT
and StrongSORT on SORT, Deep OC-SORT on OC-SORT) and change only the first association stage,
where confirmed tracks meet the confident detections:

* ``botsort``: appearance ``(1 + cos) / 2`` counts where the cosine passes the appearance
  threshold and geometry the proximity threshold; the pair scores the larger of the two.
* ``deepsort``: a matching cascade: appearance first (the best cosine against the track's
  gallery of recent vectors, inside a loose geometric gate), then geometry for what is left
  among tracks seen on the previous frame.
* ``strongsort``: ``mc_lambda`` of appearance (an EMA of the track's vectors) plus the rest of
  geometry, inside the same gates, then DeepSORT's geometric stage.
* ``deepocsort``: OC-SORT's score plus ``w_assoc_emb`` times the cosine; a detection whose
  geometry is weak (above ``rescue_min_similarity``) is still matched when appearance is
  decisive. Its EMA trusts confident detections more (score-adaptive momentum).

Parameters are sleap-nn 0.3.5's ``animal`` preset for each tracker. Its ``appearance_threshold``
there is ``auto`` (calibrated per video); here ``auto`` is a fixed cosine of
:data:`AUTO_APPEARANCE_THRESHOLD`.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = (
    "AUTO_APPEARANCE_THRESHOLD", "AppearanceMemory", "AppearanceParams", "base_tracker", "cosine_matrix",
    "unit_rows",
)

#: The cosine ``appearance_threshold="auto"`` stands for (sleap-nn calibrates it per video).
AUTO_APPEARANCE_THRESHOLD = 0.5

#: The motion tracker each appearance tracker builds on.
_BASE = {"botsort": "bytetrack", "deepsort": "sort", "strongsort": "sort", "deepocsort": "ocsort"}

# DeepSORT and StrongSORT gate appearance by motion (a Mahalanobis gate in the papers): a pair
# whose geometric similarity is below this is never matched by appearance.
_MOTION_GATE = 0.05


def base_tracker(name: str) -> str:
    """The motion tracker whose association ``name`` follows (itself for the motion ones)."""
    return _BASE.get(name, name)


def unit_rows(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length; rows with a NaN or of zero length become NaN."""
    v = np.asarray(vectors, dtype=np.float64)
    norm = np.linalg.norm(v, axis=-1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = v / norm
    bad = ~np.isfinite(out).all(axis=-1) | (norm[..., 0] <= 1e-12)
    out[bad] = np.nan
    return out


def cosine_matrix(queries: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """``(n, m)`` cosine between unit rows; NaN where either row is NaN."""
    if len(queries) == 0 or len(keys) == 0 or queries.shape[-1] != keys.shape[-1]:
        return np.full((len(queries), len(keys)), np.nan)
    out = np.nan_to_num(queries) @ np.nan_to_num(keys).T
    missing = np.isnan(queries).any(axis=1)[:, None] | np.isnan(keys).any(axis=1)[None, :]
    return np.where(missing, np.nan, out)


@dataclass(frozen=True)
class AppearanceParams:
    """One appearance tracker's knobs (sleap-nn's ``MOTParams`` names and animal defaults)."""

    tracker: str
    appearance_threshold: float = AUTO_APPEARANCE_THRESHOLD
    ema_alpha: float = 0.8
    adaptive_ema: bool = False
    gallery_budget: int = 100
    proximity_threshold: float = 0.5
    mc_lambda: float = 0.98
    w_assoc_emb: float = 0.75
    rescue: bool = True
    rescue_min_similarity: float = 0.15
    #: Detections scoring below this do not update a track's memory (sleap-nn: the high
    #: threshold is also the minimum score for appearance updates).
    update_min_score: float = 0.5

    @classmethod
    def for_tracker(cls, name: str, update_min_score: float = 0.5,
                    overrides: dict[str, Any] | None = None) -> AppearanceParams | None:
        """The animal preset of ``name`` with ``overrides`` (``--mot_param`` keys) on top; None
        for a tracker without appearance."""
        presets: dict[str, dict[str, object]] = {
            "botsort": {"ema_alpha": 0.8, "proximity_threshold": 0.5},
            "deepsort": {"gallery_budget": 30},
            "strongsort": {"ema_alpha": 0.8, "mc_lambda": 0.98},
            "deepocsort": {"ema_alpha": 0.95, "adaptive_ema": True, "w_assoc_emb": 0.75,
                           "rescue": True},
        }
        if name not in presets:
            return None
        return cls(tracker=name, update_min_score=update_min_score,
                   **{**presets[name], **(overrides or {})})  # type: ignore[arg-type]

    def combine(self, geometric: np.ndarray, cosine: np.ndarray, min_similarity: float,
                bonus: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """``(score, ok)`` of the first stage: what the assignment maximises, and which pairs
        may match at all. ``cosine`` is NaN where a side has no vector (geometry alone then)."""
        has = ~np.isnan(cosine)
        cos = np.nan_to_num(cosine, nan=-1.0)
        passes = has & (cos >= self.appearance_threshold)
        base = geometric if bonus is None else geometric + bonus
        if self.tracker == "botsort":
            app = np.where(passes & (geometric >= self.proximity_threshold), (1.0 + cos) / 2, 0.0)
            fused = np.maximum(geometric, app)
            return fused, fused >= min_similarity
        if self.tracker == "deepsort":
            ok = passes & (geometric >= _MOTION_GATE)
            return np.where(ok, cos, -1.0), ok
        if self.tracker == "strongsort":
            ok = passes & (geometric >= _MOTION_GATE)
            lam = self.mc_lambda
            return np.where(ok, lam * (1.0 + cos) / 2 + (1.0 - lam) * geometric, -1.0), ok
        # deepocsort
        score = base + self.w_assoc_emb * np.where(has, cos, 0.0)
        ok = geometric >= min_similarity
        if self.rescue:
            ok |= passes & (geometric >= self.rescue_min_similarity)
        return score, ok

    @property
    def geometric_second_stage(self) -> bool:
        """DeepSORT and StrongSORT match what appearance left by geometry, among the tracks
        seen on the previous frame."""
        return self.tracker in ("deepsort", "strongsort")

    @property
    def uses_gallery(self) -> bool:
        return self.tracker == "deepsort"


@dataclass
class AppearanceMemory:
    """A track's appearance: an EMA of its unit vectors and a gallery of the recent ones."""

    ema: np.ndarray | None = None
    gallery: deque[np.ndarray] = field(default_factory=lambda: deque(maxlen=100))

    @classmethod
    def start(cls, vector: np.ndarray | None, params: AppearanceParams) -> AppearanceMemory:
        memory = cls(gallery=deque(maxlen=max(1, params.gallery_budget)))
        if vector is not None and np.isfinite(vector).all():
            memory.ema = vector.copy()
            memory.gallery.append(vector)
        return memory

    def update(self, vector: np.ndarray | None, score: float, params: AppearanceParams) -> None:
        """Absorb a matched detection's unit vector (a low-score detection is not trusted)."""
        if vector is None or not np.isfinite(vector).all():
            return
        if self.ema is None:
            self.ema = vector.copy()
            self.gallery.append(vector)
            return
        if score < params.update_min_score:
            return
        alpha = params.ema_alpha
        if params.adaptive_ema:
            # Deep OC-SORT: the more confident the detection, the more the EMA moves.
            floor = params.update_min_score
            trust = float(np.clip((score - floor) / max(1e-6, 1.0 - floor), 0.0, 1.0))
            alpha = alpha + (1.0 - alpha) * (1.0 - trust)
        mixed = alpha * self.ema + (1.0 - alpha) * vector
        norm = float(np.linalg.norm(mixed))
        if np.isfinite(norm) and norm > 1e-12:
            self.ema = mixed / norm
        self.gallery.append(vector)

    def cosine(self, queries: np.ndarray, params: AppearanceParams) -> np.ndarray:
        """``(n,)`` cosine of each unit query with this track (its gallery's best for DeepSORT)."""
        if self.ema is None:
            return np.full(len(queries), np.nan)
        if params.uses_gallery and self.gallery:
            return np.max(cosine_matrix(queries, np.stack(list(self.gallery))), axis=1)
        return cosine_matrix(queries, self.ema[None])[:, 0]

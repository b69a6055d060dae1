"""CLEAR-MOT, Identity and HOTA on id sequences, with TrackEval 1.3.0's definitions and quirks.

The core works on plain arrays: per timestep, the ground-truth ids, the predicted ids and the
``(n_gt, n_pred)`` similarity in [0, 1]. Ids must be unique within a timestep and are relabelled to
``0..n-1`` per sequence first. Results use TrackEval's field names (``MOTA``, ``CLR_TP``,
``HOTA(0)``...) so they read like TrackEval's output. TrackEval itself is not a dependency: its
PyPI package requires the GUI build of OpenCV, which overwrites the ``opencv-python-headless``
sleapflow uses; the test suite checks these functions against hand-computed cases instead.

Behaviour kept on purpose because it changes numbers:

* CLEAR matching favours the pair matched at the *previous timestep* (a 1000x bonus), while an
  ID switch compares with the last prediction the ground truth had, however long ago.
* A timestep with no prediction at all does not end a fragment; one with only unrelated
  predictions does. ``Frag`` is segments minus one per ground-truth id.
* MT is strictly above 80% of a trajectory's timesteps, ML below 20%.
* HOTA does one alpha-independent matching per timestep maximising global-alignment x
  similarity, then thresholds it at each of the 19 alphas; LocA is 1 where nothing matched.
* An empty side short-circuits: all ground truth missed (or every prediction false).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = (
    "EPS", "HOTA_ALPHAS", "MOTSequence", "clear_metrics", "combine_sequences", "hota_metrics",
    "identity_scores", "mot_metrics",
)


#: TrackEval's float slack on threshold comparisons (a similarity of exactly 0.5 matches at 0.5).
EPS = float(np.finfo(float).eps)
#: HOTA's localisation thresholds, built with arange as TrackEval does (linspace differs in ulps).
HOTA_ALPHAS = np.arange(0.05, 0.99, 0.05)


@dataclass
class MOTSequence:
    """One sequence (a video): per-timestep ids and similarity matrices."""

    gt_ids: list[np.ndarray]
    pred_ids: list[np.ndarray]
    similarity: list[np.ndarray]
    #: timesteps at which CLEAR's frame-to-frame state is cleared (video boundaries under
    #: global identities)
    resets: tuple[int, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if not len(self.gt_ids) == len(self.pred_ids) == len(self.similarity):
            raise ValueError("gt_ids, pred_ids and similarity need one entry per timestep")
        for t, (g, p, s) in enumerate(zip(self.gt_ids, self.pred_ids, self.similarity)):
            if np.shape(s) != (len(g), len(p)):
                raise ValueError(f"timestep {t}: similarity is {np.shape(s)}, ids give "
                                 f"({len(g)}, {len(p)})")
            for side, ids in (("ground-truth", g), ("predicted", p)):
                if len(np.unique(ids)) != len(ids):
                    raise ValueError(f"timestep {t}: a {side} id occurs twice")

    def relabelled(self) -> tuple[list[np.ndarray], list[np.ndarray], int, int]:
        """Ids mapped to ``0..n-1`` in sorted order, with the id counts."""
        def remap(seqs: list[np.ndarray]) -> tuple[list[np.ndarray], int]:
            present = [np.asarray(a, dtype=np.int64) for a in seqs]
            universe = np.unique(np.concatenate(present)) if present else np.empty(0, np.int64)
            return [np.searchsorted(universe, a) for a in present], len(universe)
        gt, n_gt = remap(self.gt_ids)
        pr, n_pr = remap(self.pred_ids)
        return gt, pr, n_gt, n_pr


def _solve(score: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    from scipy.optimize import linear_sum_assignment

    return linear_sum_assignment(-score)


# ---------------------------------------------------------------------------------------------
# CLEAR-MOT
# ---------------------------------------------------------------------------------------------
_CLEAR_SUMMED = ("CLR_TP", "CLR_FN", "CLR_FP", "IDSW", "MT", "PT", "ML", "Frag", "MOTP_sum",
                 "CLR_Frames")


def _clear_derived(res: dict[str, Any]) -> dict[str, Any]:
    tp, fn, fp, idsw = res["CLR_TP"], res["CLR_FN"], res["CLR_FP"], res["IDSW"]
    n_ids = res["MT"] + res["PT"] + res["ML"]
    n_gt = max(1.0, tp + fn)
    res.update(
        MTR=res["MT"] / max(1.0, n_ids), PTR=res["PT"] / max(1.0, n_ids),
        MLR=res["ML"] / max(1.0, n_ids), CLR_Re=tp / n_gt, CLR_Pr=tp / max(1.0, tp + fp),
        MODA=(tp - fp) / n_gt, MOTA=(tp - fp - idsw) / n_gt, MOTP=res["MOTP_sum"] / max(1.0, tp),
        sMOTA=(res["MOTP_sum"] - fp - idsw) / n_gt,
        CLR_F1=tp / max(1.0, tp + 0.5 * fn + 0.5 * fp),
        FP_per_frame=fp / max(1.0, res["CLR_Frames"]),
        MOTAL=(tp - fp - (np.log10(idsw) if idsw > 0 else 0)) / n_gt,
    )
    return res


def clear_metrics(seq: MOTSequence, threshold: float = 0.5) -> dict[str, Any]:
    """CLEAR-MOT counts and scores for one sequence."""
    gt_ids, pr_ids, n_gt_ids, _ = seq.relabelled()
    res: dict[str, Any] = dict.fromkeys(_CLEAR_SUMMED, 0)
    res["MOTP_sum"] = 0.0
    n_gt_dets = sum(len(g) for g in gt_ids)
    n_pr_dets = sum(len(p) for p in pr_ids)
    if n_pr_dets == 0 or n_gt_dets == 0:
        res["CLR_FN"], res["CLR_FP"] = n_gt_dets, n_pr_dets
        res["ML"] = n_gt_ids if n_pr_dets == 0 else 0
        # TrackEval returns before deriving anything: every ratio stays 0 except MLR.
        out = {k: (v if k in _CLEAR_SUMMED else 0) for k, v in _clear_derived(dict(res)).items()}
        out["MLR"] = 1.0
        return out
    present = np.zeros(n_gt_ids)
    matched_count = np.zeros(n_gt_ids)
    segments = np.zeros(n_gt_ids)
    last_match = np.full(n_gt_ids, -1)  # last prediction ever matched (for ID switches)
    prev_step = np.full(n_gt_ids, -1)  # prediction matched at the previous scored timestep
    resets = set(seq.resets)
    for t, (g, p, sim) in enumerate(zip(gt_ids, pr_ids, seq.similarity)):
        if t in resets:
            last_match[:] = -1
            prev_step[:] = -1
        if len(g) == 0:
            res["CLR_FP"] += len(p)
            continue
        if len(p) == 0:
            res["CLR_FN"] += len(g)
            present[g] += 1
            continue
        sim = np.asarray(sim, dtype=np.float64)
        continuing = p[None, :] == prev_step[g][:, None]
        score = np.where(sim < threshold - EPS, 0.0, 1000.0 * continuing + sim)
        rows, cols = _solve(score)
        ok = score[rows, cols] > EPS
        rows, cols = rows[ok], cols[ok]
        mg, mp = g[rows], p[cols]
        before = last_match[mg]
        res["IDSW"] += int(((before >= 0) & (before != mp)).sum())
        present[g] += 1
        matched_count[mg] += 1
        was_untracked = prev_step < 0
        last_match[mg] = mp
        prev_step[:] = -1
        prev_step[mg] = mp
        segments += was_untracked & (prev_step >= 0)
        res["CLR_TP"] += len(mg)
        res["CLR_FN"] += len(g) - len(mg)
        res["CLR_FP"] += len(p) - len(mg)
        res["MOTP_sum"] += float(sim[rows, cols].sum())
    ratio = matched_count[present > 0] / present[present > 0]
    res["MT"] = int((ratio > 0.8).sum())
    res["PT"] = int((ratio >= 0.2).sum()) - res["MT"]
    res["ML"] = n_gt_ids - res["MT"] - res["PT"]
    res["Frag"] = int((segments[segments > 0] - 1).sum())
    res["CLR_Frames"] = len(gt_ids)
    return _clear_derived(res)


# ---------------------------------------------------------------------------------------------
# Identity (IDF1)
# ---------------------------------------------------------------------------------------------
def _identity_derived(res: dict[str, Any]) -> dict[str, Any]:
    tp, fn, fp = res["IDTP"], res["IDFN"], res["IDFP"]
    res.update(IDR=tp / max(1.0, tp + fn), IDP=tp / max(1.0, tp + fp),
               IDF1=tp / max(1.0, tp + 0.5 * fp + 0.5 * fn))
    return res


def identity_scores(seq: MOTSequence, threshold: float = 0.5) -> dict[str, Any]:
    """IDTP/IDFN/IDFP from one global identity assignment (every above-threshold pair counts)."""
    gt_ids, pr_ids, n_g, n_p = seq.relabelled()
    n_gt_dets = sum(len(g) for g in gt_ids)
    n_pr_dets = sum(len(p) for p in pr_ids)
    res: dict[str, Any] = {"IDTP": 0, "IDFN": 0, "IDFP": 0}
    if n_pr_dets == 0 or n_gt_dets == 0:
        res["IDFN"], res["IDFP"] = n_gt_dets, n_pr_dets
        return _identity_derived(res)
    co = np.zeros((n_g, n_p))
    gt_len = np.zeros(n_g)
    pr_len = np.zeros(n_p)
    for g, p, sim in zip(gt_ids, pr_ids, seq.similarity):
        gi, pj = np.nonzero(np.asarray(sim) >= threshold)
        np.add.at(co, (g[gi], p[pj]), 1)
        gt_len[g] += 1
        pr_len[p] += 1
    # Square problem: each gt id may pair with a prediction or with its own "unmatched" slot
    # (cost = its length in misses), likewise each prediction; unmatched-unmatched costs 0.
    big = 1e10
    size = n_g + n_p
    fn = np.zeros((size, size))
    fp = np.zeros((size, size))
    fn[:n_g, :n_p] = gt_len[:, None] - co
    fn[:n_g, n_p:] = big
    fn[np.arange(n_g), n_p + np.arange(n_g)] = gt_len
    fp[:n_g, :n_p] = pr_len[None, :] - co
    fp[n_g:, :n_p] = big
    fp[n_g + np.arange(n_p), np.arange(n_p)] = pr_len
    rows, cols = _solve(-(fn + fp))
    res["IDFN"] = int(fn[rows, cols].sum())
    res["IDFP"] = int(fp[rows, cols].sum())
    res["IDTP"] = int(gt_len.sum() - res["IDFN"])
    return _identity_derived(res)


# ---------------------------------------------------------------------------------------------
# HOTA
# ---------------------------------------------------------------------------------------------
def _hota_derived(res: dict[str, Any]) -> dict[str, Any]:
    tp, fn, fp = res["HOTA_TP"], res["HOTA_FN"], res["HOTA_FP"]
    res["DetRe"] = tp / np.maximum(1, tp + fn)
    res["DetPr"] = tp / np.maximum(1, tp + fp)
    res["DetA"] = tp / np.maximum(1, tp + fn + fp)
    res["HOTA"] = np.sqrt(res["DetA"] * res["AssA"])
    res["OWTA"] = np.sqrt(res["DetRe"] * res["AssA"])
    res["HOTA(0)"] = float(res["HOTA"][0])
    res["LocA(0)"] = float(res["LocA"][0])
    res["HOTALocA(0)"] = res["HOTA(0)"] * res["LocA(0)"]
    return res


def hota_metrics(seq: MOTSequence, alphas: np.ndarray = HOTA_ALPHAS) -> dict[str, Any]:
    """HOTA and its sub-scores, one value per alpha."""
    gt_ids, pr_ids, n_g, n_p = seq.relabelled()
    k = len(alphas)
    res: dict[str, Any] = {name: np.zeros(k) for name in
                           ("HOTA_TP", "HOTA_FN", "HOTA_FP", "AssA", "AssRe", "AssPr", "LocA")}
    n_gt_dets = sum(len(g) for g in gt_ids)
    n_pr_dets = sum(len(p) for p in pr_ids)
    if n_pr_dets == 0 or n_gt_dets == 0:
        res["HOTA_FN"][:] = n_gt_dets
        res["HOTA_FP"][:] = n_pr_dets
        res["LocA"][:] = 1.0
        return _hota_derived(res)
    # Global alignment between ids: soft (similarity-IoU-weighted) co-occurrence Jaccard.
    soft = np.zeros((n_g, n_p))
    gt_len = np.zeros((n_g, 1))
    pr_len = np.zeros((1, n_p))
    for g, p, sim in zip(gt_ids, pr_ids, seq.similarity):
        sim = np.asarray(sim, dtype=np.float64)
        denom = sim.sum(0)[None, :] + sim.sum(1)[:, None] - sim
        share = np.divide(sim, denom, out=np.zeros_like(sim), where=denom > EPS)
        soft[np.ix_(g, p)] += share
        gt_len[g, 0] += 1
        pr_len[0, p] += 1
    alignment = soft / (gt_len + pr_len - soft)
    matches = np.zeros((k, n_g, n_p))
    for g, p, sim in zip(gt_ids, pr_ids, seq.similarity):
        if len(g) == 0 or len(p) == 0:
            res["HOTA_FP"] += len(p)
            res["HOTA_FN"] += len(g)
            continue
        sim = np.asarray(sim, dtype=np.float64)
        rows, cols = _solve(alignment[np.ix_(g, p)] * sim)
        matched_sim = sim[rows, cols]
        ok = matched_sim[None, :] >= alphas[:, None] - EPS  # (k, n_matched)
        n_ok = ok.sum(axis=1)
        res["HOTA_TP"] += n_ok
        res["HOTA_FN"] += len(g) - n_ok
        res["HOTA_FP"] += len(p) - n_ok
        res["LocA"] += (ok * matched_sim[None, :]).sum(axis=1)
        a_idx, m_idx = np.nonzero(ok)
        np.add.at(matches, (a_idx, g[rows[m_idx]], p[cols[m_idx]]), 1)
    tp = np.maximum(1, res["HOTA_TP"])
    union = np.maximum(1, gt_len[None] + pr_len[None] - matches)
    res["AssA"] = (matches * matches / union).sum(axis=(1, 2)) / tp
    res["AssRe"] = (matches * matches / np.maximum(1, gt_len[None])).sum(axis=(1, 2)) / tp
    res["AssPr"] = (matches * matches / np.maximum(1, pr_len[None])).sum(axis=(1, 2)) / tp
    res["LocA"] = np.maximum(1e-10, res["LocA"]) / np.maximum(1e-10, res["HOTA_TP"])
    return _hota_derived(res)


# ---------------------------------------------------------------------------------------------
# All three, and combining sequences
# ---------------------------------------------------------------------------------------------
def mot_metrics(seq: MOTSequence, threshold: float = 0.5) -> dict[str, Any]:
    """CLEAR, Identity and HOTA fields of one sequence in one dict."""
    return {**hota_metrics(seq), **clear_metrics(seq, threshold), **identity_scores(seq, threshold)}


def combine_sequences(per_seq: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Combine sequences as TrackEval's combined row does: counts summed, ratios recomputed,
    HOTA's association and localisation scores weighted by true positives."""
    if len(per_seq) == 1:
        return dict(per_seq[0])
    clear = {f: sum(r[f] for r in per_seq) for f in _CLEAR_SUMMED}
    ident = {f: sum(r[f] for r in per_seq) for f in ("IDTP", "IDFN", "IDFP")}
    hota: dict[str, Any] = {f: sum(r[f] for r in per_seq) for f in ("HOTA_TP", "HOTA_FN", "HOTA_FP")}
    tp = hota["HOTA_TP"]
    for f in ("AssRe", "AssPr", "AssA"):
        hota[f] = sum(r[f] * r["HOTA_TP"] for r in per_seq) / np.maximum(1.0, tp)
    hota["LocA"] = (np.maximum(1e-10, sum(r["LocA"] * r["HOTA_TP"] for r in per_seq))
                    / np.maximum(1e-10, tp))
    return {**_hota_derived(hota), **_clear_derived(clear), **_identity_derived(ident)}

"""Parity checks against sleap-nn's reference outputs: per-frame instance matching and tolerances."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import sleap_io as sio
from scipy.optimize import linear_sum_assignment

#: Asset paths (under ``../shared/assets``) of one small input and the models of every inference
#: graph: shared by the tests that run each named graph once.
CKPT = "model_ckpts/minimal_instance_"
PKG = "datasets/minimal_instance.pkg.slp"
VIDEO = "datasets/centered_pair_small.mp4"
INFERENCE_CASES: dict[str, tuple[str, list[str]]] = {
    "single_instance": (PKG, ["single_instance"]),
    "topdown": (VIDEO, ["centroid", "centered_instance"]),
    "multiclass_topdown": (PKG, ["centroid", "multiclass_centered_instance"]),
    "centered_instance": (PKG, ["centered_instance"]),
    "multiclass_centered_instance": (PKG, ["multiclass_centered_instance"]),
    "centroid": (VIDEO, ["centroid"]),
    "bottomup": (VIDEO, ["bottomup"]),
    "multiclass_bottomup": (PKG, ["multiclass_bottomup"]),
}


@dataclass
class ParityReport:
    frames_ours: int
    frames_ref: int
    frames_compared: int
    count_equal_fraction: float
    keypoint_p99: float
    keypoint_max: float
    score_max_diff: float
    point_score_max_diff: float
    nan_mismatch: int
    track_agreement: float | None = None
    track_counts: tuple[int, int] | None = None
    notes: list[str] = field(default_factory=list)

    def assert_ok(self, *, count_fraction: float = 0.99, p99: float = 0.05, score_tol: float = 1e-3,
                  track_agreement: float = 0.99) -> None:
        assert self.count_equal_fraction >= count_fraction, self
        assert self.keypoint_p99 <= p99, self
        assert self.score_max_diff <= score_tol, self
        assert self.point_score_max_diff <= score_tol, self
        if self.track_agreement is not None:
            assert self.track_agreement >= track_agreement, self


def _frame_map(labels: sio.Labels) -> dict[tuple[str, int], sio.LabeledFrame]:
    return {(str(lf.video.filename).rsplit("/", 1)[-1], lf.frame_idx): lf for lf in labels}


def compare_labels(ours: sio.Labels, ref: sio.Labels, *, check_tracks: bool = False,
                   frames: range | None = None) -> ParityReport:
    """Match instances per frame (Hungarian on mean keypoint distance) and measure deviations.

    Frames present in only one file count as frames whose instance count differs, unless the
    missing side would have been empty.
    """
    ours_map = _frame_map(ours)
    ref_map = _frame_map(ref)
    if frames is not None:
        # A run over a prefix of the clip is compared with the same frames of the reference.
        ref_map = {k: v for k, v in ref_map.items() if k[1] in frames}
        ours_map = {k: v for k, v in ours_map.items() if k[1] in frames}
    keys = sorted(set(ours_map) | set(ref_map))
    equal = 0
    deviations: list[np.ndarray] = []
    score_diffs = [0.0]
    pscore_diffs = [0.0]
    nan_mismatch = 0
    pairs: list[tuple[str | None, str | None]] = []
    for key in keys:
        a = [i for i in ours_map[key].instances] if key in ours_map else []
        b = [i for i in ref_map[key].instances] if key in ref_map else []
        if len(a) == len(b):
            equal += 1
        if not a or not b:
            continue
        pa = np.stack([i.numpy()[:, :2] for i in a])
        pb = np.stack([i.numpy()[:, :2] for i in b])
        d = np.linalg.norm(pa[:, None] - pb[None], axis=-1)
        cost = np.where(np.isnan(d), 1e6, d).mean(axis=-1)
        rows, cols = linear_sum_assignment(cost)
        for r, c in zip(rows, cols):
            na, nb = np.isnan(pa[r]).any(-1), np.isnan(pb[c]).any(-1)
            nan_mismatch += int((na != nb).sum())
            both = ~na & ~nb
            deviations.append(d[r, c][both])
            score_diffs.append(abs(float(a[r].score) - float(b[c].score)))
            sa = np.asarray(a[r].scores if hasattr(a[r], "scores") else a[r].numpy(scores=True)[:, 2])
            sb = np.asarray(b[c].scores if hasattr(b[c], "scores") else b[c].numpy(scores=True)[:, 2])
            ok = both & ~np.isnan(sa) & ~np.isnan(sb)
            if ok.any():
                pscore_diffs.append(float(np.abs(sa[ok] - sb[ok]).max()))
            pairs.append((a[r].track.name if a[r].track else None,
                          b[c].track.name if b[c].track else None))
    dev = np.concatenate(deviations) if deviations else np.zeros(1)
    report = ParityReport(
        frames_ours=len(ours_map), frames_ref=len(ref_map), frames_compared=len(keys),
        count_equal_fraction=equal / len(keys) if keys else 1.0,
        keypoint_p99=float(np.percentile(dev, 99)) if dev.size else 0.0,
        keypoint_max=float(dev.max()) if dev.size else 0.0,
        score_max_diff=float(np.nanmax(score_diffs)), point_score_max_diff=float(np.nanmax(pscore_diffs)),
        nan_mismatch=nan_mismatch,
    )
    if check_tracks:
        report.track_agreement, report.track_counts = _track_agreement(pairs, ours, ref)
    return report


def _track_agreement(pairs: list[tuple[str | None, str | None]], ours: sio.Labels,
                     ref: sio.Labels) -> tuple[float, tuple[int, int]]:
    """Fraction of matched instances whose tracks agree under the best one-to-one renaming."""
    names_a = sorted({a for a, _ in pairs if a is not None})
    names_b = sorted({b for _, b in pairs if b is not None})
    counts = np.zeros((len(names_a) + 1, len(names_b) + 1))
    ia = {n: i for i, n in enumerate(names_a)}
    ib = {n: i for i, n in enumerate(names_b)}
    for a, b in pairs:
        row = ia.get(a, len(names_a)) if a else len(names_a)
        col = ib.get(b, len(names_b)) if b else len(names_b)
        counts[row, col] += 1
    rows, cols = linear_sum_assignment(-counts[:-1, :-1]) if names_a and names_b else ([], [])
    agree = sum(counts[r, c] for r, c in zip(rows, cols)) + counts[-1, -1]
    n_tracks = (len({t.name for t in ours.tracks}), len({t.name for t in ref.tracks}))
    return (float(agree / len(pairs)) if pairs else 1.0), n_tracks


def run_pipeline(**options: object) -> sio.Labels:
    """Run a graph in-process on CPU and return its labels (no output file)."""
    import anyio

    from sleapflow.jobs.job import plan_job, run_job
    from sleapflow.options.config import InferenceConfig, parse_frames

    frames = options.pop("frames", None)
    device = str(options.pop("device_override", "cpu"))
    cfg = InferenceConfig(device=device, frames=parse_frames(frames) if isinstance(frames, str) else None,
                          **options)  # type: ignore[arg-type]
    return anyio.run(run_job, plan_job(cfg)).labels


def load_reference(reference_dir: object, name: str) -> sio.Labels:
    return sio.load_slp(f"{reference_dir}/{name}.slp", open_videos=False)

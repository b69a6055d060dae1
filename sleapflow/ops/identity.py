"""Identity assignment for multi-class models, as sleap-nn 0.3.5 does it.

- Multi-class bottom-up (spec §6.6, ``sleap_nn.inference.ops.identity.classify_peaks_from_maps``):
  every local peak reads the class maps at its rounded position; per (frame, node) a Hungarian
  matching assigns peaks to classes, and a match is kept only when its class is also the peak's
  argmax class. Instance slot = class index.
- Multi-class top-down (spec §5.4, ``get_class_inds_from_vectors`` run per frame): a Hungarian
  matching of a frame's crops to classes on their class-vector probabilities.

The class-map lookup runs on the maps' device; the matchings run on the host (SciPy). Scores are
reduced with NumPy like the reference's packaging code (``np.nanmean`` on float32 rows).

Difference from the reference (for docs/COMPATIBILITY.md): a matching SciPy rejects (NaN
probabilities) is solved over the finite entries instead of aborting the run; see
:func:`sleapflow.ops.paf.solve_assignment`.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from numpy.typing import ArrayLike, NDArray

from sleapflow.ops.filters import order_for_max_instances
from sleapflow.ops.paf import solve_assignment

__all__ = ("assign_classes_topdown", "class_slot_order", "classify_peaks_from_maps", "nanmean_last")


def nanmean_last(x: ArrayLike) -> NDArray[np.float32]:
    """``np.nanmean(x, axis=-1)`` for float32 input, NaN for all-NaN rows, without the warning.

    Same arithmetic as NumPy's: the float32 sum of the non-NaN values (NaNs replaced by 0, NumPy's
    pairwise sum along the row) divided by the count in float64, then cast to float32. Avoiding the
    "Mean of empty slice" warning here keeps ``warnings.catch_warnings`` (not thread-safe) out of
    code that runs in worker threads.
    """
    arr = np.asarray(x, dtype=np.float32)
    nan = np.isnan(arr)
    total = np.sum(np.where(nan, np.float32(0), arr), axis=-1)
    count = np.sum(~nan, axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = (total.astype(np.float64) / count).astype(np.float32)
    return np.where(count > 0, mean, np.float32(np.nan)).astype(np.float32)


@torch.no_grad()
def classify_peaks_from_maps(
    class_maps: torch.Tensor,
    points: torch.Tensor,
    vals: torch.Tensor,
    sample_inds: torch.Tensor,
    channel_inds: torch.Tensor,
    *,
    class_maps_stride: float,
    n_nodes: int,
) -> tuple[
    NDArray[np.float32], NDArray[np.float32], NDArray[np.float32], NDArray[np.float32],
    NDArray[np.float32],
]:
    """Group a batch's local peaks into one instance per class using class maps (spec §6.6).

    Args:
        class_maps: ``(B, K, Hc, Wc)`` sigmoid class maps, NCHW as the model returns them.
        points: ``(n, 2)`` float32 peak ``(x, y)`` in scaled-input pixels (confmap peak times the
            confmap output stride), on any device.
        vals: ``(n,)`` peak values.
        sample_inds / channel_inds: ``(n,)`` frame and node of each peak.
        class_maps_stride: class-map output stride. A peak reads the maps at
            ``round(points / class_maps_stride)`` (torch half-to-even), clamped to the map.
        n_nodes: ``N``.

    Returns:
        Host numpy arrays, slot = class index:
        ``points (B, K, N, 2)`` float32 (``(points / stride) * stride``, the reference's round
        trip, still in scaled-input pixels: **not yet divided by input_scale / eff_scale**),
        ``vals (B, K, N)``, ``class_probs (B, K, N)`` (the matched class probability),
        ``instance_scores (B, K)`` = nanmean of ``vals`` over nodes and
        ``tracking_scores (B, K)`` = nanmean of ``class_probs``. Unmatched entries and classes
        without peaks are NaN.
    """
    device = class_maps.device
    n_frames, n_classes, height, width = (int(s) for s in class_maps.shape)
    out_pts = np.full((n_frames, n_classes, n_nodes, 2), np.nan, dtype=np.float32)
    out_vals = np.full((n_frames, n_classes, n_nodes), np.nan, dtype=np.float32)
    out_probs = np.full((n_frames, n_classes, n_nodes), np.nan, dtype=np.float32)
    n_peaks = int(points.shape[0])
    if n_peaks and n_classes:
        # Python-scalar divisor, as the reference writes it, so each device runs the same kernel.
        q = points.to(device=device, dtype=torch.float32) / class_maps_stride
        sub = torch.round(torch.flip(q, dims=[1])).to(torch.int32)
        row = sub[:, 0].clamp(0, height - 1).long()
        col = sub[:, 1].clamp(0, width - 1).long()
        si_dev = sample_inds.to(device=device, dtype=torch.int64)
        probs = class_maps[si_dev, :, row, col]  # (n, K)
        probs_np = probs.detach().to(torch.float32).cpu().numpy()
        q_np = q.detach().cpu().numpy()
        si = sample_inds.detach().cpu().numpy().astype(np.int64)
        ci = channel_inds.detach().cpu().numpy().astype(np.int64)
        pv = vals.detach().to(torch.float32).cpu().numpy()

        # One Hungarian matching per (frame, node), rows in peak order.
        ok = (si >= 0) & (si < n_frames) & (ci >= 0) & (ci < n_nodes)
        key = np.where(ok, si * n_nodes + ci, -1)
        order = np.argsort(key, kind="stable")
        order = order[key[order] >= 0]
        _, starts = np.unique(key[order], return_index=True)
        ends = np.append(starts[1:], len(order))
        best = probs_np.max(axis=1)
        peak_list: list[NDArray[np.int64]] = []
        class_list: list[NDArray[np.int64]] = []
        for lo, hi in zip(starts.tolist(), ends.tolist()):
            members = order[lo:hi]
            rows, cols = solve_assignment(-probs_np[members])
            peak_list.append(members[rows])
            class_list.append(cols.astype(np.int64))
        if peak_list:
            peak_ix = np.concatenate(peak_list)
            class_ix = np.concatenate(class_list)
            matched = probs_np[peak_ix, class_ix]
            # Exact float equality, as in the reference: keep a match only if it is the argmax.
            keep = matched == best[peak_ix]
            peak_ix, class_ix, matched = peak_ix[keep], class_ix[keep], matched[keep]
            b, n = si[peak_ix], ci[peak_ix]
            out_pts[b, class_ix, n] = q_np[peak_ix] * np.float32(class_maps_stride)
            out_vals[b, class_ix, n] = pv[peak_ix]
            out_probs[b, class_ix, n] = matched
    return out_pts, out_vals, out_probs, nanmean_last(out_vals), nanmean_last(out_probs)


def class_slot_order(
    points: ArrayLike,
    instance_scores: ArrayLike,
    max_instances: int | None,
    *,
    mode: Literal["track", "predict"] = "track",
) -> NDArray[np.int64]:
    """Which class slots each frame emits, and in which order, under ``max_instances``.

    Args:
        points: ``(B, K, N, 2)`` from :func:`classify_peaks_from_maps`; a slot whose keypoints are
            all NaN is never emitted.
        instance_scores: ``(B, K)`` float32 instance scores.
        max_instances: the user's cap, or None.
        mode:
            - ``"track"`` (``sleap-nn track``, the reference files): present slots sorted by score,
              descending, Python-stable, then truncated to ``max_instances``; slot order when
              there is no cap.
            - ``"predict"`` (spec §6.6 step 5, the newer flow): when more than ``max_instances``
              slots have a non-NaN score, only the first ``max_instances`` of
              ``np.argsort(scores)[::-1]`` survive (NaN scores rank first there, so empty slots
              can crowd out real ones; kept as in the reference); survivors are emitted in slot
              order.

    Returns:
        ``(B, K) int64``: row ``b`` lists the slots to emit in order, padded with -1. The track of
        an emitted slot is ``classes[slot]``.
    """
    pts = np.asarray(points)
    sc = np.asarray(instance_scores)
    n_frames, n_slots = sc.shape
    present = ~np.isnan(pts).all(axis=(-1, -2))
    out = np.full((n_frames, n_slots), -1, dtype=np.int64)
    for b in range(n_frames):
        if mode == "track":
            slots = order_for_max_instances(sc[b], max_instances, mode="track", present=present[b])
        elif mode == "predict":
            alive = np.ones(n_slots, dtype=bool)
            if max_instances is not None and int((~np.isnan(sc[b])).sum()) > max_instances:
                alive[:] = False
                alive[np.argsort(sc[b])[::-1][:max_instances]] = True
            slots = np.flatnonzero(alive & present[b])
        else:
            raise ValueError(f"Unknown max_instances mode: {mode!r}. Use 'track' or 'predict'.")
        out[b, : len(slots)] = slots
    return out


def assign_classes_topdown(
    probs_per_crop: ArrayLike | torch.Tensor, frame_of_crop: ArrayLike | torch.Tensor
) -> tuple[NDArray[np.int64], NDArray[np.float32]]:
    """Per-frame Hungarian assignment of top-down crops to classes (spec §5.4).

    Args:
        probs_per_crop: ``(n, K)`` class-vector softmax probabilities, one row per crop.
        frame_of_crop: ``(n,)`` any per-frame key (frame index or batch position); crops of one
            frame form one matching, rows in the order given (the reference's (b, i) order).

    Returns:
        ``class_inds (n,) int64`` (-1 for a crop left without a class: more crops than classes)
        and ``tracking_scores (n,) float32`` (the assigned class's probability, NaN if none).
    """
    if isinstance(probs_per_crop, torch.Tensor):
        probs_per_crop = probs_per_crop.detach().to(torch.float32).cpu().numpy()
    if isinstance(frame_of_crop, torch.Tensor):
        frame_of_crop = frame_of_crop.detach().cpu().numpy()
    probs = np.asarray(probs_per_crop, dtype=np.float32)
    frames = np.asarray(frame_of_crop).reshape(-1)
    n = len(frames)
    if probs.ndim != 2 or probs.shape[0] != n:
        raise ValueError(f"probs_per_crop must be (n, K) with n = {n}; got {probs.shape}")
    class_inds = np.full(n, -1, dtype=np.int64)
    scores = np.full(n, np.nan, dtype=np.float32)
    if n == 0 or probs.shape[1] == 0:
        return class_inds, scores
    order = np.argsort(frames, kind="stable")
    _, starts = np.unique(frames[order], return_index=True)
    ends = np.append(starts[1:], n)
    for lo, hi in zip(starts.tolist(), ends.tolist()):
        members = order[lo:hi]
        rows, cols = solve_assignment(-probs[members])
        class_inds[members[rows]] = cols
        scores[members[rows]] = probs[members[rows], cols]
    return class_inds, scores

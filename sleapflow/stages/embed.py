"""The appearance (re-ID) branch: crops around each predicted instance → embedding vectors.

Crops follow sleap-nn's pose-mode embedding crops: the frame is size-matched to the embedding
model's ``max_height``/``max_width``, turned grey unless the model was trained on RGB, and a
``crop_size`` square is cut around the instance's anchor node (else the mean of its visible
nodes). The crops of several frames are batched and run through the ordinary forward stage;
the vectors come back on the frame's prediction, one row per instance.
"""

from __future__ import annotations

from typing import Any

import msgspec
import numpy as np
import torch

from sleapflow.messages import FramePrediction, ModelOutput
from sleapflow.models.embedding import EMBEDDING_HEAD, EmbeddingModelConfig
from sleapflow.ops import preprocess as prep
from sleapflow.ops.crops import crop_windows, extract_crops

__all__ = (
    "EmbedBatch", "EmbedCrops", "EmbedItem", "attach_embeddings", "embed_weight", "instance_centers",
    "make_embed_batch",
)


class EmbedItem(msgspec.Struct, frozen=True):
    """One frame's prediction and the uint8 crops (n, C, S, S) of its instances."""

    seq: int
    prediction: FramePrediction
    crops: Any


class EmbedBatch(msgspec.Struct, frozen=True):
    """Crops of several frames stacked for one forward pass (``tensor`` None when there are none)."""

    seq: int
    items: tuple[EmbedItem, ...]
    tensor: Any


def instance_centers(points: np.ndarray, anchor: int | None) -> np.ndarray:
    """(I, 2) crop centres: the anchor node where visible, else the mean of the visible nodes
    (NaN for an instance with none)."""
    pts = np.asarray(points, dtype=np.float64)
    if pts.shape[0] == 0:
        return np.zeros((0, 2))
    visible = ~np.isnan(pts)
    count = visible.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        centers = np.where(visible, pts, 0.0).sum(axis=1) / count
    if anchor is not None and anchor < pts.shape[1]:
        a = pts[:, anchor]
        ok = ~np.isnan(a).any(axis=1)
        centers[ok] = a[ok]
    return centers


class EmbedCrops:
    """Cut each instance's crop from the frame the prediction carries."""

    def __init__(self, config: EmbeddingModelConfig, anchor: int | None) -> None:
        self.config = config
        self.anchor = anchor

    def __call__(self, pred: FramePrediction) -> EmbedItem:
        cfg = self.config
        size = cfg.crop_size
        n = pred.n_instances
        if n == 0 or pred.image is None:
            return EmbedItem(seq=pred.seq, prediction=pred, crops=None)
        frame = prep.frames_to_tensor([np.asarray(pred.image)])
        # Grey before size matching, as sleap-nn's dataset converts the whole frame first.
        frame = prep.ensure_channels(frame, ensure_rgb=cfg.ensure_rgb, ensure_grayscale=not cfg.ensure_rgb)
        frame, scale = prep.size_match(frame, cfg.max_height, cfg.max_width)
        centers = instance_centers(pred.points, self.anchor) * scale
        # An instance with no visible node gets a crop at the origin; its vector is dropped.
        finite = np.asarray(np.isfinite(centers).all(axis=1), dtype=bool)
        centers_t = torch.as_tensor(np.where(finite[:, None], centers, 0.0), dtype=torch.float32)
        _, origins = crop_windows(centers_t, size)
        crops = extract_crops(frame, torch.zeros(n, dtype=torch.long), origins, size)
        return EmbedItem(seq=pred.seq, prediction=pred, crops=crops)


def embed_weight(item: EmbedItem) -> int:
    """Crops, not frames, fill the embedding model's batches."""
    return 0 if item.crops is None else int(item.crops.shape[0])


def make_embed_batch(seq: int, items: list[EmbedItem]) -> EmbedBatch:
    crops = [i.crops for i in items if i.crops is not None and i.crops.shape[0]]
    return EmbedBatch(seq=seq, items=tuple(items), tensor=torch.cat(crops) if crops else None)


def attach_embeddings(out: ModelOutput) -> list[FramePrediction]:
    """Split the batch's vectors back to their frames: ``embeddings`` (I, D) float32 per frame,
    NaN rows for instances without a visible node."""
    batch: EmbedBatch = out.input
    vectors = out.heads.get(EMBEDDING_HEAD)
    host = None if vectors is None else vectors.detach().float().cpu().numpy()
    start = 0
    preds = []
    for item in batch.items:
        pred = item.prediction
        if item.crops is None:
            preds.append(pred)
            continue
        n = int(item.crops.shape[0])
        assert host is not None
        vec = host[start:start + n].astype(np.float32, copy=True)
        start += n
        centers = instance_centers(pred.points, None)
        vec[~np.isfinite(centers).all(axis=1)] = np.nan
        preds.append(msgspec.structs.replace(pred, embeddings=vec))
    return preds

"""The track-only graph: the instances already in a .slp → filter → track → clean up → write."""

from __future__ import annotations

from typing import Any

import anyio
import numpy as np
import sleap_io as sio
from anyio.abc import TaskStatus

from sleapflow.errors import ConfigError
from sleapflow.graphs.common import GraphDecl
from sleapflow.messages import FramePrediction
from sleapflow.runtime.graph import Role
from sleapflow.tracking import TrackerConfig
from sleapflow.tracking.track_only import instance_score, select_frames

__all__ = ("GRAPH", "LabelsTrackSource", "frame_from_labels", "instance_vectors", "labels_have_vectors")



def frame_from_labels(seq: int, video_id: int, lf: sio.LabeledFrame,
                      image: np.ndarray | None = None) -> FramePrediction:
    """A labeled frame's instances as arrays, remembering which instance each row came from."""
    instances = list(lf.instances)
    n_nodes = len(instances[0].skeleton.nodes) if instances else 0
    points = (np.stack([inst.numpy()[:, :2] for inst in instances]).astype(np.float64)
              if instances else np.zeros((0, n_nodes, 2)))
    return FramePrediction(
        seq=seq, video_id=video_id, frame_idx=lf.frame_idx, points=points,
        point_scores=np.ones(points.shape[:2]),
        instance_scores=np.array([instance_score(i) for i in instances], dtype=np.float64),
        is_user=np.array([not isinstance(i, sio.PredictedInstance) for i in instances], dtype=bool),
        source_instances=tuple(instances), image=image, embeddings=instance_vectors(instances))


def instance_vectors(instances: list[sio.Instance]) -> np.ndarray | None:
    """(n, D) re-ID vectors the instances carry (an earlier ``--save_embeddings slp`` run), NaN
    rows for instances without one; None when none of them has one."""
    vectors = [getattr(i, "identity_embedding", None) for i in instances]
    dims = {np.asarray(v.vector).shape[-1] for v in vectors if v is not None}
    if not dims:
        return None
    if len(dims) > 1:
        raise ConfigError(f"the instances of one frame carry re-ID vectors of different lengths "
                         f"({sorted(dims)}); they cannot be compared")
    out = np.full((len(instances), dims.pop()), np.nan)
    for k, v in enumerate(vectors):
        if v is not None:
            out[k] = np.asarray(v.vector, dtype=np.float64)
    return out


def labels_have_vectors(labels: sio.Labels) -> bool:
    """Whether any instance of ``labels`` carries a re-ID vector."""
    return any(getattr(i, "identity_embedding", None) is not None
               for lf in labels.labeled_frames for i in lf.instances)


class LabelsTrackSource:
    """Emits the selected labeled frames of a .slp in frame-index order (the reference's order:
    stable by frame index only, so several videos interleave), decoding pixels only for trackers
    that need them."""

    role: Role = "source"
    preserves_order = True
    requires_order = False
    restores_order = False

    def __init__(self, labels: sio.Labels, config: TrackerConfig, *, video_index: int | None,
                 frames: tuple[int | tuple[int, int], ...] | None, name: str = "labels") -> None:
        self.name = name
        self.labels = labels
        self.config = config
        self.frames = select_frames(labels, video_index=video_index, frames=frames)
        self._video_ids = {id(v): i for i, v in enumerate(labels.videos)}

    def __len__(self) -> int:
        return len(self.frames)

    def _image(self, lf: sio.LabeledFrame) -> np.ndarray | None:
        return np.asarray(lf.image) if self.config.needs_image else None

    async def run(self, inbox: None, outbox: Any, *,
                  task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        async with outbox:
            task_status.started()
            for seq, lf in enumerate(self.frames):
                image = (await anyio.to_thread.run_sync(self._image, lf)
                         if self.config.needs_image else None)
                await outbox.send(frame_from_labels(seq, self._video_ids[id(lf.video)], lf, image))


#: No model stages: the source's frames go straight to the shared filter and tracker.
GRAPH = GraphDecl("track_only", "track the instances of an existing .slp", (), True,
                  lambda ctx, raw: [], from_labels=True)

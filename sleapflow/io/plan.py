"""What a run reads: the planned frames and the videos they come from (plain data)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import sleap_io as sio


@dataclass(frozen=True)
class WorkItem:
    """One frame to process: which video, which index, and ground truth when a mode needs it."""

    video_id: int
    frame_idx: int
    gt_points: np.ndarray | None = None


@dataclass
class InputPlan:
    """What a run reads: the videos (for the output file), the frames, and the source labels.

    ``source_path`` is the path the user gave (None for in-memory inputs); ``video_index`` is set
    when a single video of a ``.slp`` was selected (it names the default output file).
    """

    kind: str  # "video", "slp", "hdf5", "images"
    source_path: str | None
    videos: list[sio.Video]
    items: Sequence[WorkItem]
    labels: sio.Labels | None = None
    frame_selection_method: str = "all"
    video_index: int | None = None
    video_readers: dict[int, Any] = field(default_factory=dict)

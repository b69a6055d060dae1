"""Multi-animal tracking: candidates, features, scoring, matching, optical flow.

Pure synchronous code (no anyio) that a streaming stage wraps: :class:`Tracker` assigns track ids
to one frame's instance arrays at a time, :class:`PostTrackingCleanup` applies the post-tracking
cull and single-break repair frame by frame, and :func:`track_labels` is the track-only workflow
(``sleap-nn track -i predictions.slp -t``) over an ``sio.Labels``.
"""

from sleapflow.options.tracker import TrackerConfig
from sleapflow.tracking.cleanup import (
    InstanceCuller,
    PostTrackingCleanup,
    SingleBreakConnector,
    nms_fast,
    pre_cull,
)
from sleapflow.tracking.track_only import track_labels
from sleapflow.tracking.tracker import UNASSIGNED, FrameTracks, Tracker, TrackerState

__all__ = (
    "UNASSIGNED", "FrameTracks", "InstanceCuller", "PostTrackingCleanup", "SingleBreakConnector", "Tracker",
    "TrackerConfig", "TrackerState", "nms_fast", "pre_cull", "track_labels",
)

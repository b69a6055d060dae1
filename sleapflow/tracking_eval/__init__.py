"""Identity metrics of a tracked prediction (``sleapflow eval-tracking``), sleap-nn's names."""

from sleapflow.tracking_eval.labels import (
    compute_mot_metrics,
    identity_metrics,
    motion_diagnostic,
    run_identity_evaluation,
)

__all__ = ["compute_mot_metrics", "identity_metrics", "motion_diagnostic", "run_identity_evaluation"]

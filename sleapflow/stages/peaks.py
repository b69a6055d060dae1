"""Peak-extraction stage functions: head outputs on the device → per-frame predictions on the host.

Each callable works on a whole batch on the model's device and moves only the peaks to the host,
once per batch.
"""

from __future__ import annotations

import numpy as np

from sleapflow.backends.fused import FusedPeaks, PeakHead
from sleapflow.lazy import lazy_module
from sleapflow.messages import FramePrediction, ModelOutput
from sleapflow.ops import host_peaks
from sleapflow.ops.peaks import find_global_peaks

# torch loads on first use: a run on ONNX Runtime with a warm export cache never needs it.
torch = lazy_module("torch")

__all__ = ("PeakSettings", "SingleInstancePeaks")



class PeakSettings:
    """Peak-finding options shared by every model type."""

    __slots__ = ("patch_size", "refinement", "threshold")

    def __init__(self, threshold: float, refinement: str | None, patch_size: int) -> None:
        self.threshold = threshold
        self.refinement = refinement
        self.patch_size = patch_size

    def head(self, head: str, *, local: bool, output_stride: int, input_scale: float = 1.0,
             k: int = 1, keeps_top: bool = False) -> PeakHead:
        """These options as one head's fused peak finding (see :mod:`sleapflow.backends.fused`)."""
        return PeakHead(head=head, local=local, threshold=float(self.threshold),
                        refinement=self.refinement, patch_size=int(self.patch_size),
                        output_stride=int(output_stride), input_scale=float(input_scale), k=k,
                        keeps_top=keeps_top)


class SingleInstancePeaks:
    """One global peak per part; instance score is the NaN-sum of the point scores."""

    def __init__(self, head: str, output_stride: int, input_scale: float, peaks: PeakSettings) -> None:
        self.head = head
        self.output_stride = output_stride
        self.input_scale = input_scale
        self.peaks = peaks

    def fused_peaks(self) -> FusedPeaks:
        """This stage's peak finding, for a runtime that can run it inside the network's graph."""
        return FusedPeaks((self.peaks.head(self.head, local=False, output_stride=self.output_stride,
                                           input_scale=self.input_scale),))

    def __call__(self, out: ModelOutput) -> list[FramePrediction]:
        found = out.head_peaks(self.head)
        cms = out.heads.get(self.head)
        if found is not None:  # the runtime ran the peak finding inside its graph
            points_np = found.points.astype(np.float64)
            vals_np = found.vals.astype(np.float64)
        elif isinstance(cms, np.ndarray):  # ONNX Runtime's maps on the CPU: no torch needed
            points, vals = host_peaks.find_global_peaks(cms, self.peaks.threshold,
                                                        refinement=self.peaks.refinement,
                                                        patch_size=self.peaks.patch_size)
            points_np = (points * self.output_stride / self.input_scale).astype(np.float64)
            vals_np = vals.astype(np.float64)
        else:
            with torch.inference_mode():
                points, vals = find_global_peaks(cms, self.peaks.threshold,
                                                 refinement=self.peaks.refinement,
                                                 patch_size=self.peaks.patch_size)
                points = points * self.output_stride / self.input_scale
            points_np = points.cpu().numpy().astype(np.float64)
            vals_np = vals.cpu().numpy().astype(np.float64)
        eff = np.asarray(out.eff_scale, dtype=np.float64)
        points_np /= eff[:, None, None]
        preds = []
        for b, info in enumerate(out.frames):
            preds.append(FramePrediction.of(info, points=points_np[b][None], point_scores=vals_np[b][None],
                instance_scores=np.array([np.nansum(vals_np[b])]),
            ))
        return preds

"""Crop origins near a rounding boundary: which centroids are near one, and that those frames
are decided from the exact maps while the others never call them."""

from __future__ import annotations

import numpy as np
import torch

from sleapflow.messages import FrameInfo, ModelInput, ModelOutput
from sleapflow.ops.crops import crop_windows, near_crop_boundary
from sleapflow.stages.topdown import CentroidCrops


def test_near_crop_boundary_marks_centres_whose_origin_flips() -> None:
    crop = 96
    centres = torch.tensor([[100.4999, 50.0], [100.2, 50.0], [100.2, 50.5001], [float("nan"), 3.0]])
    near = near_crop_boundary(centres, crop, 1e-3)
    assert near.tolist() == [True, False, True, False]
    # What "near" means: a 2e-4 px move changes the integer origin of the first centre.
    _, a = crop_windows(centres[:1] - 1e-4, crop)
    _, b = crop_windows(centres[:1] + 1e-4, crop)
    assert int((b - a)[0, 0]) == 1


class _CentreFromMap:
    """Stands in for the peak finder: each frame's one centroid is read off its 'map'."""

    head = "c"

    def __call__(self, out: ModelOutput) -> tuple[torch.Tensor, torch.Tensor]:
        points = out.heads["c"].reshape(-1, 1, 2).float()
        return points, torch.ones(points.shape[:2])


def _output(centres: list[list[float]]) -> ModelOutput:
    n = len(centres)
    frames = tuple(FrameInfo(seq=i, video_id=0, frame_idx=i, height=200, width=200)
                   for i in range(n))
    # Channel 0 holds each pixel's column and channel 1 its row, so a crop shows its origin.
    steps = torch.arange(200, dtype=torch.uint8)
    raw = torch.stack([steps[None, :].expand(200, 200), steps[:, None].expand(200, 200)])
    batch = ModelInput(seq=0, frames=frames, tensor=torch.arange(n, dtype=torch.uint8)[:, None],
                       eff_scale=np.ones(n, dtype=np.float32), raw=raw[None].repeat(n, 1, 1, 1))
    return ModelOutput(seq=0, heads={"c": torch.tensor(centres)}, input=batch)


def test_boundary_frames_take_the_exact_maps_and_only_they() -> None:
    approx = _output([[100.4999, 60.0], [80.2, 60.0], [70.0, 60.5002]])
    exact_centres = torch.tensor([[100.5001, 60.0], [80.2, 60.0], [70.0, 60.4998]])
    asked: list[list[int]] = []

    def exact(tensor: torch.Tensor) -> dict[str, torch.Tensor]:
        rows = tensor[:, 0].long().tolist()  # the frame indices, as the batch tensor holds them
        asked.append(rows)
        return {"c": exact_centres[rows]}

    sets = CentroidCrops(_CentreFromMap(), 96, exact=exact)(approx)
    assert asked == [[0, 2]]  # the far-from-boundary frame never re-runs
    cut = [s.crops[0, :, 0, 0].tolist() for s in sets]  # (column, row) of each crop's corner
    assert cut == crop_windows(exact_centres, 96)[1].tolist()
    assert cut != crop_windows(approx.heads["c"], 96)[1].tolist()
    assert [s.centroids[0].tolist() for s in sets] == exact_centres.tolist()

"""Which top-down frames the crop-boundary recheck re-runs through torch, and whether any it leaves
alone would have been cut differently from torch's maps.

    python benchmarks/crop_margin_probe.py -i ../shared/assets/datasets/centered_pair_small.mp4 \\
        -m ../shared/assets/model_ckpts/minimal_instance_centroid \\
        -m ../shared/assets/model_ckpts/minimal_instance_centered_instance

Runs ``sleapflow track --runtime onnx`` in this process (ONNX Runtime's numpy maps on the CPU)
with the recheck watched: for every batch it also runs the centroid model through torch, and
reports per frame whether the constant 1e-3 px margin would have re-run it, whether each
centroid's own margin (``stages.topdown.boundary_margin``) does, and whether a frame outside
the own margins has a crop origin that differs from the one torch's maps give (which would be
a wrong crop). Slow: torch runs every frame, for the check. The figures are in RESULTS.md
("Figures of the third #28 / #30 round").
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from sleapflow.cli.app import main as sleapflow_main
from sleapflow.messages import ModelOutput
from sleapflow.ops import host_crops
from sleapflow.stages import topdown

CONSTANT_MARGIN = 1e-3


def _origins(centroids: np.ndarray, crop_size: int) -> list[tuple[int, int]]:
    valid = centroids[~np.isnan(centroids).any(axis=-1)]
    return sorted(map(tuple, host_crops.crop_windows(valid, crop_size)[1].tolist()))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-i", "--input", required=True)
    parser.add_argument("-m", "--model", action="append", required=True)
    parser.add_argument("--frames", default=None, help="track's --frames (default: all)")
    args = parser.parse_args()

    seen = {"frames": 0, "constant": [], "own": [], "wrong": [], "margins": []}
    recheck = topdown.CentroidCrops._recheck_host

    def watched(self: Any, out: ModelOutput, centroids: np.ndarray, values: np.ndarray,
                spread: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        eff = np.asarray(out.input.eff_scale).astype(np.float32)
        sized = centroids * eff[:, None, None]
        margin = topdown.boundary_margin(sized, spread * eff[:, None, None])
        own = host_crops.near_crop_boundary(sized, self.crop_size, margin).any(axis=1)
        constant = host_crops.near_crop_boundary(sized, self.crop_size, CONSTANT_MARGIN).any(axis=1)
        exact = self.exact(out.input.tensor)
        again, _ = self.finder(ModelOutput(seq=out.seq, heads=exact, input=out.input))
        for b, info in enumerate(out.input.frames):
            seen["frames"] += 1
            if constant[b]:
                seen["constant"].append(info.frame_idx)
            if own[b]:
                seen["own"].append(info.frame_idx)
            elif _origins(sized[b], self.crop_size) != _origins(again[b] * eff[b], self.crop_size):
                seen["wrong"].append(info.frame_idx)
        seen["margins"].extend(margin[~np.isnan(sized)].ravel().tolist())
        return recheck(self, out, centroids, values, spread)

    topdown.CentroidCrops._recheck_host = watched  # type: ignore[method-assign]
    with tempfile.TemporaryDirectory() as tmp:
        argv = ["track", "-i", args.input, "--runtime", "onnx", "--device", "cpu",
                "-o", str(Path(tmp) / "probe.slp")]
        for model in args.model:
            argv += ["-m", model]
        if args.frames:
            argv += ["--frames", args.frames]
        rc = sleapflow_main(argv)
    if rc != 0:
        return rc
    if not seen["frames"]:
        print("no frame reached the recheck (not ONNX Runtime's numpy path?)", file=sys.stderr)
        return 1
    margins = np.asarray(seen["margins"])
    print(f"frames {seen['frames']}")
    print(f"re-run with the constant {CONSTANT_MARGIN} px: {len(seen['constant'])} {seen['constant']}")
    print(f"re-run with the own margins: {len(seen['own'])} {seen['own']}")
    print(f"outside the own margins but cut differently from torch's maps: {len(seen['wrong'])} "
          f"{seen['wrong']}")
    print(f"own margins (px): median {np.median(margins):.2e}, p99 {np.quantile(margins, 0.99):.2e}, "
          f"max {margins.max():.2e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

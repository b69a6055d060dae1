"""``sleapflow.Predictor.predict`` per-call latency: the first call (the warm-up) and p50/p95/p99
of the calls after it, for a single-instance and a top-down model, with and without tracking.

    python benchmarks/bench_predictor.py [--frames 300] [--device cpu] [--runtime auto]
        [--centroid_every 1] [--json predictor.json]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

import sleapflow
from sleapflow.inputs import PyAVReader

SHARED = (Path(__file__).resolve().parent.parent.parent / "shared" / "assets").resolve()
CASES = {
    "single_instance": ("datasets/small_robot.mp4", ["model_ckpts/minimal_instance_single_instance"]),
    "topdown": ("datasets/centered_pair_small.mp4", ["model_ckpts/minimal_instance_centroid",
                                                     "model_ckpts/minimal_instance_centered_instance"]),
}


def _measure(case: str, n: int, tracking: bool, args: argparse.Namespace) -> dict[str, Any]:
    clip, models = CASES[case]
    reader = PyAVReader(str(SHARED / clip))
    try:
        frames = []
        for i in range(n):
            frame = reader.read(i)
            if frame is None:  # past the clip's end
                break
            frames.append(frame)
    finally:
        reader.close()
    options: dict[str, Any] = {"device": args.device, "runtime": args.runtime, "tracking": tracking}
    if case == "topdown":
        options["centroid_every"] = args.centroid_every
    start = time.perf_counter()
    with sleapflow.Predictor([str(SHARED / m) for m in models], **options) as p:
        init_s = time.perf_counter() - start
        times = []
        for frame in frames:
            t = time.perf_counter()
            p.predict(frame)
            times.append((time.perf_counter() - t) * 1000)
    steady = np.asarray(times[1:])
    return {"case": case, "tracking": tracking, "frames": len(frames), "init_s": round(init_s, 2),
            "first_call_ms": round(times[0], 2),
            **{f"p{q}_ms": round(float(np.percentile(steady, q)), 2) for q in (50, 95, 99)}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--runtime", default="auto")
    parser.add_argument("--centroid_every", type=int, default=1)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    rows = []
    for case in CASES:
        for tracking in (False, True):
            rows.append(_measure(case, args.frames, tracking, args))
            print(json.dumps(rows[-1]), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps({"load_average": os.getloadavg()[0], "rows": rows},
                                              indent=2))


if __name__ == "__main__":
    main()

"""What ``--precision int8`` costs in accuracy: points against fp32, and OKS mAP against ground truth.

    python benchmarks/int8_accuracy.py -i VIDEO_OR_SLP -m MODEL [-m MODEL2] [--frames 0-299] \\
        [--ground-truth GT.slp] [--calibration-frames PATH] [--json out.json]

Runs the same frames through the graph three times in this process, with one export cache:
ONNX Runtime fp32 (the default CPU path), torch fp32 (the reference arithmetic) and ONNX Runtime
int8 (calibrated on the run's first frames, or on ``--calibration-frames``). It prints, for int8
against each fp32 run, the parity figures of ``benchmarks/parity_runtimes.py`` (equal instance
counts, p50/p99/max point distance in pixels, score differences) and, with ``--ground-truth``,
each run's OKS mAP / mean OKS / mean distance from ``sleapflow eval``'s metrics. Accuracy
figures do not depend on the machine's load; the timings printed beside them do.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from parity import compare_labels  # noqa: E402


def _run(args: argparse.Namespace, runtime: str, precision: str, out: Path) -> tuple[Any, float]:
    import anyio
    import sleap_io as sio

    from sleapflow.jobs.job import plan_job, run_job
    from sleapflow.options.config import InferenceConfig, parse_frames

    video = not args.input.endswith(".slp")
    cfg = InferenceConfig(data_path=args.input, model_paths=tuple(args.model), device="cpu",
                          frames=parse_frames(args.frames) if video and args.frames else None,
                          runtime=runtime, precision=precision,
                          calibration_frames=args.calibration_frames if precision == "int8" else None,
                          max_instances=args.max_instances)
    start = time.perf_counter()
    anyio.run(run_job, plan_job(cfg, output=str(out)))
    return sio.load_slp(str(out), open_videos=False), time.perf_counter() - start


def _distances(ours: Any, ref: Any) -> dict[str, float]:
    report = compare_labels(ours, ref)
    return {"count_equal": report.count_equal_fraction, "p99_px": report.keypoint_p99,
            "max_px": report.keypoint_max, "score_max_diff": report.score_max_diff,
            "point_score_max_diff": report.point_score_max_diff}


def _median_px(ours: Any, ref: Any) -> float:
    from scipy.optimize import linear_sum_assignment

    frames = {(lf.frame_idx): lf for lf in ref}
    devs = []
    for lf in ours:
        other = frames.get(lf.frame_idx)
        if other is None or not lf.instances or not other.instances:
            continue
        a = np.stack([i.numpy()[:, :2] for i in lf.instances])
        b = np.stack([i.numpy()[:, :2] for i in other.instances])
        d = np.linalg.norm(a[:, None] - b[None], axis=-1)
        rows, cols = linear_sum_assignment(np.where(np.isnan(d), 1e6, d).mean(-1))
        for r, c in zip(rows, cols):
            devs.append(d[r, c][~np.isnan(d[r, c])])
    return float(np.median(np.concatenate(devs))) if devs else 0.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-i", "--input", required=True)
    parser.add_argument("-m", "--model", action="append", required=True)
    parser.add_argument("--frames", default="0-299", help="frames of a video input")
    parser.add_argument("--ground-truth", default=None)
    parser.add_argument("--calibration-frames", default=None)
    parser.add_argument("--max-instances", type=int, default=None)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()

    record: dict[str, Any] = {"input": args.input, "models": args.model, "frames": args.frames,
                              "calibration": args.calibration_frames or "first frames of the run"}
    with tempfile.TemporaryDirectory(prefix="sleapflow-int8-") as tmp:
        runs = {}
        for runtime, precision in (("onnx", "fp32"), ("torch", "fp32"), ("onnx", "int8")):
            label = f"{runtime}-{precision}"
            out = Path(tmp) / f"{label}.slp"
            labels, seconds = _run(args, runtime, precision, out)
            runs[label] = (labels, out)
            record.setdefault("seconds", {})[label] = round(seconds, 2)
        int8 = runs["onnx-int8"][0]
        for base in ("onnx-fp32", "torch-fp32"):
            figures = _distances(int8, runs[base][0])
            figures["p50_px"] = _median_px(int8, runs[base][0])
            record[f"int8_vs_{base}"] = figures
        if args.ground_truth:
            from sleapflow.evaluation import run_evaluation

            for label, (_, out) in runs.items():
                metrics = run_evaluation(args.ground_truth, out) or {}
                voc, dist = metrics.get("voc_metrics", {}), metrics.get("distance_metrics", {})
                record.setdefault("ground_truth", {})[label] = {
                    "oks_map": voc.get("oks_voc.mAP"), "mean_oks": metrics.get("mOKS", {}).get("mOKS"),
                    "mean_distance_px": dist.get("avg")}
    print(json.dumps(record, indent=1, default=float))
    if args.json:
        Path(args.json).write_text(json.dumps(record, indent=1, default=float))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

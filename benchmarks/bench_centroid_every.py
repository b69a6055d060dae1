"""What ``--centroid_every K`` costs in accuracy and saves in time, on the tiny top-down models.

For each K, ``sleapflow track`` runs the centroid and centered-instance models over the clip with
``--centroid_every K``; K=1 (the centroid model on every frame) is the reference the others are
scored against with ``sleapflow.evaluation`` (OKS mAP, mean OKS, point distances, recall), every
predicted instance of the K=1 run taking the place of a label. Key frames (every K-th) are
identical to K=1 by construction, so the figures measure the frames between. Wall time per run is
printed too: quote it only from a quiet machine.

Usage::

    python benchmarks/bench_centroid_every.py [--ks 1,2,3,5,10] [--frames 0-1099] [--device cpu]
        [--runtime auto] [--batch_size 4] [--out /tmp/centroid_every] [--json results.json]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from pathlib import Path
from typing import Any

import structlog

from sleapflow.cli.app import main as sleapflow_main
from sleapflow.evaluation import run_evaluation

ROOT = Path(__file__).resolve().parent.parent
ASSETS = (ROOT.parent / "shared" / "assets").resolve()
CLIP = ASSETS / "datasets" / "centered_pair_small.mp4"
MODELS = (ASSETS / "model_ckpts" / "minimal_instance_centroid",
          ASSETS / "model_ckpts" / "minimal_instance_centered_instance")


def _track(k: int, args: argparse.Namespace, out: Path) -> float:
    argv = ["track", "-i", str(CLIP), *(a for m in MODELS for a in ("-m", str(m))),
            "--centroid_every", str(k), "--device", args.device, "--runtime", args.runtime,
            "--batch_size", str(args.batch_size), "-o", str(out), "--overwrite"]
    if args.frames:
        argv += ["--frames", args.frames]
    start = time.perf_counter()
    if sleapflow_main(argv) != 0:
        raise SystemExit(f"track failed for K={k}")
    return time.perf_counter() - start


def _scores(reference: Path, predicted: Path) -> dict[str, Any]:
    metrics = run_evaluation(reference, predicted, user_labels_only=False)
    assert metrics is not None
    voc, dist = metrics["voc_metrics"], metrics["distance_metrics"]
    return {"oks_map": round(float(voc["oks_voc.mAP"]), 4),
            "mean_oks": round(float(metrics["mOKS"]["mOKS"]), 4),
            "recall": round(float(voc["oks_voc.mAR"]), 4),
            **{f"dist_{q}_px": round(float(dist[q]), 3) for q in ("avg", "p50", "p95", "p99")}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ks", default="1,2,3,5,10")
    parser.add_argument("--frames", default="", help="as track's --frames (default: all)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--runtime", default="auto")
    parser.add_argument("--batch_size", type=int, default=4)
    parser.add_argument("--out", default="/tmp/centroid_every")
    parser.add_argument("--json", default=None, help="also write the table here")
    args = parser.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    ks = sorted({1, *(int(k) for k in args.ks.split(","))})
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for k in ks:
        path = out_dir / f"k{k}.slp"
        seconds = _track(k, args, path)
        row: dict[str, Any] = {"K": k, "seconds": round(seconds, 2)}
        if k != 1:
            row.update(_scores(out_dir / "k1.slp", path))
        rows.append(row)
        print(json.dumps(row), flush=True)
    record = {"clip": CLIP.name, "frames": args.frames or "all", "device": args.device,
              "runtime": args.runtime, "batch_size": args.batch_size,
              "load_average": os.getloadavg()[0], "rows": rows}
    if args.json:
        Path(args.json).write_text(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()

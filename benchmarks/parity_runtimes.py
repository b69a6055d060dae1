"""Parity of every reference case under each network runtime: the table in RESULTS.md.

    python benchmarks/parity_runtimes.py --runtimes torch,onnx,torch-bf16 [--frames 0-299]

Runs the cases of the graph parity tests (tests/graphs) on all their frames (300 for the clip
cases) and prints, per case and runtime, the figures the tolerances bound: equal-count
fraction, p99 keypoint deviation, max instance/point score difference, and pass/fail.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "tests" / "graphs"))

from sleapflow.backends.select import parse_label  # noqa: E402

from parity import compare_labels, load_reference, run_pipeline  # noqa: E402

ASSETS = ROOT.parent / "shared" / "assets"
REFERENCE = ROOT.parent / "shared" / "reference"


def cases() -> dict[str, tuple[str, list[str], dict]]:
    import test_bottomup
    import test_legacy_and_backbones
    import test_topdown

    out: dict[str, tuple[str, list[str], dict]] = {}
    for mod in (test_bottomup, test_topdown):
        for name, (data, models, options) in mod.CASES.items():
            models = [models] if isinstance(models, str) else models
            out[name] = (data, [mod.CKPT + m for m in models], options)
    for name, (data, models) in test_legacy_and_backbones.CASES.items():
        out[name] = (data, list(models), {})
    out["single_instance__small_robot"] = ("datasets/small_robot.mp4",
                                           ["model_ckpts/minimal_instance_single_instance"], {})
    out["single_instance__small_robot_minimal"] = ("datasets/small_robot_minimal.slp",
                                                   ["model_ckpts/minimal_instance_single_instance"], {})
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runtimes", default="torch,onnx")
    parser.add_argument("--frames", default="0-299", help="frames of the video cases")
    parser.add_argument("--only", default="", help="comma-separated case names")
    args = parser.parse_args()
    last = int(args.frames.split("-")[1])
    selected = cases()
    if args.only:
        selected = {k: v for k, v in selected.items() if k in args.only.split(",")}
    print(f"{'case':<46}{'runtime':<11}{'count=':>8}{'p99 px':>10}{'max px':>10}{'score':>10}"
          f"{'pt score':>10}  ok   s")
    failed = 0
    for name, (data, models, options) in sorted(selected.items()):
        video = data.endswith(".mp4")
        for runtime in args.runtimes.split(","):
            start = time.perf_counter()
            name_, precision = parse_label(runtime)  # torch-bf16: torch at bf16
            labels = run_pipeline(data_path=str(ASSETS / data), frames=args.frames if video else None,
                                  model_paths=tuple(str(ASSETS / m) for m in models),
                                  runtime=name_, precision=precision, **options)
            report = compare_labels(labels, load_reference(REFERENCE, name),
                                    frames=range(last + 1) if video else None)
            try:
                report.assert_ok()
                ok = "yes"
            except AssertionError:
                ok, failed = "NO", failed + 1
            print(f"{name:<46}{runtime:<11}{report.count_equal_fraction:>8.3f}"
                  f"{report.keypoint_p99:>10.2e}{report.keypoint_max:>10.2e}"
                  f"{report.score_max_diff:>10.2e}{report.point_score_max_diff:>10.2e}  {ok:<3}"
                  f"{time.perf_counter() - start:>5.0f}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())

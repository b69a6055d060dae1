"""Peaks inside the runtime against peaks on the host: whole-graph frames/s per graph, ONNX Runtime, CPU.

For each graph, ``sleapflow bench``'s measurement (:func:`sleapflow.bench.harness.run_bench`,
warm-up excluded, no serial baseline) runs with the peak finding fused into the exported graph
and with ``--host_peaks`` (the runtime returns maps; torch finds the peaks), alternating
fused / maps / maps / fused ... so drift on a shared machine hits both alike. Graphs that
fp32 ONNX Runtime on the CPU runs on numpy arrays end to end (the torch-free path, what
``track`` does by default there; see ``sleapflow.graphs.common.host_arrays``) are also
measured on that path ("numpy"); the fused and maps runs then switch it off for the run, so
they measure what the exporting path does on other runtimes. The report quotes the median
frames/s of each, their ratios, and the busy time per frame of the forward and peak stages
(where the work moved). The export cache is warmed first, so no side pays an export.

Example (the command the RESULTS.md section names)::

    python benchmarks/bench_fused_peaks.py --rounds 3 --frames 300 --json bench_out/fused_peaks.json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
ASSETS = ROOT.parent / "shared" / "assets"
CKPT = "model_ckpts/minimal_instance_"
CLIP = "datasets/centered_pair_small.mp4"

#: Graph → (clip, model folders): the reference's own cases.
CASES: dict[str, tuple[str, tuple[str, ...]]] = {
    "single_instance": ("datasets/small_robot.mp4", ("single_instance",)),
    "centroid": (CLIP, ("centroid",)),
    "topdown": (CLIP, ("centroid", "centered_instance")),
    "bottomup": (CLIP, ("bottomup",)),
    "multiclass_bottomup": (CLIP, ("multiclass_bottomup",)),
    "multiclass_topdown": (CLIP, ("centroid", "multiclass_centered_instance")),
}

#: Stages whose busy time the peak finding moves between.
_FORWARD = ("forward", "centroid_forward", "instance_forward")
_PEAKS = ("peaks", "centroids", "crop", "instance_peaks", "paf_peaks", "classify")


def _busy_ms_per_frame(record: Any, names: tuple[str, ...]) -> float:
    frames = max(1, record.frames_measured)
    return 1000 * sum(s.busy_pct / 100 * s.wall_s for s in record.stages if s.name in names) / frames


@contextlib.contextmanager
def _numpy_path(on: bool) -> Iterator[None]:
    """With ``on`` False, no model takes the torch-free numpy path while the block runs."""
    from sleapflow.graphs import common

    kept = common.HOST_ARRAY_MODELS
    if not on:
        common.HOST_ARRAY_MODELS = ()
    try:
        yield
    finally:
        common.HOST_ARRAY_MODELS = kept


def has_numpy_path(graph: str) -> bool:
    """Whether ``graph``'s case, as built for fp32 ONNX Runtime on the CPU, runs every forward
    stage on numpy arrays."""
    from sleapflow.graphs.build import prepare
    from sleapflow.graphs.common import is_forward
    from sleapflow.options.config import InferenceConfig

    data, models = CASES[graph]
    cfg = InferenceConfig(data_path=str(ASSETS / data), device="cpu", runtime="onnx",
                          model_paths=tuple(str(ASSETS / f"{CKPT}{m}") for m in models))
    run = prepare(cfg)
    forwards = [s for s in run.graph.build(run.ctx, None) if is_forward(s)]
    return bool(forwards) and all(s.fn.host_arrays for s in forwards)


def measure(graph: str, *, frames: int, warmup: int, rounds: int, batch_size: int) -> dict[str, Any]:
    """Alternating fused / host-peaks (/ numpy) runs of ``graph``: medians and per-run figures."""
    from sleapflow.bench.harness import run_bench

    data, models = CASES[graph]

    def once(name: str, n: int = frames) -> Any:
        with _numpy_path(name == "numpy"):
            return run_bench(graph, data=str(ASSETS / data),
                             models=tuple(str(ASSETS / f"{CKPT}{m}") for m in models),
                             frames=n, warmup=min(warmup, n - 1), batch_size=batch_size,
                             serial=False, runtime="onnx", host_peaks=name == "maps")

    names = ("fused", "maps", "numpy") if has_numpy_path(graph) else ("fused", "maps")
    for name in names:  # fill the export cache: no side measures an export
        once(name, warmup + 2)
    runs: dict[str, list[Any]] = {name: [] for name in names}
    for i in range(rounds):
        for name in (names if i % 2 == 0 else names[::-1]):
            runs[name].append(once(name))
    out: dict[str, Any] = {"graph": graph, "frames": frames, "rounds": rounds}
    for name, recs in runs.items():
        out[name] = {
            "fps": statistics.median(r.graph_fps for r in recs),
            "fps_runs": [r.graph_fps for r in recs],
            "forward_busy_ms_per_frame": statistics.median(_busy_ms_per_frame(r, _FORWARD)
                                                           for r in recs),
            "peaks_busy_ms_per_frame": statistics.median(_busy_ms_per_frame(r, _PEAKS)
                                                         for r in recs),
            "loadavg": [r.loadavg for r in recs],
        }
    out["fused_over_maps"] = out["fused"]["fps"] / out["maps"]["fps"] if out["maps"]["fps"] else None
    if "numpy" in out:
        out["numpy_over_fused"] = (out["numpy"]["fps"] / out["fused"]["fps"]
                                   if out["fused"]["fps"] else None)
    first = runs["fused"][0]
    out["device_name"], out["versions"] = first.device_name, first.versions
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--graphs", default=",".join(CASES),
                        help=f"comma-separated, from {', '.join(CASES)}")
    parser.add_argument("--frames", type=int, default=300, help="frames per run, warm-up included")
    parser.add_argument("--warmup", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=3, help="fused/maps pairs per graph")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--json", type=Path, default=None, help="write every figure here")
    args = parser.parse_args(argv)
    graphs = [g for g in args.graphs.split(",") if g]
    unknown = [g for g in graphs if g not in CASES]
    if unknown:
        parser.error(f"unknown graph(s) {unknown}; choose from {', '.join(CASES)}")
    results = []
    print(f"{'graph':<22}{'fused fps':>11}{'maps fps':>11}{'ratio':>8}"
          f"{'fwd ms/f fused/maps':>22}{'peaks ms/f fused/maps':>24}"
          f"{'numpy fps':>11}{'/fused':>8}{'fwd+peaks ms/f numpy':>22}")
    for graph in graphs:
        r = measure(graph, frames=args.frames, warmup=args.warmup, rounds=args.rounds,
                    batch_size=args.batch_size)
        results.append(r)
        f, m = r["fused"], r["maps"]
        print(f"{graph:<22}{f['fps']:>11.1f}{m['fps']:>11.1f}{r['fused_over_maps']:>8.2f}"
              f"{f['forward_busy_ms_per_frame']:>11.2f}/{m['forward_busy_ms_per_frame']:<10.2f}"
              f"{f['peaks_busy_ms_per_frame']:>12.2f}/{m['peaks_busy_ms_per_frame']:<11.2f}"
              + (f"{r['numpy']['fps']:>11.1f}{r['numpy_over_fused']:>8.2f}"
                 f"{r['numpy']['forward_busy_ms_per_frame']:>11.2f}+"
                 f"{r['numpy']['peaks_busy_ms_per_frame']:<10.2f}" if "numpy" in r else
                 f"{'-':>11}{'-':>8}{'-':>22}"),
              flush=True)
    if results:
        from importlib.metadata import version

        print(f"device: {results[0]['device_name']}; onnxruntime {version('onnxruntime')}")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

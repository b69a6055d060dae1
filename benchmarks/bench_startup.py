"""Time to first pose: a whole ``track`` process on one frame, with a warm export cache.

    python benchmarks/bench_startup.py [--runs 7] [--model DIR] [--synthetic] [--data VIDEO] [--peer PATH]

Each run is a fresh process (``python -m sleapflow track``, or the reference's ``sleap-nn
track`` with ``--peer``) from start to exit, the one frame's .slp written: what a user waits for
on a short clip, and what every per-video process of a many-video job pays again. Tools
alternate run by run (the machine is shared; quote ratios). Before timing, one untimed run per
sleapflow runtime fills the export cache (a private folder), so ``onnx`` is the warm start,
and the bytecode cache (``PYTHONPYCACHEPREFIX``, a private folder), as an installed package has.
``--synthetic`` writes a tiny single-instance model without input scaling (its preprocessing
needs no resize); the default model is the shared test model, whose input size match and
scale 0.5 resize every frame (with the numpy copy of torch's kernel on the torch-free path).
``--data`` tracks the first frame of a real clip instead of the synthetic one: a bottom-up
model then finds animals, so the run includes its PAF scoring and grouping, e.g.
``--model ../shared/assets/model_ckpts/minimal_instance_bottomup --data
../shared/assets/datasets/centered_pair_small.mp4``. The table says whether each run imported
torch. A last row, "libraries only", is a process that imports just the third-party modules a
warm-cache run loads (see ``_FLOOR``) and exits: the part of the figure that sleapflow's own
code cannot remove.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_MODEL = ROOT.parent / "shared" / "assets" / "model_ckpts" / "minimal_instance_single_instance"
PEER = Path.home() / "sleapnn-peer" / "bin" / "sleap-nn"

#: ``python -m sleapflow``, plus one line saying whether torch was imported (after the output
#: is written, so the figure includes everything the command does).
_WRAPPER = ("import sys\nfrom sleapflow.cli.app import main\nrc = main(sys.argv[1:])\n"
            "print('TORCH_LOADED=' + str('torch' in sys.modules), file=sys.stderr)\nsys.exit(rc)\n")


#: The third-party modules a warm-cache ONNX Runtime ``track`` run cannot do without: arrays,
#: the runtime, the decoder, sleap-io's labels and .slp writer (with the HDF5 library, and the
#: aiohttp that sleap-io 0.9.5's video module imports to check its version), the event loop, the
#: CLI parser, logging, configs.
_FLOOR = ("import numpy, onnxruntime, av, h5py, anyio, asyncio, msgspec, yaml, cyclopts, structlog\n"
          "import sleap_io.model.video, sleap_io.io.slp\n")


def _run(cmd: list[str], env: dict[str, str]) -> tuple[float, bool | None]:
    start = time.perf_counter()
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, check=False)
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"failed ({result.returncode}): {' '.join(cmd)}\n{result.stderr[-2000:]}")
    torch = None
    for line in result.stderr.splitlines():
        if line.startswith("TORCH_LOADED="):
            torch = line.endswith("True")
    return elapsed, torch


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    parser.add_argument("--synthetic", action="store_true",
                        help="a tiny single-instance model without input scaling, written here")
    parser.add_argument("--data", type=Path, default=None,
                        help="a video whose first frame is tracked (default: a synthetic 320x560 clip)")
    parser.add_argument("--runtimes", default="onnx,torch",
                        help="sleapflow runtimes to time, comma-separated")
    parser.add_argument("--peer", type=Path, default=None,
                        help=f"the reference's sleap-nn executable (e.g. {PEER})")
    args = parser.parse_args()

    sys.path.insert(0, str(ROOT))
    from sleapflow.testing import write_synthetic_model, write_synthetic_video

    with tempfile.TemporaryDirectory() as tmp:
        tmpdir = Path(tmp)
        model = args.model
        if args.synthetic:
            model = write_synthetic_model(tmpdir / "model", "single_instance", n_nodes=8,
                                          filters=16, max_stride=16, scale=1.0)
        # Two frames, the first predicted: sleap-io reports a one-frame MPEG-4 clip as empty,
        # which the reference refuses to read.
        clip = args.data.resolve() if args.data is not None else write_synthetic_video(
            tmpdir / "one.mp4", n_frames=2, height=320, width=560)
        env = {**os.environ, "SLEAPFLOW_CACHE_DIR": str(tmpdir / "cache"),
               "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
               # Bytecode cached (outside the checkout) as an installed package has it: with
               # PYTHONDONTWRITEBYTECODE every run would compile sleapflow's sources again.
               "PYTHONPYCACHEPREFIX": str(tmpdir / "pycache")}
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        tools: dict[str, list[str]] = {}
        for runtime in args.runtimes.split(","):
            tools[f"sleapflow {runtime}"] = [
                sys.executable, "-c", _WRAPPER, "track", "-i", str(clip), "--frames", "0", "-m", str(model),
                "--device", "cpu", "--runtime", runtime, "-o", str(tmpdir / f"{runtime}.slp")]
        if args.peer is not None:
            tools["sleap-nn track"] = [str(args.peer), "track", "-i", str(clip), "--frames", "0",
                                       "-m", str(model),
                                       "--device", "cpu", "-o", str(tmpdir / "peer.slp")]
        tools["libraries only"] = [sys.executable, "-c", _FLOOR]
        for cmd in tools.values():  # warm-up: fills the export cache, warms the page cache
            _run(cmd, env)
        times: dict[str, list[float]] = {name: [] for name in tools}
        loaded: dict[str, set[bool | None]] = {name: set() for name in tools}
        for _ in range(args.runs):
            for name, cmd in tools.items():
                seconds, torch = _run(cmd, env)
                times[name].append(seconds)
                loaded[name].add(torch)
    frame = (f"frame 0 of {args.data}" if args.data is not None else
             "one 320x560 frame (--frames 0 of a two-frame clip)")
    print(f"model {model if not args.synthetic else 'synthetic (scale 1.0)'}; {frame}; "
          f"{args.runs} runs each, alternating; load average {os.getloadavg()[0]:.1f}")
    print(f"{'tool':<20} {'median s':>9} {'min s':>7} {'max s':>7}  torch imported")
    for name, values in times.items():
        flag = "n/a" if loaded[name] == {None} else ", ".join(sorted(
            "yes" if v else "no" for v in loaded[name] if v is not None))
        print(f"{name:<20} {statistics.median(values):>9.2f} {min(values):>7.2f} "
              f"{max(values):>7.2f}  {flag}")
    if "sleap-nn track" in times:
        base = statistics.median(times["sleap-nn track"])
        for name, values in times.items():
            if name not in ("sleap-nn track", "libraries only"):
                print(f"{name}: {base / statistics.median(values):.1f}x faster than sleap-nn track")
    return 0


if __name__ == "__main__":
    sys.exit(main())

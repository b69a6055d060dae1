"""Sequential decode throughput on a generated 1024x1024 H.264 clip: sleapflow vs OpenCV.

    python benchmarks/bench_decode.py [--frames 300] [--runs 3] [--colour]

Generates the clip (grayscale, or tinted with ``--colour``; yuv420p, B-frames; not committed),
then alternates, run by run: sleapflow's reader (``PyAVReader.read(i)`` for i in order, the
decode stage's calls), OpenCV's ``VideoCapture.read()`` loop, and plain PyAV
``to_ndarray("rgb24")`` (the previous path). Prints frames/s per run and the median ratio sleapflow / OpenCV.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path


def _sleapflow(path: str, n: int) -> float:
    from sleapflow.inputs import PyAVReader

    start = time.perf_counter()
    reader = PyAVReader(path)
    for i in range(n):
        assert reader.read(i) is not None
    reader.close()
    return n / (time.perf_counter() - start)


def _opencv(path: str, n: int) -> float:
    import cv2

    start = time.perf_counter()
    cap = cv2.VideoCapture(path)
    for _ in range(n):
        ok, _frame = cap.read()
        assert ok
    cap.release()
    return n / (time.perf_counter() - start)


def _pyav_rgb(path: str, n: int) -> float:
    import av

    start = time.perf_counter()
    with av.open(path) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for i, frame in enumerate(container.decode(stream)):
            frame.to_ndarray(format="rgb24")
            if i + 1 == n:
                break
    return n / (time.perf_counter() - start)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--clip", default=None, help="use this clip instead of generating one")
    parser.add_argument("--colour", action="store_true", help="a colour clip (the RGB path)")
    args = parser.parse_args()
    from sleapflow.testing import write_gray_h264

    with tempfile.TemporaryDirectory() as tmp:
        clip = args.clip or str(write_gray_h264(Path(tmp) / "clip1024.mp4", n_frames=args.frames,
                                                        colour=args.colour))
        results: dict[str, list[float]] = {"sleapflow": [], "opencv": [], "pyav_rgb24": []}
        print(f"clip {clip}: {args.frames} frames; load average {os.getloadavg()[0]:.1f}")
        for run in range(args.runs):
            for name, fn in (("sleapflow", _sleapflow), ("opencv", _opencv), ("pyav_rgb24", _pyav_rgb)):
                fps = fn(clip, args.frames)
                results[name].append(fps)
                print(f"run {run}  {name:<11}{fps:8.1f} frames/s", flush=True)
        ratios = [a / b for a, b in zip(results["sleapflow"], results["opencv"])]
        for name, values in results.items():
            print(f"median {name:<11}{statistics.median(values):8.1f} frames/s")
        print(f"sleapflow / opencv per run: {' '.join(f'{r:.2f}' for r in ratios)}; "
              f"median {statistics.median(ratios):.2f}; load average {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""The tail of a Ray run: ten videos, one ten times longer than the rest, handed out in arrival
order (the long one last) against longest first, and longest first with long videos cut into
chunks (the default), wall time of each run on one local Ray instance.

Usage: PYTHONPATH=. python benchmarks/ray_tail.py WORKDIR [--frames 20] [--workers 2]
       [--rounds 1] [--num_cpus 2] [--address HOST:PORT]
Clips are cut from the reference video (``centered_pair_small.mp4``) and re-encoded; the models
are the minimal top-down pair of the test assets. Prints one JSON line per run and a summary.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
ASSETS = REPO.parent / "shared/assets"
SOURCE = ASSETS / "datasets/centered_pair_small.mp4"
MODELS = (ASSETS / "model_ckpts/minimal_instance_centroid",
          ASSETS / "model_ckpts/minimal_instance_centered_instance")


def cut(dest: Path, start: int, n_frames: int) -> Path:
    """``n_frames`` frames of the reference video from ``start``, re-encoded (kept if there)."""
    import av

    if dest.exists():
        return dest
    frames = []
    with av.open(str(SOURCE)) as container:
        for i, frame in enumerate(container.decode(video=0)):
            if i >= start:
                frames.append(frame.to_ndarray(format="rgb24"))
            if len(frames) == n_frames:
                break
    with av.open(str(dest), "w") as out:
        stream = out.add_stream("mpeg4", rate=25)
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt, stream.options = "yuv420p", {"qscale": "2"}
        for image in frames:
            out.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        out.mux(stream.encode())
    return dest


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("workdir", type=Path)
    ap.add_argument("--frames", type=int, default=20, help="frames of each short video")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--num_cpus", type=int, default=2)
    ap.add_argument("--address", default=None)
    args = ap.parse_args()
    load = os.getloadavg()
    work: Path = args.workdir
    work.mkdir(parents=True, exist_ok=True)
    n = args.frames
    # Nine short videos, then the long one: in arrival order it is handed out last.
    clips = [cut(work / f"v{k:02d}.mp4", 40 * k, n) for k in range(9)]
    clips.append(cut(work / "v09_long.mp4", 400, 10 * n))

    import ray

    from sleapflow.jobs.ray_runner import run

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    with contextlib.ExitStack() as stack:
        address = args.address
        if address is None:
            # The tests' loopback head node (``ray start --head``), not ``ray.init()``: a new
            # ray.init() instance turns on token auth and writes ~/.ray/auth_token, which every
            # later ``ray start`` on the machine then requires of its clients.
            sys.path.insert(0, str(REPO / "tests/many"))
            from ray_cluster import ray_cluster

            address, _ = stack.enter_context(ray_cluster(num_cpus=args.num_cpus))
        ray.init(address=address, log_to_driver=False, logging_level="ERROR")
        times = measure(run, clips, args, work)
        ray.shutdown()
    print(f"10 videos (9 x {n} frames + 1 x {10 * n}), {args.workers} workers, "
          f"load average before: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    for name, walls in times.items():
        print(f"  {name:<48} " + "  ".join(f"{w:6.1f} s" for w in walls))


def measure(run: Any, clips: list[Path], args: argparse.Namespace,
            work: Path) -> dict[str, list[float]]:
    """Wall time of each variant, the variants alternating within each round."""
    variants: list[tuple[str, dict[str, Any]]] = [
        ("arrival order, whole videos", {"order": "arrival", "chunk_frames": 10**9}),
        ("longest first, whole videos", {"order": "longest", "chunk_frames": 10**9}),
        ("longest first, long videos chunked (default)", {"order": "longest"}),
    ]
    # Warm-up, not timed: the first run on a machine exports and caches the models' ONNX files.
    run([str(clips[0])], [str(m) for m in MODELS],
        {"device": "cpu", "batch_size": 4, "output_path": f"{work / 'warmup'}/"}, workers=1)
    times: dict[str, list[float]] = {name: [] for name, _ in variants}
    for r in range(args.rounds):
        for k, (name, kwargs) in enumerate(variants):
            out = work / f"out-{r}-{k}"
            start = time.perf_counter()
            videos = run([str(c) for c in clips], [str(m) for m in MODELS],
                         {"device": "cpu", "batch_size": 4, "output_path": f"{out}/"},
                         workers=args.workers, **kwargs)
            wall = time.perf_counter() - start
            assert all(v.status == "done" for v in videos), [v.error for v in videos]
            times[name].append(wall)
            print(json.dumps({"round": r, "variant": name, "wall_s": round(wall, 2),
                              "frames": sum(v.frames for v in videos)}), flush=True)
    return times


if __name__ == "__main__":
    main()

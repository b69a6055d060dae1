"""Many videos: per-video processes vs one multi-input call, and the Ray runner with 1 and 2 workers.

Usage: python benchmarks/bench_many.py WORKDIR [--videos 10] [--frames 300] [--ray_videos 4]
Writes synthetic clips (moving blobs, 320x560) and runs the minimal single-instance model on them.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from sleapflow.testing import write_synthetic_video

REPO = Path(__file__).resolve().parents[1]
MODEL = REPO.parent / "shared/assets/model_ckpts/minimal_instance_single_instance"


def timed(cmd: list[str]) -> float:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    start = time.perf_counter()
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("workdir", type=Path)
    ap.add_argument("--videos", type=int, default=10)
    ap.add_argument("--frames", type=int, default=300)
    ap.add_argument("--ray_videos", type=int, default=4)
    ap.add_argument("--ray_address", default=None)
    args = ap.parse_args()
    work = args.workdir
    work.mkdir(parents=True, exist_ok=True)
    clips = []
    for k in range(args.videos):
        path = work / f"clip{k:02d}.mp4"
        if not path.exists():
            write_synthetic_video(path, n_frames=args.frames, height=320, width=560, seed=k)
        clips.append(str(path))
    track = [sys.executable, "-m", "sleapflow.cli.app", "track", "-m", str(MODEL), "--device", "cpu"]
    record: dict = {"videos": args.videos, "frames": args.frames}
    # A one-frame run: the fixed cost of a process (imports, model load, graph start-up).
    record["one_frame_process_s"] = timed([*track, "-i", clips[0], "--frames", "0",
                                           "-o", str(work / "one.slp")])
    record["per_video_processes_s"] = sum(
        timed([*track, "-i", c, "-o", str(work / "single" / Path(c).name)]) for c in clips)
    record["multi_input_call_s"] = timed([*track, *[a for c in clips for a in ("-i", c)],
                                          "-o", f"{work / 'multi'}/"])
    if args.ray_address:
        ray_clips = [a for c in clips[: args.ray_videos] for a in ("-i", c)]
        for workers in (1, 2):
            record[f"ray_{workers}_workers_s"] = timed(
                [*track, *ray_clips, "-o", f"{work / f'ray{workers}'}/", "--ray", args.ray_address,
                 "--ray_workers", str(workers)])
        record["ray_frames"] = args.ray_videos * args.frames
    print(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()

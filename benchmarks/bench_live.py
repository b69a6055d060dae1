"""Capture-to-pose latency of a live stream: a 30 fps clip sent over UDP loopback in real time.

    python benchmarks/bench_live.py [--graph single_instance topdown] [--seconds 20] [--runs 1]

For each graph: the clip (``small_robot.mp4`` for single-instance, ``centered_pair_small.mp4``
for top-down, from ../shared/assets, re-encoded as low-delay MPEG-TS; not committed) is streamed
over ``udp://127.0.0.1`` at its frame rate, looping for ``--seconds``, into ``sleapflow track
-i udp://... --publish -``; each frame's latency (result time minus capture time, from its
published message) is collected, the first ``--warmup`` frames left out (model warm-up, the
stream's probe). Beside it, ``sleapflow bench GRAPH --batch_size 1`` on the same clip and models
gives the batch-1 forward-only time of the graph's runtime. Prints p50/p95/p99, frames dropped,
and the issue's target (p99 <= 1.5 x forward + 5 ms). ``--tiny`` is a seconds-long check that the
script runs.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
ASSETS = ROOT.parent / "shared" / "assets"
sys.path.insert(0, str(ROOT / "tests" / "live"))

from live_helpers import free_port, stream_packets, wait_udp_bound, write_ts_clip  # noqa: E402

GRAPHS: dict[str, tuple[str, list[str]]] = {
    "single_instance": ("small_robot.mp4", ["minimal_instance_single_instance"]),
    "topdown": ("centered_pair_small.mp4", ["minimal_instance_centroid",
                                            "minimal_instance_centered_instance"]),
}
WHOLE = (slice(None), slice(None))


def _models(graph: str) -> list[str]:
    return [str(ASSETS / "model_ckpts" / m) for m in GRAPHS[graph][1]]


def _forward_ms(graph: str, clip: Path, frames: int, extra: list[str]) -> tuple[float, str]:
    """Batch-1 forward-only ms per frame of the graph's runtime, from ``sleapflow bench``."""
    with tempfile.TemporaryDirectory() as tmp:
        record_path = Path(tmp) / "bench.json"
        cmd = [sys.executable, "-m", "sleapflow", "bench", graph, "-i", str(clip),
               *(a for m in _models(graph) for a in ("-m", m)), "--batch_size", "1",
               "--frames", str(frames), "--warmup", str(min(20, frames // 4)),
               "--json", str(record_path), *extra]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, env=_env())
        record = json.loads(record_path.read_text())
    fps = record["forward_limit_by_runtime"][record["runtime"]]
    return 1000.0 / fps, record["runtime"]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT)}


def _live_run(graph: str, clip: Path, loops: int, warmup: int,
              extra: list[str]) -> dict[str, Any]:
    """One live run: the latencies of the frames after ``warmup``, and the run's drops."""
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "sleapflow", "track", "-i", f"udp://127.0.0.1:{port}",
               *(a for m in _models(graph) for a in ("-m", m)), "-o", str(Path(tmp) / "live.slp"),
               "--publish", "-", "--stream_timeout", "2", *extra]
        messages: list[dict[str, Any]] = []
        with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                              env=_env()) as proc:
            assert proc.stdout is not None

            def send() -> None:
                wait_udp_bound(port, timeout=120)
                stream_packets(clip, f"udp://127.0.0.1:{port}?pkt_size=1316", loops=loops)

            sender = threading.Thread(target=send, daemon=True)
            sender.start()
            for line in proc.stdout:
                messages.append(json.loads(line))
            proc.wait()
            sender.join()
    poses = [m for m in messages if m["type"] == "poses"]
    end = messages[-1] if messages and messages[-1]["type"] == "end" else {"dropped": None}
    kept = [m["latency_ms"] for m in poses if m["seq"] >= warmup]
    return {"frames": len(poses), "timed": len(kept), "dropped": end["dropped"],
            "latencies": kept}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--graph", nargs="+", default=list(GRAPHS), choices=list(GRAPHS))
    parser.add_argument("--seconds", type=float, default=20.0, help="Stream length per run.")
    parser.add_argument("--warmup", type=int, default=30, help="Frames left out at the start.")
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--runtime", default=None, help="--runtime for track and bench.")
    parser.add_argument("--tiny", action="store_true", help="A few seconds: checks the script.")
    args = parser.parse_args()
    if args.tiny:
        args.seconds, args.warmup, args.runs = 2.0, 5, 1
    extra = ["--runtime", args.runtime] if args.runtime else []
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for graph in args.graph:
            video, _ = GRAPHS[graph]
            n = 60 if args.tiny else 150
            clip = write_ts_clip(ASSETS / "datasets" / video, Path(tmp) / f"{graph}.ts", n,
                                 crop=WHOLE)
            loops = max(1, round(args.seconds * 30 / n))
            forward, runtime = _forward_ms(graph, clip, 40 if args.tiny else n, extra)
            runs = [_live_run(graph, clip, loops, args.warmup, extra) for _ in range(args.runs)]
            lat = np.asarray([v for r in runs for v in r["latencies"]], dtype=np.float64)
            p50, p95, p99 = (float(v) for v in np.percentile(lat, (50, 95, 99))) if lat.size \
                else (float("nan"),) * 3
            target = 1.5 * forward + 5.0
            rows.append((graph, runtime, forward, p50, p95, p99, target,
                         statistics.median(r["dropped"] or 0 for r in runs),
                         sum(r["frames"] for r in runs), int(lat.size)))
    print(f"{'graph':<16}{'runtime':<9}{'fwd b1 ms':>10}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}"
          f"{'target':>9}{'dropped':>9}{'frames':>8}{'timed':>7}")
    for g, rt, fwd, p50, p95, p99, target, dropped, frames, timed in rows:
        mark = "ok" if p99 <= target else "over"
        print(f"{g:<16}{rt:<9}{fwd:>10.1f}{p50:>9.1f}{p95:>9.1f}{p99:>9.1f}{target:>9.1f}"
              f"{dropped:>9}{frames:>8}{timed:>7}  {mark}")
    print(f"load average {os.getloadavg()[0]:.1f}; stream 30 fps over udp loopback, MPEG-TS")
    return 0


if __name__ == "__main__":
    sys.exit(main())

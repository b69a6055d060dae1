"""Several camera-like websocket streams at once through `sleapflow serve` (optionally tracked):
each stream's latency, from the client and from the server's own per-stream figures.

Each stream sends raw frames at ``--fps`` (a camera: frame k leaves at start + k/fps) for
``--seconds``; the client measures send -> reply; ``/v1/stats`` gives the server's
``arrival_to_result_ms`` p50/p95/p99 per stream. A warm-up stream runs first and is left out.
Uses the load generator's server wrapper and websocket client (serve_load.py, same folder).

    python benchmarks/serve_streams.py --streams 4 --fps 30 --seconds 30 --model topdown \
        -- --tracking --runtime auto
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from serve_load import SHARED, Server, pct, server_stats, ws_client

MODELS = {
    "single": (["model_ckpts/minimal_instance_single_instance"], "datasets/small_robot.mp4"),
    "topdown": (["model_ckpts/minimal_instance_centroid",
                 "model_ckpts/minimal_instance_centered_instance"], "datasets/centered_pair_small.mp4"),
}


def _frames(clip: Path, n: int) -> list[Any]:
    from sleapflow.inputs import PyAVReader

    reader = PyAVReader(str(clip))
    try:
        return [reader.read(i) for i in range(n)]
    finally:
        reader.close()


async def _streams(url: str, frames: list[Any], n: int, fps: float, seconds: float
                   ) -> list[dict[str, Any]]:
    deadline = time.perf_counter() + seconds
    per: list[tuple[list[float], list[float]]] = [([], []) for _ in range(n)]
    counts = await asyncio.gather(*(ws_client(url, frames, deadline, fps=fps, window=64,
                                              client_ms=c, server_ms=s) for c, s in per))
    return [{"frames": k, "client_p50_ms": round(pct(c, 50), 1),
             "client_p99_ms": round(pct(c, 99), 1), "server_p50_ms": round(pct(s, 50), 1),
             "server_p99_ms": round(pct(s, 99), 1)} for k, (c, s) in zip(counts, per)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=4)
    parser.add_argument("--fps", type=float, default=30)
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--model", choices=sorted(MODELS), default="topdown")
    parser.add_argument("--json", default=None)
    parser.add_argument("server_args", nargs="*", help="after --: extra `sleapflow serve` options")
    args = parser.parse_args()
    models, clip = MODELS[args.model]
    frames = _frames(SHARED / clip, 64)
    server = Server([*(a for m in models for a in ("-m", str(SHARED / m))), "--device", "cpu",
                     *args.server_args])
    print(server.banner, flush=True)
    out: dict[str, Any] = {"streams": args.streams, "fps": args.fps, "seconds": args.seconds,
                           "model": args.model, "server_args": args.server_args,
                           "loadavg_start": os.getloadavg()[0]}
    try:
        asyncio.run(_streams(server.url, frames, 1, args.fps, min(3.0, args.seconds)))  # warm-up
        out["clients"] = asyncio.run(_streams(server.url, frames, args.streams, args.fps,
                                              args.seconds))
        stats = server_stats(server.url)
        # The warm-up stream is the first one the server saw; the measured ones follow it.
        out["server_streams"] = [s for s in stats["streams"] if s["id"] > 0]
        out["mean_batch_size"] = stats["server"]["mean_batch_size"]
    finally:
        out["server_exit"] = server.stop()
    out["loadavg_end"] = os.getloadavg()[0]
    print(json.dumps(out, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

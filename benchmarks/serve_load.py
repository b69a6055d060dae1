"""Bounded loopback load for `sleapflow serve`: throughput, fixed-rate websocket latency, peak RSS.

Starts the server itself on 127.0.0.1 (an ephemeral port) so it can sample the server's RSS,
then runs a fixed number of clients for a fixed time, each with a bounded number of frames in
flight, and stops the server with SIGTERM. Nothing but loopback is ever used.

    python benchmarks/serve_load.py throughput --clients 1,8 --seconds 10 --rounds 2 \
        --baseline "--batch_size 1"      # side by side with a server that never batches
    python benchmarks/serve_load.py latency --fps 30 --seconds 30
    python benchmarks/serve_load.py soak --clients 8 --seconds 60
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psutil
from websockets.asyncio.client import connect

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "assets"
MODEL = SHARED / "model_ckpts/minimal_instance_single_instance"
CLIP = SHARED / "datasets/small_robot.mp4"


class Server:
    """`sleapflow serve` on 127.0.0.1:0 in a subprocess, with a thread sampling its RSS."""

    def __init__(self, args: list[str]) -> None:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(
            p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)}
        self.proc = subprocess.Popen(
            [sys.executable, "-c", "import sys; from sleapflow.cli.app import main; sys.exit(main())",
             "serve", "--host", "127.0.0.1", "--port", "0", *args],
            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env)
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            if "listening on http://" in line:
                self.url = line.split("listening on ")[1].split()[0]
                self.banner = line.strip()
                break
        else:
            raise SystemExit("the server did not start")
        threading.Thread(target=self.proc.stderr.read, daemon=True).start()
        self.rss = psutil.Process(self.proc.pid)
        self.rss_start = self.rss.memory_info().rss
        self.rss_peak = self.rss_start
        self.rss_samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        threading.Thread(target=self._sample, daemon=True).start()

    def _sample(self) -> None:
        t0 = time.perf_counter()
        while not self._stop.wait(0.2):
            rss = self.rss.memory_info().rss
            self.rss_peak = max(self.rss_peak, rss)
            self.rss_samples.append((time.perf_counter() - t0, rss))

    def stop(self) -> int:
        self._stop.set()
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=120)


def load_frames(n: int) -> list[np.ndarray]:
    from sleapflow.inputs import PyAVReader

    reader = PyAVReader(str(CLIP))
    try:
        return [reader.read(i) for i in range(n)]
    finally:
        reader.close()


def server_stats(url: str) -> dict[str, Any]:
    return httpx.get(f"{url}/v1/stats", timeout=30).json()


def batch_counts(stats: dict[str, Any]) -> tuple[int, int]:
    """(frames, forward batches) so far."""
    by = {s["name"]: s for s in stats["stages"]}
    return by["batch"]["items_in"], by["forward"]["items_in"]


async def http_client(url: str, frames: list[np.ndarray], deadline: float,
                      latencies: list[float]) -> tuple[int, int]:
    """Closed loop: one request at a time (raw pixels), until the deadline. (ok, busy)."""
    ok = busy = 0
    shape = ",".join(map(str, frames[0].shape))
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        i = 0
        while time.perf_counter() < deadline:
            t = time.perf_counter()
            r = await client.post("/v1/predict", params={"shape": shape},
                                  content=frames[i % len(frames)].tobytes())
            if r.status_code == 200:
                ok += 1
                latencies.append(time.perf_counter() - t)
            elif r.status_code == 503:
                busy += 1
                await asyncio.sleep(float(r.headers.get("retry-after", "1")))
            else:
                raise SystemExit(f"unexpected {r.status_code}: {r.text}")
            i += 1
    return ok, busy


async def ws_client(url: str, frames: list[np.ndarray], deadline: float, *, fps: float | None,
                    window: int, client_ms: list[float], server_ms: list[float]) -> int:
    """Streams raw frames (at ``fps``, or as fast as ``window`` frames in flight allow)."""
    ws_url = url.replace("http://", "ws://") + "/v1/stream"
    sent_at: dict[int, float] = {}
    room = asyncio.Semaphore(window)
    received = 0
    async with connect(ws_url, max_size=None, compression=None) as ws:
        await ws.send(json.dumps({"shape": list(frames[0].shape)}))

        async def reader(total: list[int]) -> None:
            nonlocal received
            while total[0] < 0 or received < total[0]:
                reply = json.loads(await ws.recv())
                if "error" in reply:
                    raise SystemExit(f"stream error: {reply}")
                client_ms.append((time.perf_counter() - sent_at.pop(reply["seq"])) * 1000)
                server_ms.append(reply["latency_ms"])
                received += 1
                room.release()

        total = [-1]
        task = asyncio.create_task(reader(total))
        seq = 0
        start = time.perf_counter()
        while time.perf_counter() < deadline:
            if fps is not None:  # a camera: frame k leaves at start + k / fps, never early
                await asyncio.sleep(max(0.0, start + seq / fps - time.perf_counter()))
            await room.acquire()
            sent_at[seq] = time.perf_counter()
            await ws.send(frames[seq % len(frames)].tobytes())
            seq += 1
        total[0] = seq
        await task
    return received


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


def cpu_s(proc: psutil.Process) -> float:
    times = proc.cpu_times()
    return times.user + times.system


async def run_throughput(server: Server, frames: list[np.ndarray], clients: int, seconds: float,
                         kind: str) -> dict[str, Any]:
    url = server.url
    before = batch_counts(server_stats(url))
    me = psutil.Process()
    cpu0 = (cpu_s(server.rss), cpu_s(me))
    deadline = time.perf_counter() + seconds
    t0 = time.perf_counter()
    latencies: list[float] = []
    if kind == "http":
        results = await asyncio.gather(*(http_client(url, frames, deadline, latencies)
                                         for _ in range(clients)))
        done = sum(ok for ok, _ in results)
        busy = sum(b for _, b in results)
    else:
        client_ms: list[float] = []
        server_ms: list[float] = []
        counts = await asyncio.gather(*(ws_client(url, frames, deadline, fps=None, window=8,
                                                  client_ms=client_ms, server_ms=server_ms)
                                        for _ in range(clients)))
        done, busy = sum(counts), 0
        latencies = [ms / 1000 for ms in client_ms]
    wall = time.perf_counter() - t0
    after = batch_counts(server_stats(url))
    cpu1 = (cpu_s(server.rss), cpu_s(me))
    n_frames, n_batches = after[0] - before[0], after[1] - before[1]
    return {"kind": kind, "clients": clients, "frames": done, "busy_503": busy,
            "wall_s": round(wall, 2), "fps": round(done / wall, 1),
            # Where the two cores went: the server's and this load generator's CPU seconds.
            "server_cpu_s": round(cpu1[0] - cpu0[0], 2), "client_cpu_s": round(cpu1[1] - cpu0[1], 2),
            "mean_batch": round(n_frames / n_batches, 2) if n_batches else None,
            "latency_p50_ms": round(pct(latencies, 50) * 1000, 1),
            "latency_p99_ms": round(pct(latencies, 99) * 1000, 1)}


async def run_latency(url: str, frames: list[np.ndarray], fps: float, seconds: float
                      ) -> dict[str, Any]:
    client_ms: list[float] = []
    server_ms: list[float] = []
    deadline = time.perf_counter() + seconds
    before = batch_counts(server_stats(url))
    n = await ws_client(url, frames, deadline, fps=fps, window=64, client_ms=client_ms,
                        server_ms=server_ms)
    after = batch_counts(server_stats(url))
    return {"fps_in": fps, "frames": n, "seconds": seconds,
            "client_p50_ms": round(pct(client_ms, 50), 1),
            "client_p99_ms": round(pct(client_ms, 99), 1),
            "server_p50_ms": round(pct(server_ms, 50), 1),
            "server_p99_ms": round(pct(server_ms, 99), 1),
            "mean_batch": round((after[0] - before[0]) / max(1, after[1] - before[1]), 2)}


async def run_soak(url: str, frames: list[np.ndarray], clients: int, seconds: float,
                   server: Server) -> dict[str, Any]:
    """``clients`` closed-loop HTTP clients plus one 30 frames/s websocket, for ``seconds``."""
    deadline = time.perf_counter() + seconds
    latencies: list[float] = []
    client_ms: list[float] = []
    server_ms: list[float] = []
    rss_before = server.rss.memory_info().rss
    results = await asyncio.gather(
        *(http_client(url, frames, deadline, latencies) for _ in range(clients)),
        ws_client(url, frames, deadline, fps=30, window=64, client_ms=client_ms,
                  server_ms=server_ms))
    http_done = sum(ok for ok, _ in results[:-1])
    busy = sum(b for _, b in results[:-1])
    samples = [rss for t, rss in server.rss_samples]
    third = max(1, len(samples) // 3)
    return {"clients": clients, "seconds": seconds, "http_frames": http_done,
            "ws_frames": results[-1], "busy_503": busy,
            "rss_start_mib": round(server.rss_start / 2**20, 1),
            "rss_before_load_mib": round(rss_before / 2**20, 1),
            "rss_peak_mib": round(server.rss_peak / 2**20, 1),
            "rss_first_third_max_mib": round(max(samples[:third]) / 2**20, 1),
            "rss_last_third_max_mib": round(max(samples[-third:]) / 2**20, 1),
            "ws_p50_ms": round(pct(client_ms, 50), 1), "ws_p99_ms": round(pct(client_ms, 99), 1),
            # RSS every ~5 s, to see whether it levels off or keeps climbing.
            "rss_series_mib": [round(rss / 2**20) for rss in samples[::25]]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=["throughput", "latency", "soak"])
    parser.add_argument("--clients", default="1,8", help="comma list (throughput) or a count")
    parser.add_argument("--kind", default="http,ws", help="throughput: http and/or ws clients")
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--fps", type=float, default=30)
    parser.add_argument("--rounds", type=int, default=1, help="alternate the client counts")
    parser.add_argument("--json", default=None)
    parser.add_argument("--baseline", default=None,
                        help="throughput: also run a second server with these serve options "
                             "(e.g. '--batch_size 1'), alternating with the first run by run")
    parser.add_argument("server_args", nargs="*", help="after --: extra `sleapflow serve` options")
    args = parser.parse_args()
    frames = load_frames(64)
    servers = {"main": Server(["-m", str(MODEL), "--device", "cpu", *args.server_args])}
    if args.baseline and args.mode == "throughput":
        servers["baseline"] = Server(["-m", str(MODEL), "--device", "cpu", *args.server_args,
                                      *args.baseline.split()])
    server = servers["main"]
    for s in servers.values():
        print(s.banner, flush=True)
    out: dict[str, Any] = {"mode": args.mode, "server_args": args.server_args,
                           "baseline": args.baseline, "loadavg_start": os.getloadavg()[0],
                           "runs": []}
    try:
        # Warm-up: first forward passes are slower (allocations, lazy imports).
        for s in servers.values():
            asyncio.run(run_throughput(s, frames, 2, 3, "http"))
        if args.mode == "throughput":
            for _ in range(args.rounds):
                for kind in args.kind.split(","):
                    for clients in (int(c) for c in args.clients.split(",")):
                        for name, s in servers.items():
                            rec = {"server": name, **asyncio.run(
                                run_throughput(s, frames, clients, args.seconds, kind))}
                            print(json.dumps(rec), flush=True)
                            out["runs"].append(rec)
        elif args.mode == "latency":
            rec = asyncio.run(run_latency(server.url, frames, args.fps, args.seconds))
            print(json.dumps(rec), flush=True)
            out["runs"].append(rec)
        else:
            rec = asyncio.run(run_soak(server.url, frames, int(args.clients.split(",")[-1]),
                                       args.seconds, server))
            print(json.dumps(rec), flush=True)
            out["runs"].append(rec)
        out["final_stats"] = server_stats(server.url)
    finally:
        codes = [s.stop() for s in servers.values()]
    code = max(codes)
    out["loadavg_end"] = os.getloadavg()[0]
    out["server_exit"] = code
    print(f"server exit {code}; load average {out['loadavg_start']:.1f} -> "
          f"{out['loadavg_end']:.1f}; mean batch overall "
          f"{out.get('final_stats', {}).get('server', {}).get('mean_batch_size')}")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Simulated live latency mode: which waiting frames a graph slower (or faster) than the stream
should take, by the age at which a waiting frame is passed over for the next one.

    python benchmarks/freshness_sim.py [--graph_ms 57 10 30 40 80] [--jitter_ms 5]

A stream delivers a frame every 33.3 ms (30 fps, each decoded 2 ms after capture); a graph
takes a frame when it is free and needs ``graph_ms`` (normal, ``jitter_ms`` spread) per frame.
When it is free it looks at the newest frame: if that frame has waited more than the
threshold it waits for the next one instead. For each threshold (never, half an interval, a
quarter, zero) it prints p50/p99 capture-to-pose latency, poses a second and the mean age of
the newest pose (now minus the capture time of the last result, averaged over time: latency
and rate in one figure). This is the reasoning behind ``sleapflow.stages.live.passes_over``;
``bench_live.py`` measures the real thing.
"""

from __future__ import annotations

import argparse

import numpy as np

INTERVAL_MS = 1000.0 / 30.0
DECODE_MS = 2.0


def simulate(graph_ms: float, jitter_ms: float, threshold_ms: float, *, frames: int = 20000,
             seed: int = 0) -> tuple[float, float, float, float]:
    """(p50 latency, p99 latency, poses/s, mean age of the newest pose), all in ms but rate."""
    rng = np.random.default_rng(seed)
    now, last_taken = 0.0, -1
    latencies, results, captures = [], [], []
    for _ in range(frames):
        newest = int(np.floor((now - DECODE_MS) / INTERVAL_MS))
        if newest <= last_taken:  # nothing new waits: the next frame, as it arrives
            newest = last_taken + 1
            now = max(now, newest * INTERVAL_MS + DECODE_MS)
        age = now - (newest * INTERVAL_MS + DECODE_MS)
        if age > threshold_ms:  # passed over: wait for the next one
            newest += 1
            now = newest * INTERVAL_MS + DECODE_MS
            age = 0.0
        last_taken = newest
        now += max(0.8 * graph_ms, rng.normal(graph_ms, jitter_ms))
        latencies.append(now - newest * INTERVAL_MS)
        results.append(now)
        captures.append(newest * INTERVAL_MS)
    lat = np.asarray(latencies)
    res, cap = np.asarray(results), np.asarray(captures)
    gaps = np.diff(res)
    span = res[-1] - res[0]
    age_of_newest = float(np.sum(gaps * (res[:-1] - cap[:-1]) + gaps * gaps / 2.0) / span)
    return (float(np.percentile(lat, 50)), float(np.percentile(lat, 99)),
            1000.0 * (len(res) - 1) / span, age_of_newest)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--graph_ms", type=float, nargs="+", default=[57.0, 10.0, 30.0, 40.0, 80.0])
    parser.add_argument("--jitter_ms", type=float, default=5.0)
    args = parser.parse_args()
    thresholds = {"never": float("inf"), "half an interval": INTERVAL_MS / 2,
                  "a quarter": INTERVAL_MS / 4, "zero": 0.5}
    print(f"{'graph ms':>9} {'pass over after':<17}{'p50 ms':>8}{'p99 ms':>8}{'poses/s':>9}"
          f"{'age ms':>8}")
    for graph_ms in args.graph_ms:
        for name, threshold in thresholds.items():
            p50, p99, rate, age = simulate(graph_ms, args.jitter_ms, threshold)
            print(f"{graph_ms:>9.0f} {name:<17}{p50:>8.1f}{p99:>8.1f}{rate:>9.1f}{age:>8.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Capture-to-pose latency of a live stream: a 30 fps clip sent over UDP loopback in real time.

    python benchmarks/bench_live.py [--graph single_instance topdown] [--seconds 20] [--runs 1]
                                    [--batch_size N] [--centroid_every K] [--torch_threads N]

For each graph: the clip (``small_robot.mp4`` for single-instance, ``centered_pair_small.mp4``
for top-down, from ../shared/assets, re-encoded as low-delay MPEG-TS; not committed) is streamed
over ``udp://127.0.0.1`` at its frame rate by a sender process of its own (a camera is not in
the reader's interpreter), looping for ``--seconds``, into ``sleapflow track
-i udp://... --publish -``; each frame's latency (result time minus capture time, from its
published message) is collected, the first ``--warmup`` frames left out (model warm-up, the
stream's probe; the graph's own warm-up frame and the stale frames it drops are never timed),
and the last frame or two that a finished stream's demuxer holds to its end are left out.
Beside it, ``sleapflow bench GRAPH --batch_size 1 --forward_workers 1`` on the same clip and
models gives the batch-1 forward-only time of the graph's runtime, one frame at a time as the
live graph runs it. Prints p50/p95/p99, frames dropped,
the issue's target (p99 <= 1.5 x forward + 5 ms), the poses a second and the mean age of the
newest pose a consumer holds (latency and rate in one figure); then, per run, where the time went: the
first second of results, the sender's lateness (each packet's real send time against its due
time), the graph's own time and ``track --stats``' latency segments (p50/p99 per seam, and
what the p99 frames are made of). ``--tiny`` is a seconds-long check that the script runs.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
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
    """Batch-1 forward-only ms per frame of the graph's runtime, from ``sleapflow bench``, as a
    live graph runs it: one frame at a time (one forward worker), a file run's threads."""
    with tempfile.TemporaryDirectory() as tmp:
        record_path = Path(tmp) / "bench.json"
        cmd = [sys.executable, "-m", "sleapflow", "bench", graph, "-i", str(clip),
               *(a for m in _models(graph) for a in ("-m", m)), "--batch_size", "1",
               "--forward_workers", "1",
               "--frames", str(frames), "--warmup", str(min(20, frames // 4)),
               "--json", str(record_path), *extra]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, env=_env())
        record = json.loads(record_path.read_text())
    fps = record["forward_limit_by_runtime"][record["runtime"]]
    return 1000.0 / fps, record["runtime"]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT)}


def _segment_rows(report: str) -> list[str]:
    """The latency-segment table of ``track --stats`` (its header, rule and rows)."""
    lines = report.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("latency segment"):
            end = next((j for j in range(i + 2, len(lines)) if not lines[j].strip()), len(lines))
            return lines[i:end]
    return []


def _sender_shift(poses: list[dict[str, Any]], sent_pts: dict[int, float]) -> int | None:
    """The constant (ms) the muxer added to the sender's timestamps, found as the shift that
    matches the most received frames to sent packets."""
    got = [round(m["pts"] * 1000) for m in poses if m.get("pts") is not None]
    if not got or not sent_pts:
        return None
    probe = got[: min(len(got), 30)]
    best, best_hits = None, 0
    for first in probe[:3]:
        for p in sent_pts:
            shift = first - p
            hits = sum((g - shift) in sent_pts for g in probe)
            if hits > best_hits:
                best, best_hits = shift, hits
    return best


def _attribute(poses: list[dict[str, Any]], log: list[tuple[float, float, float]],
               warmup: int) -> dict[str, list[float]]:
    """Per frame after ``warmup``: the sender's lateness (sent minus due), the graph's own
    time (result minus decoded here) and the latency against the real send time (result
    minus sent; it includes the transport the clock mapping leaves out), in ms."""
    sent = {round(p * 1000): (due, real) for p, due, real in log}
    shift = _sender_shift(poses, {k: v[1] for k, v in sent.items()})
    out: dict[str, list[float]] = {"late": [], "graph": [], "from_send": []}
    for m in poses:
        if m["seq"] < warmup or m.get("result_time") is None:
            continue
        out["graph"].append((m["result_time"] - m["arrival_time"]) * 1000.0)
        if shift is None or m.get("pts") is None:
            continue
        match = sent.get(round(m["pts"] * 1000) - shift)
        if match is not None:
            due, real = match
            out["late"].append((real - due) * 1000.0)
            out["from_send"].append((m["result_time"] - real) * 1000.0)
    return out


def _live_run(graph: str, clip: Path, loops: int, warmup: int,
              extra: list[str]) -> dict[str, Any]:
    """One live run: the latencies of the frames after ``warmup``, the run's drops, where the
    time went (``--stats``' latency segments) and the sender's timing."""
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "sleapflow", "track", "-i", f"udp://127.0.0.1:{port}",
               *(a for m in _models(graph) for a in ("-m", m)), "-o", str(Path(tmp) / "live.slp"),
               "--publish", "-", "--stream_timeout", "2", "--stats", *extra]
        messages: list[dict[str, Any]] = []
        report_path = Path(tmp) / "report.txt"
        with report_path.open("w") as report, \
                subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=report, env=_env()) as proc:
            assert proc.stdout is not None

            # The camera is a process of its own: in this one its sleeps would wake behind
            # the reading of the results (one interpreter lock), and its lateness would count
            # as latency.
            sent_path = Path(tmp) / "sent.json"
            sender = subprocess.Popen([sys.executable, __file__, "--send", str(clip), str(port),
                                       str(loops), str(sent_path)], env=_env())
            for line in proc.stdout:
                messages.append(json.loads(line))
            proc.wait()
            sender.wait()
            sent_log = [tuple(row) for row in json.loads(sent_path.read_text())]
        report_text = report_path.read_text()
    poses = [m for m in messages if m["type"] == "poses"]
    end = messages[-1] if messages and messages[-1]["type"] == "end" else {"dropped": None}
    # The stream's last frame or two wait in the receiver's demuxer for packets that never
    # come, until --stream_timeout ends the stream: an artefact of a stream that ends, left
    # out (and counted) so that the figures are those of a stream that goes on.
    last_send = max((real for _, _, real in sent_log), default=float("inf"))
    held = [m for m in poses if m["arrival_time"] > last_send + 0.5]
    poses = [m for m in poses if m["arrival_time"] <= last_send + 0.5]
    kept = [m["latency_ms"] for m in poses if m["seq"] >= warmup]
    # The first second of results apart from the rest: a slow start shows here.
    t0 = poses[0]["result_time"] if poses else 0.0
    first = [m["latency_ms"] for m in poses if m["result_time"] - t0 < 1.0]
    rate, age = _freshness([m for m in poses if m["seq"] >= warmup])
    return {"frames": len(poses), "timed": len(kept), "dropped": end["dropped"],
            "stale": end.get("stale"), "held": len(held), "latencies": kept,
            "rate": rate, "age": age,
            "first_second": first,
            "segments": _segment_rows(report_text), **_attribute(poses, sent_log, warmup)}


def _freshness(poses: list[dict[str, Any]]) -> tuple[float, float]:
    """Poses a second, and the mean age (ms) of the newest pose a consumer holds: at each
    moment, now minus the capture time of the last result out, averaged over the run. It
    weighs latency and rate together (a dropped frame leaves the last pose to age longer)."""
    timed = sorted((m["result_time"], m["capture_time"]) for m in poses
                   if m.get("result_time") is not None and m.get("capture_time") is not None)
    if len(timed) < 2:
        return float("nan"), float("nan")
    results = np.asarray([r for r, _ in timed])
    captures = np.asarray([c for _, c in timed])
    gaps = np.diff(results)
    span = results[-1] - results[0]
    area = float(np.sum(gaps * (results[:-1] - captures[:-1]) + gaps * gaps / 2.0))
    return (len(timed) - 1) / span, 1000.0 * area / span


def _pct(values: list[float]) -> str:
    if not values:
        return "n/a"
    p50, p99, top = np.percentile(np.asarray(values, dtype=np.float64), (50, 99, 100))
    return f"p50 {p50:.1f}, p99 {p99:.1f}, max {top:.1f} ms ({len(values)} frames)"


def _send(clip: str, port: str, loops: str, log_path: str) -> int:
    """The sender process: stream ``clip`` to the UDP ``port`` in real time, then write each
    packet's (pts, due, sent) times to ``log_path``."""
    log: list[tuple[float, float, float]] = []
    wait_udp_bound(int(port), timeout=120)
    stream_packets(Path(clip), f"udp://127.0.0.1:{port}?pkt_size=1316", loops=int(loops), log=log)
    Path(log_path).write_text(json.dumps(log))
    return 0


def main() -> int:
    if sys.argv[1:2] == ["--send"]:
        return _send(*sys.argv[2:6])
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--graph", nargs="+", default=list(GRAPHS), choices=list(GRAPHS))
    parser.add_argument("--seconds", type=float, default=20.0, help="Stream length per run.")
    parser.add_argument("--warmup", type=int, default=30,
                        help="Frames left out at the start (besides the graph's own warm-up "
                             "frame and the stale frames it drops).")
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--runtime", default=None, help="--runtime for track and bench.")
    parser.add_argument("--batch_size", type=int, default=None,
                        help="--batch_size for the live run (default: track's); the forward "
                             "time is batch 1 either way.")
    parser.add_argument("--torch_threads", type=int, default=None,
                        help="--torch_threads for track and bench alike (the forward time, "
                             "and so the target, on the same threads).")
    parser.add_argument("--centroid_every", type=int, default=None,
                        help="--centroid_every for the live top-down run (the forward time "
                             "stays that of every frame's full pass).")
    parser.add_argument("--tiny", action="store_true", help="A few seconds: checks the script.")
    args = parser.parse_args()
    if args.tiny:
        args.seconds, args.warmup, args.runs = 2.0, 5, 1
    extra = ["--runtime", args.runtime] if args.runtime else []
    if args.torch_threads:
        extra += ["--torch_threads", str(args.torch_threads)]
    live_extra = extra + (["--batch_size", str(args.batch_size)] if args.batch_size else [])
    every = ["--centroid_every", str(args.centroid_every)] if args.centroid_every else []
    rows = []
    details: list[tuple[str, list[dict[str, Any]]]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for graph in args.graph:
            video, _ = GRAPHS[graph]
            n = 60 if args.tiny else 150
            clip = write_ts_clip(ASSETS / "datasets" / video, Path(tmp) / f"{graph}.ts", n,
                                 crop=WHOLE)
            loops = max(1, round(args.seconds * 30 / n))
            forward, runtime = _forward_ms(graph, clip, 40 if args.tiny else n, extra)
            runs = [_live_run(graph, clip, loops, args.warmup,
                              live_extra + (every if graph == "topdown" else []))
                    for _ in range(args.runs)]
            lat = np.asarray([v for r in runs for v in r["latencies"]], dtype=np.float64)
            p50, p95, p99 = (float(v) for v in np.percentile(lat, (50, 95, 99))) if lat.size \
                else (float("nan"),) * 3
            target = 1.5 * forward + 5.0
            rows.append((graph, runtime, forward, p50, p95, p99, target,
                         statistics.median(r["dropped"] or 0 for r in runs),
                         sum(r["frames"] for r in runs), int(lat.size),
                         statistics.mean(r["rate"] for r in runs),
                         statistics.mean(r["age"] for r in runs)))
            details.append((graph, runs))
    print(f"{'graph':<16}{'runtime':<9}{'fwd b1 ms':>10}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}"
          f"{'target':>9}{'dropped':>9}{'frames':>8}{'timed':>7}{'poses/s':>9}{'age ms':>8}")
    for g, rt, fwd, p50, p95, p99, target, dropped, frames, timed, rate, age in rows:
        mark = "ok" if p99 <= target else "over"
        print(f"{g:<16}{rt:<9}{fwd:>10.1f}{p50:>9.1f}{p95:>9.1f}{p99:>9.1f}{target:>9.1f}"
              f"{dropped:>9}{frames:>8}{timed:>7}{rate:>9.1f}{age:>8.1f}  {mark}")
    print("age ms: the mean age of the newest pose a consumer holds (now minus its capture time, "
          "over the run)")
    print(f"load average {os.getloadavg()[0]:.1f}; stream 30 fps over udp loopback, MPEG-TS; "
          f"live batch size {args.batch_size or 'track default'}")
    for graph, runs in details:
        for i, r in enumerate(runs):
            print(f"\n{graph}, run {i + 1}: where the time went (after the first {args.warmup} "
                  "frames unless said)")
            print(f"  stale (arrived during warm-up): {r['stale']}; held by the demuxer to the "
                  f"stream's end, left out: {r['held']}")
            print(f"  first second of results (warm-up included): {_pct(r['first_second'])}")
            print(f"  sender lateness (sent - due):               {_pct(r['late'])}")
            print(f"  graph (result - decoded here):              {_pct(r['graph'])}")
            print(f"  result - real send time:                    {_pct(r['from_send'])}")
            if r["segments"]:
                print("  track --stats (every frame timed, those held to the stream's end too):")
            for line in r["segments"]:
                print(f"  {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

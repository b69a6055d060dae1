"""Whole-graph benchmark: ``sleapflow track`` against the sleap-nn 0.3.5 peer on the same clip/model.

Both tools run as separate processes, alternating (sleapflow, peer track, peer predict, then the
next round in a rotated order), so drift on a shared machine hits all of them alike; the report
quotes medians and ratios. For each process: wall time (process start to exit: imports, model
loading, inference and writing the ``.slp``, what a user waits for), the tool's own reported
inference time, and its peak resident memory (``os.wait4`` rusage).

``--lengths 300,1500`` then runs every tool on long clips made by looping the clip (still
alternating): the difference between two lengths gives each tool's **steady-state** frames/s
(startup — imports, model loading — cancels out), and the peak memory at each length shows
whether memory grows with the number of frames.

Example (the single-instance numbers in RESULTS.md)::

    python benchmarks/bench_graphs.py --graph single_instance --runs 3 \\
        --lengths 300,1500 --length-runs 2 --json bench_out/graphs_single_instance.json

The peer is looked up at ``$HOME/sleapnn-peer/bin/sleap-nn`` (see ../shared/docs/PEER.md);
``--peer ''`` skips it.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import msgspec

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
ASSETS = SHARED / "assets"
DEFAULT_PEER = Path.home() / "sleapnn-peer" / "bin" / "sleap-nn"

#: Default clip and models per graph: the reference's own cases.
CASES: dict[str, tuple[str, tuple[str, ...]]] = {
    "single_instance": ("datasets/small_robot.mp4", ("model_ckpts/minimal_instance_single_instance",)),
    "topdown": ("datasets/centered_pair_small.mp4", ("model_ckpts/minimal_instance_centroid",
                                                     "model_ckpts/minimal_instance_centered_instance")),
    "bottomup": ("datasets/centered_pair_small.mp4", ("model_ckpts/minimal_instance_bottomup",)),
}

#: How each tool reports its own inference time.
_OWN_TIME = {
    "sleapflow": re.compile(r"\bdone\b.*?\bseconds=([0-9.]+)"),
    "peer-track": re.compile(r"Total runtime: ([0-9.]+) secs"),
    "peer-predict": re.compile(r"Inference complete \|.*?elapsed=([0-9.]+)s"),
}


@dataclass
class Run:
    tool: str
    frames: int
    wall_s: float
    own_s: float | None
    max_rss_mb: float
    returncode: int
    command: list[str] = field(default_factory=list)


def run_measured(command: list[str], *, cwd: Path, log: Path,
                 env: dict[str, str] | None = None) -> tuple[float, float, int, str]:
    """(wall seconds, peak RSS in MiB, exit code, output) of one child process."""
    with log.open("w") as out:
        start = time.perf_counter()
        proc = subprocess.Popen(command, cwd=cwd, stdout=out, stderr=subprocess.STDOUT,
                                env={**os.environ, **(env or {})})
        # wait4 gives this child's own rusage (getrusage(RUSAGE_CHILDREN) would mix children).
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    return wall, usage.ru_maxrss / 1024, proc.returncode, log.read_text(errors="replace")


def frame_count(clip: Path) -> int:
    import av

    with av.open(str(clip)) as container:
        return int(container.streams.video[0].frames)


def frames_in(spec: str, n_clip: int) -> int:
    """How many frames ``--frames spec`` selects from a clip of ``n_clip`` frames."""
    if not spec:
        return n_clip
    start, _, end = spec.partition("-")
    last = min(int(end) if end else int(start), n_clip - 1)
    return max(0, last - int(start) + 1)


def commands(tool: str, *, clip: Path, models: list[Path], out: Path, frames: str, device: str,
             batch_size: int, peer: Path | None, extra: list[str] | None = None) -> list[str]:
    model_args = [arg for m in models for arg in ("-m", str(m))]
    frame_args = ["--frames", frames] if frames else []
    common = ["-i", str(clip), *model_args, "-o", str(out), "--device", device,
              "--batch_size", str(batch_size), *frame_args]
    if tool.startswith("sleapflow"):
        return [sys.executable, "-m", "sleapflow.cli.app", "track", *common, *(extra or [])]
    assert peer is not None
    return [str(peer), tool.removeprefix("peer-"), *common]


def loop_clip(src: Path, dst: Path, n_frames: int) -> Path:
    """A clip of ``n_frames`` made by looping ``src`` (same size, content and codec family)."""
    import av

    with av.open(str(src)) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    height, width = frames[0].shape[:2]
    with av.open(str(dst), mode="w") as container:
        stream = container.add_stream("mpeg4", rate=30)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"qscale": "3"}
        for i in range(n_frames):
            # Play forwards then backwards so the loop has no jump (a tracker-friendly clip).
            cycle = i % (2 * len(frames) - 2)
            image = frames[cycle if cycle < len(frames) else 2 * len(frames) - 2 - cycle]
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return dst


def summarize(runs: list[Run]) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for tool in dict.fromkeys(r.tool for r in runs):
        mine = [r for r in runs if r.tool == tool and r.returncode == 0]
        if not mine:
            continue
        wall = statistics.median(r.wall_s for r in mine)
        own = [r.own_s for r in mine if r.own_s is not None]
        out[tool] = {
            "runs": len(mine), "frames": mine[0].frames, "wall_s_median": wall,
            "fps_wall": mine[0].frames / wall,
            "own_s_median": statistics.median(own) if own else float("nan"),
            "fps_own": mine[0].frames / statistics.median(own) if own else float("nan"),
            "max_rss_mb_median": statistics.median(r.max_rss_mb for r in mine),
        }
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--graph", default="single_instance", choices=sorted(CASES))
    parser.add_argument("--clip", type=Path, help="default: the graph's reference clip")
    parser.add_argument("--model", type=Path, action="append", help="default: the reference models")
    parser.add_argument("--frames", default="0-299", help="as `track --frames` ('' = all)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--peer", default=str(DEFAULT_PEER), help="sleap-nn executable ('' = none)")
    parser.add_argument("--peer-cmds", default="track,predict", help="peer commands to time")
    parser.add_argument("--lengths", default="", help="e.g. 300,1500: looped clip lengths for "
                        "steady-state frames/s and peak memory")
    parser.add_argument("--length-runs", type=int, default=1, help="alternating rounds per length")
    parser.add_argument("--length-tools", default="", help="tools for --lengths (default: all)")
    parser.add_argument("--peer-threads", type=int, help="OMP/MKL threads for the peer (default: "
                        "torch's, all cores); 1 avoids thread thrashing on a CPU shared with other work")
    parser.add_argument("--sleapflow-args", default="", help="extra `sleapflow track` options, "
                        "e.g. '--torch_threads 2'")
    parser.add_argument("--variant", action="append", default=[], metavar="NAME=ARGS",
                        help="also time `sleapflow track ARGS` as tool sleapflow-NAME in the same "
                             "rounds, e.g. bf16='--precision bf16'")
    parser.add_argument("--json", type=Path, help="write every run and the summary here")
    parser.add_argument("--workdir", type=Path, help="keep outputs and logs here")
    args = parser.parse_args(argv)

    clip_rel, model_rels = CASES[args.graph]
    clip = args.clip or ASSETS / clip_rel
    models = args.model or [ASSETS / m for m in model_rels]
    peer = Path(args.peer) if args.peer else None
    if peer is not None and not peer.exists():
        print(f"peer {peer} not found; timing sleapflow only", file=sys.stderr)
        peer = None
    variants = dict(v.split("=", 1) for v in args.variant)
    extra_args = {"sleapflow": args.sleapflow_args.split(),
                  **{f"sleapflow-{k}": [*args.sleapflow_args.split(), *v.split()]
                     for k, v in variants.items()}}
    tools = [*extra_args] + ([f"peer-{c}" for c in args.peer_cmds.split(",") if c] if peer else [])
    work = args.workdir or Path(tempfile.mkdtemp(prefix="bench-graphs-"))
    work.mkdir(parents=True, exist_ok=True)
    n_frames = frames_in(args.frames, frame_count(clip))
    peer_env = ({k: str(args.peer_threads) for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
                if args.peer_threads else None)

    def env_for(tool: str) -> dict[str, str] | None:
        return peer_env if tool.startswith("peer-") else None

    # Other work on a shared machine skews absolute times (ratios of alternating runs hold up
    # better); the load average says how much there was.
    load_start = os.getloadavg()
    print(f"{args.graph}: {clip.name}, {n_frames} frames, models {[m.name for m in models]}, "
          f"device {args.device}, {os.cpu_count()} cores; {args.runs} alternating rounds of {tools}"
          + (f"; peer torch threads {args.peer_threads}" if args.peer_threads else ""))

    runs: list[Run] = []
    for round_ in range(args.runs):
        order = tools[round_ % len(tools):] + tools[:round_ % len(tools)]
        for tool in order:
            out = work / f"{tool}_{round_}.slp"
            cmd = commands(tool, clip=clip, models=models, out=out, frames=args.frames,
                           device=args.device, batch_size=args.batch_size, peer=peer,
                           extra=extra_args.get(tool))
            wall, rss, rc, text = run_measured(cmd, cwd=work, log=work / f"{tool}_{round_}.log",
                                               env=env_for(tool))
            own = _OWN_TIME["sleapflow" if tool in extra_args else tool].search(text)
            runs.append(Run(tool, n_frames, wall, float(own[1]) if own else None, rss, rc, cmd))
            own_s = runs[-1].own_s if runs[-1].own_s is not None else float("nan")
            print(f"  round {round_} {tool:<13} wall {wall:6.2f} s  own {own_s:6.2f} s"
                  f"  max RSS {rss:7.1f} MiB  rc {rc}")
            if rc != 0:
                print(text[-2000:], file=sys.stderr)

    summary = summarize(runs)
    print(f"\n{'tool':<14}{'wall s':>9}{'fps(wall)':>11}{'own s':>9}{'fps(own)':>10}{'max RSS MiB':>13}")
    for tool, s in summary.items():
        print(f"{tool:<14}{s['wall_s_median']:>9.2f}{s['fps_wall']:>11.1f}{s['own_s_median']:>9.2f}"
              f"{s['fps_own']:>10.1f}{s['max_rss_mb_median']:>13.1f}")
    ratios: dict[str, dict[str, float]] = {}
    for ours in (t for t in extra_args if t in summary):
        base = summary[ours]
        for tool, s in summary.items():
            if tool not in extra_args:
                key = tool if ours == "sleapflow" else f"{ours} vs {tool}"
                ratios[key] = {"wall": s["wall_s_median"] / base["wall_s_median"],
                               "own": s["own_s_median"] / base["own_s_median"]}
                print(f"{ours} vs {tool}: {ratios[key]['wall']:.2f}x faster wall-clock, "
                      f"{ratios[key]['own']:.2f}x by each tool's own inference time")

    memory: list[dict] = []
    steady: dict[str, dict[str, float]] = {}
    lengths = [int(n) for n in args.lengths.split(",") if n]
    if lengths:
        length_tools = [t for t in tools if not args.length_tools or t in args.length_tools.split(",")]
        print(f"\nlooped clip, lengths {lengths}: steady-state frames/s and peak memory")
        for n in lengths:
            long_clip = work / f"looped_{n}.mp4"
            if not long_clip.exists():
                loop_clip(clip, long_clip, n)
        for round_ in range(args.length_runs):
            for n in lengths:
                order = length_tools[round_ % len(length_tools):] + length_tools[:round_ % len(length_tools)]
                for tool in order:
                    cmd = commands(tool, clip=work / f"looped_{n}.mp4", models=models,
                                   out=work / f"len_{tool}_{n}.slp", frames="", device=args.device,
                                   batch_size=args.batch_size, peer=peer,
                                   extra=extra_args.get(tool))
                    wall, rss, rc, _ = run_measured(cmd, cwd=work, log=work / f"len_{tool}_{n}.log",
                                                    env=env_for(tool))
                    memory.append({"tool": tool, "frames": n, "round": round_, "wall_s": wall,
                                   "max_rss_mb": rss, "returncode": rc})
                    print(f"  round {round_} {tool:<13} {n:>6} frames  wall {wall:7.2f} s  "
                          f"max RSS {rss:7.1f} MiB  rc {rc}")
        if len(lengths) >= 2:
            lo, hi = min(lengths), max(lengths)
            print(f"\n{'tool':<14}{'steady fps':>12}{f'RSS@{lo} MiB':>16}{f'RSS@{hi} MiB':>16}")
            for tool in length_tools:
                def med(n: int, key: str, tool: str = tool) -> float:
                    vals = [m[key] for m in memory if m["tool"] == tool and m["frames"] == n
                            and m["returncode"] == 0]
                    return statistics.median(vals) if vals else float("nan")

                fps = (hi - lo) / (med(hi, "wall_s") - med(lo, "wall_s"))
                steady[tool] = {"steady_fps": fps, f"max_rss_mb_{lo}": med(lo, "max_rss_mb"),
                                f"max_rss_mb_{hi}": med(hi, "max_rss_mb")}
                print(f"{tool:<14}{fps:>12.1f}{med(lo, 'max_rss_mb'):>16.1f}{med(hi, 'max_rss_mb'):>16.1f}")
            if "sleapflow" in steady:
                for tool, st in steady.items():
                    if tool != "sleapflow":
                        ratio = steady["sleapflow"]["steady_fps"] / st["steady_fps"]
                        ratios.setdefault(tool, {})["steady"] = ratio
                        print(f"sleapflow vs {tool}: {ratio:.2f}x steady-state frames/s")

    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        from sleapflow.bench.harness import _device_name, _versions, git_revision

        record = {
            "graph": args.graph, "clip": str(clip), "models": [str(m) for m in models],
            "frames": n_frames, "frames_spec": args.frames, "device": args.device,
            "device_name": _device_name(args.device), "cpu_count": os.cpu_count(),
            "versions": _versions(), "git_revision": git_revision(),
            "peer": str(peer) if peer else None, "peer_threads": args.peer_threads,
            "sleapflow_args": args.sleapflow_args, "variants": variants,
            "command": " ".join(sys.argv),
            "runs": [asdict(r) for r in runs], "summary": summary, "ratios": ratios,
            "lengths": memory, "steady": steady,
            "loadavg_start": load_start, "loadavg_end": os.getloadavg(),
        }
        args.json.write_bytes(msgspec.json.format(msgspec.json.encode(record)) + b"\n")
        print(f"\nrecord written to {args.json}")
    if args.workdir is None:
        shutil.rmtree(work, ignore_errors=True)
    return 0 if all(r.returncode == 0 for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())

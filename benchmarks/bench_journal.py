"""Journaling figures for issue #18: end-to-end overhead, and RSS at 1k vs 100k looped frames.

    python benchmarks/bench_journal.py overhead --rounds 10   # end to end, ABBA pairs
    python benchmarks/bench_journal.py writer --frames 20000 --rounds 5   # the writer alone
    python benchmarks/bench_journal.py rss --frames 1000      # one process per count
    python benchmarks/bench_journal.py rss --frames 100000
    python benchmarks/bench_journal.py rss --frames 100000 --in-memory   # and the old path
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

import anyio

SHARED = Path(__file__).resolve().parents[2] / "shared"
VIDEO = SHARED / "assets/datasets/small_robot.mp4"
MODEL = SHARED / "assets/model_ckpts/minimal_instance_single_instance"


def overhead(rounds: int) -> None:
    """A/B of the same prepared command (single instance, all 166 frames of small_robot):
    ``run_job`` without a journal (no journal, Labels built in memory, sleap-io's save) against the journaled
    run ``sleapflow track -o X.slp`` does (journal, .slp written from it), in ABBA order so a
    drifting machine load cancels; reports each mode's median and the median paired ratio, of
    wall time and of the process's CPU time (user + system, all threads: far less sensitive
    to other load on the machine than wall time)."""
    import os
    import statistics

    from sleapflow.jobs.job import plan_job, run_job
    from sleapflow.options.config import InferenceConfig

    cfg = InferenceConfig(data_path=str(VIDEO), model_paths=(str(MODEL),), device="cpu")
    times: dict[str, list[float]] = {"plain": [], "journaled": []}
    cpu: dict[str, list[float]] = {"plain": [], "journaled": []}

    def cpu_s() -> float:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime

    load = [os.getloadavg()[0]]
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(rounds):
            order = ("plain", "journaled") if r % 2 == 0 else ("journaled", "plain")
            for mode in order:
                out = str(Path(tmp) / f"{mode}.slp")
                job = plan_job(cfg, output=out, journal=mode == "journaled", announce=False)
                start, start_cpu = time.perf_counter(), cpu_s()
                anyio.run(run_job, job)
                times[mode].append(time.perf_counter() - start)
                cpu[mode].append(cpu_s() - start_cpu)
            load.append(os.getloadavg()[0])
    for what, data in (("wall", times), ("cpu", cpu)):
        for mode, ts in data.items():
            print(f"{what} {mode:10s} " + " ".join(f"{t:.2f}" for t in ts)
                  + f"  median {statistics.median(ts):.2f} s")
        ratios = sorted(j / p for j, p in zip(data["journaled"], data["plain"], strict=True))
        q = statistics.quantiles(ratios, n=4) if len(ratios) >= 4 else [ratios[0], 0, ratios[-1]]
        print(f"{what}: journaled / plain, paired: median {statistics.median(ratios):.3f} "
              f"(quartiles {q[0]:.3f}-{q[2]:.3f}, {rounds} pairs)")
    print(f"load average {min(load):.1f}-{max(load):.1f}")


def rss(frames: int, in_memory: bool) -> None:
    """Feed ``frames`` predictions (the reference's 166 small_robot frames, looped) through
    the journaled writer as ``sleapflow track -o X.slp`` runs it (journal each frame, count it,
    write the final ``.slp`` from the journal), reporting peak RSS after the journal and after
    the final write; with ``in_memory``, then also through the in-memory ``Labels`` path."""
    import os

    import numpy as np
    import sleap_io as sio

    from sleapflow.messages import FramePrediction
    from sleapflow.outputs.journal import JournalWriter
    from sleapflow.stages.write import LabelsBuilder, SlpWriter

    def peak() -> float:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    ref = sio.load_slp(str(SHARED / "reference/single_instance__small_robot.slp"),
                       open_videos=False)
    preds = []
    for lf in ref:
        pts = np.stack([inst.numpy() for inst in lf.instances])
        preds.append((pts, np.stack([inst.score * np.ones(len(pts[0])) for inst in lf.instances]),
                      np.array([inst.score for inst in lf.instances])))

    def pred(i: int) -> FramePrediction:
        pts, ps, sc = preds[i % len(preds)]
        return FramePrediction(seq=i, video_id=0, frame_idx=i, points=pts, point_scores=ps,
                               instance_scores=sc)

    start = peak()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out.slp"
        journal = JournalWriter(Path(tmp) / ".out.slp.journal", {"graph": "bench"})
        builder = LabelsBuilder(list(ref.videos), ref.skeletons[0], keep_empty_frames=False)
        for i in range(frames):
            if journal.add(pred(i)):
                journal.sync()
            builder.count(pred(i))
        journal_rss = peak()
        size = journal.path.stat().st_size
        writer = SlpWriter(builder, output_path=out, journal=journal, stream=True)
        t0 = time.perf_counter()
        writer.finish()
        write_s = time.perf_counter() - t0
        stream_rss = peak()
        assert len(sio.load_slp(str(out), open_videos=False)) == frames
        line = (f"frames={frames} journal={size / 2**20:.1f} MiB slp={os.path.getsize(out) / 2**20:.1f}"
                f" MiB peak RSS: start {start:.0f} MiB, after journaling {journal_rss:.0f} MiB, "
                f"after the streamed .slp write {stream_rss:.0f} MiB ({write_s:.1f} s)")
        if in_memory:
            builder = LabelsBuilder(list(ref.videos), ref.skeletons[0], keep_empty_frames=False)
            for i in range(frames):
                builder.add(pred(i))
            sio.save_slp(builder.labels(), str(Path(tmp) / "mem.slp"),
                         restore_original_videos=False, verbose=False)
            line += f"; after the in-memory Labels and sleap-io's save {peak():.0f} MiB"
    print(line)


def writer_cost(frames: int, rounds: int) -> None:
    """The writer's own cost per frame, without inference: the looped small_robot predictions
    through (a) the in-memory path (LabelsBuilder.add, then sleap-io's save) and (b) the
    journaled path ``track -o X.slp`` takes (journal append + flush, count, fsync every 256,
    then the .slp written from the journal), alternating; medians in microseconds a frame."""
    import os
    import statistics

    import numpy as np
    import sleap_io as sio

    from sleapflow.messages import FramePrediction
    from sleapflow.outputs.files import save_slp_safely
    from sleapflow.outputs.journal import JournalWriter
    from sleapflow.stages.write import LabelsBuilder, SlpWriter

    ref = sio.load_slp(str(SHARED / "reference/single_instance__small_robot.slp"),
                       open_videos=False)
    preds = []
    for i, lf in enumerate(ref):
        pts = np.stack([inst.numpy() for inst in lf.instances])
        preds.append(FramePrediction(
            seq=i, video_id=0, frame_idx=i, points=pts,
            point_scores=np.stack([inst.score * np.ones(len(pts[0])) for inst in lf.instances]),
            instance_scores=np.array([inst.score for inst in lf.instances])))
    looped = [preds[i % len(preds)] for i in range(frames)]
    costs: dict[str, list[float]] = {"in-memory": [], "journaled": []}
    load = [os.getloadavg()[0]]
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(rounds):
            for mode in (("in-memory", "journaled") if r % 2 == 0 else ("journaled", "in-memory")):
                out = Path(tmp) / f"{mode}.slp"
                builder = LabelsBuilder(list(ref.videos), ref.skeletons[0],
                                        keep_empty_frames=False)
                start = time.perf_counter()
                if mode == "in-memory":
                    for p in looped:
                        builder.add(p)
                    save_slp_safely(builder.labels(), out)
                else:
                    journal = JournalWriter(Path(tmp) / f".{out.name}.journal", {"graph": "b"})
                    for p in looped:
                        if journal.add(p):
                            journal.sync()
                        builder.count(p)
                    writer = SlpWriter(builder, output_path=out, journal=journal, stream=True)
                    writer.finish()
                costs[mode].append((time.perf_counter() - start) / frames * 1e6)
            load.append(os.getloadavg()[0])
    for mode, us in costs.items():
        print(f"{mode:10s} " + " ".join(f"{u:.0f}" for u in us)
              + f"  median {statistics.median(us):.0f} us/frame")
    print(f"{frames} frames x {rounds} rounds; load average {min(load):.1f}-{max(load):.1f}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("what", choices=["overhead", "rss", "writer"])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--frames", type=int, default=1000)
    parser.add_argument("--in-memory", action="store_true",
                        help="rss: also build the in-memory Labels afterwards (the old path)")
    args = parser.parse_args()
    if args.what == "overhead":
        overhead(args.rounds)
    elif args.what == "writer":
        writer_cost(args.frames, args.rounds)
    else:
        rss(args.frames, args.in_memory)


if __name__ == "__main__":
    main()

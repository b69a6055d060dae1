"""The cost of a preemption: a many-input array task stopped by SIGTERM mid-video, then rerun with
``--resume``, against the same task uninterrupted and against a rerun that starts the video over.

    python benchmarks/bench_preempt.py --videos 2 --frames 150 --stop-at 75

Each run is a process of its own, as on a cluster (``python -m sleapflow track``). Reported:
the wall time of each process, how long the stop took (signal to exit), the frames written
when the signal landed and at exit, the frames that had been through the network and the
tracker but were not yet written (the journal's tracker inputs past its last frame: the work
a resume redoes), and the frames a restart without the journal would redo.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
MODELS = ("model_ckpts/minimal_instance_centroid", "model_ckpts/minimal_instance_centered_instance")


def _journal_counts(path: Path) -> tuple[int, int]:
    """(frames written, frames the tracker took past the last written one)."""
    from sleapflow.outputs.journal import read_records

    last, tracked = -1, []
    for rec, _ in read_records(path):
        if rec.get("k") == "f":
            last = rec["seq"]
        elif rec.get("k") == "t":
            tracked.append(rec["seq"])
    return sum(1 for rec, _ in read_records(path) if rec.get("k") == "f"), \
        len({s for s in tracked if s > last})


def _run(args: list[str], *, stop: tuple[Path, int] | None = None) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "sleapflow", "track", *args], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    out: dict[str, float] = {}
    if stop is not None:
        journal, frames = stop
        while proc.poll() is None and (not journal.exists()
                                       or _journal_counts(journal)[0] < frames):
            time.sleep(0.02)
        out["at_signal"] = _journal_counts(journal)[0]
        signalled = time.perf_counter()
        proc.send_signal(signal.SIGTERM)
        proc.wait()
        out["stop_s"] = time.perf_counter() - signalled
        out["kept"], out["in_flight"] = _journal_counts(journal)
    proc.wait()
    out["rc"] = proc.returncode
    out["wall_s"] = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    # CPU time of the process (all threads): far less sensitive to other load than wall time.
    out["cpu_s"] = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--videos", type=int, default=2)
    parser.add_argument("--frames", type=int, default=150)
    parser.add_argument("--stop-at", type=int, default=75, help="frames of the last video")
    opts = parser.parse_args()
    from sleapflow.testing import write_synthetic_video

    tmp = Path(tempfile.mkdtemp(prefix="bench-preempt-"))
    try:
        clips = [write_synthetic_video(tmp / f"v{k}.mp4", n_frames=opts.frames, height=96,
                                       width=96, seed=k) for k in range(opts.videos)]
        common = [*(a for c in clips for a in ("-i", str(c))),
                  *(a for m in MODELS for a in ("-m", str(SHARED / "assets" / m))),
                  "--tracking", "--device", "cpu"]
        _run([*common, "-o", f"{tmp}/warm/"])  # the export cache and the page cache
        whole = _run([*common, "-o", f"{tmp}/whole/"])
        journal = tmp / "cut" / f".{clips[-1].stem}.predictions.slp.journal"
        stopped = _run([*common, "-o", f"{tmp}/cut/"], stop=(journal, opts.stop_at))
        saved = tmp / "saved.journal"
        shutil.copy(journal, saved)
        resumed = _run([*common, "-o", f"{tmp}/cut/", "--resume"])
        # The same stop without a journal: the video starts over (the old --skip_existing way).
        (tmp / "cut" / f"{clips[-1].stem}.predictions.slp").unlink()
        restarted = _run([*common, "-o", f"{tmp}/cut/", "--skip_existing"])
        print(f"{opts.videos} videos x {opts.frames} frames, top-down + tracking, SIGTERM after "
              f"{opts.stop_at} frames of the last video")
        print("| run | wall s | CPU s | rc |\n|---|---|---|---|")
        for name, r in (("uninterrupted", whole), ("stopped by SIGTERM", stopped),
                        ("--resume", resumed), ("restart without the journal", restarted)):
            print(f"| {name} | {r['wall_s']:.2f} | {r['cpu_s']:.2f} | {r['rc']:.0f} |")
        for name, r in (("--resume", resumed), ("restart", restarted)):
            print(f"stopped + {name} - uninterrupted: wall "
                  f"{stopped['wall_s'] + r['wall_s'] - whole['wall_s']:.2f} s, CPU "
                  f"{stopped['cpu_s'] + r['cpu_s'] - whole['cpu_s']:.2f} s")
        print(f"stop took {stopped['stop_s']:.2f} s (signal to exit); frames written at the "
              f"signal {stopped['at_signal']:.0f}, at exit {stopped['kept']:.0f} (kept); "
              f"tracked but not written (redone by --resume) {stopped['in_flight']:.0f}; a "
              f"restart redoes all {stopped['kept']:.0f}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()

"""Resumable many-video runs and preemption: a simulated SLURM job array whose task is stopped by
SIGTERM mid-video and requeued with --resume gives the outputs of one uninterrupted run, without
redoing a finished video; SIGUSR1 on a frame-range shard; the preemption options."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import sleap_io as sio

from sleapflow.cli.app import main
from sleapflow.errors import ConfigError
from sleapflow.jobs.preempt import parse_preempt_signals
from sleapflow.messages import FramePrediction
from sleapflow.outputs.journal import VideoJournals, load_for_resume, read_records
from sleapflow.testing import write_synthetic_video

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "many"))
from many_helpers import TOPDOWN, assert_same_predictions

ROOT = Path(__file__).resolve().parents[2]
SINGLE = "model_ckpts/minimal_instance_single_instance"
N_VIDEOS, N_FRAMES = 4, 20


def _journaled(path: Path) -> int:
    if not path.exists():
        return 0
    return sum(1 for rec, _ in read_records(path) if rec.get("k") == "f")


def _start(args: list[str]) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-m", "sleapflow", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _stop_when(proc: subprocess.Popen[str], journal: Path, frames: int, signum: int) -> int:
    """Send ``signum`` once ``journal`` holds ``frames`` frames; the frames journaled then."""
    deadline = time.monotonic() + 240
    while _journaled(journal) < frames and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert proc.poll() is None, "the run ended before it could be stopped"
    proc.send_signal(signum)
    return _journaled(journal)


def _leftovers(folder: Path) -> list[str]:
    """Journals, locks and temporary files: what a finished run must not leave."""
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_sigterm_in_a_job_array_then_resume_equals_one_uninterrupted_run(
        assets: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    clips = [write_synthetic_video(tmp_path / f"v{k}.mp4", n_frames=N_FRAMES, height=96,
                                   width=96, seed=k) for k in range(N_VIDEOS)]
    inputs = [a for c in clips for a in ("-i", str(c))]
    models = [a for m in TOPDOWN for a in ("-m", str(assets / m))]
    common = [*inputs, *models, "--tracking", "--device", "cpu", "--batch_size", "2"]

    whole = tmp_path / "whole"
    assert main(["track", *common, "-o", f"{whole}/"]) == 0
    assert _leftovers(whole) == []  # journals removed, locks let go

    # The array: task I of N runs the I-th slice of the inputs; task 2 is preempted mid-video.
    out = tmp_path / "array"
    array = [[*common, "-o", f"{out}/", "--shard", f"{i}/2", "--resume", "--skip_existing"]
             for i in (1, 2)]
    first, second = _start(["track", *array[0]]), _start(["track", *array[1]])
    journal = out / f".{clips[3].stem}.predictions.slp.journal"
    done = _stop_when(second, journal, 3, signal.SIGTERM)
    _, err = second.communicate(timeout=120)
    assert second.returncode == 143, err[-2000:]  # 128 + SIGTERM
    (line,) = [ln for ln in err.splitlines() if ln.startswith("Preempted")]
    assert "SIGTERM" in line and "--resume" in line and "Traceback" not in err
    first_out, first_err = first.communicate(timeout=240)
    assert first.returncode == 0, first_err[-2000:]
    assert "2 written, 0 skipped, 0 failed" in first_out
    kept = _journaled(journal)
    assert 3 <= done <= kept < N_FRAMES
    assert not (out / f"{clips[3].stem}.predictions.slp").exists()
    assert _leftovers(out) == [journal.name]  # no lock left by the stopped task
    finished = {p.name: p.stat().st_mtime_ns for p in out.glob("*.slp")}
    assert sorted(finished) == [f"v{k}.predictions.slp" for k in range(3)]

    # Without --resume the journal is not overwritten: the run refuses before any model loads.
    capsys.readouterr()
    assert main(["track", *common, "-o", f"{out}/", "--shard", "2/2"]) == 2
    (line,) = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("Error:")]
    assert "--resume" in line and journal.name in line

    # The requeued array: both tasks rerun the same command.
    capsys.readouterr()
    assert main(["track", *array[0]]) == 0
    assert "0 written, 2 skipped, 0 failed, of 2 input(s)" in capsys.readouterr().out
    assert main(["track", *array[1]]) == 0
    captured = capsys.readouterr()
    assert "1 written, 1 skipped, 0 failed, of 2 input(s)" in captured.out
    assert f"frames_done={kept}" in captured.err and "tracker_frames_replayed" in captured.err
    # No finished video was redone: their files are the very ones written before.
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("*.slp") if p.name in finished} \
        == finished
    assert _leftovers(out) == []

    # A journal older than a complete output (a stop between the output's rename and the
    # journal's removal) is stale: a resumed run skips the video and removes the journal.
    stale = out / f".{clips[0].stem}.predictions.slp.journal"
    stale.write_bytes(b"")
    os.utime(stale, ns=(finished[f"{clips[0].stem}.predictions.slp"] - 10**9,) * 2)
    assert main(["track", *array[0]]) == 0
    assert not stale.exists() and _leftovers(out) == []

    instances = 0
    for clip in clips:
        name = f"{clip.stem}.predictions.slp"
        a, b = sio.load_slp(str(whole / name)), sio.load_slp(str(out / name))
        instances += assert_same_predictions(a, b, atol=0)
        assert [t.name for t in a.tracks] == [t.name for t in b.tracks]  # tracker restored
        assert sorted(a.provenance) == sorted(b.provenance)
        assert a.provenance["frame_selection"] == b.provenance["frame_selection"]
    assert instances > N_VIDEOS * N_FRAMES  # two animals found in most frames


def test_sigusr1_on_a_frame_range_shard_then_resume(assets: Path, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    clip = write_synthetic_video(tmp_path / "long.mp4", n_frames=240, height=64, width=64)
    args = ["track", "-i", str(clip), "-m", str(assets / SINGLE), "--device", "cpu",
            "--batch_size", "1", "--shard", "2/2", "-o", f"{tmp_path}/out/"]
    out = tmp_path / "out" / "long.shard-2-of-2.predictions.slp"
    journal = out.parent / f".{out.name}.journal"
    proc = _start([*args, "--preempt_signals", "usr1"])
    _stop_when(proc, journal, 5, signal.SIGUSR1)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 138, err[-2000:]  # 128 + SIGUSR1
    assert "Preempted (SIGUSR1)" in err and str(journal) in err
    assert not out.exists() and _leftovers(out.parent) == [journal.name]

    assert main([*args, "--resume"]) == 0
    assert "resuming" in capsys.readouterr().err
    assert _leftovers(out.parent) == []
    resumed = sio.load_slp(str(out))
    assert [lf.frame_idx for lf in resumed] == list(range(120, 240))
    assert resumed.provenance["shard"] == [2, 2]


def test_preempt_signals_are_parsed_and_checked(capsys: pytest.CaptureFixture[str]) -> None:
    assert parse_preempt_signals("TERM,USR1") == (signal.SIGTERM, signal.SIGUSR1)
    assert parse_preempt_signals(" sigusr2 , term,USR2") == (signal.SIGUSR2, signal.SIGTERM)
    assert parse_preempt_signals("none") == ()
    for bad in ("KILL", "", "TERM,none", "9"):
        with pytest.raises(ConfigError, match="--preempt_signals"):
            parse_preempt_signals(bad)
    assert main(["track", "-i", "x.mp4", "-m", "m", "--preempt_signals", "STOP"]) == 2
    (line,) = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("Error:")]
    assert "--preempt_signals 'STOP'" in line


def test_video_journals_open_at_the_first_record_and_keep_only_unfinished_videos(
        tmp_path: Path) -> None:
    header = {"graph": "g", "input": None, "models": {}, "options": {}}
    paths = {v: tmp_path / f".v{v}.journal" for v in range(3)}
    journals = VideoJournals({v: (p, header) for v, p in paths.items()})
    assert not any(p.exists() for p in paths.values())  # nothing until a video starts

    def frame(video_id: int, seq: int) -> FramePrediction:
        points = np.full((1, 2, 2), float(seq), dtype=np.float32)
        return FramePrediction(seq=seq, video_id=video_id, frame_idx=seq, points=points,
                               point_scores=np.ones((1, 2), np.float32),
                               instance_scores=np.ones(1, np.float32))

    journals.add_tracker_input(frame(1, 5))  # the tracker runs ahead of the writer
    assert paths[1].exists() and not paths[0].exists()
    journals.add(frame(0, 0))
    journals.add(frame(1, 5))
    journals.add_failure(2, 9)  # video 2: a failed frame, no frame written
    journals.remove(0)  # video 0's output is in place
    journals.close()
    assert not paths[0].exists() and not paths[2].exists() and paths[1].exists()
    # Video 1's journal is what a one-video run keeps: its frames as video 0.
    state = load_for_resume(paths[1], header)
    assert state.n_frames == 1 and state.last is not None
    assert (state.last.video_id, state.last.seq, state.last.frame_idx) == (0, 5, 5)
    assert [(p.video_id, p.seq) for p in state.tracker_inputs()] == [(0, 5)]
    np.testing.assert_array_equal(state.last.points, frame(1, 5).points)


def test_run_preemptible_stops_the_job_on_its_signal_only() -> None:
    import threading

    import anyio

    from sleapflow.errors import Preempted
    from sleapflow.jobs.preempt import run_preemptible

    cleaned: list[bool] = []

    async def stopped_job() -> int:
        os.kill(os.getpid(), signal.SIGUSR1)
        try:
            await anyio.sleep_forever()
        finally:
            cleaned.append(True)  # the job's clean-up runs before the run ends
        return 0

    async def failing_job() -> int:
        raise ConfigError("bad")

    with pytest.raises(Preempted) as info:
        anyio.run(run_preemptible, stopped_job, (signal.SIGUSR1,))
    assert info.value.status == 138 and cleaned == [True]
    assert str(info.value).startswith("Preempted (SIGUSR1)")
    with pytest.raises(ConfigError, match="bad"):  # itself, not in an exception group
        anyio.run(run_preemptible, failing_job, (signal.SIGTERM,))

    async def done() -> int:
        return 7

    assert anyio.run(run_preemptible, done, (signal.SIGTERM,)) == 7
    # Only the main thread can catch signals: from another the job just runs.
    results: list[int] = []
    worker = threading.Thread(target=lambda: results.append(
        anyio.run(run_preemptible, done, (signal.SIGTERM,))))
    worker.start()
    worker.join()
    assert results == [7]

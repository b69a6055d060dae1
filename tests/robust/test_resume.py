"""kill -9 partway through a top-down run with tracking, --resume, and compare with a run that
was never interrupted: identical instances and identical tracks."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import sleap_io as sio

from sleapflow.cli.app import main
from sleapflow.outputs.journal import read_records
from sleapflow.testing import write_synthetic_video

ROOT = Path(__file__).resolve().parents[2]
#: Frames of the clip that are run: all of them; a smaller range can be set for quick local runs.
#: The clip's blobs leave its 96 x 96 frame by about frame 140 (seed 0), so 160 frames hold every
#: instance and track there is, plus empty frames after them; a longer clip only adds empty
#: frames (it took 600 and 31 s of the suite's time).
CLIP_FRAMES = 160
FRAMES = os.environ.get("SLEAPFLOW_RESUME_FRAMES", f"0-{CLIP_FRAMES - 1}")
N_FRAMES = int(FRAMES.split("-")[1]) - int(FRAMES.split("-")[0]) + 1


def _journaled_frames(path: Path) -> int:
    if not path.exists():
        return 0
    return sum(1 for rec, _ in read_records(path) if rec.get("k") == "f")


def _frames(labels: sio.Labels) -> list[tuple[int, list[tuple[np.ndarray, float, str | None]]]]:
    out = []
    for lf in sorted(labels, key=lambda lf: lf.frame_idx):
        out.append((lf.frame_idx, [(inst.numpy(), inst.score,
                                    inst.track.name if inst.track else None)
                                   for inst in lf.instances]))
    return out


def test_sigkill_then_resume_equals_uninterrupted(assets: Path, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    clip = write_synthetic_video(tmp_path / "clip.mp4", n_frames=CLIP_FRAMES, height=96,
                                 width=96)
    models = ["-m", str(assets / "model_ckpts/minimal_instance_centroid"),
              "-m", str(assets / "model_ckpts/minimal_instance_centered_instance")]
    args = ["track", "-i", str(clip), *models, "--device", "cpu", "--tracking",
            "--frames", FRAMES, "--batch_size", "2"]
    whole = tmp_path / "whole.slp"
    assert main([*args, "-o", str(whole)]) == 0

    out = tmp_path / "resumed.slp"
    journal = tmp_path / ".resumed.slp.journal"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "sleapflow.cli.app", *args, "-o", str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    deadline = time.monotonic() + 240
    while _journaled_frames(journal) < 8 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    done = _journaled_frames(journal)
    assert 8 <= done < N_FRAMES and not out.exists()

    capsys.readouterr()
    assert main([*args, "-o", str(out)]) == 2  # a journal is there: --resume or remove it
    assert "--resume" in capsys.readouterr().err
    assert main([*args, "-o", str(out), "--resume"]) == 0
    err = capsys.readouterr().err
    assert "resuming" in err and f"frames_done={done}" in err
    assert not journal.exists()  # removed on success

    a, b = sio.load_slp(str(whole)), sio.load_slp(str(out))
    fa, fb = _frames(a), _frames(b)
    assert [f for f, _ in fa] == [f for f, _ in fb]
    assert sum(len(insts) for _, insts in fa) > 20  # the clip's two blobs are found and tracked
    for (_, ia), (_, ib) in zip(fa, fb, strict=True):
        assert len(ia) == len(ib)
        for (pa, sa, ta), (pb, sb, tb) in zip(ia, ib, strict=True):
            np.testing.assert_array_equal(pa, pb)
            assert sa == sb and ta == tb
    assert [t.name for t in a.tracks] == [t.name for t in b.tracks]


def test_mismatched_resume_is_refused(assets: Path, tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    from sleapflow.outputs.journal import JournalWriter, fingerprint

    clip = write_synthetic_video(tmp_path / "clip.mp4", n_frames=8)
    model = str(assets / "model_ckpts/minimal_instance_single_instance")
    from sleapflow.options.boundary import build_config

    cfg = build_config(data_path=str(clip), model_paths=(model,), device="cpu",
                       peak_threshold=0.5, max_tracks=3)
    out = tmp_path / "out.slp"
    header = fingerprint(cfg, graph="single_instance", model_paths=[model],
                         source_path=str(clip))
    JournalWriter(tmp_path / ".out.slp.journal", header).close()
    rc = main(["track", "-i", str(clip), "-m", model, "--device", "cpu", "-o", str(out),
               "--peak_threshold", "0.3", "--max_tracks", "2", "--resume"])
    assert rc == 2
    (line,) = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("Error:")]
    assert "different run" in line and "--peak_threshold (0.5 then, 0.3 now)" in line
    # A tracker option is named as typed, not as the sub-config that holds it.
    assert "--max_tracks (3 then, 2 now)" in line and "--tracker " not in line


def test_a_graph_that_fails_to_build_leaves_no_journal(assets: Path, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    """The journal is made before the graph (its stages take it in their constructors); a build
    that fails must not leave a journal of no frame behind, or the next run would ask for
    --resume."""
    import sleapflow.graphs.build as build

    clip = write_synthetic_video(tmp_path / "clip.mp4", n_frames=4)
    model = str(assets / "model_ckpts/minimal_instance_single_instance")
    out = tmp_path / "out.slp"

    def broken_build(*args: object, **kwargs: object) -> None:
        raise build.ConfigError("the graph could not be built")

    monkeypatch.setattr(build, "build_graph", broken_build)
    argv = ["track", "-i", str(clip), "-m", model, "--device", "cpu", "-o", str(out)]
    assert main(argv) == 2
    assert "the graph could not be built" in capsys.readouterr().err
    assert not (tmp_path / ".out.slp.journal").exists() and not out.exists()
    monkeypatch.undo()
    assert main(argv) == 0 and out.exists()  # no leftover journal stops the next run


def test_a_run_that_fails_before_its_first_frame_leaves_no_journal(
        assets: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A model that cannot be loaded fails the run before any frame is written: there is
    nothing to resume, so no journal is left to block the fixed command."""
    clip = write_synthetic_video(tmp_path / "clip.mp4", n_frames=4)
    model = tmp_path / "model"
    shutil.copytree(assets / "model_ckpts/minimal_instance_single_instance", model)
    ckpt = next(p for p in model.iterdir() if p.suffix == ".ckpt")
    good = ckpt.read_bytes()
    ckpt.write_bytes(good[: len(good) // 3])  # the config reads, the weights do not
    out = tmp_path / "out.slp"
    argv = ["track", "-i", str(clip), "-m", str(model), "--device", "cpu", "-o", str(out)]
    assert main(argv) != 0
    assert "Error:" in capsys.readouterr().err
    assert not (tmp_path / ".out.slp.journal").exists() and not out.exists()
    ckpt.write_bytes(good)
    assert main(argv) == 0 and out.exists()  # the fixed command simply runs

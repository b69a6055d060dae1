"""The documented cluster recipes (docs/recipes/), run as far as a machine without SLURM allows:
the job-array script with stand-ins for srun and scontrol around the real CLI (a SIGUSR1
before the time limit, the task requeues itself, the rerun finishes without redoing a video),
and the Ray-on-SLURM script's orchestration with stand-ins for srun, scontrol, ray and the
driver."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sleapflow.outputs.journal import read_records
from sleapflow.testing import write_synthetic_video

ROOT = Path(__file__).resolve().parents[2]
RECIPES = ROOT / "docs" / "recipes"
SINGLE = "model_ckpts/minimal_instance_single_instance"


def _tool(folder: Path, name: str, body: str) -> None:
    path = folder / name
    path.write_text("#!/bin/bash\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


def _journaled(path: Path) -> int:
    if not path.exists():
        return 0
    return sum(1 for rec, _ in read_records(path) if rec.get("k") == "f")


@pytest.mark.parametrize("recipe", ["slurm_array.sbatch", "ray_on_slurm.sbatch"])
def test_recipes_are_valid_bash(recipe: str) -> None:
    subprocess.run(["bash", "-n", str(RECIPES / recipe)], check=True)


def test_slurm_array_recipe_requeues_on_the_warning_signal_and_resumes(
        assets: Path, tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    # srun runs the step here, in the same process (its pid noted); scontrol notes its calls.
    _tool(bin_dir, "srun", 'echo $$ > "$FAKE_STEP_PID"\nexec "$@"\n')
    _tool(bin_dir, "scontrol", 'echo "$@" >> "$FAKE_SCONTROL_LOG"\n')
    short = write_synthetic_video(tmp_path / "short.mp4", n_frames=12, height=64, width=64)
    long = write_synthetic_video(tmp_path / "long.mp4", n_frames=240, height=64, width=64, seed=1)
    videos = tmp_path / "videos.txt"
    videos.write_text(f"{short}\n{long}\n")
    out = tmp_path / "out"
    step_pid, scontrol_log = tmp_path / "step.pid", tmp_path / "scontrol.log"
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "PYTHONPATH": str(ROOT),
           "SLURM_ARRAY_TASK_ID": "1", "SLURM_ARRAY_TASK_COUNT": "1", "SLURM_JOB_ID": "4242",
           "INPUT_LIST": str(videos), "OUT": f"{out}/", "MODELS": f"-m {assets / SINGLE}",
           "TRACK_OPTIONS": "--device cpu --batch_size 1",
           "SLEAPFLOW": f"{sys.executable} -m sleapflow",
           "FAKE_STEP_PID": str(step_pid), "FAKE_SCONTROL_LOG": str(scontrol_log)}
    script = ["bash", str(RECIPES / "slurm_array.sbatch")]

    task = subprocess.Popen(script, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    journal = out / ".long.predictions.slp.journal"
    deadline = time.monotonic() + 240
    while _journaled(journal) < 5 and task.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert task.poll() is None, "the task ended before its warning signal"
    os.kill(int(step_pid.read_text()), signal.SIGUSR1)  # what --signal=USR1@120 sends the step
    _, err = task.communicate(timeout=120)
    assert task.returncode == 0, err[-2000:]
    assert "Preempted (SIGUSR1)" in err
    assert scontrol_log.read_text().split() == ["requeue", "4242"]
    finished = (out / "short.predictions.slp").stat().st_mtime_ns
    assert journal.exists() and not (out / "long.predictions.slp").exists()

    # The requeued task: the same script, the same command.
    rerun = subprocess.run(script, env=env, capture_output=True, text=True, timeout=240)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert "1 written, 1 skipped, 0 failed, of 2 input(s)" in rerun.stdout
    assert "resuming" in rerun.stderr
    assert scontrol_log.read_text().split() == ["requeue", "4242"]  # not requeued again
    assert (out / "short.predictions.slp").stat().st_mtime_ns == finished
    assert sorted(p.name for p in out.iterdir()) == ["long.predictions.slp",
                                                     "short.predictions.slp"]


@pytest.mark.parametrize(("driver_rc", "script_rc", "requeued"), [(0, 0, False), (143, 0, True),
                                                                  (1, 1, False)])
def test_ray_on_slurm_recipe_starts_the_cluster_then_the_driver(
        tmp_path: Path, driver_rc: int, script_rc: int, requeued: bool) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "calls.log"
    _tool(bin_dir, "srun", 'while [ "${1#-}" != "$1" ]; do shift; done\nexec "$@"\n')
    _tool(bin_dir, "scontrol", 'if [ "$1" = show ]; then printf "n1\\nn2\\nn3\\n"; '
          'else echo "scontrol $*" >> "$CALLS"; fi\n')
    _tool(bin_dir, "hostname", "echo 10.0.0.1\n")
    _tool(bin_dir, "ray", 'echo "ray $*" >> "$CALLS"\n'
          'if [ "$1" = status ]; then printf "node_1\\nnode_2\\nnode_3\\n"; fi\n')
    _tool(bin_dir, "driver", 'echo "driver $*" >> "$CALLS"\nexit "$DRIVER_RC"\n')
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "CALLS": str(log),
           "SLURM_JOB_NODELIST": "n[1-3]", "SLURM_JOB_ID": "77", "SLEAPFLOW": "driver",
           "DRIVER_RC": str(driver_rc), "MODELS": "-m models/bu"}
    done = subprocess.run(["bash", str(RECIPES / "ray_on_slurm.sbatch")], env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == script_rc, done.stderr
    calls = log.read_text().splitlines()
    # The head on the first node, a worker on each other (background steps: in any order).
    assert sorted(c for c in calls if c.startswith("ray start")) == [
        "ray start --address=10.0.0.1:6379 --block", "ray start --address=10.0.0.1:6379 --block",
        "ray start --head --node-ip-address=10.0.0.1 --port=6379 --block"]
    (driver,) = [c for c in calls if c.startswith("driver")]
    assert driver == ("driver track --input_list videos.txt -m models/bu -o predictions/ "
                      "--tracking --ray 10.0.0.1:6379 --skip_existing")
    # The driver runs once every node has joined, and the cluster is stopped after it.
    assert calls.index(driver) > max(calls.index(c) for c in calls if c.startswith("ray status"))
    assert calls.index("ray stop --force") > calls.index(driver)
    assert ("scontrol requeue 77" in calls) is requeued

"""The Ray runner on a real local cluster (``ray start --head`` on loopback, two workers): its
outputs equal the local run's, also when a worker process is killed in the middle of a task."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import sleap_io as sio
from many_helpers import TOPDOWN, assert_same_predictions, cut_clip
from ray_cluster import busy_workers, ray_env

from sleapflow.cli.app import main


@pytest.mark.timeout(600)
def test_ray_run_with_a_killed_worker_equals_the_local_run(
        cluster: tuple[str, int], assets: Path, tmp_path: Path) -> None:
    address, pgid = cluster
    source = assets / "datasets/centered_pair_small.mp4"
    clips = [cut_clip(source, tmp_path / f"r{k}.mp4", 100 * k, 4 + k) for k in range(2)]
    models = [a for m in TOPDOWN for a in ("-m", str(assets / m))]
    local, remote = tmp_path / "local", tmp_path / "ray"
    assert main(["track", "-i", str(clips[0]), "-i", str(clips[1]), *models, "--tracking",
                 "--device", "cpu", "-o", f"{local}/"]) == 0
    # Chunks of 2-3 frames: each video is cut into frame ranges, merged and tracked after.
    driver = subprocess.Popen(
        [sys.executable, "-m", "sleapflow.cli.app", "track", "-i", str(clips[0]), "-i",
         str(clips[1]), *models, "--tracking", "--device", "cpu", "-o", f"{remote}/",
         "--ray", address, "--ray_workers", "2", "--ray_chunk_frames", "3"],
        env=ray_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    killed = None
    deadline = time.monotonic() + 240
    while driver.poll() is None and time.monotonic() < deadline:
        busy = busy_workers(pgid)
        if busy and killed is None:
            killed = busy[0]
            os.kill(killed, signal.SIGKILL)  # a worker dies in the middle of a task
        time.sleep(0.05)
    if driver.poll() is None:
        driver.kill()
    out, err = driver.communicate()
    assert killed is not None, "no worker was seen running a task"
    assert driver.returncode == 0, err[-3000:]
    assert "2 written, 0 skipped, 0 failed" in out
    for clip in clips:
        name = f"{clip.stem}.predictions.slp"
        assert_same_predictions(sio.load_slp(str(remote / name)), sio.load_slp(str(local / name)))
    # Nothing left behind: no chunk folders, no temporary files, one output per video.
    assert sorted(p.name for p in remote.iterdir()) == sorted(f"{c.stem}.predictions.slp"
                                                              for c in clips)

"""The Ray runner on a real local cluster (``ray start --head`` on loopback, two workers): its
outputs equal the local run's, also when a worker process is killed in the middle of a task."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sleap_io as sio
from many_helpers import TOPDOWN, assert_same_predictions, cut_clip

from sleapflow.cli.app import main

pytest.importorskip("ray", reason="the Ray extra is not installed (pip install 'sleapflow[ray]')")

REPO = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env() -> dict[str, str]:
    # The worktree's code, in the driver and in Ray's workers.
    path = os.environ.get("PYTHONPATH", "")
    return {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{path}" if path else str(REPO),
            "RAY_USAGE_STATS_ENABLED": "0"}


@pytest.fixture(scope="module")
def cluster() -> Iterator[tuple[str, int]]:
    """A head node with 2 CPUs on 127.0.0.1, run in the foreground (``--block``) in its own
    process group, so that stopping it stops every process it started, and only those."""
    port = _free_port()
    temp = tempfile.mkdtemp(prefix="sfray", dir="/tmp")  # short: Ray's socket paths are long
    proc = subprocess.Popen(
        [sys.executable, "-m", "ray.scripts.scripts", "start", "--head", "--block",
         "--node-ip-address=127.0.0.1", f"--port={port}", "--num-cpus=2",
         "--include-dashboard=false", "--disable-usage-stats", f"--temp-dir={temp}",
         "--object-store-memory=100000000"],
        env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while not list(Path(temp).glob("session_*/sockets/raylet")):
            assert proc.poll() is None, "ray start exited"
            assert time.monotonic() < deadline, "the Ray head did not start in 60 s"
            time.sleep(0.2)
        yield f"127.0.0.1:{port}", proc.pid
    finally:
        workers = [pid for pid, _ in _cluster_pids(proc.pid).items()
                   if _processes().get(pid, (0, proc.pid, b""))[1] != proc.pid]
        for sig, wait in ((signal.SIGTERM, 15), (signal.SIGKILL, 5)):
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                proc.wait(timeout=wait)
            except subprocess.TimeoutExpired:
                continue
        # What outlives ray start itself: the group (raylet, GCS) and the workers, by pid.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        for pid in workers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def _processes() -> dict[int, tuple[int, int, bytes]]:
    """pid → (parent pid, process group, first word of the command line), for every process."""
    out = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().split(b"\0")[0]
            stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            out[int(entry.name)] = (int(stat[1]), int(stat[2]), cmd)
        except (OSError, IndexError, ValueError):
            continue
    return out


def _cluster_pids(pgid: int) -> dict[int, bytes]:
    """The cluster's processes: its process group, and the workers its raylet started (Ray
    puts each worker in a session of its own)."""
    procs = _processes()
    group = {pid for pid, (_, g, _) in procs.items() if g == pgid}
    return {pid: cmd for pid, (ppid, g, cmd) in procs.items() if pid in group or ppid in group}


def _busy_workers(pgid: int) -> list[int]:
    """Pids of the cluster's actor processes that are running a task now."""
    return [pid for pid, cmd in _cluster_pids(pgid).items() if cmd.startswith(b"ray::_Worker.run")]


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
        env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    killed = None
    deadline = time.monotonic() + 240
    while driver.poll() is None and time.monotonic() < deadline:
        busy = _busy_workers(pgid)
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

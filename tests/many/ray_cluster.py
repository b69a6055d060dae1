"""A real local Ray cluster for the tests (``ray start --head`` on loopback, two CPUs), shared by
every test of this folder that needs one, and the process helpers that find its workers."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ray_env() -> dict[str, str]:
    # The worktree's code, in the driver and in Ray's workers.
    path = os.environ.get("PYTHONPATH", "")
    return {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{path}" if path else str(REPO),
            "RAY_USAGE_STATS_ENABLED": "0"}


@contextlib.contextmanager
def ray_cluster(num_cpus: int = 2) -> Iterator[tuple[str, int]]:
    """A head node with ``num_cpus`` CPUs on 127.0.0.1, run in the foreground (``--block``) in its own
    process group, so that stopping it stops every process it started, and only those."""
    port = _free_port()
    temp = tempfile.mkdtemp(prefix="sfray", dir="/tmp")  # short: Ray's socket paths are long
    proc = subprocess.Popen(
        [sys.executable, "-m", "ray.scripts.scripts", "start", "--head", "--block",
         "--node-ip-address=127.0.0.1", f"--port={port}", f"--num-cpus={num_cpus}",
         "--include-dashboard=false", "--disable-usage-stats", f"--temp-dir={temp}",
         "--object-store-memory=100000000"],
        env=ray_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
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
        # Killed outright: a throw-away cluster has nothing to save, and ray start's graceful
        # stop on SIGTERM takes about 33 s (it was given 15, then killed anyway).
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        # What outlives ray start itself: the group (raylet, GCS) and the workers, by pid.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        for pid in workers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        shutil.rmtree(temp, ignore_errors=True)


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


def busy_workers(pgid: int) -> list[int]:
    """Pids of the cluster's actor processes that are running a task now."""
    return [pid for pid, cmd in _cluster_pids(pgid).items() if cmd.startswith(b"ray::_Worker.run")]

"""``--duration`` ends a live run on time: a stdin stream that would go on for a minute stops
after the asked seconds, exit 0, with every frame predicted so far in a complete output."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import sleap_io as sio

sys.path.insert(0, str(Path(__file__).parent))
from live_helpers import stream_packets, write_ts_clip

N_FRAMES = 12
#: The stream runs this many times the 12-frame clip at 30 fps (about 50 s): far past the test.
FEED_LOOPS = 120


@pytest.fixture(scope="module")
def clip(assets: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("live_duration") / "clip.ts"
    return write_ts_clip(assets / "datasets" / "centered_pair_small.mp4", out, N_FRAMES)


def test_duration_stops_a_live_stream_and_writes_what_was_predicted(
        assets: Path, clip: Path, tmp_path: Path) -> None:
    out = tmp_path / "live.slp"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2]),
           "OMP_NUM_THREADS": "1"}
    stop = threading.Event()
    duration = 2.0
    cmd = [sys.executable, "-m", "sleapflow", "track", "-i", "-",
           "-m", str(assets / "model_ckpts" / "minimal_instance_single_instance"),
           "--runtime", "torch", "-o", str(out), "--publish", "-", "--duration", str(duration),
           "--stream_timeout", "30"]
    with subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, env=env) as proc:
        assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
        feeder = threading.Thread(target=_feed, args=(clip, proc.stdin, stop), daemon=True)
        feeder.start()
        lines: list[dict[str, Any]] = []
        first_pose_at: float | None = None
        try:
            for line in proc.stdout:
                lines.append(json.loads(line))
                if first_pose_at is None and lines[-1]["type"] == "poses":
                    first_pose_at = time.monotonic()
            rc = proc.wait(30)
            ended_at = time.monotonic()
            stderr = proc.stderr.read().decode()
        finally:
            stop.set()
            proc.kill()
            feeder.join(10)
            with contextlib.suppress(BrokenPipeError):
                proc.stdin.close()
    assert rc == 0, stderr
    assert first_pose_at is not None, stderr
    # The clock starts when the source opens, a little before the first pose: the run ends
    # about `duration` seconds later, not when the minute-long stream does.
    assert ended_at - first_pose_at < duration + 10
    poses = [m for m in lines if m["type"] == "poses"]
    assert lines[-1]["type"] == "end" and lines[-1]["frames"] == len(poses)
    # 30 fps for about two seconds; far fewer than the stream had to give.
    assert 10 <= len(poses) < FEED_LOOPS * N_FRAMES // 4
    labels = sio.load_slp(str(out))
    assert sorted(lf.frame_idx for lf in labels.labeled_frames) == [m["frame_idx"] for m in poses]
    assert not list(tmp_path.glob("*.journal*"))


def _feed(clip: Path, pipe: Any, stop: threading.Event) -> None:
    # The run stops reading mid-stream: a broken pipe, in PyAV's words.
    with contextlib.suppress(Exception):
        stream_packets(clip, pipe, stop=stop, loops=FEED_LOOPS)

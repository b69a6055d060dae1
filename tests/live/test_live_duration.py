"""``--duration`` ends a live run on time: a stdin stream that would go on for a minute stops
after the asked seconds, exit 0, with every frame predicted so far in a complete output."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import sleap_io as sio

sys.path.insert(0, str(Path(__file__).parent))
from live_helpers import CLIP_FRAMES, stdin_stream_run

#: The stream runs this many times the clip at 30 fps (about 50 s): far past the test.
FEED_LOOPS = 120


def test_duration_stops_a_live_stream_and_writes_what_was_predicted(
        assets: Path, clip: Path, tmp_path: Path) -> None:
    out = tmp_path / "live.slp"
    duration = 2.0
    args = ["track", "-i", "-", "-m", str(assets / "model_ckpts" / "minimal_instance_single_instance"),
            "--runtime", "torch", "-o", str(out), "--publish", "-", "--duration", str(duration),
            "--stream_timeout", "30"]
    lines: list[dict[str, Any]] = []
    first_pose_at: float | None = None
    with stdin_stream_run(args, clip, FEED_LOOPS) as proc:
        assert proc.stdout is not None and proc.stderr is not None
        for line in proc.stdout:
            lines.append(json.loads(line))
            if first_pose_at is None and lines[-1]["type"] == "poses":
                first_pose_at = time.monotonic()
        rc = proc.wait(30)
        ended_at = time.monotonic()
        stderr = proc.stderr.read().decode()
    assert rc == 0, stderr
    assert first_pose_at is not None, stderr
    # The clock starts when the source opens, a little before the first pose: the run ends
    # about `duration` seconds later, not when the minute-long stream does.
    assert ended_at - first_pose_at < duration + 10
    poses = [m for m in lines if m["type"] == "poses"]
    assert lines[-1]["type"] == "end" and lines[-1]["frames"] == len(poses)
    # 30 fps for about two seconds; far fewer than the stream had to give.
    assert 10 <= len(poses) < FEED_LOOPS * CLIP_FRAMES // 4
    labels = sio.load_slp(str(out))
    assert sorted(lf.frame_idx for lf in labels.labeled_frames) == [m["frame_idx"] for m in poses]
    assert not list(tmp_path.glob("*.journal*"))


"""The live tests' shared clip: frames of a real video as a 30 fps MPEG-TS stream."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from live_helpers import CLIP_FRAMES, write_ts_clip


@pytest.fixture(scope="session")
def clip(assets: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("live") / "clip.ts"
    return write_ts_clip(assets / "datasets" / "centered_pair_small.mp4", out, CLIP_FRAMES)

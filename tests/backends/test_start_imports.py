"""A ``track`` run loads sleap-io's media modules without aiohttp (sleap-io imports it only to
check its version), sleap-io's version check still sees the installed version, and aiohttp is the
real package when remote media need it later in the same process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from sleapflow.testing import write_synthetic_model, write_synthetic_video

ROOT = Path(__file__).resolve().parents[2]

_AFTER_TRACK = """
import sys
from sleapflow.cli.app import main
rc = main(sys.argv[1:])
assert rc == 0, rc
assert "sleap_io.io.video_reading" in sys.modules
assert "aiohttp" not in sys.modules, "a track run imported aiohttp"
import aiohttp
assert hasattr(aiohttp, "ClientSession"), "the stand-in outlived the import"
from sleap_io.io import _remote
_remote._check_aiohttp_version()
print("OK")
"""

_OLD_VERSION = """
import warnings
from importlib import metadata
real = metadata.version
metadata.version = lambda name: "3.0.0" if name == "aiohttp" else real(name)
from sleapflow.lazy import import_sleap_io_media
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    import_sleap_io_media()
print(any("aiohttp 3.0.0" in str(w.message) for w in caught))
"""


def _python(code: str, *args: str) -> str:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                            env=env, cwd=ROOT, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout.strip().splitlines()[-1]


def test_a_track_run_never_imports_aiohttp_and_the_real_one_loads_after(tmp_path: Path) -> None:
    model = write_synthetic_model(tmp_path / "model", "single_instance", n_nodes=2, filters=4,
                                  max_stride=8, scale=1.0)
    clip = write_synthetic_video(tmp_path / "clip.mp4", n_frames=2, height=48, width=64)
    out = tmp_path / "out.slp"
    assert _python(_AFTER_TRACK, "track", "-i", str(clip), "-m", str(model), "--runtime", "torch",
                   "-o", str(out)) == "OK"
    assert out.stat().st_size > 0


def test_sleap_ios_version_check_sees_the_installed_version() -> None:
    assert _python(_OLD_VERSION) == "True"

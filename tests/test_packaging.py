"""The package that is imported is the one expected, with every file of its source tree.

``.ci/run`` runs this module twice: against the editable install of the checkout, and against the
built wheel installed into a clean environment (``SLEAPFLOW_EXPECT_INSTALLED=1``), where a data file
left out of the wheel (the demo model, its README) or a module missing from it fails here.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import sleapflow

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT / "sleapflow"
IMPORTED = Path(sleapflow.__file__).resolve().parent


def _package_files(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*")
            if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"}


def test_the_imported_package_is_the_one_expected() -> None:
    if os.environ.get("SLEAPFLOW_EXPECT_INSTALLED") == "1":
        assert not IMPORTED.is_relative_to(ROOT), f"{IMPORTED} is the checkout, not the wheel"
        assert "site-packages" in IMPORTED.parts
    else:
        assert IMPORTED == SOURCE


def test_every_source_file_ships_with_the_package() -> None:
    missing = _package_files(SOURCE) - _package_files(IMPORTED)
    assert not missing, f"left out of the installed package: {sorted(missing)}"
    assert (IMPORTED / "demo" / "model" / "best.ckpt").stat().st_size > 0


def test_python_dash_m_runs_the_command_line() -> None:
    result = subprocess.run([sys.executable, "-m", "sleapflow", "--help"], capture_output=True,
                            text=True, timeout=120, cwd=IMPORTED.parent)
    assert result.returncode == 0, result.stderr
    for command in ("track", "eval", "system", "demo", "serve"):
        assert command in result.stdout

"""What the tracking tests share: a bad tracker option is refused before anything runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from sleapflow.cli.app import main


def assert_refused_before_running(bad: list[str], reference: Path, tmp_path: Path,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    """Re-tracking a reference .slp with ``bad`` options exits 2 with exactly one ``Error:``
    line and leaves an existing output as it was."""
    out = tmp_path / "out.slp"
    out.write_bytes(b"keep me")
    src = str(reference / "trackonly_default.slp")
    assert main(["track", "-i", src, "-t", *bad, "-o", str(out)]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and err[0].startswith("Error:")
    assert out.read_bytes() == b"keep me"

"""The one ``.slp`` reader: a missing file is InputNotFoundError, an unreadable one a
VideoDecodeError that names the file and the cause; every command that reads a .slp uses it."""

from __future__ import annotations

import shutil
from pathlib import Path

import h5py
import pytest

from sleapflow.cli.app import main
from sleapflow.errors import ConfigError, InputNotFoundError, VideoDecodeError
from sleapflow.evaluation import run_evaluation
from sleapflow.inputs import plan_input
from sleapflow.jobs.merge import merge_shards
from sleapflow.options.config import InferenceConfig
from sleapflow.outputs.slp_read import read_slp

LABELS = "datasets/small_robot_minimal.slp"


def test_a_readable_file_gives_its_labels(assets: Path) -> None:
    labels = read_slp(assets / LABELS)
    assert labels.videos and labels.labeled_frames
    assert len(read_slp(str(assets / LABELS), open_videos=False).videos) == len(labels.videos)


def test_a_missing_file_is_input_not_found(tmp_path: Path) -> None:
    with pytest.raises(InputNotFoundError, match=r"shard output '.*gone\.slp' does not exist"):
        read_slp(tmp_path / "gone.slp", "shard output")
    # Handlers of a wrong path and of an unreadable input both still catch it.
    assert issubclass(InputNotFoundError, ConfigError)
    assert issubclass(InputNotFoundError, VideoDecodeError)


def test_a_file_that_is_not_hdf5_is_a_read_error_saying_so(tmp_path: Path) -> None:
    bogus = tmp_path / "notes.slp"
    bogus.write_text("these are my notes, not labels")
    with pytest.raises(VideoDecodeError) as caught:
        read_slp(bogus)
    text = str(caught.value)
    assert not isinstance(caught.value, InputNotFoundError)
    assert "cannot read labels file" in text and "notes.slp" in text
    assert "not an HDF5 file" in text and "copied completely" in text
    assert isinstance(caught.value.__cause__, OSError)  # h5py's error, chained


def test_hdf5_that_is_not_sleap_labels_and_a_folder(tmp_path: Path) -> None:
    other = tmp_path / "other.slp"
    with h5py.File(other, "w") as f:
        f["x"] = 1
    with pytest.raises(VideoDecodeError, match="HDF5 file but not SLEAP labels"):
        read_slp(other)
    folder = tmp_path / "folder.slp"
    folder.mkdir()
    with pytest.raises(VideoDecodeError, match="is a folder"):
        read_slp(folder)


def test_a_truncated_file_is_a_read_error(assets: Path, tmp_path: Path) -> None:
    whole = (assets / LABELS).read_bytes()
    cut = tmp_path / "cut.slp"
    cut.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(VideoDecodeError, match=r"cut\.slp.*truncated"):
        read_slp(cut)


def test_every_reader_of_a_slp_reports_the_same_types(assets: Path, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    bogus = tmp_path / "bogus.slp"
    bogus.write_text("not labels")
    shutil.copy(assets / LABELS, tmp_path / "good.slp")
    for path, error in ((tmp_path / "gone.slp", InputNotFoundError), (bogus, VideoDecodeError)):
        with pytest.raises(error):
            merge_shards([str(tmp_path / "good.slp"), str(path)])
        with pytest.raises(error):
            run_evaluation(tmp_path / "good.slp", path)
    with pytest.raises(VideoDecodeError, match="not an HDF5 file"):
        plan_input(InferenceConfig(data_path=str(bogus)))
    with pytest.raises(InputNotFoundError, match="input not found"):
        plan_input(InferenceConfig(data_path=str(tmp_path / "gone.slp")))
    # The CLI: one line, exit 2 (the user can fix the path or the file).
    assert main(["render", str(bogus)]) == 2
    err = capsys.readouterr().err
    assert err.count("Error:") == 1 and "not an HDF5 file" in err and "Traceback" not in err

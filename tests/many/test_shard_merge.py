"""Shards of one video merged and re-tracked equal the single-process tracked run."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import sleap_io as sio

from sleapflow.cli.app import main
from sleapflow.inputs.expand import shard_slice
from sleapflow.jobs.merge import merge_shards


def _coords(inst: sio.Instance) -> tuple:
    return tuple(round(float(v), 3) for v in np.nan_to_num(inst.numpy(), nan=-1.0).ravel())


@pytest.fixture(scope="module")
def shard_files(reference: Path, tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """The untracked reference predictions cut as ``--shard I/3`` cuts a video's frames."""
    source = sio.load_slp(str(reference / "topdown__centered_pair_small.slp"))
    folder = tmp_path_factory.mktemp("shards")
    frames = sorted(source.labeled_frames, key=lambda lf: lf.frame_idx)
    paths = []
    for i in (1, 2, 3):
        part = frames[shard_slice(len(frames), (i, 3))]
        labels = sio.Labels(labeled_frames=part, videos=source.videos, skeletons=source.skeletons,
                            provenance={"frame_selection": {"method": "all",
                                                            "frames_processed": len(part)}})
        path = folder / f"clip.shard-{i}-of-3.predictions.slp"
        sio.save_slp(labels, str(path))
        paths.append(path)
    return paths


def test_merged_retracked_shards_equal_the_tracking_reference(
        shard_files: list[Path], reference: Path, tmp_path: Path) -> None:
    out = tmp_path / "merged.slp"
    # Shards given out of order: the merge sorts frames.
    assert main(["merge", *map(str, shard_files[::-1]), "-o", str(out), "--tracking"]) == 0
    ours = sio.load_slp(str(out))
    ref = sio.load_slp(str(reference / "trackonly_default.slp"))
    ref_frames = {lf.frame_idx: lf for lf in ref.labeled_frames}
    pairs: Counter[tuple[str, str]] = Counter()
    n = 0
    for lf in ours.labeled_frames:
        by_coords = {_coords(i): i for i in ref_frames[lf.frame_idx].instances}
        for inst in lf.instances:
            match = by_coords[_coords(inst)]
            pairs[(inst.track.name, match.track.name)] += 1
            n += 1
    assert n == sum(len(lf.instances) for lf in ref.labeled_frames) > 500
    assert len(ours.tracks) == len(ref.tracks)
    # The same assignment up to renaming: each of our tracks maps to one reference track.
    best: dict[str, tuple[int, str]] = {}
    for (mine, theirs), count in pairs.items():
        best[mine] = max(best.get(mine, (0, "")), (count, theirs))
    assert len({theirs for _, theirs in best.values()}) == len(best)  # a renaming, one to one
    assert sum(count for count, _ in best.values()) / n >= 0.99
    assert len(ours.labeled_frames) == len(ref.labeled_frames)


def test_merge_without_tracking_keeps_every_frame_once(shard_files: list[Path],
                                                       reference: Path) -> None:
    merged = merge_shards([str(p) for p in shard_files])
    source = sio.load_slp(str(reference / "topdown__centered_pair_small.slp"))
    assert [lf.frame_idx for lf in merged.labeled_frames] == \
        sorted(lf.frame_idx for lf in source.labeled_frames)
    assert merged.provenance["merged_from"] == [str(p) for p in shard_files]


def test_overlapping_or_foreign_shards_are_refused(shard_files: list[Path], reference: Path,
                                                   tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "m.slp"
    assert main(["merge", str(shard_files[0]), str(shard_files[0]), "-o", str(out)]) == 2
    assert "overlap" in capsys.readouterr().err
    other = reference / "single_instance__small_robot.slp"
    assert main(["merge", str(shard_files[0]), str(other), "-o", str(out)]) == 2
    assert "not an output for the video" in capsys.readouterr().err
    assert not out.exists()

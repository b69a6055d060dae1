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
                                                            "frames_processed": len(part)},
                                        "shard": [i, 3]})
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
    assert "given twice" in capsys.readouterr().err
    # Outputs that do not say which shard they are (Ray's chunks) are checked by their frames.
    unmarked = []
    for k in range(2):
        labels = sio.load_slp(str(shard_files[0]))
        labels.provenance = {k: v for k, v in labels.provenance.items() if k != "shard"}
        unmarked.append(tmp_path / f"part-{k}.slp")
        sio.save_slp(labels, str(unmarked[-1]))
    assert main(["merge", *map(str, unmarked), "-o", str(out)]) == 2
    assert "overlap" in capsys.readouterr().err
    other = reference / "single_instance__small_robot.slp"
    assert main(["merge", str(shard_files[0]), str(other), "-o", str(out)]) == 2
    assert "not an output for the video" in capsys.readouterr().err
    assert not out.exists()


def test_an_incomplete_set_of_shards_is_refused_unless_allowed(
        shard_files: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "m.slp"
    out.write_bytes(b"an earlier merge")
    partial = [str(shard_files[0]), str(shard_files[2])]
    assert main(["merge", *partial, "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert "shard(s) 2 of 3 are missing" in err and "--allow_partial" in err
    assert "Traceback" not in err and out.read_bytes() == b"an earlier merge"
    assert main(["merge", *partial, "-o", str(out), "--allow_partial"]) == 0
    merged = sio.load_slp(str(out))
    expected = sorted(lf.frame_idx for p in partial for lf in sio.load_slp(p).labeled_frames)
    assert [lf.frame_idx for lf in merged.labeled_frames] == expected
    assert "shard" not in merged.provenance  # the merged output is no one shard
    # Shards of runs cut differently, or a shard given twice, are not one set.
    other = sio.load_slp(str(shard_files[1]))
    other.provenance = {**other.provenance, "shard": [2, 4]}
    foreign = tmp_path / "clip.shard-2-of-4.predictions.slp"
    sio.save_slp(other, str(foreign))
    assert main(["merge", str(shard_files[0]), str(foreign), "-o", str(tmp_path / "x.slp")]) == 2
    assert "different --shard N" in capsys.readouterr().err


def test_frame_shards_never_share_one_output(assets: Path, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    """Each --shard run of one video records its shard; -o FILE with --shard would have every
    shard replace the last one's file, so it is refused before any work."""
    clip = str(assets / "datasets/small_robot.mp4")
    model = str(assets / "model_ckpts/minimal_instance_single_instance")
    out = tmp_path / "out.slp"
    out.write_bytes(b"shard 1's predictions")
    rc = main(["track", "-i", clip, "-m", model, "--frames", "0-5", "--shard", "2/2", "-d", "cpu",
               "-o", str(out)])
    err = capsys.readouterr().err
    assert rc == 2 and "every shard of this video would write that one file" in err
    assert out.read_bytes() == b"shard 1's predictions"
    folder = tmp_path / "shards"
    for i in (1, 2):
        assert main(["track", "-i", clip, "-m", model, "--frames", "0-5", "--shard", f"{i}/2",
                     "-d", "cpu", "-o", f"{folder}/"]) == 0
    written = sorted(folder.glob("*.slp"))
    assert [p.name for p in written] == [f"small_robot.shard-{i}-of-2.predictions.slp" for i in (1, 2)]
    assert [sio.load_slp(str(p)).provenance["shard"] for p in written] == [[1, 2], [2, 2]]
    assert main(["merge", str(written[1]), "-o", str(tmp_path / "half.slp")]) == 2
    assert main(["merge", *map(str, written), "-o", str(tmp_path / "whole.slp")]) == 0
    whole = sio.load_slp(str(tmp_path / "whole.slp"))
    assert [lf.frame_idx for lf in whole.labeled_frames] == list(range(6))

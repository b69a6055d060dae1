"""Several videos in one call: one graph, one output per video, each equal to a single run."""

from __future__ import annotations

from pathlib import Path

import pytest
import sleap_io as sio
from many_helpers import TOPDOWN, assert_same_predictions, cut_clip

from sleapflow.cli.app import main
from sleapflow.inputs.expand import expand_inputs, parse_shard, shard_slice


@pytest.fixture(scope="module")
def clips(assets: Path, tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    folder = tmp_path_factory.mktemp("clips")
    source = assets / "datasets/centered_pair_small.mp4"
    # Different lengths, so batches straddle the video boundaries in the many-input run.
    return [cut_clip(source, folder / f"clip{k}.mp4", 60 * k, 5 + k) for k in range(3)]


@pytest.fixture(scope="module")
def many_run(clips: list[Path], assets: Path,
             tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int, str]:
    out = tmp_path_factory.mktemp("many_out")
    missing = clips[0].parent / "missing.mp4"
    broken = clips[0].parent / "broken.mp4"
    broken.write_bytes(b"not a video at all")
    models = [a for m in TOPDOWN for a in ("-m", str(assets / m))]
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        rc = main(["track", "-i", str(clips[0]), "-i", str(missing), "-i", str(clips[1]),
                   "-i", str(broken), "-i", str(clips[2]), *models, "--tracking",
                   "--device", "cpu", "-o", f"{out}/"])
    return out, rc, buf.getvalue()


@pytest.fixture(scope="module")
def single_runs(clips: list[Path], assets: Path,
                tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("single_out")
    models = [a for m in TOPDOWN for a in ("-m", str(assets / m))]
    runs = {}
    for clip in clips:
        runs[clip.stem] = out / f"{clip.stem}.single.slp"
        assert main(["track", "-i", str(clip), *models, "--tracking", "--device", "cpu",
                     "-o", str(runs[clip.stem])]) == 0
    return runs


def test_many_inputs_equal_single_runs(many_run: tuple[Path, int, str], clips: list[Path],
                                       single_runs: dict[str, Path]) -> None:
    out = many_run[0]
    compared = 0
    for clip in clips:
        ours = sio.load_slp(str(out / f"{clip.stem}.predictions.slp"))
        ref = sio.load_slp(str(single_runs[clip.stem]))
        compared += assert_same_predictions(ours, ref)
        # Tracks restart in every video: the first frame's tracks are track_0, track_1, ...
        first = ours.labeled_frames[0]
        assert sorted(i.track.name for i in first.instances) == \
            [f"track_{k}" for k in range(len(first.instances))]
        assert ours.provenance["source_file"] == str(clip)
        assert ours.provenance["frame_selection"] == ref.provenance["frame_selection"]
    assert compared > 20


def test_sharded_video_merged_and_retracked_equals_the_single_run(
        clips: list[Path], single_runs: dict[str, Path], assets: Path, tmp_path: Path) -> None:
    clip = clips[2]
    models = [a for m in TOPDOWN for a in ("-m", str(assets / m))]
    for i in (1, 2):
        assert main(["track", "-i", str(clip), *models, "--device", "cpu", "--shard", f"{i}/2",
                     "-o", f"{tmp_path}/"]) == 0
    shards = [tmp_path / f"{clip.stem}.shard-{i}-of-2.predictions.slp" for i in (1, 2)]
    lengths = [len(sio.load_slp(str(p)).labeled_frames) for p in shards]
    assert lengths == [3, 4]  # 7 frames: contiguous halves
    merged = tmp_path / "merged.slp"
    assert main(["merge", *map(str, shards), "-o", str(merged), "--tracking"]) == 0
    assert_same_predictions(sio.load_slp(str(merged)), sio.load_slp(str(single_runs[clip.stem])))


def test_bad_videos_are_reported_and_skipped(many_run: tuple[Path, int, str]) -> None:
    out, rc, printed = many_run
    assert rc == 1  # some inputs failed
    lines = printed.splitlines()
    failed = [ln for ln in lines if ln.startswith("failed")]
    assert len(failed) == 2 and "missing.mp4" in failed[0] and "broken.mp4" in failed[1]
    assert sum(ln.startswith("done") for ln in lines) == 3
    assert "3 written, 0 skipped, 2 failed, of 5 input(s)" in printed
    assert sorted(p.name for p in out.iterdir()) == [f"clip{k}.predictions.slp" for k in range(3)]


def test_skip_existing_leaves_complete_outputs(many_run: tuple[Path, int, str], clips: list[Path],
                                               assets: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    out, _, _ = many_run
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    models = [a for m in TOPDOWN for a in ("-m", str(assets / m))]
    assert main(["track", "-i", str(clips[0].parent / "clip*.mp4"), *models, "--tracking",
                 "--device", "cpu", "-o", f"{out}/", "--skip_existing"]) == 0
    assert "0 written, 3 skipped, 0 failed" in capsys.readouterr().out
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before


def test_conflicting_output_forms(clips: list[Path], assets: Path, tmp_path: Path,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    models = [a for m in TOPDOWN for a in ("-m", str(assets / m))]
    rc = main(["track", "-i", str(clips[0]), "-i", str(clips[1]), *models,
               "-o", str(tmp_path / "one.slp")])
    err = capsys.readouterr().err
    assert rc == 2 and "Error: -o" in err and "several inputs" in err and "Traceback" not in err
    rc = main(["track", "-i", str(clips[0]), "-i", str(clips[1]), *models, "--skip_existing",
               "--overwrite"])
    assert rc == 2 and "opposites" in capsys.readouterr().err
    twin = tmp_path / "twin"
    twin.mkdir()
    (twin / clips[0].name).write_bytes(clips[0].read_bytes())
    rc = main(["track", "-i", str(clips[0]), "-i", str(twin / clips[0].name), *models,
               "-o", f"{tmp_path}/"])
    assert rc == 2 and "would both write" in capsys.readouterr().err
    assert not list(tmp_path.glob("*.slp"))


def test_expansion_of_folders_globs_and_lists(clips: list[Path], tmp_path: Path) -> None:
    folder = clips[0].parent
    names = [str(c) for c in clips]
    assert expand_inputs([str(folder)]) == (sorted(p.as_posix() for p in folder.glob("*.mp4")), True)
    assert expand_inputs([str(folder / "clip*.mp4")]) == (names, True)
    listing = tmp_path / "list.txt"
    listing.write_text(f"# my videos\n{names[2]}\n\n{names[0]}\n{names[2]}\n")
    assert expand_inputs([], str(listing)) == ([names[2], names[0]], True)
    assert expand_inputs([names[1]]) == ([names[1]], False)


@pytest.mark.parametrize("n_items,n_shards", [(0, 3), (1, 4), (10, 3), (1000, 7), (7, 7)])
def test_shards_are_disjoint_and_complete(n_items: int, n_shards: int) -> None:
    seen: list[int] = []
    sizes = []
    for i in range(1, n_shards + 1):
        part = list(range(n_items))[shard_slice(n_items, (i, n_shards))]
        assert part == sorted(part)
        seen.extend(part)
        sizes.append(len(part))
    assert seen == list(range(n_items))  # disjoint, complete, in order
    assert max(sizes) - min(sizes) <= 1


@pytest.mark.parametrize("text", ["0/3", "4/3", "a/b", "3", "1/0"])
def test_bad_shard_specs(text: str) -> None:
    from sleapflow.errors import ConfigError

    with pytest.raises(ConfigError, match="--shard"):
        parse_shard(text)


def test_a_video_failing_mid_stream_is_recorded_and_the_others_finish(
        clips: list[Path], single_runs: dict[str, Path], assets: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """clip1 probes and opens fine; its decoder then raises at its fourth frame. That video is
    failed, the others are written as in single runs, and the exit code is 1."""
    from sleapflow.inputs.readers import PyAVReader

    read = PyAVReader.read

    def crashing_read(self: PyAVReader, frame_idx: int) -> object:
        if Path(self.path).name == clips[1].name and frame_idx >= 3:
            raise RuntimeError("the decoder crashed")
        return read(self, frame_idx)

    monkeypatch.setattr(PyAVReader, "read", crashing_read)
    models = [a for m in TOPDOWN for a in ("-m", str(assets / m))]
    rc = main(["track", "-i", str(clips[0]), "-i", str(clips[1]), "-i", str(clips[2]), *models,
               "--tracking", "--device", "cpu", "--batch_size", "2", "-o", f"{tmp_path}/"])
    printed = capsys.readouterr().out
    assert rc == 1
    failed = [ln for ln in printed.splitlines() if ln.startswith("failed")]
    assert len(failed) == 1 and clips[1].name in failed[0] and "the decoder crashed" in failed[0]
    assert "2 written, 0 skipped, 1 failed, of 3 input(s)" in printed
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix == ".slp") == \
        [f"{clips[0].stem}.predictions.slp", f"{clips[2].stem}.predictions.slp"]
    # No journal, lock or temporary file is left, of the failed video either.
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]
    for clip in (clips[0], clips[2]):
        assert_same_predictions(sio.load_slp(str(tmp_path / f"{clip.stem}.predictions.slp")),
                                sio.load_slp(str(single_runs[clip.stem])))


def test_other_output_formats_are_written_for_every_input(
        clips: list[Path], single_runs: dict[str, Path], assets: Path, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    """--output_format reaches several inputs as it does one: each video's .csv beside its .slp,
    with the rows of its single run's; --render and dropping slp are refused before any work."""
    import csv

    from sleapflow.outputs.csv_table import write_csv

    def rows_of(path: Path) -> list[list[str]]:
        with path.open(newline="") as f:
            return list(csv.reader(f))

    models = [a for m in TOPDOWN for a in ("-m", str(assets / m))]
    inputs = ["-i", str(clips[0]), "-i", str(clips[1])]
    assert main(["track", *inputs, *models, "--tracking", "--device", "cpu",
                 "--output_format", "slp", "--output_format", "csv", "-o", f"{tmp_path}/"]) == 0
    for clip in clips[:2]:
        rows = rows_of(tmp_path / f"{clip.stem}.predictions.csv")
        expected = tmp_path / f"{clip.stem}.single.csv"
        write_csv(sio.load_slp(str(single_runs[clip.stem])), expected)
        reference = rows_of(expected)
        assert len(rows) == len(reference) > 1 and rows[0] == reference[0]
        assert rows[0][:3] == ["track", "frame_idx", "instance.score"]  # SLEAP's column order
        assert rows == reference
    capsys.readouterr()
    refused = tmp_path / "refused"
    for extra in (["--render"], ["--output_format", "csv"]):
        rc = main(["track", *inputs, *models, "--device", "cpu", *extra, "-o", f"{refused}/"])
        err = capsys.readouterr().err
        assert rc == 2 and "Error:" in err and "Traceback" not in err
    assert not refused.exists() or not any(refused.iterdir())

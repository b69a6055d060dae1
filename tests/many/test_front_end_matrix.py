"""The same options through every front end give the same predictions and the same provenance
keys; every front end that writes refuses a device node as its output; every run states what it
runs (the start line: versions, device, runtime and graph)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import anyio
import h5py
import numpy as np
import pandas as pd
import pytest
import sleap_io as sio
from many_helpers import TOPDOWN, assert_same_predictions, cut_clip
from ray_cluster import ray_env

from sleapflow.cli.app import main
from sleapflow.errors import ConfigError
from sleapflow.predict import run_inference
from sleapflow.session import open_graph
from sleapflow.testing import captured_logs

#: The options every front end gets: top-down with tracking, small batches that straddle videos.
OPTIONS = ("--tracking", "--device", "cpu", "--batch_size", "2", "--max_instances", "2")
KEYWORDS = {"tracking": True, "device": "cpu", "batch_size": 2, "max_instances": 2}
#: The other formats, for the front ends that write them (one input, several, Ray).
FORMATS = ("--output_format", "slp", "--output_format", "csv", "--output_format", "analysis_h5")


def _models(assets: Path) -> list[str]:
    return [str(assets / m) for m in TOPDOWN]


def _model_flags(assets: Path) -> list[str]:
    return [a for m in _models(assets) for a in ("-m", m)]


def _start_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if "| graph topdown" in line and "| device cpu" in line]


@pytest.fixture(scope="module")
def clips(assets: Path, tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    folder = tmp_path_factory.mktemp("matrix_clips")
    source = assets / "datasets/centered_pair_small.mp4"
    return [cut_clip(source, folder / f"m{k}.mp4", 150 * k, 6 - k) for k in range(2)]


@pytest.fixture(scope="module")
def single(clips: list[Path], assets: Path, tmp_path_factory: pytest.TempPathFactory
           ) -> dict[str, sio.Labels]:
    out = tmp_path_factory.mktemp("matrix_single")
    runs = {}
    for clip in clips:
        path = out / f"{clip.stem}.predictions.slp"
        assert main(["track", "-i", str(clip), *_model_flags(assets), *OPTIONS, *FORMATS,
                     "-o", str(path)]) == 0
        runs[clip.stem] = sio.load_slp(str(path))
    return runs


def _same_exports(slp: Path, reference: sio.Labels) -> None:
    """The CSV and analysis HDF5 beside ``slp`` hold what those beside the one-input run's do."""
    base = Path(reference.provenance["filename"])
    ours, theirs = (pd.read_csv(p.with_suffix(".csv")) for p in (slp, base))
    assert list(ours.columns) == list(theirs.columns) and len(ours) == len(theirs) > 0
    numeric = ours.columns[1:]
    np.testing.assert_allclose(ours[numeric].to_numpy(float), theirs[numeric].to_numpy(float),
                               atol=1e-4)
    with h5py.File(slp.with_suffix(".analysis.h5")) as a, \
            h5py.File(base.with_suffix(".analysis.h5")) as b:
        np.testing.assert_allclose(a["tracks"][()], b["tracks"][()], atol=1e-4)
        assert a["labels_path"][()].decode() == str(slp)


def _same_as_single(labels: sio.Labels, reference: sio.Labels) -> None:
    assert assert_same_predictions(labels, reference) > 0
    assert set(labels.provenance) == set(reference.provenance)


@pytest.mark.timeout(300)
def test_many_input_track(clips: list[Path], single: dict[str, sio.Labels], assets: Path,
                          tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["track", *[a for c in clips for a in ("-i", str(c))], *_model_flags(assets),
               *OPTIONS, *FORMATS, "-o", f"{tmp_path}/"])
    assert rc == 0
    assert len(_start_lines(capsys.readouterr().err)) == 1
    for clip in clips:
        out = tmp_path / f"{clip.stem}.predictions.slp"
        _same_as_single(sio.load_slp(str(out)), single[clip.stem])
        _same_exports(out, single[clip.stem])


@pytest.mark.timeout(300)
def test_run_inference(clips: list[Path], single: dict[str, sio.Labels], assets: Path,
                       tmp_path: Path) -> None:
    with captured_logs() as logs:
        labels = run_inference(data_path=str(clips[0]), model_paths=_models(assets),
                               output_path=str(tmp_path / "api.slp"), **KEYWORDS)
    assert len(_start_lines("\n".join(str(e["event"]) for e in logs))) == 1
    # The returned Labels lacks only what sleap-io adds when it saves (the file's name).
    assert set(single[clips[0].stem].provenance) - set(labels.provenance) == {"filename"}
    assert assert_same_predictions(labels, single[clips[0].stem]) > 0
    _same_as_single(sio.load_slp(str(tmp_path / "api.slp")), single[clips[0].stem])


@pytest.mark.timeout(300)
def test_open_graph_push(clips: list[Path], single: dict[str, sio.Labels], assets: Path) -> None:
    video = sio.load_video(str(clips[0]))
    reference = {lf.frame_idx: lf for lf in single[clips[0].stem].labeled_frames}

    async def main_() -> list:
        results = []
        async with open_graph(_models(assets), **KEYWORDS) as graph:

            async def feed() -> None:
                for i in range(len(video)):
                    await graph.push(video[i], frame_idx=i)
                await graph.close_input()

            async with anyio.create_task_group() as tg:
                tg.start_soon(feed)
                results = [pred async for pred in graph]
            provenance = graph.provenance()
        return [results, provenance]

    with captured_logs() as logs:
        results, provenance = anyio.run(main_)
    assert len(_start_lines("\n".join(str(e["event"]) for e in logs))) == 1
    # What a file written from these results would record (sleap-io adds its name on saving).
    assert set(provenance) == set(single[clips[0].stem].provenance) - {"filename"}
    compared = 0
    for pred in results:
        ref = reference.get(pred.frame_idx)
        got = sorted(np.nan_to_num(np.asarray(pred.points), nan=-1.0).tolist())
        want = sorted(np.nan_to_num(inst.numpy(), nan=-1.0).tolist()
                      for inst in (ref.instances if ref is not None else []))
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), atol=1e-4)
        compared += len(want)
    assert compared > 0


@pytest.mark.timeout(300)
def test_shards_merged(clips: list[Path], single: dict[str, sio.Labels], assets: Path,
                       tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    clip = clips[0]
    for i in (1, 2):
        assert main(["track", "-i", str(clip), *_model_flags(assets), *OPTIONS[1:],
                     "--shard", f"{i}/2", "-o", f"{tmp_path}/"]) == 0
    shards = [str(tmp_path / f"{clip.stem}.shard-{i}-of-2.predictions.slp") for i in (1, 2)]
    merged = tmp_path / "merged.slp"
    capsys.readouterr()
    assert main(["merge", *shards, "-o", str(merged), "--tracking"]) == 0
    assert len([ln for ln in capsys.readouterr().err.splitlines() if "| graph track_only" in ln]) == 1
    labels = sio.load_slp(str(merged))
    assert assert_same_predictions(labels, single[clip.stem]) > 0
    # The whole video's provenance: a single run's keys, and the shards it came from.
    assert set(labels.provenance) == set(single[clip.stem].provenance) | {"merged_from"}
    assert labels.provenance["frame_selection"]["frames_processed"] == len(labels.labeled_frames)


@pytest.mark.timeout(600)
def test_ray(cluster: tuple[str, int], clips: list[Path], single: dict[str, sio.Labels],
             assets: Path, tmp_path: Path) -> None:
    address, _ = cluster
    driver = subprocess.run(
        [sys.executable, "-m", "sleapflow", "track", *[a for c in clips for a in ("-i", str(c))],
         *_model_flags(assets), *OPTIONS, *FORMATS, "-o", f"{tmp_path}/", "--ray", address,
         "--ray_workers", "2"], env=ray_env(), capture_output=True, text=True, timeout=500)
    assert driver.returncode == 0, driver.stderr[-3000:]
    assert len(_start_lines(driver.stderr)) == 1
    for clip in clips:
        out = tmp_path / f"{clip.stem}.predictions.slp"
        _same_as_single(sio.load_slp(str(out)), single[clip.stem])
        _same_exports(out, single[clip.stem])
    # The end-of-run summary: a row per video and the total.
    assert "written: " in driver.stdout and "instances" in driver.stdout


def test_every_writing_front_end_refuses_a_device_node(clips: list[Path], assets: Path,
                                                      single: dict[str, sio.Labels],
                                                      tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    models = _model_flags(assets)
    one = ["-i", str(clips[0])]
    both = [a for c in clips for a in ("-i", str(c))]
    shard = tmp_path / "s.slp"
    sio.save_slp(single[clips[0].stem], str(shard))
    # Several inputs write one file per video into a folder: there, one of them is a device.
    folder = tmp_path / "outs"
    folder.mkdir()
    (folder / f"{clips[1].stem}.predictions.slp").symlink_to("/dev/null")
    for argv in (["track", *one, *models, *OPTIONS, "-o", "/dev/null"],
                 ["track", *both, *models, *OPTIONS, "-o", f"{folder}/"],
                 ["track", *both, *models, *OPTIONS, "-o", f"{folder}/", "--ray", "local"],
                 ["track", *one, *models, *OPTIONS, "-o", "/dev/null", "--ray", "local"],
                 ["merge", str(shard), "-o", "/dev/null"]):
        capsys.readouterr()
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert "a character device, not a file" in err, (argv, err)
        assert not list(folder.glob(f"{clips[0].stem}*"))  # refused before anything was written
    with pytest.raises(ConfigError, match="a character device, not a file"):
        run_inference(data_path=str(clips[0]), model_paths=_models(assets), output_path="/dev/null",
                      **KEYWORDS)
    assert Path("/dev/null").is_char_device()

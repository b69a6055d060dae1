"""Every output format × every kind of run, each file read back by the program that will read it:
sleap-io for ``.slp``, h5py against SLEAP's documented analysis layout, pandas for both CSV
layouts, pynwb with ndx-pose (and nwbinspector) for NWB; and the end-of-run summary that each
run prints, checked against what its ``.slp`` holds."""

from __future__ import annotations

import contextlib
import io
import re
from dataclasses import dataclass
from pathlib import Path

import av
import h5py
import ndx_pose  # noqa: F401  (registers ndx-pose's types with pynwb for reading)
import numpy as np
import pandas as pd
import pytest
import sleap_io as sio
from analysis_layout import check_layout
from nwbinspector import Importance, inspect_nwbfile
from pynwb import NWBHDF5IO

from sleapflow.cli.app import main
from sleapflow.outputs.export import ExportSettings, export

CKPTS = "model_ckpts"
SINGLE = [f"{CKPTS}/minimal_instance_single_instance"]
TOPDOWN = [f"{CKPTS}/minimal_instance_centroid", f"{CKPTS}/minimal_instance_centered_instance"]
BOTTOMUP = [f"{CKPTS}/minimal_instance_bottomup"]
MULTICLASS = [f"{CKPTS}/minimal_instance_multiclass_bottomup"]
ROBOT = "datasets/small_robot.mp4"
PAIR = "datasets/centered_pair_small.mp4"
FORMATS = ("slp", "analysis_h5", "csv", "nwb")
#: The frames of the damaged clip whose bytes are overwritten; its frame rate.
BROKEN = (3, 5)
DAMAGED_FPS = 15


@dataclass(frozen=True)
class Case:
    models: list[str]
    video: str  # an asset, or "damaged": a clip made from the robot video with broken frames
    frames: str
    extra: tuple[str, ...] = ()
    tracked: bool = False


CASES = {
    "single_instance": Case(SINGLE, ROBOT, "0-5"),
    "untracked_animals": Case(TOPDOWN, PAIR, "0-5"),
    "tracked": Case(TOPDOWN, PAIR, "0-5", ("--tracking", "--nwb_subject_id", "fly-7",
                                           "--nwb_species", "Drosophila melanogaster",
                                           "--nwb_sex", "F", "--nwb_age", "P5D"), tracked=True),
    "multi_class": Case(MULTICLASS, PAIR, "0-5", tracked=True),
    # Bottom-up on these frames finds the pair, then nothing from frame 34 on (the reference's
    # bottomup__centered_pair_small.slp has the same empty frames).
    "empty_frames": Case(BOTTOMUP, PAIR, "30-37"),
    "failed_frames": Case(SINGLE, "damaged", "0-7"),
}


def _damaged_clip(assets: Path, path: Path) -> Path:
    """Eight robot frames, every one a keyframe (so one broken frame breaks only itself), with
    the payload of frames :data:`BROKEN` overwritten."""
    import av

    with av.open(str(assets / ROBOT)) as source:
        images = [f.to_ndarray(format="rgb24") for _, f in zip(range(8), source.decode(video=0))]
    height, width = images[0].shape[:2]
    with av.open(str(path), "w") as out:
        stream = out.add_stream("mpeg4", rate=DAMAGED_FPS)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.codec_context.gop_size = 1
        for img in images:
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    with av.open(str(path)) as container:
        packets = [(p.pos, p.size) for p in container.demux(video=0) if p.size]
    data = bytearray(path.read_bytes())
    rng = np.random.default_rng(0)
    for i in BROKEN:
        pos, size = packets[i]
        data[pos:pos + size] = rng.integers(0, 256, size, dtype=np.uint8).tobytes()
    path.write_bytes(bytes(data))
    return path


@dataclass
class Run:
    case: Case
    slp: Path
    labels: sio.Labels
    stdout: str
    video: Path


@pytest.fixture(scope="module")
def runs(assets: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Run]:
    folder = tmp_path_factory.mktemp("matrix")
    damaged = _damaged_clip(assets, folder / "damaged.avi")
    out: dict[str, Run] = {}
    for name, case in CASES.items():
        video = damaged if case.video == "damaged" else assets / case.video
        slp = folder / f"{name}.slp"
        args = ["track", "-i", str(video), "-o", str(slp), "--frames", case.frames,
                "--device", "cpu", *case.extra]
        for model in case.models:
            args += ["-m", str(assets / model)]
        for fmt in FORMATS:
            args += ["--output_format", fmt]
        stdout, stderr = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            rc = main(args)
        assert rc == 0, stderr.getvalue()
        assert "Traceback" not in stderr.getvalue()
        labels = sio.load_slp(str(slp))
        # The DeepLabCut layout, written by the same export step the run's CSV went through.
        dlc = folder / "dlc" / f"{name}.slp"
        export(labels, dlc, ["csv"], ExportSettings(csv_format="dlc"))
        out[name] = Run(case, slp, labels, stdout.getvalue(), video)
    return out


@pytest.fixture(params=list(CASES))
def run(request: pytest.FixtureRequest, runs: dict[str, Run]) -> Run:
    return runs[request.param]


def _frames(labels: sio.Labels) -> list[sio.LabeledFrame]:
    return sorted(labels.labeled_frames, key=lambda lf: lf.frame_idx)


def _instances(labels: sio.Labels) -> list[tuple[int, sio.PredictedInstance]]:
    return [(lf.frame_idx, inst) for lf in _frames(labels) for inst in lf.instances]


def _track_names(labels: sio.Labels) -> list[str]:
    used = {inst.track.name for _, inst in _instances(labels) if inst.track is not None}
    return [t.name for t in labels.tracks if t.name in used]


# -------------------------------------------------------------------------------------- .slp


def test_slp_reads_back_with_what_the_run_predicted(run: Run) -> None:
    labels, case = run.labels, run.case
    first, last = (int(x) for x in case.frames.split("-"))
    predicted = {lf.frame_idx for lf in labels.labeled_frames}
    failed = set(BROKEN) if case.video == "damaged" else set()
    assert predicted <= set(range(first, last + 1)) - failed
    assert labels.provenance["frames_failed"] == len(failed)
    assert sorted(labels.provenance["frames_failed_indices"]) == sorted(failed)
    assert bool(_track_names(labels)) == case.tracked
    if case.tracked:
        assert all(inst.track is not None for _, inst in _instances(labels))


def test_summary_line_counts_what_the_slp_holds(run: Run) -> None:
    labels, case = run.labels, run.case
    first, last = (int(x) for x in case.frames.split("-"))
    failed = len(BROKEN) if case.video == "damaged" else 0
    frames = last - first + 1 - failed
    nonempty = sum(1 for lf in labels.labeled_frames if len(lf.instances))
    tracks = len(_track_names(labels))
    line = [ln for ln in run.stdout.splitlines() if ln.startswith(f"{run.slp}: ")]
    assert len(line) == 1, run.stdout
    got = re.fullmatch(r".*: (\d+) frames? \((\d+) empty, (\d+) failed\), (\d+) instances?"
                       r"(?:, (\d+) tracks?)? in [\d.]+ s", line[0])
    assert got is not None, line[0]
    assert [int(g or 0) for g in got.groups()] == [frames, frames - nonempty, failed,
                                                   len(_instances(labels)), tracks]


def test_empty_frames_case_has_empty_frames(runs: dict[str, Run]) -> None:
    # Guards the matrix itself: the case must hold what its name says.
    labels = runs["empty_frames"].labels
    nonempty = {lf.frame_idx for lf in labels.labeled_frames if len(lf.instances)}
    assert nonempty and len(nonempty) < 8


# ------------------------------------------------------------------------- analysis HDF5


def test_analysis_h5_is_sleaps_layout_with_the_slp_points(run: Run) -> None:
    labels = run.labels
    path = run.slp.with_suffix(".analysis.h5")
    skeleton = labels.skeletons[0]
    frames = _frames(labels)
    n_frames = frames[-1].frame_idx + 1
    names = _track_names(labels)
    check_layout(path, n_frames, len(names) or 1, len(skeleton.nodes), len(skeleton.edges),
                 untracked=not names)
    with h5py.File(path, "r") as f:
        tracks = f["tracks"][()]  # (T, 2, N, F)
        occupancy = f["track_occupancy"][()]  # (F, T)
        stored_names = [n.decode() for n in f["track_names"][()]] if names else []
        assert f["labels_path"][()].decode() == run.slp.as_posix()
        assert f["video_path"][()].decode() == str(run.video)
    assert stored_names == names
    for lf in frames:
        if names:
            for inst in lf.instances:
                slot = names.index(inst.track.name)
                np.testing.assert_allclose(tracks[slot, :, :, lf.frame_idx].T, inst.numpy())
            assert occupancy[lf.frame_idx].sum() == len(lf.instances)
        elif lf.instances:  # untracked: one slot, the best-scoring animal, never a track
            best = max(lf.instances, key=lambda i: i.score)
            np.testing.assert_allclose(tracks[0, :, :, lf.frame_idx].T, best.numpy())
            assert occupancy[lf.frame_idx, 0] == 1
        else:
            assert occupancy[lf.frame_idx].sum() == 0
            assert np.isnan(tracks[..., lf.frame_idx]).all()


# -------------------------------------------------------------------------------------- CSV


def test_csv_sleap_layout_has_every_instance(run: Run) -> None:
    labels = run.labels
    nodes = [n.name for n in labels.skeletons[0].nodes]
    table = pd.read_csv(run.slp.with_suffix(".csv"))
    columns = ["track", "frame_idx", "instance.score"]
    for node in nodes:
        columns += [f"{node}.x", f"{node}.y", f"{node}.score"]
    assert list(table.columns) == columns
    instances = _instances(labels)
    assert len(table) == len(instances)
    rows = {(int(r.frame_idx), round(float(r["instance.score"]), 4)): r for _, r in table.iterrows()}
    for frame_idx, inst in instances:
        row = rows[(frame_idx, round(float(inst.score), 4))]
        xy = np.array([[row[f"{n}.x"], row[f"{n}.y"]] for n in nodes], dtype=np.float64)
        np.testing.assert_allclose(xy, inst.numpy(), rtol=1e-6)
        track = row["track"]
        assert (None if pd.isna(track) else str(track)) == (inst.track.name if inst.track else None)


def test_csv_dlc_layout_reads_with_pandas(run: Run) -> None:
    labels = run.labels
    names = _track_names(labels)
    nodes = [n.name for n in labels.skeletons[0].nodes]
    path = run.slp.parent / "dlc" / f"{run.slp.stem}.csv"
    header = [0, 1, 2, 3] if names else [0, 1, 2]
    table = pd.read_csv(path, header=header, index_col=0)
    frames = _frames(labels)
    assert list(table.index) == list(range(frames[-1].frame_idx + 1))
    levels = ["scorer", "individuals", "bodyparts", "coords"] if names else \
        ["scorer", "bodyparts", "coords"]
    assert [str(n) for n in table.columns.names] == levels
    for lf in frames:
        for inst in lf.instances if names else lf.instances[:0]:
            got = np.array([[table.loc[lf.frame_idx, (slice(None), inst.track.name, n, c)].item()
                             for c in ("x", "y")] for n in nodes])
            np.testing.assert_allclose(got, inst.numpy(), rtol=1e-6)
        if not names and lf.instances:
            best = max(lf.instances, key=lambda i: i.score)
            got = np.array([[table.loc[lf.frame_idx, (slice(None), n, c)].item()
                             for c in ("x", "y")] for n in nodes])
            np.testing.assert_allclose(got, best.numpy(), rtol=1e-6)


# -------------------------------------------------------------------------------------- NWB


def _frame_times(run: Run, n: int) -> np.ndarray:
    """Frames 0..n-1's presentation times as the decoder gives them (the damaged clip's broken
    frames do not decode: its times come from its constant rate)."""
    if run.case.video == "damaged":
        return np.arange(n) / DAMAGED_FPS
    with av.open(str(run.video)) as container:
        times = [f.time for _, f in zip(range(n), container.decode(video=0))]
    return np.asarray(times)


def _nwb_rows(path: Path, times: np.ndarray) -> dict[str, dict[int, np.ndarray]]:
    """Each PoseEstimation's rows as {frame index: (nodes, 2) points}, frames found from the
    rows' timestamps; and the file's subject."""
    out: dict[str, dict[int, np.ndarray]] = {}
    with NWBHDF5IO(str(path), "r") as nwb_io:
        nwbfile = nwb_io.read()
        behavior = nwbfile.processing["behavior"]
        for name, pose in behavior.data_interfaces.items():
            if name == "Skeletons":
                continue
            series = list(pose.pose_estimation_series.values())
            nodes = list(pose.skeleton.nodes[:])
            by_node = {s.name: s for s in series}
            first = series[0]
            stamps = (np.asarray(first.timestamps[:]) if first.timestamps is not None else
                      first.starting_time + np.arange(first.num_samples) / first.rate)
            frames = [int(np.argmin(np.abs(times - t))) for t in stamps]
            assert np.allclose(times[frames], stamps, atol=1e-6), name
            data = np.stack([np.asarray(by_node[n].data[:]) for n in nodes], axis=1)
            out[name] = {f: data[i] for i, f in enumerate(frames) if np.isfinite(data[i]).any()}
    return out


def test_nwb_reads_with_pynwb_at_the_videos_frame_times(run: Run) -> None:
    labels = run.labels
    path = run.slp.with_suffix(".nwb")
    instances = _instances(labels)
    times = _frame_times(run, max(f for f, _ in instances) + 1)
    rows = _nwb_rows(path, times)
    names = _track_names(labels)
    if names:  # one container per track or identity, named after it
        assert sorted(rows) == sorted(f"track={n}" for n in names)
    elif max(len(lf.instances) for lf in labels.labeled_frames) > 1:
        assert all(name.startswith("untracked_instance_") for name in rows)
    assert sum(len(r) for r in rows.values()) == len(instances)
    for frame_idx, inst in instances:
        where = f"track={inst.track.name}" if names else None
        candidates = [r[frame_idx] for name, r in rows.items()
                      if frame_idx in r and (where is None or name == where)]
        assert any(np.array_equal(c, inst.numpy(), equal_nan=True) for c in candidates), \
            (frame_idx, inst)


def test_nwb_passes_nwbinspector(run: Run) -> None:
    severe = {Importance.CRITICAL, Importance.PYNWB_VALIDATION, Importance.ERROR}
    found = [f"{m.importance.name} {m.check_function_name}: {m.message}"
             for m in inspect_nwbfile(nwbfile_path=run.slp.with_suffix(".nwb"))
             if m.importance in severe]
    assert found == []


def test_nwb_subject_options_reach_the_file(runs: dict[str, Run]) -> None:
    with NWBHDF5IO(str(runs["tracked"].slp.with_suffix(".nwb")), "r") as nwb_io:
        subject = nwb_io.read().subject
        assert (subject.subject_id, subject.species, subject.sex, subject.age) == \
            ("fly-7", "Drosophila melanogaster", "F", "P5D")

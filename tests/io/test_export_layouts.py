"""Analysis HDF5 laid out field by field as SLEAP documents it; CSV in SLEAP's and DeepLabCut's
layouts, read back with pandas, values equal to the labels they came from."""

from __future__ import annotations

import contextlib
import io
import json
import math
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
import sleap_io as sio
from analysis_layout import check_layout

from sleapflow.cli.app import main
from sleapflow.errors import ConfigError
from sleapflow.outputs.analysis_h5 import analysis_arrays, write_analysis_h5
from sleapflow.outputs.csv_table import write_csv

SKELETON_NODES = ("head", "thorax", "tail")


def skeleton() -> sio.Skeleton:
    return sio.Skeleton(list(SKELETON_NODES), edges=[("head", "thorax"), ("thorax", "tail")])


def predicted(sk: sio.Skeleton, base: float, score: float, track: sio.Track | None = None,
              tracking_score: float = 0.0) -> sio.PredictedInstance:
    points = base + np.arange(6, dtype=np.float64).reshape(3, 2)
    return sio.PredictedInstance.from_numpy(
        points, point_scores=np.array([0.5, 0.6, 0.7]) * score, score=score, skeleton=sk,
        track=track, tracking_score=tracking_score)


def video(name: str = "clip.mp4") -> sio.Video:
    return sio.Video(filename=f"/data/{name}", open_backend=False)


def read(path: Path, name: str) -> np.ndarray:
    with h5py.File(path, "r") as f:
        return f[name][()]


def test_single_instance(tmp_path: Path) -> None:
    sk, vid = skeleton(), video()
    frames = [sio.LabeledFrame(video=vid, frame_idx=i, instances=[predicted(sk, 10.0 * i, 0.9)])
              for i in range(4)]
    labels = sio.Labels(frames, provenance={"model_paths": ["/m"], "batch_size": 4})
    out = tmp_path / "x.analysis.h5"
    write_analysis_h5(labels, out, labels_path="/runs/x.slp")
    check_layout(out, frames=4, tracks=1, nodes=3, edges=2, untracked=True)
    tracks = read(out, "tracks")
    for lf in frames:
        np.testing.assert_array_equal(tracks[0, :, :, lf.frame_idx].T, lf.instances[0].numpy())
    np.testing.assert_array_equal(read(out, "track_occupancy"), np.ones((4, 1)))
    np.testing.assert_allclose(read(out, "instance_scores"), np.full((1, 4), 0.9))
    np.testing.assert_allclose(read(out, "point_scores")[0, :, 2], [0.45, 0.54, 0.63])
    assert list(read(out, "node_names")) == [n.encode() for n in SKELETON_NODES]
    assert read(out, "edge_names").tolist() == [[b"head", b"thorax"], [b"thorax", b"tail"]]
    assert read(out, "edge_inds").tolist() == [[0, 1], [1, 2]]
    assert read(out, "labels_path") == b"/runs/x.slp"
    assert read(out, "video_path") == b"/data/clip.mp4"
    assert read(out, "video_ind") == 0
    assert json.loads(read(out, "provenance")) == {"model_paths": ["/m"], "batch_size": 4}


def test_untracked_animals_are_not_tracks(tmp_path: Path) -> None:
    """SLEAP's rule for untracked data: one unnamed slot, never a pseudo-track per position."""
    sk, vid = skeleton(), video()
    frames = [
        sio.LabeledFrame(video=vid, frame_idx=0, instances=[
            predicted(sk, 1.0, 0.4), predicted(sk, 100.0, 0.9), predicted(sk, 200.0, 0.6)]),
        sio.LabeledFrame(video=vid, frame_idx=1, instances=[predicted(sk, 300.0, 0.8)]),
    ]
    labels = sio.Labels(frames)
    out = tmp_path / "u.analysis.h5"
    write_analysis_h5(labels, out, labels_path="u.slp")
    check_layout(out, frames=2, tracks=1, nodes=3, edges=2, untracked=True)
    assert read(out, "track_names").shape == (0,)
    tracks = read(out, "tracks")
    # The frame's best instance fills the slot (SLEAP keeps one instance per frame untracked).
    np.testing.assert_array_equal(tracks[0, :, :, 0].T, frames[0].instances[1].numpy())
    np.testing.assert_array_equal(tracks[0, :, :, 1].T, frames[1].instances[0].numpy())
    np.testing.assert_allclose(read(out, "instance_scores"), [[0.9, 0.8]])
    assert analysis_arrays(labels).left_out == 2


def test_tracked_animals(tmp_path: Path) -> None:
    sk, vid = skeleton(), video()
    a, b, idle, c = sio.Track("a"), sio.Track("b"), sio.Track("idle"), sio.Track("c")
    frames = [
        sio.LabeledFrame(video=vid, frame_idx=0, instances=[
            predicted(sk, 20.0, 0.8, b, 0.3), predicted(sk, 10.0, 0.7, a, 0.2)]),
        sio.LabeledFrame(video=vid, frame_idx=1, instances=[
            predicted(sk, 30.0, 0.6, c, 0.5), predicted(sk, 11.0, 0.9, a, 0.4),
            predicted(sk, 99.0, 0.99)]),  # untracked among tracked: no slot, as in SLEAP
    ]
    labels = sio.Labels(frames)
    labels.tracks = [a, b, idle, c]
    out = tmp_path / "t.analysis.h5"
    write_analysis_h5(labels, out, labels_path="t.slp")
    # "idle" has no instance in the video: SLEAP leaves empty tracks out.
    check_layout(out, frames=2, tracks=3, nodes=3, edges=2)
    assert list(read(out, "track_names")) == [b"a", b"b", b"c"]
    tracks = read(out, "tracks")
    slot = {"a": 0, "b": 1, "c": 2}
    for lf in frames:
        for inst in lf.instances:
            if inst.track is not None:
                np.testing.assert_array_equal(tracks[slot[inst.track.name], :, :, lf.frame_idx].T,
                                              inst.numpy())
    np.testing.assert_array_equal(read(out, "track_occupancy"), [[1, 1, 0], [1, 0, 1]])
    assert np.isnan(tracks[1, :, :, 1]).all() and np.isnan(tracks[2, :, :, 0]).all()
    np.testing.assert_allclose(read(out, "tracking_scores"),
                               [[0.2, 0.4], [0.3, np.nan], [np.nan, 0.5]])
    np.testing.assert_allclose(read(out, "instance_scores"),
                               [[0.7, 0.9], [0.8, np.nan], [np.nan, 0.6]])
    assert analysis_arrays(labels).left_out == 1


def test_user_instance_replaces_prediction_of_its_track(tmp_path: Path) -> None:
    sk, vid, a = skeleton(), video(), sio.Track("a")
    user = sio.Instance.from_numpy(np.array([[1.0, 2], [3, 4], [5, 6]]), skeleton=sk, track=a)
    labels = sio.Labels([sio.LabeledFrame(video=vid, frame_idx=0,
                                          instances=[predicted(sk, 50.0, 0.9, a), user])])
    out = tmp_path / "user.analysis.h5"
    write_analysis_h5(labels, out, labels_path="user.slp")
    check_layout(out, frames=1, tracks=1, nodes=3, edges=2)
    np.testing.assert_array_equal(read(out, "tracks")[0, :, :, 0].T, user.numpy())
    assert np.isnan(read(out, "point_scores")).all() and np.isnan(read(out, "instance_scores")).all()


def test_frame_axis_ends_at_last_labelled_frame(tmp_path: Path, assets: Path) -> None:
    """Frames without instances between predicted ones stay empty; empty frames a run kept at
    the end count (SLEAP: last labelled frame + 1); the video's own length does not."""
    sk = skeleton()
    vid = sio.Video(filename=str(assets / "datasets/small_robot.mp4"))
    frames = [sio.LabeledFrame(video=vid, frame_idx=0, instances=[predicted(sk, 1.0, 0.9)]),
              sio.LabeledFrame(video=vid, frame_idx=3, instances=[predicted(sk, 4.0, 0.8)]),
              sio.LabeledFrame(video=vid, frame_idx=6, instances=[]),
              sio.LabeledFrame(video=vid, frame_idx=7, instances=[])]
    labels = sio.Labels(frames)
    assert len(vid) > 8
    out = tmp_path / "gaps.analysis.h5"
    write_analysis_h5(labels, out, labels_path="gaps.slp")
    check_layout(out, frames=8, tracks=1, nodes=3, edges=2, untracked=True)
    occupancy = read(out, "track_occupancy")[:, 0]
    assert occupancy.tolist() == [1, 0, 0, 1, 0, 0, 0, 0]
    tracks = read(out, "tracks")
    assert np.isnan(tracks[0, :, :, [1, 2, 4, 5, 6, 7]]).all()
    np.testing.assert_array_equal(tracks[0, :, :, 3].T, frames[1].instances[0].numpy())
    # Without the kept empty frames the axis ends at the last frame with an instance.
    short = tmp_path / "short.analysis.h5"
    write_analysis_h5(sio.Labels(frames[:2]), short, labels_path="short.slp")
    check_layout(short, frames=4, tracks=1, nodes=3, edges=2, untracked=True)
    vid.close()


def test_nothing_predicted(tmp_path: Path) -> None:
    """A video with no labelled frame: an empty frame axis (SLEAP would write no file at all)
    and, for a skeleton without edges, SLEAP's empty edge lists; both CSVs have headers only."""
    labels = sio.Labels(videos=[video()], skeletons=[sio.Skeleton(["a", "b"])])
    out = tmp_path / "none.analysis.h5"
    write_analysis_h5(labels, out, labels_path="none.slp")
    check_layout(out, frames=0, tracks=0, nodes=2, edges=0)
    write_csv(labels, tmp_path / "none.csv")
    assert pd.read_csv(tmp_path / "none.csv").empty
    write_csv(labels, tmp_path / "none.dlc.csv", "dlc")
    dlc = pd.read_csv(tmp_path / "none.dlc.csv", header=[0, 1, 2], index_col=0)
    assert dlc.empty and dlc.shape == (0, 6)


def test_second_video_and_errors(tmp_path: Path) -> None:
    sk, first, second = skeleton(), video("one.mp4"), video("two.mp4")
    labels = sio.Labels([
        sio.LabeledFrame(video=first, frame_idx=5, instances=[predicted(sk, 1.0, 0.9)]),
        sio.LabeledFrame(video=second, frame_idx=1, instances=[predicted(sk, 7.0, 0.5)]),
    ])
    out = tmp_path / "two.analysis.h5"
    write_analysis_h5(labels, out, labels_path="two.slp", video=1)
    check_layout(out, frames=2, tracks=1, nodes=3, edges=2, untracked=True)
    assert read(out, "video_ind") == 1 and read(out, "video_path") == b"/data/two.mp4"
    existing = tmp_path / "keep.csv"
    existing.write_text("precious\n")
    with pytest.raises(ConfigError, match="video index 2"):
        write_analysis_h5(labels, existing, labels_path="x.slp", video=2)
    with pytest.raises(ConfigError, match="video index 2"):
        write_csv(labels, existing, video=2)
    with pytest.raises(ConfigError, match="--csv_format 'xls'"):
        write_csv(labels, existing, "xls")
    assert existing.read_text() == "precious\n"


def sleap_columns(nodes: tuple[str, ...] | list[str]) -> list[str]:
    cols = ["track", "frame_idx", "instance.score"]
    for n in nodes:
        cols += [f"{n}.x", f"{n}.y", f"{n}.score"]
    return cols


def test_csv_sleap_layout_keeps_every_instance(tmp_path: Path) -> None:
    sk, vid, a = skeleton(), video(), sio.Track("a")
    user = sio.Instance.from_numpy(np.array([[1.0, 2], [np.nan, np.nan], [5, 6]]), skeleton=sk)
    frames = [
        sio.LabeledFrame(video=vid, frame_idx=2, instances=[
            predicted(sk, 10.0, 0.5), predicted(sk, 20.0, 0.75, a)]),
        sio.LabeledFrame(video=vid, frame_idx=0, instances=[predicted(sk, 30.0, 0.25), user]),
    ]
    out = tmp_path / "x.csv"
    write_csv(sio.Labels(frames), out)
    df = pd.read_csv(out)
    assert list(df.columns) == sleap_columns(SKELETON_NODES)
    # Frame order, tracked before untracked; the user instance replaces frame 0's prediction.
    assert df["frame_idx"].tolist() == [0, 2, 2]
    assert df["track"].isna().tolist() == [True, False, True] and df["track"][1] == "a"
    expected = [user, frames[0].instances[1], frames[0].instances[0]]
    for (_, row), inst in zip(df.iterrows(), expected):
        xy = np.array([[row[f"{n}.x"], row[f"{n}.y"]] for n in SKELETON_NODES])
        np.testing.assert_array_equal(xy, inst.numpy())
        scores = [row[f"{n}.score"] for n in SKELETON_NODES]
        if isinstance(inst, sio.PredictedInstance):
            assert row["instance.score"] == inst.score
            np.testing.assert_array_equal(scores, inst.points["score"])
        else:
            assert math.isnan(row["instance.score"]) and np.isnan(scores).all()


def test_csv_dlc_multi_animal(tmp_path: Path) -> None:
    sk, vid = skeleton(), video()
    a, b = sio.Track("mouse1"), sio.Track("mouse2")
    frames = [
        sio.LabeledFrame(video=vid, frame_idx=0, instances=[predicted(sk, 1.0, 0.9, b),
                                                            predicted(sk, 2.0, 0.8, a)]),
        sio.LabeledFrame(video=vid, frame_idx=2, instances=[predicted(sk, 3.0, 0.7, a)]),
    ]
    labels = sio.Labels(frames)
    assert labels.tracks == [b, a]  # first seen first
    out = tmp_path / "dlc.csv"
    write_csv(labels, out, "dlc", scorer="net")
    assert out.read_text().splitlines()[0].startswith("scorer,net,")
    df = pd.read_csv(out, header=[0, 1, 2, 3], index_col=0)
    assert list(df.columns.names) == ["scorer", "individuals", "bodyparts", "coords"]
    assert df.index.tolist() == [0, 1, 2]
    assert list(df.columns.unique("individuals")) == ["mouse2", "mouse1"]  # the labels' order
    assert list(df.columns.unique("bodyparts")) == list(SKELETON_NODES)
    assert list(df.columns.unique("coords")) == ["x", "y", "likelihood"]
    assert df.shape == (3, 2 * 3 * 3)
    for lf in frames:
        for inst in lf.instances:
            for n, node in enumerate(SKELETON_NODES):
                got = [df.loc[lf.frame_idx, ("net", inst.track.name, node, c)]
                       for c in ("x", "y", "likelihood")]
                np.testing.assert_array_equal(got, [*inst.numpy()[n], inst.points["score"][n]])
    assert df.loc[1].isna().all()
    assert df.xs("mouse2", level="individuals", axis=1).loc[2].isna().all()


def test_csv_dlc_untracked_is_single_animal(tmp_path: Path) -> None:
    sk, vid = skeleton(), video()
    frames = [sio.LabeledFrame(video=vid, frame_idx=0, instances=[predicted(sk, 1.0, 0.3),
                                                                  predicted(sk, 2.0, 0.6)]),
              sio.LabeledFrame(video=vid, frame_idx=1, instances=[predicted(sk, 3.0, 0.5)])]
    out = tmp_path / "dlc1.csv"
    write_csv(sio.Labels(frames), out, "dlc")
    assert len(out.read_text().splitlines()) == 3 + 2  # three header rows, one row per frame
    df = pd.read_csv(out, header=[0, 1, 2], index_col=0)
    assert list(df.columns.names) == ["scorer", "bodyparts", "coords"]
    for frame, inst in ((0, frames[0].instances[1]), (1, frames[1].instances[0])):
        xy = [[df.loc[frame, ("sleapflow", n, c)] for c in "xy"] for n in SKELETON_NODES]
        np.testing.assert_array_equal(xy, inst.numpy())
        lik = [df.loc[frame, ("sleapflow", n, "likelihood")] for n in SKELETON_NODES]
        np.testing.assert_array_equal(lik, inst.points["score"])


@pytest.fixture(scope="module")
def robot_run(assets: Path, tmp_path_factory: pytest.TempPathFactory) -> sio.Labels:
    out = tmp_path_factory.mktemp("run") / "robot.slp"
    stderr = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(stderr):
        rc = main(["track", "-i", str(assets / "datasets/small_robot.mp4"), "-m",
                   str(assets / "model_ckpts/minimal_instance_single_instance"), "-o", str(out),
                   "--frames", "0-3", "--device", "cpu"])
    assert rc == 0, stderr.getvalue()
    return sio.load_slp(str(out))


def test_real_run(robot_run: sio.Labels, tmp_path: Path) -> None:
    labels = robot_run
    nodes = labels.skeletons[0].node_names
    out = tmp_path / "robot.analysis.h5"
    write_analysis_h5(labels, out, labels_path="robot.slp")
    check_layout(out, frames=4, tracks=1, nodes=len(nodes), edges=len(labels.skeletons[0].edges),
                 untracked=True)
    tracks = read(out, "tracks")
    assert json.loads(read(out, "provenance"))["model_type"] == labels.provenance["model_type"]
    write_csv(labels, tmp_path / "robot.csv")
    write_csv(labels, tmp_path / "robot.dlc.csv", "dlc")
    sleap = pd.read_csv(tmp_path / "robot.csv")
    assert list(sleap.columns) == sleap_columns(nodes)
    dlc = pd.read_csv(tmp_path / "robot.dlc.csv", header=[0, 1, 2], index_col=0)
    assert dlc.index.tolist() == [0, 1, 2, 3]
    for lf in labels:
        inst = lf.instances[0]
        np.testing.assert_array_equal(tracks[0, :, :, lf.frame_idx].T, inst.numpy())
        row = sleap[sleap["frame_idx"] == lf.frame_idx].iloc[0]
        assert row["instance.score"] == inst.score
        for n, node in enumerate(nodes):
            np.testing.assert_array_equal([row[f"{node}.x"], row[f"{node}.y"]], inst.numpy()[n])
            np.testing.assert_array_equal(
                [dlc.loc[lf.frame_idx, ("sleapflow", node, c)] for c in "xy"], inst.numpy()[n])

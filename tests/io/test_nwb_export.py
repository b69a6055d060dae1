"""NWB export: read back with pynwb + ndx-pose, points and frame times checked, nwbinspector clean."""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import ndx_pose  # noqa: F401  (registers the ndx-pose types with pynwb for reading)
import numpy as np
import pytest
import sleap_io as sio
from nwbinspector import Importance, inspect_nwbfile
from pynwb import NWBHDF5IO

from sleapflow.errors import ConfigError
from sleapflow.outputs.nwb import NwbMetadata, load_nwb_metadata, video_frame_times, write_nwb

#: Findings that make a file wrong rather than improvable.
SEVERE = {Importance.CRITICAL, Importance.PYNWB_VALIDATION, Importance.ERROR}


def _labels(reference: Path, assets: Path, name: str) -> sio.Labels:
    labels = sio.load_slp(str(reference / name))
    labels.replace_filenames(new_filenames=[str(assets / "datasets" / Path(v.filename).name)
                                            for v in labels.videos])
    return labels


def _decoded_times(path: Path, upto: int) -> np.ndarray:
    """Each frame's presentation time as the decoder hands it out, frames 0..upto."""
    with av.open(str(path)) as container:
        times = []
        for frame in container.decode(container.streams.video[0]):
            times.append(frame.time)
            if len(times) > upto:
                break
    return np.asarray(times)


def _times(series: Any) -> np.ndarray:
    if series.timestamps is not None:
        return np.asarray(series.timestamps[:])
    return series.starting_time + np.arange(series.num_samples) / series.rate


def _severe(path: Path) -> list[str]:
    return [f"{m.importance.name} {m.check_function_name} {m.object_name}: {m.message}"
            for m in inspect_nwbfile(nwbfile_path=path) if m.importance in SEVERE]


def _read(path: Path) -> dict[str, Any]:
    """Every PoseEstimation as {name: {"description", "scorer", "nodes": {node: (t, xy, conf)}}}."""
    out: dict[str, Any] = {}
    with NWBHDF5IO(str(path), "r") as io:
        nwbfile = io.read()
        out["_file"] = {"subject": nwbfile.subject, "session_start_time": nwbfile.session_start_time,
                        "experimenter": nwbfile.experimenter, "lab": nwbfile.lab,
                        "institution": nwbfile.institution, "session_id": nwbfile.session_id,
                        "session_description": nwbfile.session_description,
                        "identifier": nwbfile.identifier,
                        "experiment_description": nwbfile.experiment_description,
                        "acquisition": {k: (list(v.external_file[:]), _times(v))
                                        for k, v in nwbfile.acquisition.items()}}
        behavior = nwbfile.processing["behavior"]
        out["_skeletons"] = {k: (list(s.nodes[:]), s.edges[:].tolist())
                             for k, s in behavior["Skeletons"].skeletons.items()}
        for name, pe in behavior.data_interfaces.items():
            if name == "Skeletons":
                continue
            version = getattr(pe, "source_software__version", None) or getattr(
                pe, "source_software_version", None)
            out[name] = {
                "description": pe.description, "scorer": pe.scorer,
                "software": (pe.source_software, version), "skeleton": pe.skeleton.name,
                "source_video": pe.source_video.name if pe.source_video is not None else None,
                "nodes": {n: (_times(s), np.asarray(s.data[:]), np.asarray(s.confidence[:]))
                          for n, s in pe.pose_estimation_series.items()},
            }
    return out


def _check_against(labels: sio.Labels, poses: dict[str, Any], rows: dict[str, list[tuple[int, Any]]],
                   times: np.ndarray) -> None:
    """Each container holds exactly ``rows[name]``: (frame_idx, instance) at the frame's time."""
    names = [n for n in poses if not n.startswith("_")]
    assert sorted(names) == sorted(rows)
    nodes = labels.skeletons[0].node_names
    for name, expected in rows.items():
        frames = np.array([f for f, _ in expected])
        points = np.stack([inst.numpy(scores=True) for _, inst in expected])
        if len(frames) == 1 and frames[0] > 0:
            # A lone row comes with the frame before it as a NaN row (one-row NWB data reads as
            # transposed); the variable-frame-rate test checks this case in detail.
            frames = np.array([frames[0] - 1, frames[0]])
            points = np.concatenate([np.full_like(points, np.nan), points])
        assert sorted(poses[name]["nodes"]) == sorted(nodes)
        for n, node in enumerate(nodes):
            t, xy, conf = poses[name]["nodes"][node]
            np.testing.assert_allclose(t, times[frames], rtol=0, atol=1e-9)
            np.testing.assert_array_equal(xy, points[:, n, :2])
            # A missing point has no score (NaN), whatever the .slp stored for it.
            found = np.isfinite(points[:, n, :2]).all(axis=1)
            np.testing.assert_array_equal(conf, np.where(found, points[:, n, 2], np.nan))


def test_untracked_multi_animal_is_written_as_ranked_slots_not_identities(
        tmp_path: Path, reference: Path, assets: Path) -> None:
    # sleap-io's own writer fails on exactly this ("Index contains duplicate entries").
    labels = _labels(reference, assets, "topdown__centered_pair_small.slp")
    labels.labeled_frames = labels.labeled_frames[:120]
    out = tmp_path / "untracked.nwb"
    write_nwb(labels, out, software_version="9.9.9")
    assert _severe(out) == []
    poses = _read(out)

    rows: dict[str, list[tuple[int, Any]]] = {}
    for lf in labels.labeled_frames:
        ranked = sorted(lf.predicted_instances, key=lambda i: -i.score)
        for k, inst in enumerate(ranked):
            rows.setdefault(f"untracked_instance_{k}", []).append((lf.frame_idx, inst))
    assert len(rows) >= 2  # really multi-animal
    times = _decoded_times(assets / "datasets/centered_pair_small.mp4", 120)
    _check_against(labels, poses, rows, times)
    for name in rows:
        assert "no identity" in poses[name]["description"]
        assert poses[name]["software"] == ("sleapflow", "9.9.9")
        assert poses[name]["source_video"] == "video_0"
        # Provenance is the JSON after the description's marker, whole and parseable.
        provenance = json.loads(poses[name]["description"].split("provenance (JSON): ", 1)[1])
        assert provenance["model_paths"] == labels.provenance["model_paths"]
        assert poses[name]["scorer"].startswith("sleapflow top_down (minimal_instance_centroid")
    assert poses["_skeletons"] == {"Skeleton-0": (labels.skeletons[0].node_names,
                                                  [list(e) for e in labels.skeletons[0].edge_inds])}
    # The frames are 15 fps: frame i is at i / 15 s, not i s.
    assert times[30] == pytest.approx(2.0)


def test_single_animal_times_are_the_videos_frame_times(tmp_path: Path, reference: Path,
                                                       assets: Path) -> None:
    labels = _labels(reference, assets, "single_instance__small_robot.slp")
    out = tmp_path / "single.nwb"
    write_nwb(labels, out)
    assert _severe(out) == []
    poses = _read(out)
    rows = {"PoseEstimation": [(lf.frame_idx, lf.predicted_instances[0])
                               for lf in labels.labeled_frames if lf.predicted_instances]}
    video = assets / "datasets/small_robot.mp4"
    times = _decoded_times(video, 200)
    _check_against(labels, poses, rows, times)
    assert times[30] == pytest.approx(1.0)  # 30 fps
    external, video_times = poses["_file"]["acquisition"]["video_0"]
    assert (out.parent / external[0]).resolve() == video.resolve()
    assert not Path(external[0]).is_absolute()
    np.testing.assert_allclose(video_times, times, atol=1e-9)
    assert "Timestamps: the video container's frame timestamps" in poses["PoseEstimation"]["description"]


@pytest.mark.parametrize("name", ["track_topdown_default.slp",
                                  "multiclass_topdown__centered_pair_small.slp"])
def test_tracks_and_identities_get_one_pose_estimation_each(tmp_path: Path, reference: Path,
                                                            assets: Path, name: str) -> None:
    labels = _labels(reference, assets, name)
    out = tmp_path / "tracked.nwb"
    write_nwb(labels, out)
    assert _severe(out) == []
    poses = _read(out)
    rows: dict[str, list[tuple[int, Any]]] = {}
    untracked: dict[int, int] = {}
    for lf in sorted(labels.labeled_frames, key=lambda lf: lf.frame_idx):
        for inst in sorted(lf.predicted_instances, key=lambda i: -i.score):
            if inst.track is None:
                k = untracked[lf.frame_idx] = untracked.get(lf.frame_idx, -1) + 1
                rows.setdefault(f"untracked_instance_{k}", []).append((lf.frame_idx, inst))
            else:
                rows.setdefault(f"track={inst.track.name}", []).append((lf.frame_idx, inst))
    assert sum(n.startswith("track=") for n in rows) >= 2
    times = _decoded_times(assets / "datasets/centered_pair_small.mp4", 300)
    _check_against(labels, poses, rows, times)
    for track_name in rows:
        if track_name.startswith("track="):
            assert f"identity) {track_name[6:]!r}" in poses[track_name]["description"]


def _write_vfr_video(path: Path, pts_ms: list[int]) -> Path:
    """An H.264 mp4 (with B-frames) whose frames are at the given, uneven times."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        stream.codec_context.time_base = Fraction(1, 1000)
        stream.options = {"preset": "veryfast", "bf": "2"}
        for i, pts in enumerate(pts_ms):
            frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), i * 20, np.uint8), format="rgb24")
            frame.pts, frame.time_base = pts, Fraction(1, 1000)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def _instance(sk: sio.Skeleton, xy: list[list[float]], scores: list[float],
              track: sio.Track | None = None) -> sio.PredictedInstance:
    return sio.PredictedInstance.from_numpy(np.array(xy, float), skeleton=sk, track=track,
                                            point_scores=np.array(scores), score=float(np.mean(scores)))


def test_variable_frame_rate_nan_points_empty_frames_and_a_lone_row(tmp_path: Path) -> None:
    pts = [0, 40, 80, 200, 240, 400, 440, 480, 700, 740]
    video_path = _write_vfr_video(tmp_path / "vfr.mp4", pts)
    times, _ = video_frame_times(video_path)
    np.testing.assert_allclose(times, np.array(pts) / 1000)
    video = sio.Video(filename=str(video_path), open_backend=False)
    sk = sio.Skeleton(nodes=["head", "tail/tip", "mid"], edges=[("head", "mid")], name="fly")
    a, b = sio.Track("a"), sio.Track("b")
    nan = float("nan")
    frames = [
        sio.LabeledFrame(video=video, frame_idx=0, instances=[
            _instance(sk, [[1, 2], [3, 4], [5, 6]], [0.9, 0.8, 0.7], a)]),
        sio.LabeledFrame(video=video, frame_idx=2, instances=[]),  # processed, nothing found
        sio.LabeledFrame(video=video, frame_idx=3, instances=[
            _instance(sk, [[nan, nan], [7, 8], [9, 10]], [0.0, 0.6, 0.5], a)]),
        sio.LabeledFrame(video=video, frame_idx=5, instances=[
            _instance(sk, [[11, 12], [13, 14], [nan, nan]], [0.4, 0.3, 0.0], a),
            _instance(sk, [[21, 22], [23, 24], [25, 26]], [0.5, 0.5, 0.5], b)]),
        sio.LabeledFrame(video=video, frame_idx=8, instances=[
            _instance(sk, [[31, 32], [33, 34], [35, 36]], [0.2, 0.2, 0.2], a)]),
    ]
    labels = sio.Labels(labeled_frames=frames, videos=[video], skeletons=[sk], tracks=[a, b])
    out = tmp_path / "vfr.nwb"
    write_nwb(labels, out)
    assert _severe(out) == []
    poses = _read(out)
    assert sorted(n for n in poses if not n.startswith("_")) == ["track=a", "track=b"]
    # "/" cannot be in an NWB name: the node and its Skeleton entry agree on the replacement.
    assert poses["_skeletons"]["fly"][0] == ["head", "tail_tip", "mid"]
    t, xy, conf = poses["track=a"]["nodes"]["head"]
    np.testing.assert_allclose(t, np.array([0, 200, 400, 700]) / 1000, atol=1e-9)
    np.testing.assert_array_equal(xy, [[1, 2], [nan, nan], [11, 12], [31, 32]])
    np.testing.assert_array_equal(conf, [0.9, nan, 0.4, 0.2])  # no score for a missing point
    _, xy, _ = poses["track=a"]["nodes"]["tail_tip"]
    np.testing.assert_array_equal(xy, [[3, 4], [7, 8], [13, 14], [33, 34]])
    # Track b has one row (frame 5); the frame before is added as a NaN row, truthfully empty.
    t, xy, conf = poses["track=b"]["nodes"]["mid"]
    np.testing.assert_allclose(t, [0.24, 0.4], atol=1e-9)
    np.testing.assert_array_equal(xy, [[nan, nan], [25, 26]])
    np.testing.assert_array_equal(conf, [nan, 0.5])


def test_no_predictions_gives_a_valid_file_with_no_pose_estimation(tmp_path: Path,
                                                                   assets: Path) -> None:
    sk = sio.Skeleton(nodes=["a", "b"], name="sk")
    video = sio.Video(filename=str(assets / "datasets/small_robot.mp4"), open_backend=False)
    labels = sio.Labels(labeled_frames=[sio.LabeledFrame(video=video, frame_idx=0, instances=[])],
                        videos=[video], skeletons=[sk])
    out = tmp_path / "empty.nwb"
    write_nwb(labels, out)
    assert _severe(out) == []
    poses = _read(out)
    assert [n for n in poses if not n.startswith("_")] == []
    assert poses["_skeletons"] == {"sk": (["a", "b"], [])}

    bare = tmp_path / "bare.nwb"
    write_nwb(sio.Labels(), bare)
    assert _severe(bare) == []
    with NWBHDF5IO(str(bare), "r") as io:
        assert "behavior" not in io.read().processing


def test_image_sequence_uses_the_given_frame_rate_and_says_so(tmp_path: Path) -> None:
    sk = sio.Skeleton(nodes=["a", "b"], name="sk")
    video = sio.Video(filename=[str(tmp_path / f"img{i}.png") for i in range(6)], open_backend=False)
    frames = [sio.LabeledFrame(video=video, frame_idx=i, instances=[
        _instance(sk, [[i, i], [i + 1, i + 1]], [0.5, 0.5])]) for i in (1, 2, 4)]
    labels = sio.Labels(labeled_frames=frames, videos=[video], skeletons=[sk])
    out = tmp_path / "images.nwb"
    write_nwb(labels, out, NwbMetadata(frame_rate=20.0))
    assert _severe(out) == []
    poses = _read(out)
    t, _, _ = poses["PoseEstimation"]["nodes"]["a"]
    np.testing.assert_allclose(t, [0.05, 0.1, 0.2])
    assert "20 fps (given frame_rate" in poses["PoseEstimation"]["description"]
    assert poses["_file"]["acquisition"] == {}  # no video file to point at


def test_metadata_ends_up_in_the_file(tmp_path: Path, reference: Path, assets: Path) -> None:
    labels = _labels(reference, assets, "single_instance__small_robot.slp")
    metadata = NwbMetadata(subject_id="robot-7", species="Mus musculus", sex="F", age="P90D",
                           subject_description="a small robot", session_description="arena run 3",
                           session_id="s3", session_start_time="2024-05-01T09:30:00+02:00",
                           experimenter=("Ada Lovelace", "Alan Turing"), lab="Pose lab",
                           institution="Example Institute", experiment_description="tracking test",
                           identifier="run-3")
    out = tmp_path / "meta.nwb"
    write_nwb(labels, out, metadata)
    findings = list(inspect_nwbfile(nwbfile_path=out))
    assert [m for m in findings if m.importance in SEVERE] == []
    assert not any(m.check_function_name.startswith("check_subject") for m in findings)
    info = _read(out)["_file"]
    subject = info["subject"]
    assert (subject.subject_id, subject.species, subject.sex, subject.age, subject.description) == (
        "robot-7", "Mus musculus", "F", "P90D", "a small robot")
    assert info["session_start_time"].isoformat() == "2024-05-01T09:30:00+02:00"
    assert tuple(info["experimenter"]) == ("Ada Lovelace", "Alan Turing")
    assert (info["lab"], info["institution"], info["session_id"], info["identifier"],
            info["session_description"], info["experiment_description"]) == (
        "Pose lab", "Example Institute", "s3", "run-3", "arena run 3", "tracking test")


def test_defaults_say_what_is_unknown(tmp_path: Path, reference: Path, assets: Path) -> None:
    labels = _labels(reference, assets, "single_instance__small_robot.slp")
    out = tmp_path / "defaults.nwb"
    write_nwb(labels, out)
    info = _read(out)["_file"]
    subject = info["subject"]
    assert (subject.subject_id, subject.sex, subject.age) == ("unknown", "U", "P0D/")
    assert "--nwb_subject_id" in subject.description
    # The session starts at the video's recorded creation time (small_robot.mp4's tag).
    assert info["session_start_time"].isoformat() == "2010-03-20T21:29:11+00:00"
    assert "the video file's creation_time tag" in info["session_description"]


def test_metadata_file_and_explicit_options(tmp_path: Path) -> None:
    yml = tmp_path / "meta.yaml"
    yml.write_text("subject_id: 001\nspecies: Danio rerio\nsex: M\nage: P5D\nlab: ~\n"
                   "session_start_time: 2024-05-01T09:30:00+00:00\nexperimenter: [A. B, C. D]\n"
                   "frame_rate: 30\n")
    from_file = load_nwb_metadata(yml)
    assert from_file == NwbMetadata(subject_id="001", species="Danio rerio", sex="M", age="P5D",
                                    session_start_time="2024-05-01T09:30:00+00:00",
                                    experimenter=("A. B", "C. D"), frame_rate=30.0)
    merged = from_file.merged(NwbMetadata(subject_id="fish-2", lab="L"))
    assert (merged.subject_id, merged.lab, merged.species) == ("fish-2", "L", "Danio rerio")

    js = tmp_path / "meta.json"
    js.write_text(json.dumps({"subject_id": "x", "subjectid": "y"}))
    with pytest.raises(ConfigError, match=r"unknown key 'subjectid'.*valid keys: subject_id, species"):
        load_nwb_metadata(js)
    js.write_text(json.dumps({"subject_id": 7, "sex": "F"}))
    assert load_nwb_metadata(js) == NwbMetadata(subject_id="7", sex="F")
    js.write_text(json.dumps({"lab": "L", "frame_rate": "fast"}))
    with pytest.raises(ConfigError, match="frame_rate"):
        load_nwb_metadata(js)
    js.write_text(json.dumps({"sex": "male"}))  # the values' own checks apply to files too
    with pytest.raises(ConfigError, match="not one of M, F, U, O"):
        load_nwb_metadata(js)
    js.write_text("[1, 2]")
    with pytest.raises(ConfigError, match="mapping"):
        load_nwb_metadata(js)
    with pytest.raises(ConfigError, match="does not exist"):
        load_nwb_metadata(tmp_path / "missing.yaml")


@pytest.mark.parametrize(("field", "value", "message"), [
    ("sex", "male", "not one of M, F, U, O"),
    ("age", "90 days", "ISO 8601 duration"),
    ("session_start_time", "yesterday", "ISO 8601"),
    ("session_start_time", "2999-01-01T00:00:00+00:00", "in the future"),
    ("frame_rate", 0.0, "positive"),
])
def test_bad_metadata_values_are_config_errors(field: str, value: Any, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        NwbMetadata(**{field: value})

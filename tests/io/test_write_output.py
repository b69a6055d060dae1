"""The output file: contents, provenance, default path and the atomic-write guarantee."""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
from datetime import datetime
from pathlib import Path

import anyio
import numpy as np
import pytest
import sleap_io as sio
from inputs_helpers import SINGLE_INSTANCE, frame_pattern, two_video_labels

from sleapflow.cli.app import main
from sleapflow.errors import ConfigError, StageError
from sleapflow.graphs.build import build_graph, make_writer, prepare
from sleapflow.jobs.job import plan_job, run_job
from sleapflow.messages import FramePrediction
from sleapflow.options.config import InferenceConfig
from sleapflow.outputs.naming import default_output_path
from sleapflow.outputs.provenance import inference_provenance
from sleapflow.runtime import GraphRunner, MapStage, chain
from sleapflow.stages.decode import DecodeSource
from sleapflow.stages.write import LabelsBuilder, SlpWriter
from sleapflow.testing import ListSource, write_synthetic_video


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".tmp" in p.name)


def model(assets: Path) -> str:
    return str(assets / SINGLE_INSTANCE)


def run(cfg: InferenceConfig, out: Path | None) -> sio.Labels:
    result = anyio.run(run_job, plan_job(cfg, output=None if out is None else str(out)))
    return result.labels


# ---- contents -------------------------------------------------------------------------------


def test_slp_input_output_holds_only_new_predictions(assets: Path, tmp_path: Path) -> None:
    path, expected = two_video_labels(tmp_path)
    before = sha(path)
    out = tmp_path / "out.slp"
    # threshold 0: the model finds its peaks on any image, so every selected frame has a pose
    cfg = InferenceConfig(data_path=str(path), model_paths=(model(assets),), device="cpu",
                          peak_threshold=0.0, only_labeled_frames=True)
    run(cfg, out)
    assert sha(path) == before  # the input is never modified
    labels = sio.load_slp(str(out))
    assert [(labels.videos.index(lf.video), lf.frame_idx) for lf in labels] == expected["labeled"]
    assert all(type(inst) is sio.PredictedInstance for lf in labels for inst in lf.instances)
    assert all(len(lf.instances) == 1 for lf in labels)
    assert [Path(v.filename).name for v in labels.videos] == ["cam0.mp4", "cam1.mp4"]
    assert labels.suggestions == []
    assert [n.name for n in labels.skeletons[0].nodes] == ["A", "B"]  # the model's skeleton
    assert labels.skeletons[0].name != "sk"
    frame = labels.videos[1][7]  # the output's videos open: it refers to the input's videos
    assert frame.shape[:2] == (64, 96)
    prov = labels.provenance
    assert prov["source_file"] == path.resolve().as_posix()
    assert prov["input_provenance"]["filename"] == str(path)
    assert prov["source_labels"] == str(path)
    assert prov["frame_selection"] == {"method": "labeled", "frames_processed": 3}


def test_pkg_slp_output_refers_to_the_package(assets: Path, tmp_path: Path) -> None:
    pkg = tmp_path / "minimal_instance.pkg.slp"
    shutil.copy(assets / "datasets/minimal_instance.pkg.slp", pkg)
    out = tmp_path / "pred.slp"
    run(InferenceConfig(data_path=str(pkg), model_paths=(model(assets),), device="cpu"), out)
    labels = sio.load_slp(str(out))
    assert len(labels) == 1 and labels[0].frame_idx == 0
    assert Path(labels.videos[0].filename).resolve() == pkg.resolve()
    assert labels.videos[0][0].shape == (384, 384, 1)  # frames still come from the package


def test_video_input_output_video_and_provenance(assets: Path, tmp_path: Path) -> None:
    clip = write_synthetic_video(tmp_path / "clip.mp4", n_frames=10)
    out = tmp_path / "clip.predictions.slp"
    cfg = InferenceConfig(data_path=str(clip), model_paths=(model(assets),), device="cpu",
                          peak_threshold=0.0, frames=(2, 3, 4, 40))
    t0 = datetime.now()
    run(cfg, out)
    labels = sio.load_slp(str(out))
    assert [lf.frame_idx for lf in labels] == [2, 3, 4]
    video = labels.videos[0]
    assert video.filename == clip.resolve().as_posix()
    assert tuple(video.shape) == (10, 64, 96, 1)
    prov = labels.provenance
    start = datetime.fromisoformat(prov["inference_start_timestamp"])
    end = datetime.fromisoformat(prov["inference_end_timestamp"])
    assert t0 <= start <= end <= datetime.now()
    assert prov["inference_runtime_seconds"] == pytest.approx((end - start).total_seconds())
    assert prov["sleapflow_version"] and prov["sleap_io_version"] == sio.__version__
    assert "sleap_nn_version" not in prov
    assert prov["model_paths"] == [Path(model(assets)).resolve().as_posix()]
    assert prov["model_type"] == "single_instance"
    assert prov["source_file"] == clip.resolve().as_posix()
    assert "input_provenance" not in prov and "source_labels" not in prov
    assert prov["frame_selection"] == {"method": "specified", "frames_processed": 3}
    config = prov["inference_config"]
    assert config["peak_threshold"] == 0.0 and config["batch_size"] == 4
    assert config["integral_refinement"] == "integral"
    assert "max_instances" not in config  # None values are left out, as in the reference
    # The documented top-level names are all there, null where unset.
    documented = ("timestamp_start", "timestamp_end", "runtime_sec", "sleap_io_version",
                  "torch_version", "model_paths", "model_type", "head_type", "source_path",
                  "source_video_paths", "frame_selection_method", "frames_predicted",
                  "total_frames", "peak_threshold", "batch_size", "integral_refinement",
                  "max_instances", "device", "python_version", "cuda_version", "gpu_names")
    assert set(documented) <= set(prov)
    assert prov["max_instances"] is None and prov["batch_size"] == 4
    assert "tracking_config" not in prov
    assert prov["device"] == "cpu"
    assert set(prov["system_info"]) >= {"python_version", "platform", "pytorch_version",
                                        "cuda_version", "accelerator", "gpu_count"}
    assert prov["system_info"]["accelerator"] in ("cpu", "cuda", "mps")


def test_provenance_tracking_config_and_unknown_method() -> None:
    now = datetime.now()
    prov = inference_provenance(
        started=now, finished=now, model_paths=["m"], graph="centered_instance", source_file=None,
        input_labels=None, frame_selection_method="all", frames_processed=0,
        inference_config={"peak_threshold": (0.2, 0.3), "crop_size": None},
        tracking_config={"window_size": 5, "max_tracks": None, "features": "keypoints"},
        device="cpu")
    assert prov["model_type"] == "top_down"  # the reference's name for a lone centered-instance run
    assert prov["inference_config"] == {"peak_threshold": [0.2, 0.3]}
    assert prov["tracking_config"] == {"window_size": 5, "features": "keypoints"}
    assert "source_file" not in prov
    with pytest.raises(ValueError, match="frame selection"):
        inference_provenance(started=now, finished=now, model_paths=[], graph="x", source_file=None,
                             input_labels=None, frame_selection_method="exclude",
                             frames_processed=0, inference_config={}, tracking_config=None,
                             device="cpu")


def _prediction(seq: int, frame_idx: int, empty: bool) -> FramePrediction:
    points = np.full((1, 2, 2), np.nan) if empty else np.array([[[1.0, 2.0], [3.0, 4.0]]])
    return FramePrediction(seq=seq, video_id=0, frame_idx=frame_idx, points=points,
                           point_scores=np.array([[0.5, 0.5]]), instance_scores=np.array([0.5]))


@pytest.mark.parametrize("no_empty_frames", [False, True])
def test_no_empty_frames_after_provenance(tmp_path: Path, no_empty_frames: bool) -> None:
    video = sio.Video(filename=str(tmp_path / "v.mp4"), open_backend=False)
    builder = LabelsBuilder([video], sio.Skeleton(nodes=["A", "B"]), keep_empty_frames=True)
    seen: list[int] = []

    def provenance(labels: sio.Labels) -> dict:
        seen.append(len(labels.labeled_frames))
        return {"frames_processed": len(labels.labeled_frames)}

    out = tmp_path / "o.slp"
    writer = SlpWriter(builder, output_path=out, provenance=provenance,
                       no_empty_frames=no_empty_frames)
    source = ListSource([_prediction(0, 0, False), _prediction(1, 1, True), _prediction(2, 2, False)])
    anyio.run(lambda: GraphRunner(chain("w", [source, writer], 2)).run())
    labels = sio.load_slp(str(out), open_videos=False)
    assert seen == [3]
    assert [lf.frame_idx for lf in labels] == ([0, 2] if no_empty_frames else [0, 1, 2])
    assert labels.provenance["frames_processed"] == 3


# ---- default output path --------------------------------------------------------------------


def test_default_output_path(tmp_path: Path, assets: Path) -> None:
    def dop(**kw) -> str:
        return default_output_path(InferenceConfig(**kw))

    assert dop(data_path="/data/clip.mp4") == "/data/clip.predictions.slp"
    assert dop(data_path="/data/labels.pkg.slp") == "/data/labels.pkg.predictions.slp"
    assert dop(data_path="/data/movie.h5") == "/data/movie.predictions.slp"
    assert dop() == "results.predictions.slp"
    path, _ = two_video_labels(tmp_path)
    assert dop(data_path=str(path), video_index=1) == str(tmp_path / "two_videos.cam1.predictions.slp")
    assert dop(data_path=str(path), video_index=0) == str(tmp_path / "two_videos.cam0.predictions.slp")
    assert dop(data_path=str(path), video_index=5) == str(tmp_path / "two_videos.predictions.slp")


def test_cli_writes_the_default_output_beside_the_input(assets: Path, tmp_path: Path) -> None:
    clip = write_synthetic_video(tmp_path / "walk.avi", n_frames=4, codec="mpeg4")
    rc = main(["track", "-i", str(clip), "-m", model(assets), "--device", "cpu",
               "--peak_threshold", "0", "--frames", "0-1,3"])
    assert rc == 0
    labels = sio.load_slp(str(tmp_path / "walk.predictions.slp"), open_videos=False)
    assert [lf.frame_idx for lf in labels] == [0, 1, 3]


# ---- atomic write ---------------------------------------------------------------------------


def _existing_output(folder: Path, reference: Path) -> tuple[Path, str]:
    out = folder / "result.slp"
    shutil.copy(reference / "single_instance__small_robot_minimal.slp", out)
    return out, sha(out)


def test_failing_stage_leaves_existing_output_untouched(assets: Path, reference: Path,
                                                        tmp_path: Path) -> None:
    clip = write_synthetic_video(tmp_path / "clip.mp4", n_frames=12)
    out, before = _existing_output(tmp_path, reference)
    prepared = prepare(InferenceConfig(data_path=str(clip), model_paths=(model(assets),),
                                       device="cpu", peak_threshold=0.0, batch_size=2))
    writer = make_writer(prepared, output_path=str(out))

    def boom(frame):
        if frame.frame_idx == 7:
            raise RuntimeError("injected fault")
        return frame

    # Ordinary run plumbing with one extra stage between the decoder and the graph's stages.
    spec = build_graph(prepared, source=DecodeSource(prepared.plan), sink=writer)
    stages = [spec.stages[0], MapStage("fault", boom), *spec.stages[1:]]
    sizes = [2] + [e.maxsize for e in spec.edges]
    with pytest.raises(StageError, match="injected fault") as info:
        anyio.run(lambda: GraphRunner(chain("faulty", stages, sizes)).run())
    assert info.value.frame_idx == 7
    assert writer.result is None
    assert sha(out) == before
    assert leftovers(tmp_path) == []


def test_corrupt_input_frame_is_skipped_and_reported(assets: Path, reference: Path,
                                                     tmp_path: Path) -> None:
    """A frame that cannot be decoded is skipped, not fatal (issue #18): the others are
    predicted and the failure is in the provenance."""
    import cv2

    folder = tmp_path / "frames"
    folder.mkdir()
    for i in range(6):
        cv2.imwrite(str(folder / f"f{i}.png"), frame_pattern(i)[..., ::-1])
    (folder / "f4.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    out, _before = _existing_output(tmp_path, reference)
    rc = main(["track", "-i", str(folder), "-m", model(assets), "--device", "cpu", "-o", str(out),
               "--peak_threshold", "0"])
    assert rc == 0
    labels = sio.load_slp(str(out))
    assert sorted(lf.frame_idx for lf in labels) == [0, 1, 2, 3, 5]
    assert labels.provenance["frames_failed"] == 1
    assert labels.provenance["frames_failed_indices"] == [4]
    assert leftovers(tmp_path) == []
    out.write_bytes(b"")
    rc = main(["track", "-i", str(folder), "-m", model(assets), "--device", "cpu", "-o", str(out),
               "--peak_threshold", "0", "--max_failed_frames", "0"])
    assert rc == 2 and out.read_bytes() == b""


def test_failed_save_leaves_existing_output_untouched(tmp_path: Path, reference: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from sleapflow.stages import write

    out, before = _existing_output(tmp_path, reference)
    labels = sio.load_slp(str(reference / "single_instance__small_robot.slp"), open_videos=False)
    real_save = sio.save_slp

    def half_save(labels, filename, **kw):
        real_save(labels, filename, **kw)  # a complete temporary file ...
        raise OSError("disk full")  # ... then a failure before the rename

    monkeypatch.setattr(write.sio, "save_slp", half_save)
    with pytest.raises(OSError, match="disk full"):
        write.save_labels_atomically(labels, out)
    assert sha(out) == before
    assert leftovers(tmp_path) == []
    monkeypatch.undo()
    write.save_labels_atomically(labels, out)
    assert sha(out) != before
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(out.stat().st_mode) == 0o666 & ~umask  # not mkstemp's 0600


def test_output_path_checks(assets: Path, tmp_path: Path) -> None:
    pkg = tmp_path / "in.pkg.slp"
    shutil.copy(assets / "datasets/minimal_instance.pkg.slp", pkg)
    before = sha(pkg)
    cfg = InferenceConfig(data_path=str(pkg), model_paths=(model(assets),), device="cpu")
    with pytest.raises(ConfigError, match="is the input file"):
        run(cfg, pkg)
    with pytest.raises(ConfigError, match="is a folder"):
        run(cfg, tmp_path)
    assert sha(pkg) == before

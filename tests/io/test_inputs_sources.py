"""Every input kind through plan_input and the decode readers: HDF5, images, .pkg.slp, objects."""

from __future__ import annotations

from pathlib import Path

import anyio
import numpy as np
import pytest
import sleap_io as sio
from inputs_helpers import frame_pattern

from sleapflow.errors import ConfigError, VideoDecodeError
from sleapflow.inputs import InputPlan, open_reader, plan_input
from sleapflow.options.config import InferenceConfig
from sleapflow.outputs.naming import default_output_path
from sleapflow.runtime import GraphRunner, chain
from sleapflow.stages.decode import DecodeSource
from sleapflow.testing import ListSink, write_synthetic_video


def decoded(plan: InputPlan) -> list[tuple[int, int, np.ndarray]]:
    """Run the decode source alone and collect (video, frame, image)."""
    source, sink = DecodeSource(plan, chunk=3), ListSink()

    async def go() -> None:
        await GraphRunner(chain("decode_only", [source, sink], 4)).run()

    anyio.run(go)
    return [(f.video_id, f.frame_idx, f.image) for f in sink.items]


def frames(n: int, *, color: bool = True) -> np.ndarray:
    stack = np.stack([frame_pattern(i, color=color) for i in range(n)])
    return stack if color else stack[..., :1]


# ---- HDF5 -----------------------------------------------------------------------------------


@pytest.mark.parametrize("layout", ["channels_last", "channels_first"])
@pytest.mark.parametrize("color", [True, False])
def test_hdf5_video_both_layouts(tmp_path: Path, layout: str, color: bool) -> None:
    import h5py

    data = frames(6, color=color)  # (N, H, W, C)
    stored = data if layout == "channels_last" else data.transpose(0, 3, 2, 1)  # (N, C, W, H)
    path = tmp_path / "movie.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("meta/ids", data=np.arange(6))  # a decoy: only rank-4 data is a video
        f.create_dataset("box", data=stored)
    cfg = InferenceConfig(data_path=str(path), video_dataset="box", video_input_format=layout,
                          frames=(4, 1, 5))
    plan = plan_input(cfg)
    assert plan.kind == "hdf5"
    out = decoded(plan)
    assert [f for _, f, _ in out] == [4, 1, 5]
    for _, f, image in out:
        assert image.shape == (48, 64, 3 if color else 1)
        assert np.array_equal(image, data[f])


def test_hdf5_finds_the_video_dataset_without_a_name(tmp_path: Path) -> None:
    import h5py

    path = tmp_path / "auto.hdf5"
    with h5py.File(path, "w") as f:
        f.create_dataset("group/video_data", data=frames(3))
    plan = plan_input(InferenceConfig(data_path=str(path)))
    assert [f for _, f, _ in decoded(plan)] == [0, 1, 2]


def test_hdf5_errors_name_the_problem(tmp_path: Path) -> None:
    import h5py

    path = tmp_path / "bad.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("flat", data=np.zeros((4, 8, 8)))
    with pytest.raises(VideoDecodeError, match="no rank-4"):
        plan_input(InferenceConfig(data_path=str(path)))
    with pytest.raises(VideoDecodeError, match="rank 4"):
        plan_input(InferenceConfig(data_path=str(path), video_dataset="flat"))
    with h5py.File(path, "a") as f:
        f.create_dataset("wide", data=np.zeros((2, 8, 8, 5), np.uint8))
    with pytest.raises(VideoDecodeError, match="5 channels"):
        plan_input(InferenceConfig(data_path=str(path), video_dataset="wide"))


# ---- image sequences ------------------------------------------------------------------------


@pytest.fixture
def image_folder(tmp_path: Path) -> Path:
    import cv2

    folder = tmp_path / "shots"
    folder.mkdir()
    for i in range(5):
        cv2.imwrite(str(folder / f"img_{i:03d}.png"), frame_pattern(i)[..., ::-1])  # RGB → BGR
    (folder / "notes.txt").write_text("not an image")
    return folder


def test_image_folder(image_folder: Path) -> None:
    plan = plan_input(InferenceConfig(data_path=str(image_folder), frames=(3, 0)))
    assert plan.kind == "images"
    out = decoded(plan)
    assert [f for _, f, _ in out] == [3, 0]
    for _, f, image in out:
        assert np.array_equal(image, frame_pattern(f))
    assert len(plan.videos[0].filename) == 5  # the text file is not a frame
    assert default_output_path(InferenceConfig(data_path=str(image_folder))) == \
        str(image_folder.parent / "shots.predictions.slp")


def test_image_glob_and_single_image(image_folder: Path) -> None:
    plan = plan_input(InferenceConfig(data_path=str(image_folder / "img_00[1-3].png")))
    assert [Path(p).name for p in plan.videos[0].filename] == ["img_001.png", "img_002.png",
                                                               "img_003.png"]
    assert np.array_equal(decoded(plan)[0][2], frame_pattern(1))
    plan = plan_input(InferenceConfig(data_path=str(image_folder / "img_004.png")))
    assert [(v, f) for v, f, _ in decoded(plan)] == [(0, 0)]


def test_image_folder_without_images(tmp_path: Path) -> None:
    with pytest.raises(VideoDecodeError, match="no images"):
        plan_input(InferenceConfig(data_path=str(tmp_path)))
    with pytest.raises(ConfigError, match="no images match"):
        plan_input(InferenceConfig(data_path=str(tmp_path / "*.png")))


def test_corrupt_image_fails_with_the_frame_named(image_folder: Path) -> None:
    (image_folder / "img_002.png").write_bytes(b"\x89PNG broken")
    plan = plan_input(InferenceConfig(data_path=str(image_folder)))
    with pytest.raises(VideoDecodeError, match="frame 2"):
        open_reader(plan, 0).read(2)


# ---- labels ---------------------------------------------------------------------------------


def test_pkg_slp_embedded_frames(assets: Path) -> None:
    pkg = assets / "datasets/minimal_instance.pkg.slp"
    plan = plan_input(InferenceConfig(data_path=str(pkg)))
    assert plan.kind == "slp"
    out = decoded(plan)
    assert [(v, f) for v, f, _ in out] == [(0, 0)]
    assert out[0][2].shape == (384, 384, 1)
    # with --video_index: the frames the package holds (not range(len(video)))
    plan = plan_input(InferenceConfig(data_path=str(pkg), video_index=0, frames=(0, 5)))
    assert [it.frame_idx for it in plan.items] == [0]
    # the embedded video is named after its source video in the default output path
    assert Path(default_output_path(InferenceConfig(data_path=str(pkg), video_index=0))).name == \
        "minimal_instance.pkg.centered_pair_low_quality.predictions.slp"


def test_slp_videos_read_by_path(assets: Path) -> None:
    plan = plan_input(InferenceConfig(data_path=str(assets / "datasets/small_robot_minimal.slp")))
    out = decoded(plan)
    assert [f for _, f, _ in out] == [0, 79]
    video = sio.load_video(str(assets / "datasets/small_robot.mp4"))
    try:
        assert np.array_equal(out[1][2], video[79])
    finally:
        video.close()


# ---- in-memory inputs (Python API) ----------------------------------------------------------


def test_in_memory_video_and_labels(tmp_path: Path, assets: Path) -> None:
    path = write_synthetic_video(tmp_path / "mem.mp4", n_frames=6)
    video = sio.load_video(str(path))
    plan = plan_input(InferenceConfig(frames=(1, 2)), video=video)
    assert plan.kind == "video" and plan.source_path is None
    assert plan.videos[0] is video
    assert [f for _, f, _ in decoded(plan)] == [1, 2]
    labels = sio.load_slp(str(assets / "datasets/minimal_instance.pkg.slp"))
    plan = plan_input(InferenceConfig(data_path=str(path)), labels=labels, video=video)
    assert plan.kind == "slp" and plan.labels is labels  # labels win over the video and the path
    assert plan.videos == list(labels.videos)
    video.close()

"""The PyAV reader: exact frames for sparse and backward reads, across containers and codecs."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import sleap_io as sio
from inputs_helpers import decode_all, write_video

from sleapflow.errors import VideoDecodeError
from sleapflow.inputs import PyAVReader, plan_input, probe_video
from sleapflow.options.config import InferenceConfig

# Sparse, backward and repeated indices; the short GOPs below make most of these seeks.
SPARSE = [0, 150, 5, 299, 101, 100, 102, 40, 280, 1, 298, 200, 199, 77, 77, 3]

CASES = {
    "h264_bframes.mp4": dict(codec="libx264"),
    "h264_offset.mkv": dict(codec="libx264", pts_offset=7),   # no frame count; pts start at 7
    "h264_offset.mp4": dict(codec="libx264", pts_offset=5),
    "h264_ntsc.mov": dict(codec="libx264", fps=Fraction(30000, 1001)),
    "mpeg4_bframes.avi": dict(codec="mpeg4"),
    "mjpeg.mov": dict(codec="mjpeg", pix_fmt="yuvj420p", b_frames=0),
    "mpeg2.mpg": dict(codec="mpeg2video"),                    # decoded forward only
    "gray.mp4": dict(codec="libx264", color=False),
}


class _Videos:
    """Test videos, encoded on first use; a case whose encoder this FFmpeg lacks is skipped."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.paths: dict[str, Path] = {}

    def __getitem__(self, name: str) -> Path:
        import av

        if name not in self.paths:
            codec = CASES[name]["codec"]
            if codec not in av.codecs_available:
                pytest.skip(f"this FFmpeg build has no {codec} encoder")
            self.paths[name] = write_video(self.root / name, 300, **CASES[name])
        return self.paths[name]


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> _Videos:
    return _Videos(tmp_path_factory.mktemp("videos"))


@pytest.mark.parametrize("name", list(CASES))
def test_sparse_reads_return_exactly_the_requested_frames(videos: _Videos, name: str) -> None:
    path = videos[name]
    truth = decode_all(path)
    assert len(truth) == 300
    reader = PyAVReader(str(path))
    try:
        for i in SPARSE:
            image = reader.read(i)
            assert image is not None, (name, i)
            expected = truth[i][..., :1] if reader.grayscale else truth[i]
            assert np.array_equal(image, expected), (name, i)
        assert reader.read(300) is None
        assert reader.read(-1) is None
        assert np.array_equal(reader.read(299)[..., :1], truth[299][..., :1])  # usable after the end
        assert reader.read(10) is not None
        assert reader.read(5000) is None  # a seek (or decode) past the end ...
        assert np.array_equal(reader.read(11)[..., :1], truth[11][..., :1])  # ... then back
    finally:
        reader.close()
    assert reader.grayscale is (name == "gray.mp4")


@pytest.mark.parametrize("name", ["h264_offset.mkv", "mpeg4_bframes.avi", "gray.mp4"])
def test_frame_count_and_probe(videos: _Videos, name: str) -> None:
    info = probe_video(str(videos[name]))
    assert info.n_frames == 300
    assert (info.height, info.width) == (48, 64)
    assert info.channels == (1 if name == "gray.mp4" else 3)
    assert info.fps == pytest.approx(25.0)


@pytest.mark.parametrize("name", ["centered_pair_small.mp4", "small_robot.mp4"])
def test_matches_sleap_io_on_real_clips(assets: Path, name: str) -> None:
    """sleap-io's OpenCV backend is what the reference reads with: same pixels, same indices."""
    path = str(assets / "datasets" / name)
    video = sio.load_video(path)
    reader = PyAVReader(path)
    try:
        n = video.shape[0]
        for i in [0, n - 1, 150, 3, 97, 98, 140, 1]:
            assert np.array_equal(reader.read(i), video[i]), (name, i)
        assert reader.grayscale is (video.shape[-1] == 1)
        assert probe_video(path).n_frames == n
    finally:
        reader.close()
        video.close()


def test_plan_of_a_video_describes_it_for_the_output(videos: _Videos) -> None:
    path = videos["gray.mp4"]
    plan = plan_input(InferenceConfig(data_path=str(path), frames=(0, 10)))
    assert plan.kind == "video"
    video = plan.videos[0]
    assert video.filename == path.resolve().as_posix()
    assert video.backend_metadata["shape"] == [300, 48, 64, 1]
    assert video.backend_metadata["fps"] == pytest.approx(25.0)
    assert tuple(video.shape) == (300, 48, 64, 1)


def test_undecodable_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video at all" * 100)
    with pytest.raises(VideoDecodeError, match="cannot open video"):
        PyAVReader(str(bad))
    with pytest.raises(VideoDecodeError):
        plan_input(InferenceConfig(data_path=str(bad)))

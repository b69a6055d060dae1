"""The grayscale lookup path gives exactly swscale's pixels, and falls back where it must."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest

from sleapflow.inputs import PyAVReader
from sleapflow.inputs.gray_decode import GrayLookup
from sleapflow.testing import write_gray_h264


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_gray_h264(tmp_path_factory.mktemp("gray") / "gray1024.mp4", n_frames=40, gop=12)


def _swscale_frames(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [f.to_ndarray(format="rgb24")[..., :1] for f in container.decode(video=0)]


def test_reader_on_1024_h264_matches_swscale_frame_for_frame(clip: Path) -> None:
    expected = _swscale_frames(clip)
    reader = PyAVReader(str(clip))
    try:
        assert reader.grayscale and reader._gray is not None and reader._gray.enabled
        assert reader.shape == (1024, 1024, 1)
        for i in range(len(expected)):  # sequential
            assert np.array_equal(reader.read(i), expected[i]), i
        for i in (30, 3, 17, 39, 0):  # seeks and restarts
            assert np.array_equal(reader.read(i), expected[i]), i
    finally:
        reader.close()


def test_frames_without_flat_chroma_take_the_normal_conversion(clip: Path) -> None:
    with av.open(str(clip)) as container:
        first = next(iter(container.decode(video=0)))
        lookup = GrayLookup(first, first.to_ndarray(format="rgb24"))
        assert lookup.enabled
        assert lookup.convert(first) is not None
        tinted = av.VideoFrame.from_ndarray(np.full((64, 64, 3), (90, 60, 60), np.uint8),
                                            format="rgb24").reformat(format="yuv420p")
        assert lookup.convert(tinted) is None  # another size and non-flat chroma
        colour = av.VideoFrame.from_ndarray(
            np.dstack([np.full((1024, 1024), v, np.uint8) for v in (90, 60, 60)]),
            format="rgb24").reformat(format="yuv420p")
        colour.color_range, colour.colorspace = first.color_range, first.colorspace
        assert lookup.convert(colour) is None

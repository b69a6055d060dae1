"""The colour path's reused converter gives swscale's own rgb24 pixels, in order and after seeks."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest

from sleapflow.inputs import PyAVReader
from sleapflow.testing import write_gray_h264


def _plain_rgb(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]


@pytest.mark.parametrize("source", ["generated", "small_robot"])
def test_colour_frames_equal_a_fresh_conversion_in_order_and_after_seeks(
        source: str, tmp_path: Path, assets: Path) -> None:
    path = (write_gray_h264(tmp_path / "colour.mp4", n_frames=150, size=256, colour=True)
            if source == "generated" else assets / "datasets/small_robot.mp4")
    expected = _plain_rgb(path)
    reader = PyAVReader(str(path))
    try:
        assert not reader.grayscale and reader.shape[2] == 3
        order = list(range(len(expected)))
        # In order, then far jumps both ways (seeks and restarts reuse the same converter).
        jumps = [len(expected) - 1, 3, len(expected) // 2, 0, len(expected) - 40]
        for index in order + jumps:
            image = reader.read(index)
            assert image is not None and np.array_equal(image, expected[index]), index
    finally:
        reader.close()

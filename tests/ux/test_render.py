"""``render`` draws what a user expects: the source's frame rate, one colour per track in every
frame and every output, names beside the animals, plain frames where nothing was found, and a
clear error where a picture cannot hold the selection."""

from __future__ import annotations

from pathlib import Path

import av
import cv2
import numpy as np
import pytest
import sleap_io as sio

from sleapflow.cli.app import main


@pytest.fixture(scope="module")
def tracked(assets: Path, reference: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two tracked mice on the 15 fps clip; frame 1 lists its instances in the other order, and
    frame 2 is kept with no instance at all."""
    labels = sio.load_slp(str(reference / "trackonly_default.slp"))
    labels.replace_filenames(new_filenames=[str(assets / "datasets/centered_pair_small.mp4")])
    frames = {lf.frame_idx: lf for lf in labels.labeled_frames}
    frames[1].instances = list(reversed(frames[1].instances))
    frames[2].instances = []
    out = tmp_path_factory.mktemp("render") / "tracked.slp"
    labels.save(str(out))
    return out


def _png(tmp_path: Path, slp: Path, frame: int, *extra: str) -> np.ndarray:
    out = tmp_path / f"f{frame}{'-'.join(extra)}.png"
    assert main(["render", str(slp), "-o", str(out), "--frames", str(frame), *extra]) == 0
    image = cv2.imread(str(out))
    assert image is not None
    return image


def _colour_at(image: np.ndarray, xy: np.ndarray) -> np.ndarray:
    x, y = (round(float(v)) for v in xy)
    return np.median(image[y - 1:y + 2, x - 1:x + 2].reshape(-1, 3), axis=0)


def _node(labels: sio.Labels, frame: int, track: str) -> np.ndarray:
    lf = next(f for f in labels.labeled_frames if f.frame_idx == frame)
    inst = next(i for i in lf.instances if i.track is not None and i.track.name == track)
    points = inst.numpy()
    return points[np.isfinite(points).all(axis=1)][0]


def test_a_track_keeps_its_colour_between_pictures(tracked: Path, tmp_path: Path) -> None:
    labels = sio.load_slp(str(tracked))
    first, second = _png(tmp_path, tracked, 0), _png(tmp_path, tracked, 1)
    for track in ("track_0", "track_1"):
        a, b = _colour_at(first, _node(labels, 0, track)), _colour_at(second, _node(labels, 1, track))
        assert np.abs(a - b).max() <= 8, (track, a, b)  # the instance order within the frame differs
    zero = _colour_at(first, _node(labels, 0, "track_0"))
    one = _colour_at(first, _node(labels, 0, "track_1"))
    assert np.abs(zero - one).max() > 40  # two tracks, two colours


def test_names_are_drawn_and_can_be_left_out(tracked: Path, tmp_path: Path) -> None:
    named, plain = _png(tmp_path, tracked, 0), _png(tmp_path, tracked, 0, "--no-show_names")
    assert named.shape == plain.shape and (np.abs(named.astype(int) - plain).max(axis=2) > 60).sum() > 30


def test_a_frame_without_predictions_is_the_plain_frame(tracked: Path, tmp_path: Path,
                                                       assets: Path) -> None:
    video = sio.load_video(str(assets / "datasets/centered_pair_small.mp4"))
    for frame in (2, 1099):  # an empty labeled frame, and a frame never predicted
        image = _png(tmp_path, tracked, frame)
        source = video[frame]
        expected = cv2.cvtColor(np.repeat(source, 3, axis=2) if source.shape[2] == 1 else source,
                                cv2.COLOR_RGB2BGR)
        assert image.shape == expected.shape and np.abs(image.astype(int) - expected).max() <= 2


def test_the_video_plays_at_the_source_rate(tracked: Path, tmp_path: Path) -> None:
    out = tmp_path / "clip.mp4"
    assert main(["render", str(tracked), "-o", str(out), "--frames", "0-9", "--trail_length",
                 "5", "--palette", "tableau10"]) == 0
    with av.open(str(out)) as container:
        stream = container.streams.video[0]
        assert float(stream.average_rate) == 15.0 and stream.frames == 10
    faster = tmp_path / "faster.mp4"
    assert main(["render", str(tracked), "-o", str(faster), "--frames", "0-9", "--fps", "30"]) == 0
    with av.open(str(faster)) as container:
        assert float(container.streams.video[0].average_rate) == 30.0


@pytest.mark.parametrize(("args", "words"), [
    (["--frames", "0-5", "-o", "{tmp}/x.png"], "a .png holds one frame"),
    (["-o", "{tmp}/x.png"], "a .png holds one frame"),
    (["--scale", "0", "-o", "{tmp}/x.mp4"], "--scale"),
    (["--scale", "nan", "-o", "{tmp}/x.mp4"], "--scale"),
    (["--fps", "-5", "-o", "{tmp}/x.mp4"], "--fps"),
    (["--fps", "nan", "-o", "{tmp}/x.mp4"], "--fps"),
    (["--trail_length", "-1", "-o", "{tmp}/x.mp4"], "--trail_length"),
])
def test_what_a_render_cannot_do_is_one_error(tracked: Path, tmp_path: Path, args: list[str],
                                             words: str, capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["render", str(tracked), *(a.format(tmp=tmp_path) for a in args)])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("Error:") == 1 and words in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []


def test_a_render_never_replaces_a_special_file(tracked: Path, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    import os

    fifo = tmp_path / "view.mp4"
    os.mkfifo(fifo)
    assert main(["render", str(tracked), "-o", str(fifo), "--frames", "0-1"]) == 2
    err = capsys.readouterr().err
    assert "render output" in err and "FIFO" in err and "Traceback" not in err
    assert os.path.exists(fifo) and not fifo.is_file()  # still the FIFO

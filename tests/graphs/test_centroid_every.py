"""``--centroid_every K``: key frames are predicted exactly as without it, the frames between
are cropped around the previous frame's poses, the same whatever the batching; validated."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import sleap_io as sio

import sleapflow
from sleapflow.cli.app import main
from sleapflow.errors import ConfigError
from sleapflow.inputs import PyAVReader
from sleapflow.messages import FrameInfo
from sleapflow.stages.topdown import KeyFrames

CLIP = "datasets/centered_pair_small.mp4"
MODELS = ("model_ckpts/minimal_instance_centroid", "model_ckpts/minimal_instance_centered_instance")
N_FRAMES = 5
K = 3


def _sorted(points: np.ndarray) -> np.ndarray:
    return points[np.argsort(np.nanmean(points[:, :, 0], axis=1), kind="stable")]


def test_key_frames_equal_k1_and_between_follow_the_last_poses(assets: Path, tmp_path: Path) -> None:
    models = [str(assets / m) for m in MODELS]
    reader = PyAVReader(str(assets / CLIP))
    try:
        frames = [reader.read(i) for i in range(N_FRAMES)]
    finally:
        reader.close()
    with sleapflow.Predictor(models, device="cpu") as every_frame, \
            sleapflow.Predictor(models, device="cpu", centroid_every=K) as skipping:
        full = [every_frame.predict(f) for f in frames]
        skip = [skipping.predict(f) for f in frames]
    moved = 0
    for i, (a, b) in enumerate(zip(full, skip)):
        assert a.n_instances == b.n_instances == 2, i
        if i % K == 0:
            np.testing.assert_array_equal(b.points, a.points)  # the centroid model ran: as K=1
            np.testing.assert_array_equal(b.instance_scores, a.instance_scores)
        else:
            # Cut around the last poses instead of this frame's centroids: the crops move, so
            # the points move a little (the tiny model is sensitive to where its crop sits)...
            diff = np.abs(_sorted(b.points) - _sorted(a.points))
            assert np.nanmax(diff) < 8.0, i
            moved += bool(np.nanmax(diff) > 0)
            # ... and each animal keeps the score of the detection it was followed from.
            np.testing.assert_array_equal(np.sort(b.instance_scores),
                                          np.sort(skip[i - 1].instance_scores))
    assert moved > 0

    # The batched file pipeline (4 frames a batch, crops waiting on the poses before them)
    # gives what one frame at a time gives.
    out = tmp_path / "k3.slp"
    assert main(["track", "-i", str(assets / CLIP), *(a for m in models for a in ("-m", m)),
                 "--frames", f"0-{N_FRAMES - 1}", "--batch_size", "4", "--centroid_every",
                 str(K), "--device", "cpu", "-o", str(out)]) == 0
    written_labels = sio.load_slp(str(out), open_videos=False)
    assert written_labels.provenance["centroid_every"] == K
    for lf in written_labels:
        written = np.stack([inst.numpy() for inst in lf.instances])
        np.testing.assert_allclose(_sorted(written), _sorted(skip[lf.frame_idx].points),
                                   rtol=1e-6, atol=1e-4)


def test_centroid_every_is_checked(assets: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ConfigError, match="centroid_every"):
        sleapflow.Predictor(str(assets / MODELS[0]), centroid_every=0)
    single = str(assets / "model_ckpts/minimal_instance_single_instance")
    assert main(["track", "-i", str(assets / CLIP), "-m", single, "--centroid_every", "2",
                 "--frames", "0", "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert "Error:" in err and "top-down" in err and "Traceback" not in err


def test_key_frames_are_every_kth_the_first_and_each_new_videos_first() -> None:
    keys = KeyFrames(3)
    # A resumed run starting at seq 4 in video 0, then video 1 from seq 8 on.
    frames = [FrameInfo(seq=s, video_id=0 if s < 8 else 1, frame_idx=s, height=8, width=8)
              for s in range(4, 14)]
    assert [f.seq for f in frames if keys.is_key(f)] == [4, 6, 8, 9, 12]

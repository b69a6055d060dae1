"""The embedding branch in a top-down run: vectors on the instances, --save_embeddings slp
through sleap-io, and the options that need an embedding model refused up front."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import sleap_io as sio

from sleapflow.cli.app import main

EMBEDDING = Path(__file__).resolve().parent.parent / "assets" / "embedding_model"
VIDEO = "datasets/centered_pair_small.mp4"


def _pose(assets: Path) -> list[str]:
    return ["-m", str(assets / "model_ckpts/minimal_instance_centroid"),
            "-m", str(assets / "model_ckpts/minimal_instance_centered_instance")]


@pytest.fixture(scope="module")
def embedded(assets: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("embed") / "out.slp"
    # The embedding model may come first: -m order does not matter.
    rc = main(["track", "-i", str(assets / VIDEO), "-m", str(EMBEDDING), *_pose(assets),
               "--frames", "0-1", "--save_embeddings", "slp", "--runtime", "torch",
               "--device", "cpu", "-o", str(out)])
    assert rc == 0
    return out


def test_vectors_ride_on_every_instance_and_match_the_reference(embedded: Path) -> None:
    labels = sio.load_slp(str(embedded))
    assert [lf.frame_idx for lf in labels] == [0, 1]
    vectors = {}
    for lf in labels:
        assert len(lf.instances) == 2
        for k, inst in enumerate(lf.instances):
            assert inst.identity_embedding is not None
            v = np.asarray(inst.identity_embedding.vector, dtype=np.float32)
            assert v.shape == (16,) and abs(float(np.linalg.norm(v)) - 1) < 1e-5
            vectors[lf.frame_idx, k] = v
    # The reference embedded crops cut the same way around its own top-down predictions of
    # frame 0 (the same models): each of our frame-0 vectors is one of its vectors.
    expected = np.load(EMBEDDING / "expected_vectors.npz")
    ref = expected["vectors"][expected["where"][:, 0] == 0]
    for k in range(2):
        assert np.abs(ref - vectors[0, k]).max(axis=1).min() < 1e-4
    # One animal, two frames: far more alike than the two animals of one frame.
    same = max(float(vectors[0, 0] @ vectors[1, j]) for j in range(2))
    assert same > float(vectors[0, 0] @ vectors[0, 1]) + 0.1


def test_save_embeddings_round_trips_through_sleap_io(embedded: Path, tmp_path: Path) -> None:
    first = sio.load_slp(str(embedded))
    again = tmp_path / "again.slp"
    sio.save_slp(first, str(again), save_embedding_vectors=True)
    second = sio.load_slp(str(again))
    for a, b in zip(first, second):
        for x, y in zip(a.instances, b.instances):
            np.testing.assert_array_equal(np.asarray(x.identity_embedding.vector),
                                          np.asarray(y.identity_embedding.vector))
            np.testing.assert_array_equal(x.numpy(), y.numpy())


def test_vectors_are_written_only_when_asked() -> None:
    from sleapflow.messages import FramePrediction
    from sleapflow.stages.write import LabelsBuilder

    vectors = np.array([[0.6, 0.8], [np.nan, np.nan]], dtype=np.float32)
    pred = FramePrediction(seq=0, video_id=0, frame_idx=3, points=np.zeros((2, 1, 2)),
                           point_scores=np.ones((2, 1)), instance_scores=np.ones(2),
                           embeddings=vectors)
    video, skeleton = sio.Video(filename="x.mp4", open_backend=False), sio.Skeleton(["a"])
    plain = LabelsBuilder([video], skeleton, keep_empty_frames=True).add(pred)
    assert plain is not None and all(i.identity_embedding is None for i in plain.instances)
    kept = LabelsBuilder([video], skeleton, keep_empty_frames=True, save_embeddings=True).add(pred)
    assert kept is not None
    np.testing.assert_array_equal(kept.instances[0].identity_embedding.vector, vectors[0])
    assert kept.instances[1].identity_embedding is None  # an instance that could not be cropped


@pytest.mark.parametrize("extra", [
    ["--save_embeddings", "slp"],  # nothing computes the vectors
    ["--save_embeddings", "csv"],  # not a choice
    ["-t", "--tracker", "botsort"],  # an appearance tracker without vectors
    ["-t", "--appearance_weight", "0.3"],
    ["-t", "--appearance_weight", "1.5"],
    ["-t", "--appearance_weight", "-0.1"],
    ["-t", "--tracker", "sort", "--appearance_weight", "0.3"],
    ["-t", "--appearance_weight", "0.3", "--scoring_method", "euclidean_dist"],
    ["-t", "--appearance_weight", "0.3", "--use_flow"],
    ["--alone"],  # an embedding model with no pose model
])
def test_options_needing_vectors_fail_before_running(extra: list[str], assets: Path, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out.slp"
    out.write_bytes(b"keep me")
    models = ["-m", str(EMBEDDING)] if extra == ["--alone"] else _pose(assets)
    args = [a for a in extra if a != "--alone"]
    assert main(["track", "-i", str(assets / VIDEO), *models, *args, "--frames", "0",
                 "--device", "cpu", "-o", str(out)]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and err[0].startswith("Error:"), err
    assert out.read_bytes() == b"keep me"


def test_new_options_have_help(capsys: pytest.CaptureFixture[str],
                               monkeypatch: pytest.MonkeyPatch) -> None:
    from sleapflow.cli.app import app

    monkeypatch.setenv("COLUMNS", "250")  # one line per option
    with pytest.raises(SystemExit):
        app(["track", "--help"], exit_on_error=False)
    lines = capsys.readouterr().out.splitlines()
    for option, words in (("--save_embeddings", "appearance vector"),
                          ("--appearance_weight", "cosine similarity"),
                          ("--tracker", "an appearance tracker")):
        line = next(x for x in lines if x.strip("│ ").startswith(option + " "))
        assert words in line

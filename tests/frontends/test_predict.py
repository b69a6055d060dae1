"""run_inference: the CLI's results for the same inputs, the reference's raw keys, clear errors."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import sleap_io as sio

from sleapflow.cli.app import main
from sleapflow.errors import ConfigError, EventLoopError
from sleapflow.predict import arun_inference, run_inference

MODEL = "model_ckpts/minimal_instance_single_instance"


def _points(labels: sio.Labels) -> dict[int, tuple[np.ndarray, np.ndarray, float]]:
    out = {}
    for lf in labels:
        (inst,) = lf.instances
        out[lf.frame_idx] = (inst.numpy(), np.asarray(inst.numpy(scores=True)[:, 2]), float(inst.score))
    return out


def _assert_same(a: sio.Labels, b: sio.Labels) -> None:
    pa, pb = _points(a), _points(b)
    assert sorted(pa) == sorted(pb)
    for idx in pa:
        np.testing.assert_array_equal(pa[idx][0], pb[idx][0])
        np.testing.assert_array_equal(pa[idx][1], pb[idx][1])
        # .slp files store instance scores as float32
        assert np.float32(pa[idx][2]) == np.float32(pb[idx][2])


def test_labels_equal_the_cli_output(assets: Path, tmp_path: Path) -> None:
    video = str(assets / "datasets/small_robot.mp4")
    model = str(assets / MODEL)
    assert main(["track", "-i", video, "-m", model, "--frames", "0-39", "-o",
                 str(tmp_path / "cli.slp"), "--device", "cpu"]) == 0
    labels = run_inference(data_path=video, model_paths=[model], frames=list(range(40)),
                           output_path=str(tmp_path / "py.slp"), device="cpu")
    assert isinstance(labels, sio.Labels)
    cli = sio.load_slp(str(tmp_path / "cli.slp"), open_videos=False)
    written = sio.load_slp(str(tmp_path / "py.slp"), open_videos=False)
    assert len(cli) > 0
    _assert_same(labels, cli)
    _assert_same(written, cli)
    assert written.provenance["model_type"] == cli.provenance["model_type"] == "single_instance"


@pytest.mark.parametrize("return_confmaps", [True, False])
def test_raw_dicts_match_the_reference(assets: Path, reference: Path, return_confmaps: bool) -> None:
    out = run_inference(data_path=str(assets / "datasets/small_robot_minimal.slp"),
                        model_paths=[str(assets / MODEL)], make_labels=False,
                        return_confmaps=return_confmaps, device="cpu")
    ref = np.load(reference / "single_instance__small_robot_minimal.raw.npz")
    ref_keys = [k.split("__", 1)[1] for k in ref.files if k.startswith("b0__")]
    assert isinstance(out, list) and len(out) == 1
    (batch,) = out
    # The reference's npz leaves the input image out; everything else is there, in order.
    expected = ref_keys if return_confmaps else [k for k in ref_keys if k != "pred_confmaps"]
    assert [k for k in batch if k != "image"] == expected
    for key in expected:
        ours, theirs = batch[key], ref[f"b0__{key}"]
        assert ours.dtype == theirs.dtype and ours.shape == theirs.shape, key
        np.testing.assert_allclose(ours, theirs, atol=1e-3, err_msg=key)
    image = batch["image"]
    assert image.dtype == np.uint8 and image.shape == (2, 1, 3, 160, 280)


def test_input_labels_and_input_video(assets: Path, tmp_path: Path,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    model = [str(assets / MODEL)]
    slp = str(assets / "datasets/small_robot_minimal.slp")
    from_path = run_inference(data_path=slp, model_paths=model, device="cpu",
                              output_path=str(tmp_path / "a.slp"))
    given = sio.load_slp(slp)
    from_labels = run_inference(input_labels=given, model_paths=model, device="cpu")
    _assert_same(from_labels, from_path)
    # The output refers to the caller's video objects and, with no path, is saved like sleap-nn
    # saves it: ./results.predictions.slp.
    assert from_labels.videos[0] is given.videos[0]
    assert (tmp_path / "results.predictions.slp").is_file()
    video = sio.load_video(str(assets / "datasets/small_robot.mp4"))
    from_video = run_inference(input_video=video, model_paths=model, device="cpu", frames=[0, 79],
                               output_path=str(tmp_path / "v.slp"))
    assert from_video.videos[0] is video
    _assert_same(from_video, from_path)


def test_default_output_path_is_beside_the_input(assets: Path, tmp_path: Path) -> None:
    video = tmp_path / "clip.mp4"
    shutil.copy(assets / "datasets/small_robot.mp4", video)
    labels = run_inference(data_path=str(video), model_paths=[str(assets / MODEL)], frames="0-3",
                           device="cpu")
    assert (tmp_path / "clip.predictions.slp").is_file()
    assert sorted(lf.frame_idx for lf in labels) == [0, 1, 2, 3]


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"model_paths": None}, "Neither tracker nor path to trained models specified"),
    ({"make_labels": False, "no_empty_frames": True}, "no_empty_frames needs make_labels=True"),
    ({"make_labels": False, "tracking": True}, "tracking needs make_labels=True"),
    ({"tracking": True, "features": "bogus"}, "Invalid features='bogus'"),
    ({"peak_threshold": [0.1, 0.2, 0.3]}, "peak_threshold must be a number or a"),
    ({"batch_size": 0}, "--batch_size must be a whole number between 1 and 4096 \\(got 0\\)"),
])
def test_bad_arguments_fail_before_running(assets: Path, kwargs: dict, message: str) -> None:
    args = {"data_path": str(assets / "datasets/small_robot_minimal.slp"),
            "model_paths": [str(assets / MODEL)], "device": "cpu", **kwargs}
    with pytest.raises(ConfigError, match=message):
        run_inference(**args)


@pytest.mark.anyio
async def test_inside_an_event_loop_use_the_async_api(assets: Path) -> None:
    args = {"data_path": str(assets / "datasets/small_robot_minimal.slp"),
            "model_paths": [str(assets / MODEL)], "device": "cpu", "make_labels": False}
    with pytest.raises(EventLoopError, match="arun_inference"):
        run_inference(**args)
    (batch,) = await arun_inference(**args)
    assert batch["frame_idx"].tolist() == [0, 79]


def test_tracking_and_track_only_match_the_cli(reference: Path, tmp_path: Path) -> None:
    preds = str(reference / "topdown__centered_pair_small.slp")
    assert main(["track", "-i", preds, "-t", "--frames", "0-29", "-o", str(tmp_path / "cli.slp")]) == 0
    cli = sio.load_slp(str(tmp_path / "cli.slp"), open_videos=False)
    from_path = run_inference(data_path=preds, tracking=True, frames=list(range(30)),
                              output_path=str(tmp_path / "py.slp"))
    given = sio.load_slp(preds, open_videos=False)
    from_labels = run_inference(input_labels=given, tracking=True, frames=list(range(30)),
                                output_path=str(tmp_path / "obj.slp"))
    assert len(cli) == 30
    for ours in (from_path, from_labels):
        assert [lf.frame_idx for lf in ours] == [lf.frame_idx for lf in cli]
        for a, b in zip(ours, cli):
            got = sorted((i.track.name, tuple(np.nan_to_num(i.numpy()).ravel())) for i in a.instances)
            want = sorted((i.track.name, tuple(np.nan_to_num(i.numpy()).ravel())) for i in b.instances)
            assert [g[0] for g in got] == [w[0] for w in want]
            np.testing.assert_allclose([g[1] for g in got], [w[1] for w in want], atol=1e-4)

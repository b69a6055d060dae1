"""Single-instance graph end to end against sleap-nn 0.3.5's reference outputs."""

from __future__ import annotations

from pathlib import Path

import anyio
import sleap_io as sio

from sleapflow.cli.app import main
from sleapflow.jobs.job import plan_job, run_job
from sleapflow.options.config import InferenceConfig

from parity import compare_labels


def test_cli_video_matches_reference(assets: Path, reference: Path, tmp_path: Path) -> None:
    out = tmp_path / "pred.slp"
    rc = main(["track", "-i", str(assets / "datasets/small_robot.mp4"),
               "-m", str(assets / "model_ckpts/minimal_instance_single_instance"),
               "--frames", "0-299", "-o", str(out), "--device", "cpu"])
    assert rc == 0
    ours = sio.load_slp(str(out), open_videos=False)
    ref = sio.load_slp(str(reference / "single_instance__small_robot.slp"), open_videos=False)
    report = compare_labels(ours, ref)
    report.assert_ok()
    assert report.frames_ours == report.frames_ref == 166
    assert [n.name for n in ours.skeletons[0].nodes] == ["A", "B"]
    prov = ours.provenance
    assert prov["model_type"] == "single_instance"
    assert prov["frame_selection"]["frames_processed"] == 166


def test_slp_input_matches_reference(assets: Path, reference: Path, tmp_path: Path) -> None:
    cfg = InferenceConfig(data_path=str(assets / "datasets/small_robot_minimal.slp"),
                          model_paths=(str(assets / "model_ckpts/minimal_instance_single_instance"),),
                          device="cpu")
    result = anyio.run(run_job, plan_job(cfg, output=str(tmp_path / "o.slp")))
    ref = sio.load_slp(str(reference / "single_instance__small_robot_minimal.slp"), open_videos=False)
    report = compare_labels(result.labels, ref)
    report.assert_ok()
    assert sorted(lf.frame_idx for lf in result.labels) == [0, 79]
    # only new predictions: the input's user instances are not copied
    assert all(not lf.user_instances for lf in result.labels)

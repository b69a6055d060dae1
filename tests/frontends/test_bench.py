"""`sleapflow bench`: runs on its embedded default, records what it measured, serial == graph."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import sleap_io as sio
import torch

from sleapflow.bench.harness import run_bench, write_synthetic_model
from sleapflow.cli.app import main
from sleapflow.models import load_model


def test_synthetic_model_loads_through_the_normal_loader(tmp_path: Path) -> None:
    folder = write_synthetic_model(tmp_path / "model")
    model = load_model(folder, "cpu")
    n_params = sum(p.numel() for p in model.module.parameters())
    assert 1_000_000 < n_params < 5_000_000  # a realistic UNet, not a toy
    assert model.config.backbone.filters == 32 and model.config.max_stride == 16
    with torch.inference_mode():
        (cms,) = model.module(torch.zeros(1, 1, 160, 288)).values()
    assert cms.shape == (1, 8, 80, 144)


def test_bench_with_no_data_runs_and_writes_its_record(tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "bench.json"
    # torch pinned: the all-cores replay below is a torch thread setting.
    assert main(["bench", "--frames", "6", "--warmup", "2", "--device", "cpu", "--repeat", "2",
                 "--runtime", "torch", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    for column in ("items/s", "busy%", "starved%", "blocked%", "peak q", "end-to-end",
                   "serial loop", "forward only"):
        assert column in printed
    record = json.loads(out.read_text())
    assert record["graph"] == "single_instance" and record["device"] == "cpu"
    assert record["synthetic_model"] and record["synthetic_clip"]
    assert record["frames_measured"] == 4 and record["warmup_frames"] == 2
    names = [s["name"] for s in record["stages"]]
    # one forward worker per core: on more than one core a reorder follows the forward stage
    assert names in (["decode", "batch", "preprocess", "forward", "peaks", "write"],
                     ["decode", "batch", "preprocess", "forward", "forward_reorder", "peaks", "write"])
    for key in ("graph_fps", "serial_fps", "forward_fps"):
        assert record[key] > 0, key
    assert record["serial_torch_threads"] == record["torch_threads_graph"]
    if record["torch_threads_graph"] != record["cpu_count"]:
        assert record["forward_fps_all_cores"] > 0  # replayed with torch on every core
    assert record["runtime"] == "torch"
    # The forward-only limit of every installed runtime, the graph's first (and torch at bf16
    # on a CPU with bf16 units).
    from sleapflow.backends.select import cpu_has_bf16

    bf16 = ["torch-bf16"] if cpu_has_bf16() else []
    assert list(record["forward_limit_by_runtime"]) == ["torch", "onnx", *bf16]
    assert all(v > 0 for v in record["forward_limit_by_runtime"].values())
    assert "runtime onnx" in printed
    assert record["repeat"] == 2 and len(record["graph_fps_runs"]) == len(record["serial_fps_runs"]) == 2
    assert {"torch", "python", "sleapflow"} <= set(record["versions"])
    assert "device_name" in record and "git_revision" in record


def test_serial_baseline_computes_what_the_graph_computes(assets: Path, tmp_path: Path) -> None:
    record = run_bench("single_instance", data=str(assets / "datasets/small_robot.mp4"),
                       models=(str(assets / "model_ckpts/minimal_instance_single_instance"),),
                       frames=12, warmup=4, batch_size=2, queue_maxsize=4, device="cpu",
                       workdir=tmp_path)
    assert record.frames_measured == 8 and not record.synthetic_model
    graph = sio.load_slp(str(tmp_path / "bench.predictions.slp"), open_videos=False)
    serial = sio.load_slp(str(tmp_path / "serial.predictions.slp"), open_videos=False)
    assert [lf.frame_idx for lf in graph] == [lf.frame_idx for lf in serial]
    assert len(graph) > 0
    for a, b in zip(graph, serial):
        # same model and settings; allow for the last bit of float summation order
        np.testing.assert_allclose(a.instances[0].numpy(), b.instances[0].numpy(), atol=1e-3)


def test_bench_runs_the_graph_at_the_precision_asked_for(tmp_path: Path) -> None:
    from sleapflow.backends.select import cpu_has_bf16

    out = tmp_path / "bench.json"
    args = ["bench", "--frames", "4", "--warmup", "1", "--device", "cpu", "--no-serial",
            "--precision", "bf16", "--json", str(out)]
    if not cpu_has_bf16():
        assert main(args) == 2  # a one-line error: this CPU has no bf16 units
        return
    assert main(args) == 0
    record = json.loads(out.read_text())
    assert record["runtime"] == "torch-bf16" and record["graph_fps"] > 0

"""benchmarks/gpu_check.py: its dry run plans every step and exits 0; its step runner survives failures."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_check.py"


def _module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_check"] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def gpu_check() -> ModuleType:
    return _module()


def _dry_run(tmp_path: Path, shared: Path, *extra: str) -> tuple[subprocess.CompletedProcess[str], dict]:
    out = tmp_path / "gpu_check.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, str(SCRIPT), "--dry-run", "--out", str(out), "--shared",
                           str(shared), *extra], capture_output=True, text=True, timeout=20, env=env)
    assert proc.returncode == 0, proc.stderr
    return proc, json.loads(out.read_text())


def test_dry_run_plans_every_runtime_precision_graph_and_decode(tmp_path: Path, assets: Path,
                                                                gpu_check: ModuleType) -> None:
    proc, record = _dry_run(tmp_path, assets.parent)
    assert record["dry_run"] is True and record["steps"] == []
    assert set(record["device"]) >= {"torch_cuda_available", "onnxruntime_providers", "tensorrt"}
    assert record["versions"]["torch"]
    plan = record["plan"]
    names = [s["name"] for s in plan]
    assert len(names) == len(set(names))
    assert all(s["estimate_s"] > 0 for s in plan)
    assert record["plan_estimate_s"] == pytest.approx(sum(s["estimate_s"] for s in plan))
    parity = {(s["params"]["case"], s["params"]["runtime"], s["params"]["precision"])
              for s in plan if s["kind"] == "parity"}
    assert record["cases"] == list(gpu_check.DEFAULT_CASES)
    assert parity == {(c, r, p) for c in record["cases"] for r in ("torch", "onnx", "tensorrt")
                      for p in ("fp32", "fp16")}
    graphs = set(gpu_check.GRAPH_CASES)
    assert {s["params"]["graph"] for s in plan if s["kind"] == "forward_limit"} == graphs
    assert {s["params"]["graph"] for s in plan if s["kind"] == "end_to_end"} == graphs
    assert [s["kind"] for s in plan].count("decode") == 1
    # What it prints: the detected runtimes and every step, marked run or skip by the budget.
    assert "onnxruntime providers" in proc.stdout
    assert sum(line.strip().startswith(("run ", "skip")) for line in proc.stdout.splitlines()) == len(plan)


def test_dry_run_cases_option_and_bad_case(tmp_path: Path, assets: Path) -> None:
    _, record = _dry_run(tmp_path, assets.parent, "--cases", "legacy_bottomup__centered_pair_small")
    parity = [s for s in record["plan"] if s["kind"] == "parity"]
    assert len(parity) == 6
    assert {s["params"]["models"][0] for s in parity} == {"minimal_instance.UNet.bottomup"}
    assert {s["params"]["frames"] for s in parity} == {"0-299"}
    out = tmp_path / "bad.json"
    proc = subprocess.run([sys.executable, str(SCRIPT), "--dry-run", "--out", str(out), "--shared",
                           str(assets.parent), "--cases", "no_such_case"], capture_output=True, text=True,
                          timeout=20, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 2
    assert proc.stderr.startswith("Error: --cases: unknown case 'no_such_case'")
    assert "Traceback" not in proc.stderr and not out.exists()


def test_step_failure_is_recorded_and_the_rest_run(gpu_check: ModuleType) -> None:
    ran: list[str] = []

    def boom() -> dict:
        ran.append("boom")
        raise RuntimeError("CUDA error: out of memory\nsecond line")

    def fine() -> dict:
        ran.append("fine")
        return {"fps": 12.5}

    steps = [gpu_check.Step("a", "parity", 1.0, run=boom), gpu_check.Step("b", "decode", 1.0, run=fine)]
    seen: list[str] = []
    results = gpu_check.run_steps(steps, 100.0, on_result=lambda r: seen.append(r["name"]))
    assert ran == ["boom", "fine"] and seen == ["a", "b"]
    assert results[0]["status"] == "failed"
    assert results[0]["error"] == "RuntimeError: CUDA error: out of memory"
    assert results[1]["status"] == "ok" and results[1]["result"] == {"fps": 12.5}


def test_budget_skips_steps_that_no_longer_fit(gpu_check: ModuleType) -> None:
    now = [0.0]

    def take(seconds: float) -> object:
        def run() -> dict:
            now[0] += seconds
            return {"took": seconds}
        return run

    steps = [gpu_check.Step("first", "parity", 5.0, run=take(8.0)),
             gpu_check.Step("big", "forward_limit", 5.0, run=take(1.0)),
             gpu_check.Step("small", "decode", 2.0, run=take(1.0))]
    results = gpu_check.run_steps(steps, 10.0, clock=lambda: now[0])
    assert [r["status"] for r in results] == ["ok", "skipped", "ok"]
    assert results[1]["reason"] == "budget: 2 s left, step estimated at 5 s"
    assert results[0]["seconds"] == 8.0 and now[0] == 9.0


def test_gpu_busy_averages_nvidia_smi_samples(gpu_check: ModuleType, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    fake = tmp_path / "nvidia-smi"
    # Two utilisation samples and an unreadable one, then it keeps running as the real tool does.
    fake.write_text("#!/bin/sh\necho 40\necho 70\necho '[N/A]'\nexec sleep 30\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    with gpu_check.gpu_busy() as busy:
        deadline = time.monotonic() + 10
        while len(busy.samples) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)  # the reader thread collects the fake tool's lines
    assert busy.summary() == {"gpu_busy_fraction": pytest.approx(0.55), "gpu_busy_samples": 2,
                              "gpu_busy_note": None}
    assert busy._proc is not None and busy._proc.poll() is not None  # the sampler was stopped


def test_gpu_busy_without_nvidia_smi_is_null_with_a_note(gpu_check: ModuleType, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with gpu_check.gpu_busy() as busy:
        pass
    summary = busy.summary()
    assert summary["gpu_busy_fraction"] is None and "nvidia-smi not found" in summary["gpu_busy_note"]

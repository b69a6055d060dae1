"""GPU check: runtime parity, forward limits, end-to-end frames/s, GPU busy and decode in one JSON record.

    python benchmarks/gpu_check.py [--out gpu_check.json] [--dry-run] [--budget-s 480]
                                   [--cases CASE ...] [--shared DIR]

Meant to be run the moment a CUDA machine is lent, with nothing installed beyond sleapflow's
wheel folder (its ``gpu`` / ``tensorrt`` extras for the other runtimes). It builds a plan of
steps, each with an estimated time:

- ``parity``: each reference case (``DIR/reference/manifest.json``) under torch, ONNX Runtime
  (CUDA provider) and TensorRT at fp32 and fp16, compared with sleap-nn 0.3.5's output as the
  parity tests do (count-equal fraction, p99 / max keypoint deviation, score differences);
- ``forward_limit``: ``sleapflow bench``'s forward-pass-only limit per graph, for every runtime
  installed for CUDA;
- ``end_to_end``: the graph's frames/s per graph, with the GPU busy fraction sampled meanwhile
  (``nvidia-smi``, every 200 ms);
- ``decode``: sleapflow's reader on a generated 1024x1024 H.264 clip.

Steps run in order while the budget lasts; a step whose estimate no longer fits is skipped with
the reason recorded, a step that raises is recorded with its exception line and the others go on.
The record (device, driver and CUDA versions, package versions, every step's result or reason,
wall time) is rewritten after each step, so a run cut short still leaves what it measured. With
``--dry-run``, or when torch finds no CUDA device, it prints the plan and the runtimes it detects,
writes the record with ``"dry_run": true`` and exits 0.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SHARED = ROOT.parent / "shared"

RUNTIMES = ("torch", "onnx", "tensorrt")
PRECISIONS = ("fp32", "fp16")

#: The cases run unless ``--cases`` names others: one small input per inference graph, so every
#: runtime and precision fits the budget (``--cases all`` takes every case the manifest lets us run).
DEFAULT_CASES = (
    "single_instance__small_robot_minimal",
    "topdown__minimal_instance",
    "bottomup__minimal_instance",
    "multiclass_bottomup__minimal_instance",
    "multiclass_topdown__minimal_instance",
)

#: Graph → the reference case whose clip and models its forward-limit and end-to-end steps use
#: (the 300-frame clip runs: long enough for a steady state after the warm-up).
GRAPH_CASES = {
    "single_instance": "single_instance__small_robot",
    "topdown": "topdown__centered_pair_small",
    "bottomup": "bottomup__centered_pair_small",
    "multiclass_bottomup": "multiclass_bottomup__centered_pair_small",
    "multiclass_topdown": "multiclass_topdown__centered_pair_small",
}

#: Guessed seconds per step on a current data-centre GPU with the tiny test models; no GPU has
#: been lent yet, so these are not measured. A first use of a model under onnx/tensorrt includes
#: its export or engine build (cached for later steps of the same run). sleapflow refuses fp16
#: under ONNX Runtime before loading anything, so that step only records the refusal.
ESTIMATE_S = {
    ("parity", "torch", False): 4.0, ("parity", "torch", True): 10.0,
    ("parity", "onnx", False): 6.0, ("parity", "onnx", True): 12.0,
    ("parity", "tensorrt", False): 20.0, ("parity", "tensorrt", True): 30.0,
    ("forward_limit", "", True): 25.0,
    ("end_to_end", "", True): 12.0,
    ("decode", "", True): 15.0,
}
ONNX_FP16_ESTIMATE_S = 2.0

BENCH_FRAMES, BENCH_WARMUP = 300, 30
DECODE_FRAMES = 300


class CheckError(Exception):
    """A bad option or a missing input: one ``Error:`` line and exit status 2."""


# --------------------------------------------------------------------------------------------
# Steps and the runner
# --------------------------------------------------------------------------------------------


@dataclass
class Step:
    """One measurement: what it is (``params`` go into the record) and how to run it."""

    name: str
    kind: str
    estimate_s: float
    params: dict[str, Any] = field(default_factory=dict)
    run: Callable[[], dict[str, Any]] | None = None

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "estimate_s": self.estimate_s, "params": self.params}


def _exception_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def run_steps(steps: list[Step], budget_s: float, *, clock: Callable[[], float] = time.monotonic,
              on_start: Callable[[Step], None] | None = None,
              on_result: Callable[[dict[str, Any]], None] | None = None) -> list[dict[str, Any]]:
    """Run ``steps`` in order within ``budget_s``; one result dict per step, never raising.

    A step whose estimate exceeds what is left of the budget is skipped (later, shorter steps
    may still fit); a step that raises is recorded as failed with its exception line.
    """
    start = clock()
    results: list[dict[str, Any]] = []
    for step in steps:
        left = budget_s - (clock() - start)
        entry: dict[str, Any] = {"name": step.name, "kind": step.kind}
        if step.estimate_s > left:
            entry.update(status="skipped", reason=f"budget: {max(left, 0.0):.0f} s left, step "
                                                  f"estimated at {step.estimate_s:.0f} s")
        elif step.run is None:
            entry.update(status="skipped", reason="nothing to run (plan only)")
        else:
            if on_start is not None:
                on_start(step)
            t0 = clock()
            try:
                result = step.run()
            except Exception as exc:  # a failed step is a finding, not the end of the check
                entry.update(status="failed", error=_exception_line(exc))
            else:
                entry.update(status="ok", result=result)
            entry["seconds"] = round(clock() - t0, 3)
        results.append(entry)
        if on_result is not None:
            on_result(entry)
    return results


# --------------------------------------------------------------------------------------------
# Cases, from the reference manifest
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    name: str
    data: Path
    models: tuple[Path, ...]
    frames: str | None
    options: dict[str, Any]

    @property
    def video(self) -> bool:
        return self.frames is not None


def _model_dir(assets: Path, name: str) -> Path:
    for folder in ("model_ckpts", "legacy_models"):
        if (assets / folder / name).is_dir():
            return assets / folder / name
    raise CheckError(f"model {name!r} of the reference manifest is not in {assets}/model_ckpts or "
                     f"{assets}/legacy_models")


def _data_path(assets: Path, name: str) -> Path:
    for folder in ("datasets", "eval"):
        if (assets / folder / name).exists():
            return assets / folder / name
    raise CheckError(f"input {name!r} of the reference manifest is not in {assets}/datasets")


def load_cases(shared: Path) -> dict[str, Case]:
    """Every manifest case sleapflow's ``track`` path reproduces (models, input, frames)."""
    manifest = shared / "reference" / "manifest.json"
    if not manifest.is_file():
        raise CheckError(f"no reference manifest at {manifest}; pass --shared DIR (the folder "
                         "holding assets/ and reference/)")
    entries = json.loads(manifest.read_text())
    assets = shared / "assets"
    out: dict[str, Case] = {}
    for name, entry in entries.items():
        # Centroid-only references come from another sleap-nn entry point; track-only and eval
        # entries have no models: none of these is a runtime question.
        if "models" not in entry or "entry" in entry or "frames" not in entry:
            continue
        frames = None if entry["frames"] == "all" else str(entry["frames"])
        out[name] = Case(name=name, data=_data_path(assets, entry["input"]),
                         models=tuple(_model_dir(assets, m) for m in entry["models"]),
                         frames=frames, options=dict(entry.get("options", {})))
    return out


def select_cases(available: dict[str, Case], names: list[str] | None) -> list[Case]:
    if names == ["all"]:
        return [available[k] for k in sorted(available)]
    chosen = list(names) if names else list(DEFAULT_CASES)
    unknown = [n for n in chosen if n not in available]
    if unknown:
        raise CheckError(f"--cases: unknown case {unknown[0]!r}; use 'all' or any of "
                         f"{', '.join(sorted(available))}")
    return [available[n] for n in chosen]


# --------------------------------------------------------------------------------------------
# The measurements
# --------------------------------------------------------------------------------------------


def config_options(options: dict[str, Any]) -> dict[str, Any]:
    """A manifest case's options as ``InferenceConfig`` fields: the tracker's own settings (the
    manifest lists them beside ``tracking``) go into its ``tracker`` struct."""
    import msgspec

    from sleapflow.options.config import InferenceConfig
    from sleapflow.tracking import TrackerConfig

    own = {f.name for f in msgspec.structs.fields(InferenceConfig)}
    tracker = {k: v for k, v in options.items() if k not in own}
    out = {k: v for k, v in options.items() if k in own}
    if tracker:
        out["tracker"] = TrackerConfig(**tracker)
    return out


def _parity(case: Case, reference: Path, runtime: str, precision: str, device: str) -> dict[str, Any]:
    if str(ROOT / "tests") not in sys.path:
        sys.path.insert(0, str(ROOT / "tests"))  # the parity tests' matching and tolerances
    from parity import compare_labels, load_reference, run_pipeline

    labels = run_pipeline(data_path=str(case.data), frames=case.frames,
                          model_paths=tuple(str(m) for m in case.models), device_override=device,
                          runtime=runtime, precision=precision, **config_options(case.options))
    last = int(case.frames.split("-")[1]) if case.frames else None
    report = compare_labels(labels, load_reference(reference, case.name),
                            check_tracks=bool(case.options.get("tracking")),
                            frames=range(last + 1) if last is not None else None)
    try:
        report.assert_ok()
        within = True
    except AssertionError:
        within = False
    return {"count_equal_fraction": report.count_equal_fraction,
            "keypoint_p99_px": report.keypoint_p99, "keypoint_max_px": report.keypoint_max,
            "score_max_diff": report.score_max_diff,
            "point_score_max_diff": report.point_score_max_diff,
            "nan_mismatch": report.nan_mismatch, "track_agreement": report.track_agreement,
            "frames_compared": report.frames_compared,
            # The reference tolerances are fp32's; at fp16 the figures are the finding.
            "within_reference_tolerances": within}


def _bench(case: Case, graph: str, device: str, *, serial: bool) -> Any:
    import sleap_io as sio

    from sleapflow.bench.harness import run_bench

    # small_robot.mp4 is shorter than BENCH_FRAMES; asking past its end only logs skipped frames.
    video = sio.load_video(str(case.data))
    try:
        frames = min(BENCH_FRAMES, int(video.shape[0]))
    finally:
        video.close()
    return run_bench(graph, data=str(case.data), models=tuple(str(m) for m in case.models),
                     frames=frames, warmup=BENCH_WARMUP, device=device, runtime="torch",
                     serial=serial)


def _forward_limit(case: Case, graph: str, device: str) -> dict[str, Any]:
    record = _bench(case, graph, device, serial=True)
    return {"forward_limit_fps_by_runtime": dict(record.forward_limit_by_runtime),
            "forward_fps_torch": record.forward_fps, "forward_limit_fps": record.forward_limit_fps,
            "graph_fps": record.graph_fps, "batch_size": record.batch_size,
            "frames_measured": record.frames_measured}


def _end_to_end(case: Case, graph: str, device: str) -> dict[str, Any]:
    with gpu_busy() as busy:
        record = _bench(case, graph, device, serial=False)
    return {"graph_fps": record.graph_fps, "frames_measured": record.frames_measured,
            "graph_wall_s": record.graph_wall_s, "bottleneck": record.bottleneck,
            "runtime": record.runtime, "batch_size": record.batch_size, **busy.summary(),
            "stages": [{"name": s.name, "items_per_s": s.items_per_s, "busy_pct": s.busy_pct}
                       for s in record.stages]}


def _decode() -> dict[str, Any]:
    from sleapflow.inputs import PyAVReader
    from sleapflow.testing import write_gray_h264

    with tempfile.TemporaryDirectory(prefix="gpu-check-decode-") as tmp:
        clip = write_gray_h264(Path(tmp) / "clip1024.mp4", n_frames=DECODE_FRAMES)
        start = time.perf_counter()
        reader = PyAVReader(str(clip))
        for i in range(DECODE_FRAMES):
            if reader.read(i) is None:
                raise RuntimeError(f"frame {i} of the generated clip did not decode")
        reader.close()
        seconds = time.perf_counter() - start
    return {"frames": DECODE_FRAMES, "size": "1024x1024 H.264 gray", "fps": DECODE_FRAMES / seconds,
            "seconds": seconds}


class _BusySampler:
    """``nvidia-smi`` utilisation samples of one GPU, collected by a reader thread."""

    def __init__(self) -> None:
        self.samples: list[float] = []
        self.note: str | None = None
        self._proc: subprocess.Popen[str] | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        exe = shutil.which("nvidia-smi")
        if exe is None:
            self.note = "nvidia-smi not found: GPU busy fraction not measured"
            return
        # CUDA_VISIBLE_DEVICES' first entry is the device torch calls cuda:0.
        visible = os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",")[0].strip() or "0"
        self._proc = subprocess.Popen(
            [exe, f"--id={visible}", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits",
             "-lms", "200"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        for line in self._proc.stdout:
            try:
                self.samples.append(float(line.strip()))
            except ValueError:
                continue  # "[N/A]" or a warning line

    def stop(self) -> None:
        if self._proc is None:
            return
        self._proc.terminate()
        try:
            self._proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._proc.stdout is not None:
            self._proc.stdout.close()
        if not self.samples:
            self.note = "nvidia-smi gave no utilisation samples"

    def summary(self) -> dict[str, Any]:
        mean = sum(self.samples) / len(self.samples) / 100 if self.samples else None
        return {"gpu_busy_fraction": mean, "gpu_busy_samples": len(self.samples),
                "gpu_busy_note": self.note}


@contextmanager
def gpu_busy() -> Iterator[_BusySampler]:
    """Sample GPU utilisation while the block runs (the whole run, model loading included)."""
    sampler = _BusySampler()
    sampler.start()
    try:
        yield sampler
    finally:
        sampler.stop()


# --------------------------------------------------------------------------------------------
# The plan
# --------------------------------------------------------------------------------------------


def build_plan(cases: list[Case], graph_cases: dict[str, Case], reference: Path,
               device: str = "cuda") -> list[Step]:
    """Every step, most decisive first: fp32 parity of each runtime (what ``auto``'s CUDA order
    waits on), the speed figures, decode, then fp16 parity (the slowest: engine builds)."""

    def parity(case: Case, runtime: str, precision: str) -> Step:
        return Step(name=f"parity/{case.name}/{runtime}/{precision}", kind="parity",
                    estimate_s=(ONNX_FP16_ESTIMATE_S if (runtime, precision) == ("onnx", "fp16")
                                else ESTIMATE_S[("parity", runtime, case.video)]),
                    params={"case": case.name, "runtime": runtime, "precision": precision,
                            "data": case.data.name, "models": [m.name for m in case.models],
                            "frames": case.frames or "all", "options": case.options},
                    run=lambda: _parity(case, reference, runtime, precision, device))

    steps = [parity(c, r, "fp32") for c in cases for r in RUNTIMES]
    for graph, case in graph_cases.items():
        params = {"graph": graph, "case": case.name, "data": case.data.name,
                  "models": [m.name for m in case.models], "frames": BENCH_FRAMES,
                  "warmup": BENCH_WARMUP}
        steps.append(Step(name=f"forward_limit/{graph}", kind="forward_limit",
                          estimate_s=ESTIMATE_S[("forward_limit", "", True)], params=params,
                          run=lambda c=case, g=graph: _forward_limit(c, g, device)))
    for graph, case in graph_cases.items():
        params = {"graph": graph, "case": case.name, "data": case.data.name,
                  "models": [m.name for m in case.models], "frames": BENCH_FRAMES,
                  "warmup": BENCH_WARMUP, "runtime": "torch"}
        steps.append(Step(name=f"end_to_end/{graph}", kind="end_to_end",
                          estimate_s=ESTIMATE_S[("end_to_end", "", True)], params=params,
                          run=lambda c=case, g=graph: _end_to_end(c, g, device)))
    steps.append(Step(name="decode", kind="decode", estimate_s=ESTIMATE_S[("decode", "", True)],
                      params={"frames": DECODE_FRAMES, "size": 1024}, run=_decode))
    steps += [parity(c, r, "fp16") for c in cases for r in RUNTIMES]
    return steps


# --------------------------------------------------------------------------------------------
# What this machine has
# --------------------------------------------------------------------------------------------


def _versions() -> dict[str, str | None]:
    from sleapflow.cli.reports import OPTIONAL_PACKAGES, PACKAGES

    out: dict[str, str | None] = {"python": platform.python_version(), "platform": platform.platform()}
    for dist in (*PACKAGES, *OPTIONAL_PACKAGES, "tensorrt-cu12", "tensorrt-cu13"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = None
    return out


def _nvidia_smi() -> dict[str, Any]:
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return {"note": "nvidia-smi not found"}
    try:
        out = subprocess.run([exe, "--query-gpu=name,driver_version,memory.total",
                              "--format=csv,noheader"], capture_output=True, text=True, timeout=30,
                             check=True).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        return {"note": f"nvidia-smi failed: {_exception_line(exc)}"}
    gpus = [dict(zip(("name", "driver_version", "memory_total"), (p.strip() for p in line.split(","))))
            for line in out.splitlines() if line.strip()]
    return {"gpus": gpus}


def detect() -> dict[str, Any]:
    """Devices and runtimes as torch, onnxruntime and tensorrt report them here."""
    import torch

    cuda = torch.cuda.is_available()
    info: dict[str, Any] = {
        "torch_cuda_available": cuda, "torch_cuda_version": torch.version.cuda,
        "cudnn_version": torch.backends.cudnn.version() if cuda else None,
        "device_name": torch.cuda.get_device_name(0) if cuda else None,
        "device_count": torch.cuda.device_count() if cuda else 0,
        "nvidia_smi": _nvidia_smi(),
    }
    if importlib.util.find_spec("onnxruntime") is None:
        info["onnxruntime_providers"] = None
        info["onnxruntime_note"] = "onnxruntime not installed"
    else:
        import onnxruntime

        info["onnxruntime_providers"] = list(onnxruntime.get_available_providers())
    if importlib.util.find_spec("tensorrt") is None:
        info["tensorrt"] = None
        info["tensorrt_note"] = "tensorrt not installed"
    else:
        try:
            import tensorrt

            info["tensorrt"] = str(tensorrt.__version__)
        except Exception as exc:  # an install whose libraries do not load is a finding too
            info["tensorrt"] = None
            info["tensorrt_note"] = f"import failed: {_exception_line(exc)}"
    from sleapflow.backends import installed_runtimes

    info["installed_runtimes_cuda"] = installed_runtimes("cuda") if cuda else []
    return info


def _git_revision() -> str | None:
    try:
        return subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True,
                              text=True, timeout=10, check=True).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


# --------------------------------------------------------------------------------------------
# The record and the command line
# --------------------------------------------------------------------------------------------


def write_record(path: Path, record: dict[str, Any]) -> None:
    """Replace ``path`` atomically: a run killed mid-write leaves the previous record whole."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(record, f, indent=1, default=str)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _print_plan(steps: list[Step], budget_s: float, device: dict[str, Any]) -> None:
    print(f"device: {device['device_name'] or 'no CUDA device'}; torch CUDA "
          f"{device['torch_cuda_version']}; onnxruntime providers: "
          f"{', '.join(device['onnxruntime_providers'] or []) or device.get('onnxruntime_note')}; "
          f"tensorrt: {device['tensorrt'] or device.get('tensorrt_note')}")
    used = 0.0
    for step in steps:
        fits = used + step.estimate_s <= budget_s
        used += step.estimate_s if fits else 0.0
        print(f"  {'run ' if fits else 'skip'} ~{step.estimate_s:4.0f} s  {step.name}")
    total = sum(s.estimate_s for s in steps)
    print(f"{len(steps)} steps, ~{total:.0f} s estimated in all; ~{used:.0f} s fit the {budget_s:.0f} s "
          "budget (estimates are guesses until a GPU has run this)")


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="gpu_check.json", help="the JSON record (rewritten after each step)")
    parser.add_argument("--dry-run", action="store_true", help="print the plan and write it; run nothing")
    parser.add_argument("--budget-s", type=float, default=480.0,
                        help="wall-clock seconds for the whole check, detection included")
    parser.add_argument("--cases", nargs="+", default=None,
                        help="reference cases for the parity steps, or 'all' (default: "
                             f"{' '.join(DEFAULT_CASES)})")
    parser.add_argument("--shared", default=str(DEFAULT_SHARED),
                        help="the folder holding assets/ and reference/ (default: ../shared)")
    parser.add_argument("--device", default="cuda",
                        help="torch device of the steps; 'cpu' runs them on the CPU (a smoke test "
                             "of the script itself: GPU-only steps then fail, recorded)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    started = time.monotonic()
    try:
        if not args.budget_s > 0:
            raise CheckError(f"--budget-s must be > 0 (got {args.budget_s})")
        out = Path(args.out)
        if out.is_dir() or not out.parent.is_dir():
            raise CheckError(f"--out {out}: must be a file in an existing folder")
        shared = Path(args.shared).resolve()
        available = load_cases(shared)
        cases = select_cases(available, args.cases)
        graph_cases = {g: available[c] for g, c in GRAPH_CASES.items() if c in available}
    except CheckError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 2
    sys.path.insert(0, str(ROOT))  # this checkout's sleapflow when run from a source tree
    device = detect()
    steps = build_plan(cases, graph_cases, shared / "reference", args.device)
    dry_reason = ("--dry-run" if args.dry_run else
                  "torch finds no CUDA device" if args.device.startswith("cuda")
                  and not device["torch_cuda_available"] else None)
    record: dict[str, Any] = {
        "tool": "benchmarks/gpu_check.py", "dry_run": dry_reason is not None, "dry_run_reason": dry_reason,
        "command": " ".join([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]),
        "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "budget_s": args.budget_s, "torch_device": args.device, "shared": str(shared),
        "git_revision": _git_revision(),
        "device": device, "versions": _versions(), "cases": [c.name for c in cases],
        "graphs": {g: c.name for g, c in graph_cases.items()},
        "plan": [s.describe() for s in steps],
        "plan_estimate_s": sum(s.estimate_s for s in steps), "steps": [], "wall_s": None,
    }
    _print_plan(steps, args.budget_s, device)
    if dry_reason is not None:
        record["wall_s"] = round(time.monotonic() - started, 3)
        write_record(out, record)
        print(f"dry run ({dry_reason}): nothing measured; plan written to {out}")
        return 0
    # Exports and engine builds go to a cache of this run: measured from cold, shared by its steps.
    os.environ.setdefault("SLEAPFLOW_CACHE_DIR", tempfile.mkdtemp(prefix="gpu-check-cache-"))
    lock = threading.Lock()

    def on_result(entry: dict[str, Any]) -> None:
        line = entry.get("error") or entry.get("reason") or json.dumps(entry.get("result"), default=str)
        print(f"{entry['status']:<8}{entry.get('seconds', 0):7.1f} s  {entry['name']}  {line[:300]}",
              flush=True)
        with lock:
            record["steps"].append(entry)
            record["wall_s"] = round(time.monotonic() - started, 3)
            write_record(out, record)

    def on_start(step: Step) -> None:
        with lock:
            record["running"] = step.name

    def watchdog() -> None:
        # A step stuck in native code (an engine build) cannot be interrupted: keep what was
        # measured and leave, rather than overrun the time the machine was lent for.
        with lock:
            record["aborted"] = (f"the {args.budget_s:.0f} s budget ran out during step "
                                 f"{record.get('running')}; it and the steps after it did not finish")
            record["wall_s"] = round(time.monotonic() - started, 3)
            write_record(out, record)
        print(f"Error: {record['aborted']}; record written to {out}", file=sys.stderr, flush=True)
        os._exit(1)

    left = args.budget_s - (time.monotonic() - started)  # detection and planning count too
    timer = threading.Timer(max(left, 0.0), watchdog)
    timer.daemon = True
    timer.start()
    results = run_steps(steps, left, on_start=on_start, on_result=on_result)
    timer.cancel()
    with lock:
        record.pop("running", None)
        record["wall_s"] = round(time.monotonic() - started, 3)
        write_record(out, record)
    failed = sum(r["status"] == "failed" for r in results)
    skipped = sum(r["status"] == "skipped" for r in results)
    print(f"{len(results) - failed - skipped} ok, {failed} failed, {skipped} skipped in "
          f"{record['wall_s']} s; record: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

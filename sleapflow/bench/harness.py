"""``sleapflow bench``: per-stage throughput of a named graph against its serial and forward limits.

One benchmark does three measurements of the same graph on the same frames:

1. **The graph**: ``sleapflow track``'s job (:func:`sleapflow.jobs.job.plan_job`, run by
   :func:`~sleapflow.jobs.job.run_job` and its one :class:`~sleapflow.runtime.GraphRunner`),
   writing a ``.slp``. A
   statistics snapshot taken when the writer has seen the warm-up frames is subtracted from the
   final one, so model loading and first-batch costs are excluded. Per stage: items/s, busy,
   starved (waiting on input), blocked (waiting on the next stage) and peak queue depth.
2. **A serial baseline** (a measurement, not a way to run a job: it writes nothing a user
   keeps): the same stage callables (fresh instances from the same graph
   declaration, same settings, torch threads included) called one after another in a plain
   loop: what overlapping the stages buys.
3. **The forward limit**: the time the serial loop spent in the forward pass(es) alone, i.e. the
   frames/s the graph would reach if everything else were free — at the graph's torch thread
   count, and again (a replay of the same inputs) with torch on every core; the better of the
   two is the limit. (On a CPU shared with other work, one torch thread can beat two.)

With no ``--data`` / ``--model`` it runs on an embedded default: a synthetic 320×560 grayscale
video and a sleap-nn-format single-instance model folder with random weights for a realistically
sized UNet (filters 32, rate 1.5, max stride 16, output stride 2; 1.3 M parameters, a 5 MB
``best.ckpt``), generated into a temporary folder and loaded through the normal loader — so it
runs on a fresh machine.
"""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeAlias

import msgspec
from cyclopts import Parameter

from sleapflow.options.declared import cli_options, option, option_values
from sleapflow.options.help import opt
from sleapflow.testing import SYNTHETIC_GRAPHS, write_default_clip, write_synthetic_model

__all__ = (
    "REPLAY_BATCHES", "SYNTHETIC_GRAPHS", "BenchRecord", "SerialResult", "SerialTimes", "StageRow",
    "bench_command", "format_table", "git_revision", "run_bench", "serial_loop", "write_synthetic_model",
)

# --------------------------------------------------------------------------------------------
# The serial baseline: the same stage callables in a plain loop
# --------------------------------------------------------------------------------------------


#: Forward inputs kept per forward stage for the replay at the graph's thread count.
REPLAY_BATCHES = 16


class SerialTimes:
    """Seconds and calls inside each stage's own work, reset when the warm-up ends; the first
    forward inputs after the warm-up are kept for a replay."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.calls: dict[str, int] = {}
        self.measuring = False
        self.kept: dict[str, list[Any]] = {}

    def add(self, name: str, seconds: float) -> None:
        self.seconds[name] = self.seconds.get(name, 0.0) + seconds
        self.calls[name] = self.calls.get(name, 0) + 1

    def keep(self, name: str, item: Any) -> None:
        kept = self.kept.setdefault(name, [])
        if self.measuring and len(kept) < REPLAY_BATCHES:
            kept.append(item)

    def reset(self) -> None:
        for key in self.seconds:
            self.seconds[key] = 0.0
            self.calls[key] = 0
        self.measuring = True


def _decode(plan: Any, times: SerialTimes, name: str) -> Iterator[Any]:
    from sleapflow.inputs import open_reader
    from sleapflow.messages import Frame

    readers: dict[int, Any] = {}
    seq = 0
    try:
        for item in plan.items:
            start = time.perf_counter()
            reader = readers.get(item.video_id)
            if reader is None:
                for old in readers.values():
                    old.close()
                readers = {item.video_id: open_reader(plan, item.video_id)}
                reader = readers[item.video_id]
            image = reader.read(item.frame_idx)
            times.add(name, time.perf_counter() - start)
            if image is None:
                continue
            yield Frame(seq=seq, video_id=item.video_id, frame_idx=item.frame_idx, image=image,
                        gt_points=item.gt_points)
            seq += 1
    finally:
        for reader in readers.values():
            reader.close()


class SerialResult(msgspec.Struct, frozen=True):
    frames: int
    wall_s: float
    stage_s: dict[str, float]
    #: Forward-pass seconds in the loop (torch on ``torch_threads`` threads).
    forward_s: float
    torch_threads: int
    #: The same forward passes at ``replay_threads`` (the graph's count), from a replay.
    forward_s_replay: float | None = None
    replay_threads: int | None = None
    #: Forward-only frames/s per runtime (the graph's workers and threads), from the kept inputs.
    forward_limits: dict[str, float] = {}


def _replay_forward(middle: list[Any], times: SerialTimes, threads: int) -> float | None:
    """Forward seconds of the measured frames at ``threads`` torch threads: the kept inputs are
    run again and their mean time per call scales each forward stage's call count."""
    import torch

    from sleapflow.graphs.common import is_forward

    total = 0.0
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        for stage in middle:
            if not is_forward(stage):
                continue
            kept = times.kept.get(stage.name) or []
            if not kept:
                return None
            start = time.perf_counter()
            for item in kept:
                stage.fn(item)
            total += (time.perf_counter() - start) / len(kept) * times.calls.get(stage.name, 0)
    finally:
        torch.set_num_threads(previous)
    return total


def serial_loop(run: Any, *, warmup: int, output_path: str | None,
                replay_threads: int | None = None,
                runtimes: list[str] | None = None) -> SerialResult:
    """Run ``run``'s graph as a plain loop over its stage callables, timing each stage.

    With ``replay_threads`` the forward passes are also timed at that torch thread count (the
    graph's), so the forward limit is known for both settings.
    """
    import torch

    from sleapflow.graphs.build import make_writer
    from sleapflow.graphs.common import is_forward
    from sleapflow.runtime.serial import iter_serial, setup_serial

    middle = run.graph.build(run.ctx, None)
    writer = make_writer(run, output_path=output_path)
    setup_serial(middle)  # the stages' own loaders: same weights, device and thread count
    times = SerialTimes()

    def on_call(stage: Any, item: Any, seconds: float) -> None:
        times.add(stage.name, seconds)
        if is_forward(stage):
            times.keep(stage.name, item)

    stream = iter_serial(_decode(run.plan, times, "decode"), middle, on_call=on_call)
    count = 0
    start = time.perf_counter()
    for pred in stream:
        t0 = time.perf_counter()
        writer.builder.add(pred)
        times.add(writer.name, time.perf_counter() - t0)
        count += 1
        if count == warmup:
            times.reset()
            start = time.perf_counter()
    t0 = time.perf_counter()
    writer.finish()  # the writer's own end-of-run work: build the Labels, write the file
    times.add(writer.name, time.perf_counter() - t0)
    wall = time.perf_counter() - start
    forward = sum(times.seconds.get(s.name, 0.0) for s in middle if is_forward(s))
    threads = torch.get_num_threads()
    replay = None
    if replay_threads is not None and replay_threads != threads:
        replay = _replay_forward(middle, times, replay_threads)
    limits: dict[str, float] = {}
    if runtimes:
        from sleapflow.bench.forward_limits import forward_limits

        limits = forward_limits([s for s in middle if is_forward(s)], times.kept,
                                times.calls, max(0, count - warmup), runtimes)
    return SerialResult(forward_limits=limits, frames=max(0, count - warmup), wall_s=wall,
                        stage_s=dict(times.seconds),
                        forward_s=forward, torch_threads=threads, forward_s_replay=replay,
                        replay_threads=replay_threads if replay is not None else None)


# --------------------------------------------------------------------------------------------
# The graph run with a warm-up snapshot
# --------------------------------------------------------------------------------------------


async def _graph_run(job: Any, *, warmup: int) -> tuple[Any, Any, int]:
    """Run the job as ``track`` does; return (final stats, warm-up snapshot, frames seen)."""
    from sleapflow.jobs.job import run_job
    from sleapflow.runtime import GraphRunner

    seen = 0
    snapshot: Any = None
    runner: GraphRunner | None = None

    def on_runner(started: GraphRunner) -> None:
        nonlocal runner
        runner = started

    def on_frame(n: int) -> None:
        nonlocal seen, snapshot
        seen += n
        if snapshot is None and seen >= warmup and runner is not None:
            snapshot = runner.statistics()

    result = await run_job(job, on_frame=on_frame, on_runner=on_runner)
    return result.stats, snapshot, seen


# --------------------------------------------------------------------------------------------
# The record
# --------------------------------------------------------------------------------------------


class StageRow(msgspec.Struct, frozen=True):
    name: str
    wall_s: float
    items_in: int
    items_out: int
    items_per_s: float
    busy_pct: float
    starved_pct: float
    blocked_pct: float
    peak_queue: int


class BenchRecord(msgspec.Struct, frozen=True, kw_only=True):
    """Everything one ``sleapflow bench`` measured, and on what."""

    graph: str
    device: str
    device_name: str
    cpu_count: int
    torch_threads_graph: int | None
    versions: dict[str, str]
    git_revision: str | None
    data: str
    models: list[str]
    synthetic_clip: bool
    synthetic_model: bool
    frame_shape: list[int]
    batch_size: int
    queue_maxsize: int
    #: 1-minute load average before and after: other work on a shared machine skews timings.
    loadavg: tuple[float, float]
    #: Alternating graph / serial rounds; the fps figures are medians over them.
    repeat: int
    frames_total: int
    warmup_frames: int
    frames_measured: int
    graph_wall_s: float
    graph_fps: float
    bottleneck: str | None
    stages: list[StageRow]
    graph_fps_runs: list[float] = []
    serial_fps_runs: list[float] = []
    #: The graph's network runtime (resolved) and the forward-only limit of every runtime.
    runtime: str = "torch"
    #: ``--host_peaks``: an exporting runtime returned maps (peaks found outside it).
    host_peaks: bool = False
    forward_limit_by_runtime: dict[str, float] = {}
    serial_fps: float | None = None
    serial_torch_threads: int | None = None
    serial_stage_ms_per_frame: dict[str, float] | None = None
    #: Forward-pass-only frames/s at the graph's torch thread count (from the serial loop) ...
    forward_fps: float | None = None
    #: ... and with torch on every core (a replay of the same inputs).
    forward_fps_all_cores: float | None = None
    #: The better of the two: the limit the graph is compared with.
    forward_limit_fps: float | None = None
    speedup_vs_serial: float | None = None
    fraction_of_forward_limit: float | None = None
    command: str = ""

    def summary(self) -> str:
        lines = [
            f"end-to-end    {self.graph_fps:8.1f} frames/s  ({self.frames_measured} frames after "
            f"{self.warmup_frames} warm-up, {self.graph_wall_s:.2f} s)",
        ]
        if self.serial_fps is not None:
            lines.append(f"serial loop   {self.serial_fps:8.1f} frames/s  (same stages, no overlap, "
                         f"torch threads {self.serial_torch_threads}); graph is "
                         f"{self.speedup_vs_serial:.2f}x")
        if self.forward_fps is not None:
            all_cores = ""
            if self.forward_fps_all_cores is not None:
                all_cores = f", {self.forward_fps_all_cores:.1f} on all {self.cpu_count} cores"
            lines.append(f"forward only  {self.forward_fps:8.1f} frames/s  (this model and batch size "
                         f"alone, torch threads {self.serial_torch_threads}{all_cores}); graph reaches "
                         f"{100 * (self.fraction_of_forward_limit or 0):.0f}% of the better")
        if self.serial_stage_ms_per_frame:
            parts = ", ".join(f"{k} {v:.2f}" for k, v in self.serial_stage_ms_per_frame.items())
            lines.append(f"serial ms/frame by stage: {parts}")
        for name, fps in self.forward_limit_by_runtime.items():
            mark = " (graph)" if name == self.runtime else ""
            lines.append(f"forward only  {fps:8.1f} frames/s  runtime {name}{mark}, the graph's "
                         f"workers and threads; graph reaches {100 * self.graph_fps / fps:.0f}%")
        if self.repeat > 1:
            runs = "; ".join(f"{name} " + " ".join(f"{v:.1f}" for v in values)
                             for name, values in (("graph", self.graph_fps_runs),
                                                  ("serial", self.serial_fps_runs)) if values)
            lines.append(f"medians of {self.repeat} alternating rounds (frames/s: {runs})")
        return "\n".join(lines)


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _device_name(device: str) -> str:
    import torch

    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    return f"{_cpu_name()} ({os.cpu_count()} cores)" if device == "cpu" else device


def _versions() -> dict[str, str]:
    from importlib import metadata

    out = {"python": platform.python_version(), "platform": platform.platform()}
    for dist in ("sleapflow", "torch", "numpy", "anyio", "sleap-io", "av", "opencv-python-headless"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return out


def git_revision() -> str | None:
    """The checkout's commit, with ``+dirty`` when the working tree has changes."""
    root = Path(__file__).resolve().parents[1]
    try:
        rev = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True,
                             text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain"],
                               capture_output=True, text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return rev + ("+dirty" if dirty else "")


# --------------------------------------------------------------------------------------------
# The benchmark
# --------------------------------------------------------------------------------------------


def _median_index(values: list[float]) -> int:
    order = sorted(range(len(values)), key=values.__getitem__)
    return order[(len(order) - 1) // 2]


def run_bench(graph: str = "single_instance", *, data: str | None = None,
              models: tuple[str, ...] = (), frames: int = 200, warmup: int = 20,
              batch_size: int = option("batch_size").default,
              queue_maxsize: int = option("queue_maxsize").default,
              device: str = option("device").default,
              torch_threads: int | None = None, serial: bool = True, repeat: int = 1,
              workdir: str | Path | None = None, runtime: str = "auto",
              precision: str = "fp32", host_peaks: bool = False,
              forward_workers: int | None = None) -> BenchRecord:
    """Measure ``graph`` end to end, serially and forward-only; see the module docstring.

    With ``repeat`` > 1 the graph and the serial loop run alternately that many times (drift
    on a shared machine then hits both alike); the record quotes medians, and the stage table
    is the median graph run's.
    """
    import anyio

    from sleapflow.errors import ConfigError
    from sleapflow.graphs.build import prepare
    from sleapflow.jobs.job import plan_job
    from sleapflow.options.config import InferenceConfig

    if frames < 1 or warmup < 0 or repeat < 1:
        raise ConfigError("--frames and --repeat must be >= 1, --warmup >= 0")
    if warmup >= frames:
        raise ConfigError(f"--warmup ({warmup}) must be smaller than --frames ({frames})")
    with tempfile.TemporaryDirectory(prefix="sleapflow-bench-") as tmp_name:
        tmp = Path(workdir) if workdir is not None else Path(tmp_name)
        tmp.mkdir(parents=True, exist_ok=True)
        synthetic_model, synthetic_clip = not models, data is None
        if synthetic_model:
            if graph not in SYNTHETIC_GRAPHS:
                raise ConfigError(f"bench {graph}: no embedded model for this graph; pass its "
                                  f"model folder(s) with --model (embedded: {', '.join(SYNTHETIC_GRAPHS)})")
            models = (str(write_synthetic_model(tmp / f"synthetic_{graph}", graph)),)
        if data is None:
            data = str(write_default_clip(tmp / "synthetic.mp4", frames))
        cfg = InferenceConfig(data_path=data, model_paths=tuple(models), device=device,
                              batch_size=batch_size, queue_maxsize=queue_maxsize,
                              frames=None if data.endswith(".slp") else tuple(range(frames)),
                              graph=graph, torch_threads=torch_threads,
                              forward_workers=forward_workers,
                              # "noop" (a forward at no cost) exists for benchmarks only.
                              runtime="torch" if runtime == "noop" else runtime,
                              precision=precision, host_peaks=host_peaks)
        load_before = os.getloadavg()[0]
        cores = os.cpu_count() or 1
        graph_runs: list[tuple[Any, int, float]] = []
        serial_runs: list[SerialResult] = []
        run: Any = None
        for _ in range(repeat):
            # A fresh job each time: new stage objects, the model loaded again, as a new run.
            job = plan_job(cfg, output=str(tmp / "bench.predictions.slp"), announce=False)
            run = job.run
            _maybe_noop(run, runtime)
            items = run.plan.items[:frames]
            run.plan.items = items
            if len(items) <= warmup:
                raise ConfigError(f"{data} gives {len(items)} frames; need more than --warmup {warmup}")
            final, snapshot, seen = anyio.run(lambda job=job: _graph_run(job, warmup=warmup))
            measured = final.minus(snapshot) if snapshot is not None else final
            fps = (seen - warmup) / measured.wall_s if measured.wall_s > 0 else 0.0
            graph_runs.append((measured, seen, fps))
            if serial:
                # Same stages, same settings (torch threads included), no overlap: the difference
                # is what overlapping buys. The forward passes are replayed on every core too,
                # since on an idle machine more torch threads may beat the graph's setting.
                serial_run = prepare(cfg)
                _maybe_noop(serial_run, runtime)
                serial_run.plan.items = items
                serial_runs.append(serial_loop(serial_run, warmup=warmup,
                                               output_path=str(tmp / "serial.predictions.slp"),
                                               # torch.set_num_threads only steers torch
                                               replay_threads=cores if _own(run) == "torch"
                                               else None,
                                               runtimes=_limit_runtimes(run)))
        measured, seen, graph_fps = graph_runs[_median_index([g[2] for g in graph_runs])]
        n_measured = seen - warmup
        frame_shape = list(_first_frame_shape(run))
        stages = [StageRow(name=s.name, wall_s=s.wall_s, items_in=s.items_in, items_out=s.items_out,
                           # A wait in progress at the snapshot is counted when it ends, so a
                           # stage's busy share after subtraction can dip just below zero.
                           items_per_s=s.items_per_s, busy_pct=max(0.0, 100 * s.busy_fraction),
                           starved_pct=100 * s.starved_fraction,
                           blocked_pct=100 * s.blocked_fraction, peak_queue=s.peak_inbox_depth)
                  for s in measured.stages]
        record: dict[str, Any] = {"graph_fps_runs": [g[2] for g in graph_runs]}
        done = [r for r in serial_runs if r.frames > 0 and r.wall_s > 0]
        if done:
            serial_fps_runs = [r.frames / r.wall_s for r in done]
            res = done[_median_index(serial_fps_runs)]
            serial_fps = res.frames / res.wall_s
            record.update(
                serial_fps=serial_fps, serial_fps_runs=serial_fps_runs,
                serial_torch_threads=res.torch_threads,
                serial_stage_ms_per_frame={k: 1000 * v / res.frames for k, v in res.stage_s.items()},
                speedup_vs_serial=graph_fps / serial_fps,
            )
            forward = [r.frames / r.forward_s for r in done if r.forward_s > 0]
            replay = [r.frames / r.forward_s_replay for r in done if r.forward_s_replay]
            if forward:
                limits = [statistics.median(forward)]
                record["forward_fps"] = limits[0]
                if replay:
                    limits.append(statistics.median(replay))
                    record["forward_fps_all_cores"] = limits[1]
                by_runtime = {name: statistics.median([r.forward_limits[name] for r in done
                                                       if name in r.forward_limits])
                              for name in done[0].forward_limits}
                record["forward_limit_by_runtime"] = by_runtime
                limits.extend(v for k, v in by_runtime.items() if k != "noop")
                record["forward_limit_fps"] = max(limits)
                record["fraction_of_forward_limit"] = graph_fps / max(limits)
        return BenchRecord(
            graph=run.graph_name, device=run.ctx.device, device_name=_device_name(run.ctx.device),
            cpu_count=cores, torch_threads_graph=run.ctx.torch_threads,
            versions=_versions(), git_revision=git_revision(),
            data="<synthetic clip>" if synthetic_clip else data,
            models=["<synthetic model>"] if synthetic_model else list(models),
            synthetic_clip=synthetic_clip, synthetic_model=synthetic_model,
            loadavg=(load_before, os.getloadavg()[0]), repeat=repeat,
            frame_shape=frame_shape, batch_size=batch_size, queue_maxsize=queue_maxsize,
            frames_total=seen, warmup_frames=warmup, frames_measured=n_measured,
            graph_wall_s=measured.wall_s, graph_fps=graph_fps, bottleneck=measured.bottleneck,
            stages=stages, command=" ".join(["sleapflow", *sys.argv[1:]]),
            runtime=_own(run), host_peaks=host_peaks, **record,
        )


def _maybe_noop(run: Any, runtime: str) -> None:
    if runtime == "noop":
        from sleapflow.backends import RuntimeChoice

        run.ctx.runtime = RuntimeChoice("noop", "noop", "bench: forward replaced by a no-op")


def _own(run: Any) -> str:
    """The graph's runtime as the forward limits name it: ``torch``, ``onnx``, ``torch-bf16``."""
    return run.ctx.runtime.label if run.ctx.runtime is not None else "torch"


def _limit_runtimes(run: Any) -> list[str]:
    """The graph's runtime first, then every other runtime installed for the device (and
    torch bf16 on a CPU with bf16 units)."""
    from sleapflow.backends import installed_runtimes
    from sleapflow.backends.select import cpu_has_bf16

    own = _own(run)
    kind = str(run.ctx.device).split(":", 1)[0]
    others = installed_runtimes(kind)
    if kind == "cpu" and cpu_has_bf16():
        others.append("torch-bf16")
    return [own, *[r for r in others if r != own]]


def _first_frame_shape(run: Any) -> tuple[int, ...]:
    from sleapflow.inputs import open_reader

    item = run.plan.items[0]
    reader = open_reader(run.plan, item.video_id)
    try:
        image = reader.read(item.frame_idx)
    finally:
        reader.close()
    return tuple(image.shape) if image is not None else ()


def format_table(record: BenchRecord) -> str:
    """The per-stage table (warm-up excluded) as ``GraphStats.table`` prints it."""
    header = (f"{'stage':<16}{'in':>8}{'out':>8}{'items/s':>10}{'busy%':>8}"
              f"{'starved%':>10}{'blocked%':>10}{'peak q':>8}")
    rows = [header, "-" * len(header)]
    for s in record.stages:
        if s.wall_s <= 0:
            # A stage that ran ahead (the decoder on a short clip) can finish inside the warm-up.
            rows.append(f"{s.name:<16}  finished during the warm-up")
            continue
        rows.append(f"{s.name:<16}{s.items_in:>8}{s.items_out:>8}{s.items_per_s:>10.1f}"
                    f"{s.busy_pct:>8.1f}{s.starved_pct:>10.1f}{s.blocked_pct:>10.1f}{s.peak_queue:>8}")
    rows.append(f"bottleneck: {record.bottleneck}")
    return "\n".join(rows)


#: The inference options ``bench`` shares with ``track``: their declaration's spelling, help and
#: defaults (:mod:`sleapflow.options.declared`).
if TYPE_CHECKING:
    BenchOptions: TypeAlias = Any
else:
    BenchOptions = cli_options("track", class_name="BenchOptions",
                               names=("batch_size", "queue_maxsize", "device", "host_peaks"))


def bench_command(
    graph: Annotated[str, Parameter(help="Named graph to measure (see `sleapflow graphs`).")]
    = "single_instance",
    /,
    *,
    data: Annotated[str | None, Parameter(name=["--data", "-i"],
                                          help="Video or .slp (default: a synthetic clip).")] = None,
    model: Annotated[tuple[str, ...], Parameter(name=["--model", "-m"], negative_iterable=(),
                                                help="Model folder(s) (default: a synthetic "
                                                     "realistic-size model).")] = (),
    frames: Annotated[int, Parameter(help="Frames to run, warm-up included.")] = 200,
    warmup: Annotated[int, Parameter(help="Frames excluded from the measurement.")] = 20,
    execution: Annotated[BenchOptions, Parameter(name="*")] = BenchOptions(),  # noqa: B008
    torch_threads: Annotated[int | None, opt("torch_threads",
                                             help="torch threads per forward worker "
                                             "(default: 1 per core's worker on CPU).")] = None,
    forward_workers: Annotated[int | None, opt(
        "forward_workers", help="Batches in flight per model on the CPU (default: one per "
                                "core, up to 4); 1 times one frame at a time, as a live "
                                "graph runs it.")] = None,
    serial: Annotated[bool, Parameter(help="Also run the serial baseline and forward limit.",
                                      negative=["--no-serial"])] = True,
    repeat: Annotated[int, Parameter(help="Alternating graph/serial rounds; medians are quoted "
                                          "(use 3+ on a shared machine).")] = 1,
    runtime: Annotated[str, Parameter(name=["--runtime"],
                                      help="The graph's network runtime: auto, torch, onnx, "
                                           "tensorrt, or noop (a forward at no cost: what the "
                                           "other stages sustain). The forward-only limit is "
                                           "printed for every installed runtime.")] = "auto",
    precision: Annotated[str, Parameter(name=["--precision"],
                                        help="The graph's number format: fp32, or bf16 (CPUs "
                                             "with AMX / AVX512-BF16, and CUDA) / fp16 "
                                             "(CUDA) / int8 (ONNX Runtime on the CPU; "
                                             "calibrated during the warm-up).")] = "fp32",
    json_path: Annotated[str | None, Parameter(name=["--json"],
                                               help="Write the record (with device, versions and "
                                                    "git revision) as JSON here.")] = None,
) -> int:
    """Per-stage throughput of a graph vs a serial loop and the forward-pass limit."""
    record = run_bench(graph, data=data, models=tuple(model), frames=frames, warmup=warmup,
                       **option_values(execution), torch_threads=torch_threads, serial=serial,
                       repeat=repeat, runtime=runtime, precision=precision,
                       forward_workers=forward_workers)
    print(f"graph {record.graph} on {record.device} ({record.device_name}), runtime "
          f"{record.runtime}, torch "
          f"{record.versions.get('torch')}, batch {record.batch_size}, frames {record.frame_shape}"
          f"{' [synthetic model]' if record.synthetic_model else ''}"
          f"{' [synthetic clip]' if record.synthetic_clip else ''}; load average "
          f"{record.loadavg[0]:.1f} -> {record.loadavg[1]:.1f}")
    print(format_table(record))
    print(record.summary())
    if json_path is not None:
        Path(json_path).parent.mkdir(parents=True, exist_ok=True)
        Path(json_path).write_bytes(msgspec.json.format(msgspec.json.encode(record)) + b"\n")
        print(f"record written to {json_path}")
    return 0

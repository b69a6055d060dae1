"""The Ray runner (extra ``sleapflow[ray]``): the same graphs on Ray actors that keep their models.

Ray does the distribution: one actor per worker holds the loaded models (one GPU each where
the cluster has GPUs), ``ray.wait`` hands each idle actor the next task, and
an actor whose process dies is restarted by Ray, which retries the task it was running
(``max_restarts``/``max_task_retries``). Tasks are whole videos, or frame-range chunks of long
ones; every output is written atomically under its final name, so a retried task never leaves
a half-written file and never writes anything the first attempt did not. Chunks of a video are
merged on the driver and tracked there after the merge (track-only), as ``sleapflow merge`` does.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import msgspec

from sleapflow.errors import ConfigError, SleapflowError
from sleapflow.inputs.expand import VideoTask, output_for, output_is_complete, shard_slice, single_config
from sleapflow.jobs.guard import check_outputs_apart, guarded_outputs, output_guards
from sleapflow.jobs.progress import announce
from sleapflow.logs import get_logger
from sleapflow.options.config import InferenceConfig
from sleapflow.outputs.export import ExportSettings, check_formats, export, format_path
from sleapflow.outputs.slp_read import read_slp
from sleapflow.outputs.summary import read_summary

__all__ = ("CHUNKS_PER_WORKER", "run", "run_config")


log = get_logger(__name__)

#: Without ``chunk_frames``, videos are split only when there are fewer videos than workers,
#: into about this many chunks per worker: whole videos are tracked inside the graph, while
#: chunks wait for a merge and a track-only pass on the driver.
CHUNKS_PER_WORKER = 2


def _ray() -> Any:
    try:
        import ray
    except ImportError:
        raise ConfigError("--ray needs Ray: pip install 'sleapflow[ray]'") from None
    return ray


@dataclass
class _Task:
    """One unit of work for an actor: a whole video, or one frame range of it."""

    key: int
    video: int
    cfg: InferenceConfig
    output: str
    n_frames: int


class _Planned(NamedTuple):
    """An input to run: its record, its one-video config and the frames that config selects."""

    video: VideoTask
    single: InferenceConfig
    frames: list[int]


class _Worker:
    """A Ray actor: loads the models once and runs one graph per task with them."""

    def __init__(self, model_paths: Sequence[str], device: str) -> None:
        from sleapflow.backends.device import resolve_device
        from sleapflow.graphs.common import resolve_models
        from sleapflow.models.loader import ModelCache

        # This process belongs to the actor alone: every graph it builds is given this cache,
        # so each task reuses the models loaded here instead of loading them again.
        self.models = ModelCache()
        dev = resolve_device(device)
        for ref in resolve_models(tuple(model_paths)).values():
            self.models(ref.path, dev)

    def pid(self) -> int:
        return os.getpid()

    def run(self, task: _Task, progress: Any) -> tuple[int, float]:
        """Run ``task`` to its output; report frames done to ``progress`` as they pass."""
        import anyio

        from sleapflow.jobs.job import plan_job, run_job

        done = 0
        last = 0.0

        def on_frame(n: int) -> None:
            nonlocal done, last
            done += n
            now = time.monotonic()
            if now - last > 0.25:
                last = now
                progress.set.remote(task.key, done)

        start = time.perf_counter()
        # The driver checked and locked the video's output and logged the start line; the
        # worker's job is the same job with this actor's model cache.
        job = plan_job(task.cfg, output=task.output, guard=False, announce=False,
                       model_loader=self.models)
        anyio.run(lambda: run_job(job, on_frame=on_frame))
        progress.set.remote(task.key, done)
        return done, time.perf_counter() - start


class _ProgressBoard:
    """A Ray actor the workers report to: frames done per task (a retried task starts over)."""

    def __init__(self) -> None:
        self.done: dict[int, int] = {}

    def set(self, key: int, frames: int) -> None:
        self.done[key] = frames

    def total(self) -> int:
        return sum(self.done.values())


def _connect(ray: Any, address: str | None) -> None:
    if ray.is_initialized():
        return
    if address is None:
        try:  # a local instance already running (ray start --head) ...
            ray.init(address="auto", log_to_driver=False, logging_level="ERROR")
            return
        except ConnectionError:
            pass  # ... or a new one for this run
    ray.init(address=address, log_to_driver=False, logging_level="ERROR")


def run(inputs: str | Sequence[str], models: str | Sequence[str],
        options: dict[str, Any] | None = None, address: str | None = None, *,
        workers: int | None = None, chunk_frames: int | None = None) -> list[VideoTask]:
    """Run ``models`` over ``inputs`` (videos, folders, globs) on Ray and write each output.

    ``options`` are ``sleapflow track``'s options as keywords (``output_path``, ``tracking``,
    ``batch_size``, ...). Returns one record per input: status, frames, seconds, output/error.
    """
    from sleapflow.inputs.expand import expand_inputs
    from sleapflow.options.boundary import build_config

    paths, _ = expand_inputs([inputs] if isinstance(inputs, str) else list(inputs))
    cfg = build_config(**{**(options or {}), "inputs": tuple(paths),
                          "model_paths": (models,) if isinstance(models, str) else tuple(models)})
    return run_config(cfg, address=address, workers=workers, chunk_frames=chunk_frames)


def _plan(cfg: InferenceConfig) -> tuple[list[VideoTask], list[_Planned]]:
    """Every input planned once (failed and skipped ones recorded on their VideoTask)."""
    from sleapflow.inputs import plan_input

    paths = list(cfg.inputs) or [cfg.data_path or ""]
    if cfg.shard is not None:
        paths = paths[shard_slice(len(paths), cfg.shard)]
    many = len(paths) > 1
    videos = [VideoTask(index=k, path=p, output=output_for(cfg, p, many=many))
              for k, p in enumerate(paths)]
    planned: list[_Planned] = []
    for video in videos:
        single = single_config(cfg, video)
        try:
            frames = [it.frame_idx for it in plan_input(single).items]
        except SleapflowError as exc:
            video.status, video.error = "failed", str(exc)
            continue
        if cfg.skip_existing and output_is_complete(video.output, len(frames)):
            video.status = "skipped"
            continue
        planned.append(_Planned(video, single, frames))
    return videos, planned


def _chunk(planned: list[_Planned], chunk_frames: int) -> list[_Task]:
    """The planned videos as tasks of at most ``chunk_frames`` frames each."""
    tasks: list[_Task] = []
    for video, single, frames in planned:
        n_chunks = max(1, -(-len(frames) // chunk_frames))
        if n_chunks == 1:
            tasks.append(_Task(len(tasks), video.index, single, video.output, len(frames)))
            continue
        parts = _parts_dir(video.output)
        for i in range(1, n_chunks + 1):
            chunk = tuple(frames[shard_slice(len(frames), (i, n_chunks))])
            out = str(parts / f"part-{i:05d}.slp")
            # Chunks are tracked after the merge, where the whole video is in order.
            chunk_cfg = msgspec.structs.replace(single, frames=chunk, tracking=False,
                                                output_path=out)
            tasks.append(_Task(len(tasks), video.index, chunk_cfg, out, len(chunk)))
    return tasks


def _parts_dir(output: str) -> Path:
    out = Path(output)
    return out.parent / f".{out.name}.parts"


def run_config(cfg: InferenceConfig, *, address: str | None = None, workers: int | None = None,
               chunk_frames: int | None = None, formats: Sequence[str] = ("slp",),
               export_settings: ExportSettings | None = None) -> list[VideoTask]:
    """:func:`run` from a built config (what ``sleapflow track --ray`` calls). ``formats``
    other than ``slp`` are written by the driver beside each finished video's ``.slp``."""
    formats = check_formats(formats)
    export_settings = export_settings or ExportSettings()
    if "slp" not in formats:
        raise ConfigError("--ray writes each video's .slp as it ends: keep slp among "
                          "--output_format (the other formats go beside it)")
    ray = _ray()
    if not cfg.model_paths:
        raise ConfigError("--ray runs inference: pass --model_paths/-m")
    if cfg.shard is not None and len(cfg.inputs) <= 1:
        raise ConfigError("--ray cuts a single video into frame ranges itself; drop --shard "
                          "(or use --ray_chunk_frames)")
    videos, planned = _plan(cfg)
    tasks = _chunk(planned, max(1, chunk_frames or 2**62))
    if not tasks:
        return videos
    others = [f for f in formats if f != "slp"]
    written: list[tuple[str, str | Path]] = []
    for video, _, _ in planned:
        written.append(("--output_path", video.output))
        written += [(f"--output_format {f}", format_path(video.output, f)) for f in others]
    check_outputs_apart(written, inputs=[video.path for video, _, _ in planned],
                        models=cfg.model_paths)
    # Every output is checked before the cluster is touched, and locked until its video ends.
    with guarded_outputs(output_guards([(video.output, len(frames))
                                       for video, _, frames in planned])):
        done = _run_on_ray(ray, cfg, address, videos, planned, tasks, workers=workers,
                           chunk_frames=chunk_frames)
        for video in done:
            if video.status == "done" and others:
                export(read_slp(video.output, "output"), video.output, others, export_settings)
        return done


def _announce(cfg: InferenceConfig, gpus: int, n_workers: int) -> None:
    """The start line, for the workers' device: read from the models' configs (no input is
    probed again); on GPUs each worker resolves its runtime where it runs."""
    from sleapflow.graphs import GRAPHS, select_graph
    from sleapflow.graphs.build import select_runtime
    from sleapflow.graphs.common import resolve_models

    models = resolve_models(cfg.model_paths)
    graph = select_graph(list(models), cfg.graph)
    workers = f"x{n_workers} ray workers"
    if gpus:
        device, runtime = f"cuda ({workers})", f"{cfg.runtime} (per worker)"
    else:
        device, runtime = f"cpu ({workers})", select_runtime(cfg, GRAPHS[graph], models, "cpu").name
    announce(graph=graph, device=device, runtime=runtime)


def _run_on_ray(ray: Any, cfg: InferenceConfig, address: str | None, videos: list[VideoTask],
                planned: list[_Planned], tasks: list[_Task], *, workers: int | None,
                chunk_frames: int | None) -> list[VideoTask]:
    _connect(ray, address)
    resources = ray.cluster_resources()
    gpus = int(resources.get("GPU", 0)) if cfg.device != "cpu" else 0
    n_workers = workers or gpus or max(1, int(resources.get("CPU", 1)) // 2)
    if chunk_frames is None and len(tasks) < n_workers:
        # Too few videos to keep every worker busy: cut them into frame ranges.
        total = sum(t.n_frames for t in tasks)
        tasks = _chunk(planned, max(1, -(-total // (CHUNKS_PER_WORKER * n_workers))))
    cpus = max(1, int(resources.get("CPU", 1)) // n_workers) if not gpus else 1
    _announce(cfg, gpus, n_workers)
    if not gpus and cfg.torch_threads is None:
        # Each actor computes on its share of the cores, not on all of them.
        for task in tasks:
            task.cfg = msgspec.structs.replace(task.cfg, torch_threads=cpus)
    remote = ray.remote(num_cpus=cpus, num_gpus=1 if gpus else 0, max_restarts=-1,
                        max_task_retries=-1)(_Worker)
    actors = [remote.remote(cfg.model_paths, cfg.device)
              for _ in range(min(n_workers, len(tasks)))]
    board = ray.remote(num_cpus=0)(_ProgressBoard).remote()
    total = sum(t.n_frames for t in tasks)
    log.info("starting on ray", workers=len(actors), tasks=len(tasks), frames=total,
             videos=sum(v.status == "planned" for v in videos))
    from sleapflow.jobs.progress import ProgressBar

    started = time.perf_counter()
    failed: dict[int, str] = {}
    task_frames: dict[int, int] = {}
    task_seconds: dict[int, float] = {}
    pending = list(tasks)
    idle = list(actors)
    in_flight: dict[Any, tuple[_Task, Any]] = {}
    with ProgressBar(total, "Predicting (ray)...") as bar:
        while pending or in_flight:
            # Each idle actor takes the next task; an actor whose process dies is restarted
            # by Ray, which runs its task again (max_restarts / max_task_retries).
            while pending and idle:
                task, actor = pending.pop(0), idle.pop(0)
                in_flight[actor.run.remote(task, board)] = (task, actor)
            ready, _ = ray.wait(list(in_flight), num_returns=1, timeout=0.5)
            for ref in ready:
                task, actor = in_flight.pop(ref)
                idle.append(actor)
                try:
                    task_frames[task.key], task_seconds[task.key] = ray.get(ref)
                except Exception as exc:
                    cause = getattr(exc, "cause", None) or exc
                    failed.setdefault(task.video, str(cause).strip().splitlines()[-1])
            _update(bar, ray.get(board.total.remote()))
    _finish_videos(cfg, videos, tasks, task_frames, failed)
    for video in videos:
        if video.status == "done":
            video.seconds = sum(task_seconds.get(t.key, 0.0) for t in tasks
                                if t.video == video.index)
            # Read from the file: a chunked video's output is the driver's merge of its parts.
            video.summary = read_summary(video.output, video.seconds)
    log.info("ray job done", seconds=round(time.perf_counter() - started, 2), frames=total)
    for actor in actors:
        ray.kill(actor)
    ray.kill(board)
    return videos


def _update(bar: Any, done: int) -> None:
    delta = min(done, bar.total) - bar.done
    if delta > 0:
        bar.advance(delta)


def _finish_videos(cfg: InferenceConfig, videos: list[VideoTask], tasks: list[_Task],
                   task_frames: dict[int, int], failed: dict[int, str]) -> None:
    """Mark each video done or failed; merge (and track) the chunks of chunked videos."""
    from sleapflow.jobs.merge import merge_command

    for video in videos:
        if video.status != "planned":
            continue
        mine = [t for t in tasks if t.video == video.index]
        parts = _parts_dir(video.output)
        if video.index in failed:
            video.status, video.error = "failed", failed[video.index]
            shutil.rmtree(parts, ignore_errors=True)
            continue
        video.frames = sum(task_frames.get(t.key, 0) for t in mine)
        if len(mine) > 1:
            merge_command([t.output for t in mine], video.output, tracking=cfg.tracking,
                          tracker=cfg.tracker, max_instances=cfg.max_instances)
            shutil.rmtree(parts, ignore_errors=True)
        video.status = "done"

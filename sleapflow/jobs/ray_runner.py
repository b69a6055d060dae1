"""The Ray runner (extra ``sleapflow[ray]``): the same graphs on Ray actors that keep their models.

Ray does the distribution: one actor per worker holds the loaded models (a GPU, or a fraction
of one, each where the cluster has GPUs), and ``ray.wait`` hands each idle actor the next task,
longest first. A task whose actor process dies runs again on a new actor, at most
``max_retries`` times, then its video is recorded as failed and the run goes on. Tasks are whole
videos, or frame-range chunks of long ones; every output is written atomically under its final
name, so a retried task never leaves a half-written file and never writes anything the first
attempt did not. A chunked video is merged and tracked (track-only, as ``sleapflow merge``
does) in a CPU task as soon as its last chunk is done, and the inference actors are given back
as soon as no inference is left to hand out.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, NamedTuple

import msgspec

from sleapflow.errors import ConfigError, ModelLoadError
from sleapflow.inputs.expand import VideoTask, shard_slice, single_config
from sleapflow.jobs.guard import check_outputs_apart, guarded_outputs, output_guards
from sleapflow.jobs.progress import announce
from sleapflow.logs import get_logger
from sleapflow.options.config import InferenceConfig
from sleapflow.outputs.export import ExportSettings, check_formats, export_written, output_paths
from sleapflow.outputs.summary import read_summary

__all__ = ("CHUNKS_PER_WORKER", "DEFAULT_MAX_RETRIES", "Order", "WorkerShape", "run", "run_config",
           "schedule", "worker_shape")


log = get_logger(__name__)

#: Without ``chunk_frames``, a video longer than one worker's share of the run is cut into
#: chunks of about all frames / (this x workers): whole videos are tracked inside the graph,
#: while chunks wait for a merge and a track-only pass (a CPU task).
CHUNKS_PER_WORKER = 2

#: How many times a task whose worker died runs again before its video is recorded as failed.
DEFAULT_MAX_RETRIES = 2

#: The order tasks are handed out in: longest first, or as the inputs were given.
Order = Literal["longest", "arrival"]


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
        workers: int | None = None, chunk_frames: int | None = None,
        max_retries: int = DEFAULT_MAX_RETRIES, gpus_per_worker: float | None = None,
        order: Order = "longest") -> list[VideoTask]:
    """Run ``models`` over ``inputs`` (videos, folders, globs) on Ray and write each output.

    ``options`` are ``sleapflow track``'s options as keywords (``output_path``, ``tracking``,
    ``batch_size``, ...); the others are :func:`run_config`'s. Returns one record per input:
    status, frames, seconds, output/error.
    """
    from sleapflow.inputs.expand import expand_inputs
    from sleapflow.options.boundary import build_config

    paths, _ = expand_inputs([inputs] if isinstance(inputs, str) else list(inputs))
    cfg = build_config(**{**(options or {}), "inputs": tuple(paths),
                          "model_paths": (models,) if isinstance(models, str) else tuple(models)})
    return run_config(cfg, address=address, workers=workers, chunk_frames=chunk_frames,
                      max_retries=max_retries, gpus_per_worker=gpus_per_worker, order=order)


def _plan(cfg: InferenceConfig) -> tuple[list[VideoTask], list[_Planned]]:
    """Every input planned once, by the local many-input planner (missing, unreadable and
    not-a-video inputs recorded as failed, skipped ones as skipped; two inputs writing one
    output are refused)."""
    from sleapflow.inputs.expand import plan_many

    paths = list(cfg.inputs) or [cfg.data_path or ""]
    if cfg.shard is not None:
        paths = paths[shard_slice(len(paths), cfg.shard)]
    # The shard slice is taken here, so the planner sees exactly this run's inputs.
    plan = plan_many(msgspec.structs.replace(cfg, inputs=tuple(paths), shard=None),
                     many=len(paths) > 1)
    planned = [_Planned(video, single_config(cfg, video),
                        [it.frame_idx for it in video.plan.items])
               for video in plan.tasks if video.status == "planned" and video.plan is not None]
    return plan.tasks, planned


def _chunk(planned: list[_Planned], chunk_frames: int, *,
           longer_than: int | None = None) -> list[_Task]:
    """The planned videos as tasks: each video longer than ``longer_than`` frames (default
    ``chunk_frames``) cut into frame ranges of at most ``chunk_frames`` frames, the others
    whole; in input order."""
    limit = chunk_frames if longer_than is None else longer_than
    tasks: list[_Task] = []
    for video, single, frames in planned:
        n_chunks = max(1, -(-len(frames) // chunk_frames)) if len(frames) > limit else 1
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


def schedule(planned: list[_Planned], *, n_workers: int, chunk_frames: int | None = None,
             order: Order = "longest") -> list[_Task]:
    """The run's tasks in the order they are handed out.

    With ``chunk_frames``, every video longer than that is cut into chunks of that many frames.
    Without it, a video longer than one worker's fair share of the run (all frames / workers)
    is cut into chunks of about all frames / (``CHUNKS_PER_WORKER`` x workers): such a video
    alone would otherwise be the run's tail. ``order="longest"`` hands out the longest task
    first (ties in input order), so the last tasks to start are the short ones;
    ``"arrival"`` keeps input order.
    """
    if chunk_frames is not None:
        tasks = _chunk(planned, max(1, chunk_frames))
    else:
        total = sum(len(frames) for _, _, frames in planned)
        share = -(-total // n_workers)
        tasks = _chunk(planned, max(1, -(-total // (CHUNKS_PER_WORKER * n_workers))),
                       longer_than=share)
    if order == "longest":
        tasks.sort(key=lambda t: -t.n_frames)  # stable: ties keep input order
    return tasks


def _parts_dir(output: str) -> Path:
    out = Path(output)
    return out.parent / f".{out.name}.parts"


def run_config(cfg: InferenceConfig, *, address: str | None = None, workers: int | None = None,
               chunk_frames: int | None = None, formats: Sequence[str] = ("slp",),
               export_settings: ExportSettings | None = None,
               max_retries: int = DEFAULT_MAX_RETRIES, gpus_per_worker: float | None = None,
               order: Order = "longest") -> list[VideoTask]:
    """:func:`run` from a built config (what ``sleapflow track --ray`` calls). ``formats``
    other than ``slp`` are written by the driver beside each finished video's ``.slp``.

    A task whose worker process dies (a crash, the OOM killer, a lost node) runs again on a
    new worker, at most ``max_retries`` times; after that its video is recorded as failed
    with the last error and the run goes on. An error the job itself raises (an unreadable
    video) fails its video at once, as in a local run. ``gpus_per_worker`` below 1 puts
    several workers on one GPU (small models on big cards). ``order`` and the chunking rule are
    :func:`schedule`'s (``order="arrival"`` is there to measure what longest-first gains).
    """
    formats = check_formats(formats)
    export_settings = export_settings or ExportSettings()
    if "slp" not in formats:
        raise ConfigError("--ray writes each video's .slp as it ends: keep slp among "
                          "--output_format (the other formats go beside it)")
    if max_retries < 0:
        raise ConfigError(f"--max_retries must be 0 or more (got {max_retries})")
    if gpus_per_worker is not None and not 0 < gpus_per_worker <= 1:
        raise ConfigError("--ray_gpus_per_worker must be more than 0 and at most 1 "
                          f"(got {gpus_per_worker})")
    ray = _ray()
    if not cfg.model_paths:
        raise ConfigError("--ray runs inference: pass --model_paths/-m")
    if cfg.shard is not None and len(cfg.inputs) <= 1:
        raise ConfigError("--ray cuts a single video into frame ranges itself; drop --shard "
                          "(or use --ray_chunk_frames)")
    videos, planned = _plan(cfg)
    if not planned:
        return videos
    check_outputs_apart([p for video, _, _ in planned for p in output_paths(video.output, formats)],
                        inputs=[video.path for video, _, _ in planned], models=cfg.model_paths)
    # Every output is checked before the cluster is touched, and locked until its video ends.
    with guarded_outputs(output_guards([(video.output, len(frames))
                                       for video, _, frames in planned])):
        _connect(ray, address)
        shape = worker_shape(ray.cluster_resources(), device=cfg.device, workers=workers,
                             gpus_per_worker=gpus_per_worker)
        tasks = schedule(planned, n_workers=shape.workers, chunk_frames=chunk_frames, order=order)
        done = _run_on_ray(ray, cfg, videos, tasks, shape, max_retries=max_retries)
        for video in done:
            if video.status == "done":
                export_written(video.output, formats, export_settings)
        return done


class WorkerShape(NamedTuple):
    """How many inference actors a run starts and what each asks Ray for."""

    workers: int
    num_cpus: float
    num_gpus: float


def worker_shape(resources: dict[str, float], *, device: str = "auto", workers: int | None = None,
                 gpus_per_worker: float | None = None) -> WorkerShape:
    """The actors for a cluster with ``resources`` (``ray.cluster_resources()``).

    On GPUs each actor asks for ``gpus_per_worker`` of a GPU (default 1: a card each) and one
    CPU, and there are as many as fit (GPUs / ``gpus_per_worker``) unless ``workers`` says.
    Without GPUs (or with ``device="cpu"``) the CPUs are shared out, two per actor by default.
    """
    gpus = float(resources.get("GPU", 0)) if device != "cpu" else 0.0
    cpus = float(resources.get("CPU", 1))
    if gpus_per_worker is not None and gpus == 0:
        raise ConfigError(f"--ray_gpus_per_worker {gpus_per_worker}: the Ray cluster has no GPU "
                          "for this run (or --device cpu was given); leave the option out")
    if gpus:
        share = gpus_per_worker or 1.0
        # A little slack: 0.1 x 10 must give ten workers despite the float sum.
        n = workers or max(1, int(gpus / share + 1e-6))
        return WorkerShape(n, 1.0, share)
    n = workers or max(1, int(cpus) // 2)
    # Each actor computes on its share of the cores, not on all of them.
    return WorkerShape(n, float(max(1, int(cpus) // n)), 0.0)


def _announce(cfg: InferenceConfig, shape: WorkerShape) -> None:
    """The start line, for the workers' device: read from the models' configs (no input is
    probed again); on GPUs each worker resolves its runtime where it runs."""
    from sleapflow.graphs import GRAPHS, select_graph
    from sleapflow.graphs.build import select_runtime
    from sleapflow.graphs.common import resolve_models

    models = resolve_models(cfg.model_paths)
    graph = select_graph(list(models), cfg.graph)
    workers = f"x{shape.workers} ray workers"
    if shape.num_gpus:
        per = "" if shape.num_gpus == 1 else f", {shape.num_gpus:g} GPU each"
        device, runtime = f"cuda ({workers}{per})", f"{cfg.runtime} (per worker)"
    else:
        device, runtime = f"cpu ({workers})", select_runtime(cfg, GRAPHS[graph], models, "cpu").name
    announce(graph=graph, device=device, runtime=runtime)


def _merge_video(parts: list[str], output: str, cfg: InferenceConfig) -> dict[str, Any]:
    """A Ray task: merge one video's chunk outputs into its output (tracked, when the run
    tracks), drop the chunks, and say where this ran."""
    import ray

    from sleapflow.jobs.merge import merge_command

    merge_command(parts, output, tracking=cfg.tracking, tracker=cfg.tracker,
                  max_instances=cfg.max_instances)
    shutil.rmtree(Path(parts[0]).parent, ignore_errors=True)
    context = ray.get_runtime_context()
    return {"pid": os.getpid(), "node": context.get_node_id(), "worker": context.get_worker_id()}


def _lost_worker(ray: Any, exc: BaseException) -> bool:
    """Whether ``exc`` says the process running the task went away (a crash, a kill, a lost
    node), as opposed to an error the task raised itself."""
    errors = ray.exceptions
    return isinstance(exc, errors.RayActorError | errors.WorkerCrashedError |
                      errors.NodeDiedError | errors.OutOfMemoryError)


def _last_line(exc: BaseException) -> str:
    cause = getattr(exc, "cause", None) or exc
    lines = [line.strip() for line in str(cause).strip().splitlines() if line.strip()]
    return lines[-1] if lines else type(cause).__name__


def _run_on_ray(ray: Any, cfg: InferenceConfig, videos: list[VideoTask], tasks: list[_Task],
                shape: WorkerShape, *, max_retries: int) -> list[VideoTask]:
    _announce(cfg, shape)
    if not shape.num_gpus and cfg.torch_threads is None:
        for task in tasks:
            task.cfg = msgspec.structs.replace(task.cfg, torch_threads=int(shape.num_cpus))
    # Ray restarts nothing and retries nothing itself: a lost task is counted and handed to a
    # new worker here, so a video that kills its worker every time ends after max_retries.
    remote = ray.remote(num_cpus=shape.num_cpus, num_gpus=shape.num_gpus, max_restarts=0,
                        max_task_retries=0)(_Worker)
    merge = ray.remote(num_cpus=1, max_retries=max_retries)(_merge_video)

    def new_worker() -> Any:
        return remote.remote(cfg.model_paths, cfg.device)

    idle = [new_worker() for _ in range(min(shape.workers, len(tasks)))]
    board = ray.remote(num_cpus=0)(_ProgressBoard).remote()
    total = sum(t.n_frames for t in tasks)
    log.info("starting on ray", workers=len(idle), tasks=len(tasks), frames=total,
             videos=sum(v.status == "planned" for v in videos))
    from sleapflow.jobs.progress import ProgressBar

    started = time.perf_counter()
    by_index = {v.index: v for v in videos}
    left = {v.index: {t.key for t in tasks if t.video == v.index} for v in videos}
    mine = {v.index: sorted((t for t in tasks if t.video == v.index), key=lambda t: t.key)
            for v in videos}
    tries: dict[int, int] = {}
    task_frames: dict[int, int] = {}
    task_seconds: dict[int, float] = {}
    pending = list(tasks)
    in_flight: dict[Any, tuple[_Task, Any]] = {}
    merging: dict[Any, VideoTask] = {}

    def fail(video: VideoTask, error: str) -> None:
        if video.status == "failed":
            return
        video.status, video.error = "failed", error
        log.warning("video failed; the others go on", input=video.path, error=error)
        pending[:] = [t for t in pending if t.video != video.index]

    def finished(video: VideoTask) -> None:
        """All of ``video``'s tasks are done: a whole video is written; chunks are merged."""
        video.frames = sum(task_frames.get(t.key, 0) for t in mine[video.index])
        video.seconds = sum(task_seconds.get(t.key, 0.0) for t in mine[video.index])
        if len(mine[video.index]) == 1:
            video.status = "done"
            return
        # A CPU task, started now: the merge and tracking of this video overlap the inference
        # of the others instead of waiting for the end of the run on the driver.
        ref = merge.remote([t.output for t in mine[video.index]], video.output, cfg)
        merging[ref] = video

    try:
        with ProgressBar(total, "Predicting (ray)...") as bar:
            while pending or in_flight or merging:
                while pending and idle:
                    task, actor = pending.pop(0), idle.pop(0)
                    tries[task.key] = tries.get(task.key, 0) + 1
                    in_flight[actor.run.remote(task, board)] = (task, actor)
                if not pending and idle:
                    # No inference left to hand out: give the GPUs (and CPUs) back now, for
                    # the merges and for other users of the cluster.
                    for actor in idle:
                        ray.kill(actor)
                    log.debug("ray workers released", workers=len(idle))
                    idle.clear()
                ready, _ = ray.wait([*in_flight, *merging], num_returns=1, timeout=0.5)
                for ref in ready:
                    if ref in merging:
                        video = merging.pop(ref)
                        try:
                            where = ray.get(ref)
                        except Exception as exc:
                            fail(video, _last_line(exc))
                            continue
                        video.status = "done"
                        log.info("chunks merged in a ray task", input=video.path,
                                 chunks=len(mine[video.index]), **where)
                        continue
                    task, actor = in_flight.pop(ref)
                    video = by_index[task.video]
                    try:
                        task_frames[task.key], task_seconds[task.key] = ray.get(ref)
                    except Exception as exc:
                        if not _lost_worker(ray, exc):
                            idle.append(actor)
                            fail(video, _last_line(exc))
                            continue
                        if getattr(exc, "actor_init_failed", False):
                            raise ModelLoadError("a Ray worker could not load the models: "
                                                 f"{_last_line(exc)}") from None
                        ray.kill(actor)
                        if video.status != "failed":
                            if tries[task.key] > max_retries:
                                fail(video, f"its worker died on each of {tries[task.key]} "
                                            f"tries (--max_retries {max_retries}); last: "
                                            f"{_last_line(exc)}")
                            else:
                                log.warning("ray worker lost; its task runs again",
                                            input=video.path, frames=task.n_frames,
                                            attempt=tries[task.key] + 1, error=_last_line(exc))
                                pending.insert(0, task)
                        if pending:
                            idle.append(new_worker())
                        continue
                    idle.append(actor)
                    left[task.video].discard(task.key)
                    if not left[task.video] and video.status == "planned":
                        finished(video)
                _update(bar, ray.get(board.total.remote()))
    finally:
        for actor in [*idle, *(a for _, a in in_flight.values())]:
            ray.kill(actor)
        ray.kill(board)
    for video in videos:
        if video.status == "failed":
            shutil.rmtree(_parts_dir(video.output), ignore_errors=True)
        elif video.status == "done":
            # Read from the file: a chunked video's output is the merge of its parts.
            video.summary = read_summary(video.output, video.seconds)
    log.info("ray job done", seconds=round(time.perf_counter() - started, 2), frames=total)
    return videos


def _update(bar: Any, done: int) -> None:
    delta = min(done, bar.total) - bar.done
    if delta > 0:
        bar.advance(delta)

"""One job, one run path: :func:`plan_job` turns options into a :class:`Job`, :func:`run_job` runs it.

Every front end is this job with a different source or sink: ``track`` with one input or many,
a Ray worker's share, ``merge --tracking``, ``run_inference`` (the ``.slp`` or the raw arrays),
the benchmark, and the push-fed session of ``open_graph``/``serve`` (which opens
:func:`job_spec`'s graph instead of running it to the end). So the output checks, room and
lock, the journal and ``--resume``, the start line, provenance, exports, ``--render`` and the
closing log line happen here, once, for all of them.
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import msgspec
import sleap_io as sio

from sleapflow.errors import ConfigError
from sleapflow.graphs.build import PreparedRun, RawOptions, build_graph, prepare
from sleapflow.inputs import InputPlan
from sleapflow.inputs.expand import ManyPlan, VideoTask
from sleapflow.inputs.live import live_kind
from sleapflow.jobs.guard import OutputGuard, check_outputs_apart, guarded_outputs, output_guards
from sleapflow.jobs.progress import announce as announce_start
from sleapflow.logs import get_logger
from sleapflow.options.config import InferenceConfig
from sleapflow.outputs.export import (
    ExportSettings,
    check_formats,
    export,
    export_written,
    format_path,
    output_paths,
    slp_output,
)
from sleapflow.outputs.naming import default_output_path
from sleapflow.outputs.remote import RemoteOutput, is_url, stage_remote_output, upload_outputs
from sleapflow.outputs.summary import RunSummary, total
from sleapflow.runtime import GraphRunner, GraphSpec, GraphStats

__all__ = ("LIVE_ROOM_FRAMES", "Job", "JobResult", "job_spec", "plan_job", "run_job",
           "run_job_with_progress")


log = get_logger("sleapflow")

#: Frames a live source's output is checked for room for (it has no frame count).
LIVE_ROOM_FRAMES = 30 * 3600


@dataclass
class Job:
    """A planned run: its models, input and graph (no weights loaded yet), where its results go,
    and what happens around it. Made by :func:`plan_job`; run by :func:`run_job`."""

    run: PreparedRun
    #: The ``.slp`` to write (other formats and the render go beside it); None: nothing is
    #: written and the labels are returned. With several inputs each has its own output.
    output: str | None = None
    #: Output formats: ``slp`` and any of ``analysis_h5``, ``csv``, ``nwb``.
    formats: tuple[str, ...] = ("slp",)
    #: How those formats are written (``--csv_format``, NWB metadata).
    export: ExportSettings = field(default_factory=ExportSettings)
    render: bool = False
    #: Journal the ``.slp`` as it is written, so a crash, a full disk or Ctrl-C can be resumed.
    journal: bool = False
    resume: bool = False
    #: The graph's raw-array variant: the job returns ``run_inference(make_labels=False)``'s dicts.
    raw: RawOptions | None = None
    #: The outputs' checks (made when planned, before any weights load) and locks (held while
    #: the job runs); empty when the caller guards them (a Ray worker: its driver does).
    guards: list[OutputGuard] = field(default_factory=list)
    #: An output named by a URL: :attr:`output` is then its local staging file, uploaded when
    #: the job has succeeded.
    remote: RemoteOutput | None = None

    @property
    def shown_output(self) -> str | None:
        """The output as the user named it (the URL of a remote one)."""
        return self.remote.url if self.remote is not None else self.output

    @property
    def plan(self) -> InputPlan:
        return self.run.plan

    @property
    def publishes_stdout(self) -> bool:
        """``--publish -``: stdout carries the poses, so reports go to stderr."""
        return any(t in ("-", "ndjson:-") for t in self.run.cfg.publish)

    @property
    def frames(self) -> int:
        return len(self.run.plan.items)


@dataclass
class JobResult:
    """What a job made."""

    #: The output's labels; None when the ``.slp`` was written from the journal without
    #: building them (flat memory), with several inputs, and for a raw job.
    labels: sio.Labels | None
    stats: GraphStats
    #: Every file written, in the order written.
    outputs: list[Path] = field(default_factory=list)
    #: With several inputs: each input's record (done, skipped or failed).
    tasks: list[VideoTask] = field(default_factory=list)
    #: A raw job's per-batch dicts of arrays.
    raw: list[dict[str, Any]] | None = None
    #: What the outputs hold (every output added up with several inputs): frames, instances,
    #: tracks, empty and failed frames, seconds.
    summary: RunSummary | None = None
    #: The URLs the outputs were uploaded to (a remote output; :attr:`outputs` were staged).
    uploaded: list[str] = field(default_factory=list)

    @property
    def failed(self) -> list[VideoTask]:
        return [t for t in self.tasks if t.status == "failed"]


def plan_job(cfg: InferenceConfig, *, output: str | None = None, name_output: bool = False,
             formats: Sequence[str] = ("slp",), export: ExportSettings | None = None,
             render: bool = False, journal: bool = False, resume: bool = False,
             raw: RawOptions | None = None, guard: bool = True,
             announce: bool = True, plan: InputPlan | None = None,
             input_labels: sio.Labels | None = None, input_video: sio.Video | None = None,
             model_loader: Callable[..., Any] | None = None) -> Job:
    """Everything a job needs decided before any weights load, and checked so it fails fast.

    Resolves device, models, graph and input (:func:`sleapflow.graphs.build.prepare`; ``plan``,
    ``input_labels``, ``input_video`` and ``model_loader`` as it takes them), logs the start
    line (``announce``); without ``output``, ``name_output`` names it as ``sleap-nn track``
    does (``<input without its last suffix>.predictions.slp``). Checks the output formats and
    every output (a device node, an unwritable folder, no room, zero selected frames, a
    leftover journal without ``resume``).
    """
    formats = check_formats(formats)
    if raw is not None and output is not None:
        raise ConfigError("a raw-array job writes no file; leave out the output")
    if resume and live_kind(cfg.data_path, cfg.live):
        raise ConfigError("--resume continues a file's run where it stopped; a live source "
                          "cannot be replayed: start a new run with another -o")
    run = prepare(cfg, plan=plan, input_labels=input_labels, input_video=input_video,
                  model_loader=model_loader)
    if announce:
        announce_start(graph=run.graph_name, device=run.ctx.device,
                       runtime=run.ctx.runtime.name if run.ctx.runtime is not None else None)
    many = isinstance(run.plan, ManyPlan)
    if output is None and name_output and not many and raw is None:
        output = default_output_path(cfg, run.plan)
    if output is not None and "slp" in formats:
        output = slp_output(output)
    if isinstance(run.plan, ManyPlan) and any(is_url(t.output) for t in run.plan.tasks
                                               if t.status == "planned"):
        raise ConfigError("outputs at URLs take one input per run for now; run each video on "
                          "its own with -o s3://..., or write locally and copy")
    remote = None
    if output is not None and is_url(output):
        if render:
            raise ConfigError("--render reads the input video through sleap-io, which cannot "
                              "write beside a URL output; render a local copy instead")
        remote = stage_remote_output(output)
        output = remote.local.as_posix()
    if many and "slp" not in formats:
        raise ConfigError("with several inputs each video's .slp is written as it ends: keep "
                          "slp among --output_format (the other formats go beside it)")
    if render and (many or output is None):
        raise ConfigError("--render draws one run's output beside it: give one input and an "
                          "output, or draw each output with sleapflow render")
    # The journal keeps no appearance vectors, so a run that writes them, or tracks by them,
    # could not be continued the same way: such a run keeps its labels in memory instead.
    vectors = run.cfg.save_embeddings == "slp" or (
        run.ctx.tracker is not None and run.ctx.tracker.uses_appearance)
    if vectors and resume:
        raise ConfigError("--resume cannot continue a run that writes (--save_embeddings slp) or "
                          "tracks by (--appearance_weight, --tracker botsort/deepsort/strongsort/"
                          "deepocsort) appearance vectors: its journal does not keep them; run it "
                          "again without --resume")
    # Several inputs: one journal per video, beside its output.
    journal = journal and run.graph_name != "track_only" and "slp" in formats \
        and (output is not None or many) and raw is None and not vectors
    job = Job(run=run, output=output, formats=formats, export=export or ExportSettings(),
              render=render, journal=journal, resume=resume, raw=raw, remote=remote)
    if guard:
        check_outputs_apart(_written_paths(job), inputs=_input_paths(job.run),
                            models=[*cfg.model_paths, *filter(None, (cfg.backbone_ckpt_path,
                                                                      cfg.head_ckpt_path))])
        job.guards = _guards(job)
    if journal:
        from sleapflow.jobs.resume import check_journal, check_video_journals

        if many:
            check_video_journals(run, resume=resume)
        else:
            assert output is not None
            check_journal(output, resume=resume)
    return job


def _written_paths(job: Job) -> list[tuple[str, str | Path]]:
    """Every file the job will write, with the option that names it (for the message)."""
    plan = job.run.plan
    outputs = ([t.output for t in plan.tasks if t.status == "planned"]
               if isinstance(plan, ManyPlan) else [job.output] if job.output else [])
    paths: list[tuple[str, str | Path]] = []
    for out in outputs:
        paths += output_paths(out, job.formats)
        if job.render:
            paths.append(("--render", format_path(out, "slp").with_suffix(".mp4")))
    return paths


def _input_paths(run: PreparedRun) -> list[str]:
    """The files a job reads frames from: its input, and the videos the input refers to."""
    plan = run.plan
    paths = [t.path for t in plan.tasks] if isinstance(plan, ManyPlan) else []
    paths += [p for p in (plan.source_path,) if p]
    paths += [v.filename for v in plan.videos if isinstance(getattr(v, "filename", None), str)]
    return paths


def _guards(job: Job) -> list[OutputGuard]:
    plan = job.run.plan
    if isinstance(plan, ManyPlan):
        return output_guards([(t.output, len(t.plan.items) if t.plan is not None else 0)
                              for t in plan.tasks if t.status == "planned"])
    if job.output is None:
        return []
    # A live source has no frame count: its output is checked for room as for an hour of
    # frames at 30 frames/s.
    return [OutputGuard(job.output, n_frames=LIVE_ROOM_FRAMES if job.run.is_live else job.frames)]


def job_spec(job: Job, *, source: Any = None, sink: Any = None,
             on_frame: Callable[[int], None] | None = None,
             chained: bool | None = None) -> GraphSpec:
    """The job's complete graph; ``source``/``sink`` replace the input's source and the
    ``.slp`` writer (a session's pushed frames and its results); ``chained``: see
    :func:`~sleapflow.graphs.build.build_graph`."""
    return build_graph(job.run, source=source, sink=sink, raw=job.raw,
                       output_path=job.output if "slp" in job.formats else None,
                       on_frame=on_frame, chained=chained)


async def run_job(job: Job, *, on_frame: Callable[[int], None] | None = None,
                  on_runner: Callable[[GraphRunner], None] | None = None) -> JobResult:
    """Run ``job`` to its end: its outputs locked, journaled when asked, then exported and
    rendered. ``on_frame`` is told the frames written as they pass (a progress display);
    ``on_runner`` gets the runner before it starts (the benchmark's warm-up snapshot)."""
    log.info("starting", graph=job.run.graph_name, device=job.run.ctx.device,
             frames=job.frames, output=job.output)
    written_frames = 0

    def count(n: int) -> None:
        nonlocal written_frames
        written_frames += n
        if on_frame is not None:
            on_frame(n)

    sinks: list[Any] = []

    async def run_spec(spec: GraphSpec) -> GraphStats:
        # The one place a job's graph runs (its many-input and journal steps are handed this).
        sinks.append(spec.stages[-1])
        runner = GraphRunner(spec)
        if on_runner is not None:
            on_runner(runner)
        return await runner.run()

    async with contextlib.AsyncExitStack() as stack:
        await _hold(stack, job)
        if job.raw is not None:
            spec = job_spec(job)
            stats = await run_spec(spec)
            return JobResult(labels=None, stats=stats, raw=spec.stages[-1].items)
        if isinstance(job.plan, ManyPlan):
            from sleapflow.jobs.many import run_many

            tasks, stats = await run_many(job.run, on_frame=count, run_spec=run_spec,
                                          journal=job.journal, resume=job.resume)
            written = [Path(t.output) for t in tasks if t.status == "done"]
            written += await _export_each(job, [t for t in tasks if t.status == "done"])
            result = JobResult(labels=None, stats=stats, outputs=written, tasks=tasks)
        elif job.journal:
            from sleapflow.jobs.resume import run_journaled

            assert job.output is not None
            set_journal = job.guards[0].set_journal if job.guards else None
            labels, stats = await run_journaled(
                job.run, output_path=job.output, resume=job.resume, on_frame=count,
                on_journal=set_journal, keep_labels=bool(_others(job) or job.render),
                run_spec=run_spec)
            result = JobResult(labels=labels, stats=stats, outputs=[Path(job.output)])
        else:
            spec = job_spec(job, on_frame=count)
            stats = await run_spec(spec)
            labels = spec.stages[-1].result
            written = [Path(job.output)] if job.output and "slp" in job.formats else []
            result = JobResult(labels=labels, stats=stats, outputs=written)
        if not isinstance(job.plan, ManyPlan) and job.output is not None:
            result.outputs += await anyio.to_thread.run_sync(_export, job, result.labels)
        if job.remote is not None:
            # Only now, every file whole: an existing object is replaced only by a finished run.
            result.uploaded = await anyio.to_thread.run_sync(upload_outputs, result.outputs,
                                                             job.remote)
    wall = result.stats.wall_s
    result.summary = _summary(sinks[-1] if sinks else None, result, written_frames, wall)
    if job.run.latency is not None:
        latency = job.run.latency.figures()
        result.stats = msgspec.structs.replace(result.stats, latency=latency)
        result.summary = result.summary.with_latency(latency)
    log.info("done", **result.summary.fields(),
             fps=round(written_frames / wall, 1) if wall > 0 else None,
             output=", ".join(result.uploaded or map(str, result.outputs)) or None)
    return result


def _summary(sink: Any, result: JobResult, frames: int, seconds: float) -> RunSummary:
    """The run's summary from its writer's counts (a raw job has no writer: frames only)."""
    if result.tasks:
        return total((t.summary for t in result.tasks if t.summary is not None), seconds)
    summarise = getattr(sink, "summary", None)  # the .slp writer counts what it wrote
    if callable(summarise):
        summary: RunSummary = summarise(seconds)
        return summary
    return RunSummary(frames=frames, seconds=seconds)


async def _hold(stack: contextlib.AsyncExitStack, job: Job) -> None:
    """Take the job's output locks (released when ``stack`` closes), off the event loop: a
    many-input job holds one per video."""
    if not job.guards:
        return
    held: contextlib.AbstractContextManager[Any] = (
        guarded_outputs(job.guards) if len(job.guards) > 1 or isinstance(job.plan, ManyPlan)
        else job.guards[0])
    await anyio.to_thread.run_sync(held.__enter__)

    async def release() -> None:
        # Shielded: a cancelled or interrupted job still lets its locks go.
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(held.__exit__, None, None, None)

    stack.push_async_callback(release)


def _others(job: Job) -> list[str]:
    return [f for f in job.formats if f != "slp"]


def _export(job: Job, labels: sio.Labels | None) -> list[Path]:
    """The other formats and the render, beside the ``.slp`` path."""
    assert job.output is not None
    written: list[Path] = []
    if _others(job) or job.render:
        assert labels is not None, "the labels are kept when other outputs need them"
    if _others(job):
        written += export(labels, job.output, _others(job), job.export)
    if job.render:
        from sleapflow.outputs.render import render as render_labels

        written.append(render_labels(labels, format_path(job.output, "slp").with_suffix(".mp4")))
    return written


async def _export_each(job: Job, done: list[VideoTask]) -> list[Path]:
    """Several inputs: each written ``.slp`` read back, one at a time, for the other formats."""
    written: list[Path] = []
    for task in done:
        written += await anyio.to_thread.run_sync(export_written, task.output, job.formats,
                                                  job.export)
    return written



def run_job_with_progress(job: Job, *, gui: bool = False,
                          preempt: Sequence[signal.Signals] = ()) -> JobResult:
    """:func:`run_job` from synchronous code with a progress display: a bar on a terminal (a
    log line per 10% elsewhere), or with ``gui`` sleap-nn's JSON lines on stdout. On one of
    ``preempt`` the job stops as on Ctrl-C and :class:`~sleapflow.errors.Preempted` is raised
    (:func:`sleapflow.jobs.preempt.run_preemptible`)."""
    from functools import partial

    from sleapflow.jobs.preempt import run_preemptible
    from sleapflow.jobs.progress import GuiProgress, NoProgress, ProgressBar

    label = "Tracking..." if job.run.graph_name == "track_only" else "Predicting..."
    display: Any = (GuiProgress if gui else ProgressBar)(job.frames, label)
    if job.publishes_stdout:
        display = NoProgress()  # stdout carries the published poses, and nothing else
    with display:
        return anyio.run(run_preemptible, partial(run_job, job, on_frame=display.advance),
                         preempt)

"""A many-input job's run step: one graph over every video, a failed video skipped, a summary table."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import anyio
import msgspec

from sleapflow.errors import StageError
from sleapflow.graphs.build import PreparedRun, build_graph
from sleapflow.inputs.expand import ManyPlan, VideoTask
from sleapflow.logs import get_logger
from sleapflow.outputs.summary import total
from sleapflow.runtime import GraphSpec, GraphStats, RunSpec

__all__ = ("run_many", "summary_table")


log = get_logger(__name__)


def _failed_video(exc: StageError, source: str) -> int | None:
    """The video whose reading failed: only the source's failures are a video's own (the
    decoder names the item it failed on); any other stage's failure stops the run."""
    return exc.video_id if exc.stage == source else None


async def run_many(run: PreparedRun, *, on_frame: Callable[[int], None] | None = None,
                   run_spec: RunSpec, journal: bool = False,
                   resume: bool = False) -> tuple[list[VideoTask], GraphStats]:
    """Run every input of a many-input job through one graph; return each input's task record
    and the last graph's statistics.

    A video that fails while it is read is marked failed; the videos not yet written then run
    on in a new graph (the models load again once), and those already written are kept.
    With ``journal`` each video is journaled beside its output (a stop keeps the journals of
    the videos under way); with ``resume`` the videos that left a journal are continued first,
    each alone (:func:`sleapflow.jobs.resume.resume_videos`), then the rest run in one graph.
    """
    from sleapflow.graphs.build import make_writer
    from sleapflow.jobs.resume import resume_videos, video_journals

    plan = run.plan
    assert isinstance(plan, ManyPlan)
    tasks = plan.tasks
    stats = GraphStats(graph=run.graph_name, stages=(), wall_s=0.0)  # every input skipped
    walls: list[float] = []

    async def timed(spec: GraphSpec) -> GraphStats:
        started = time.perf_counter()
        try:
            return await run_spec(spec)
        finally:
            walls.append(time.perf_counter() - started)

    if journal and resume:
        stats = await resume_videos(run, on_frame=on_frame, run_spec=timed) or stats
        run = _remaining(run, plan)  # without the videos just continued
    while any(t.status == "planned" for t in tasks):
        # Each video's header names its input and models (file stats): off the event loop.
        journals = await anyio.to_thread.run_sync(video_journals, run) if journal else None
        if journals is not None:
            run.decode_failures.on_add = journals.add_failure
        try:
            spec = build_graph(run, sink=make_writer(run, output_path=None, on_frame=on_frame,
                                                     journal=journals),
                               tracker_inputs=journals.add_tracker_input if journals else None)
            stats = await timed(spec)
            break
        except StageError as exc:
            video_id = _failed_video(exc, spec.stages[0].name)
            bad = next((t for t in tasks if t.video_id == video_id and t.status == "planned"),
                       None)
            if bad is None:
                raise
            bad.status, bad.error = "failed", str(exc.__cause__ or exc)
            log.warning("video failed; the others go on", input=bad.path, error=bad.error)
            if journals is not None and video_id is not None:
                journals.remove(video_id)  # its input is at fault: resuming would fail again
            run = _remaining(run, plan)
        finally:
            # Kept for --resume after a stop (Ctrl-C, a preemption signal, a crash); a video
            # of the failed graph that runs again in the next one starts its journal afresh.
            if journals is not None:
                journals.close()
                run.decode_failures.on_add = None
    # The last graph's statistics, over the time every graph of the job took (a video that
    # failed or was resumed ran in a graph of its own).
    return tasks, msgspec.structs.replace(stats, wall_s=sum(walls))


def _remaining(run: PreparedRun, plan: ManyPlan) -> PreparedRun:
    """``run`` over the inputs still to do, as a new plan with the same task records."""
    import dataclasses

    left = ManyPlan(kind="video", source_path=None, videos=[], items=[], tasks=plan.tasks,
                    frame_selection_method=plan.frame_selection_method)
    for task in plan.tasks:
        if task.status != "planned" or task.plan is None:
            task.video_id = None  # done, failed or skipped: not in the new plan
            continue
        task.frames, task.seconds = 0, 0.0
        left.join(task)
    ctx = dataclasses.replace(run.ctx, plan=left)
    return dataclasses.replace(run, plan=left, ctx=ctx)


def summary_table(tasks: list[VideoTask], seconds: float | None = None) -> str:
    """Per input: status, what its output holds (frames, empty, failed, instances, tracks),
    seconds, and the output path or the error; then the totals."""
    head = ("status", "frames", "empty", "failed", "instances", "tracks", "seconds", "input")
    rows: list[tuple[str, ...]] = [(*head, "output / error")]
    for t in tasks:
        where = t.output if t.status in ("done", "skipped") else (t.error or "")
        s = t.summary if t.status == "done" else None
        counts = ([str(s.frames), str(s.empty_frames), str(s.failed_frames), str(s.instances),
                   str(s.tracks)] if s is not None
                  else [str(t.frames) if t.status == "done" else "-", "-", "-", "-", "-"])
        seconds_cell = f"{t.seconds:.2f}" if t.status == "done" else "-"
        rows.append((t.status, *counts, seconds_cell, Path(t.path).name, where))
    n = len(head)
    widths = [max(len(r[i]) for r in rows) for i in range(n)]
    lines = ["  ".join(r[i].ljust(widths[i]) for i in range(n)) + "  " + r[n] for r in rows]
    done = sum(t.status == "done" for t in tasks)
    failed = sum(t.status == "failed" for t in tasks)
    skipped = sum(t.status == "skipped" for t in tasks)
    lines.append(f"{done} written, {skipped} skipped, {failed} failed, of {len(tasks)} input(s)")
    written = [t.summary for t in tasks if t.status == "done" and t.summary is not None]
    if written:
        spent = seconds if seconds is not None else sum(t.seconds for t in tasks
                                                        if t.status == "done")
        lines.append("written: " + total(written, spent).line())
    return "\n".join(lines)



"""A journaled run and ``--resume`` (the job's ``.slp`` written as :func:`sleapflow.jobs.job.run_job`
writes it, every frame journaled first); when resuming, the journal's frames and the tracking
stages' state are restored before the first frame (the tracker's journaled inputs fed back).
With several inputs each video has its own journal, the one a one-video run of it keeps, and a
video left part-done is continued alone, as that one-video run would be."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import anyio
import sleap_io as sio

from sleapflow.errors import ConfigError, StageError, VideoDecodeError
from sleapflow.inputs.expand import ManyPlan, VideoTask, single_config
from sleapflow.inputs.media_faults import DecodeFailures
from sleapflow.logs import get_logger
from sleapflow.options.frames import SpanSequence
from sleapflow.outputs.journal import (
    JournalWriter,
    ResumedFrames,
    ResumeState,
    VideoJournals,
    fingerprint,
    journal_path,
    load_for_resume,
)
from sleapflow.runtime import GraphStats, RunSpec

__all__ = ("check_journal", "check_video_journals", "journal_header", "one_video_run",
           "resume_videos", "run_journaled", "video_journals")


log = get_logger(__name__)


def _position_after(items: Sequence[Any], video_id: int, frame_idx: int) -> int:
    """The plan position just after the item ``(video_id, frame_idx)``."""
    if isinstance(items, SpanSequence):
        pos = 0
        for start, stop in items.spans:
            if start <= frame_idx < stop and items.make(frame_idx).video_id == video_id:
                return pos + frame_idx - start + 1
            pos += stop - start
    else:
        for pos in range(len(items) - 1, -1, -1):
            item = items[pos]
            if item.video_id == video_id and item.frame_idx == frame_idx:
                return pos + 1
    raise ConfigError(f"--resume: the journal's last frame (video {video_id}, frame {frame_idx}) "
                      "is not among the selected frames; remove the journal to start over")


def _replay_tracking(run: Any, stages: Any, state: ResumeState) -> int:
    """Rebuild the tracking stages' state: the journaled tracker inputs are fed back, in
    order, through the run's tracker, streaming clean-up and gap linker (their outputs are
    dropped: the journal has them). Each is deterministic in its inputs, so every tracker kind
    (fixed window, local queues, optical flow, the motion models) ends where the interrupted
    run was. Optical flow and image features get each frame's image re-decoded from the
    input. Returns the frames fed."""
    import msgspec

    from sleapflow.inputs import open_reader

    track = stages.track
    readers: dict[int, Any] = {}
    fed = 0
    try:
        for pred in state.tracker_inputs():
            if track.config.needs_image:
                reader = readers.get(pred.video_id)
                if reader is None:
                    reader = readers[pred.video_id] = open_reader(run.plan, pred.video_id)
                pred = msgspec.structs.replace(pred, image=reader.read(pred.frame_idx))
            out = track(pred)
            if stages.cleanup is not None:
                out = stages.cleanup(out)
            # Frames the linkers let go were written before.
            outs = [out] if stages.identity is None else stages.identity.push(out)
            if stages.link is not None:
                for held in outs:
                    stages.link.push(held)
            fed += 1
    finally:
        for reader in readers.values():
            reader.close()
    return fed


def journal_header(run: Any) -> dict[str, Any]:
    """What a journal of ``run`` records of it (a resume must match it)."""
    return fingerprint(run.cfg, graph=run.graph_name,
                       model_paths=[m.path for m in run.ctx.models.values()],
                       source_path=run.plan.source_path)


def one_video_run(run: Any, task: VideoTask) -> Any:
    """A many-input run's ``task`` as a one-video run: its own plan, config and failures (what
    its output must equal, and what its journal records)."""
    assert task.plan is not None
    ctx = dataclasses.replace(run.ctx, plan=task.plan)
    return dataclasses.replace(run, cfg=single_config(run.cfg, task), plan=task.plan, ctx=ctx,
                               decode_failures=DecodeFailures())


def check_video_journals(run: Any, *, resume: bool) -> None:
    """Before any model loads, for each video of a many-input run: a leftover journal needs
    --resume, and must be this run's (the options and models of the run that left it).

    A video skipped because its output is complete may have a journal older than that output
    (a stop between the output's rename and the journal's removal): it is removed."""
    plan = run.plan
    assert isinstance(plan, ManyPlan)
    for task in plan.tasks:
        path = journal_path(task.output)
        if not path.exists():
            continue
        if task.status == "skipped":
            out = Path(task.output)
            if out.exists() and path.stat().st_mtime_ns <= out.stat().st_mtime_ns:
                path.unlink(missing_ok=True)
                log.info("removed the journal of a complete output", journal=str(path))
            continue
        if task.status != "planned":
            continue
        check_journal(task.output, resume=resume)
        load_for_resume(path, journal_header(one_video_run(run, task)))


def video_journals(run: Any) -> VideoJournals:
    """The journals of a many-input graph over ``run``'s planned videos (one each)."""
    plan = run.plan
    assert isinstance(plan, ManyPlan)
    return VideoJournals({t.video_id: (journal_path(t.output), journal_header(one_video_run(run, t)))
                          for t in plan.tasks
                          if t.status == "planned" and t.video_id is not None})


async def resume_videos(run: Any, *, on_frame: Callable[[int], None] | None,
                        run_spec: RunSpec) -> GraphStats | None:
    """Continue each video of a many-input run that left a journal, one at a time, as a
    one-video ``--resume`` does (its frames, its failures and its tracker's state restored);
    mark each done, or failed when its input cannot be read. Returns the last run's
    statistics (None: no journal was left)."""
    plan = run.plan
    assert isinstance(plan, ManyPlan)
    stats: GraphStats | None = None
    specs: list[Any] = []  # the graphs run, the last one the current video's

    async def capture(spec: Any) -> GraphStats:
        specs.append(spec)
        return await run_spec(spec)

    for task in plan.tasks:
        if task.status != "planned" or not journal_path(task.output).exists():
            continue
        single = one_video_run(run, task)
        specs.clear()

        started = time.perf_counter()
        try:
            _, stats = await run_journaled(single, output_path=task.output, resume=True,
                                           on_frame=on_frame, keep_labels=False,
                                           run_spec=capture)
        except StageError as exc:
            # Only the source's failures are the video's own; any other stops the run.
            if not specs or exc.stage != specs[-1].stages[0].name:
                raise
            task.status, task.error = "failed", str(exc.__cause__)
            log.warning("video failed; the others go on", input=task.path, error=task.error)
            continue
        writer = specs[-1].stages[-1]
        task.status, task.frames = "done", writer.builder.added
        task.seconds = time.perf_counter() - started
        task.summary = writer.summary(task.seconds)
    return stats


def check_journal(output_path: str, *, resume: bool) -> None:
    """Before any model loads: a leftover journal needs --resume (or removing)."""
    path = journal_path(output_path)
    if path.exists() and not resume:
        raise ConfigError(f"an interrupted run's journal exists at {str(path)!r}: add "
                          "--resume to continue it, or remove it to start over")


async def run_journaled(run: Any, *, output_path: str, resume: bool,
                        on_frame: Callable[[int], None] | None = None,
                        on_journal: Callable[[str], None] | None = None,
                        keep_labels: bool = True,
                        run_spec: RunSpec) -> tuple[sio.Labels | None, GraphStats]:
    """The job's ``.slp``, journaled; with ``resume``, continue a journal. Returns the labels
    (None without ``keep_labels``) and the run's statistics.

    The journal, the resume point and the journal's frames are decided first and handed to the
    source, the tracker and the writer as they are built; nothing is set on a stage after.
    Without ``keep_labels`` the ``.slp`` is written from the journal in slices (flat memory)
    and the result's ``labels`` is None; with it, the in-memory ``Labels`` is built and
    returned (other output formats and ``--render`` need it)."""
    from sleapflow.graphs.build import build_graph, make_source, make_writer, tracking_stages
    from sleapflow.outputs.files import check_output_path

    if isinstance(run.plan, ManyPlan):
        raise ConfigError("a journaled run writes one output; several inputs write theirs as "
                          "each video ends")
    if run.graph_name == "track_only":  # re-tracking a .slp is fast: no journal
        writer = make_writer(run, output_path=output_path, on_frame=on_frame)
        return await _run(build_graph(run, sink=writer), writer, run_spec)
    # The output's own checks come before a journal is created for it.
    check_output_path(output_path, input_path=run.plan.source_path)
    path = journal_path(output_path)
    expected = journal_header(run)
    check_journal(output_path, resume=resume)
    state: ResumeState | None = None
    if path.exists():
        state = load_for_resume(path, expected)
    elif resume:
        log.info("--resume: no journal to continue; starting from the first frame",
                 journal=str(path))
    start = next_seq = 0
    resumed = None
    if state is not None and state.last is not None:
        start = _position_after(run.plan.items, state.last.video_id, state.last.frame_idx)
        next_seq = state.next_seq
        run.decode_failures.restore([f for f in state.failures
                                     if _position_after(run.plan.items, *f) <= start])
        resumed = ResumedFrames(frames=state.frames(), count=state.n_frames,
                                last_seq=state.last.seq)  # frames a gap linker held are written
        journal = JournalWriter(path, None, keep=state.intact_bytes)
    else:
        journal = JournalWriter(path, {**expected})
    try:
        run.decode_failures.on_add = journal.add_failure
        writer = make_writer(run, output_path=output_path, on_frame=on_frame, journal=journal,
                             resumed=resumed, stream=not keep_labels)
        spec = build_graph(run, source=make_source(run, start=start, start_seq=next_seq),
                           sink=writer, tracker_inputs=journal.add_tracker_input)
        if state is not None and resumed is not None:
            replayed = 0
            stages = tracking_stages(spec)
            if stages.track is not None:
                replayed = await anyio.to_thread.run_sync(_replay_tracking, run, stages, state)
            log.info("resuming", frames_done=state.n_frames, from_position=start,
                     tracker_frames_replayed=replayed, journal=str(path))
    except BaseException:
        journal.close()
        if resumed is None:
            journal.path.unlink(missing_ok=True)  # a journal of no frame: nothing to resume
        raise
    if on_journal is not None:
        on_journal(str(path))
    return await _run(spec, writer, run_spec, fresh=resumed is None)


async def _run(spec: Any, writer: Any, run_spec: RunSpec, *,
               fresh: bool = True) -> tuple[sio.Labels | None, GraphStats]:
    """Run ``spec`` to ``writer``'s output; a journal survives a failure that ``--resume`` can go
    on from: one with frames in it (a fresh run that failed before its first frame, say on a
    model that does not load, leaves none, so the fixed command just runs again)."""
    try:
        stats = await run_spec(spec)
    except BaseException as exc:
        if writer.journal is not None:
            writer.journal.close()  # kept on a crash, a full disk or Ctrl-C: --resume goes on
            root = exc.__cause__ if isinstance(exc, StageError) else exc
            if (fresh and writer.journal.frames_added == 0) or isinstance(
                    root, (VideoDecodeError, ConfigError)):
                # The input or the options are at fault: resuming would fail the same way.
                writer.journal.path.unlink(missing_ok=True)
        raise
    assert writer.result is not None or writer.stream
    return writer.result, stats

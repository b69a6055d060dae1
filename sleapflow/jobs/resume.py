"""A journaled run and ``--resume`` (the job's ``.slp`` written as :func:`sleapflow.jobs.job.run_job`
writes it, every frame journaled first); when resuming, the journal's frames and the tracking
stages' state are restored before the first frame (the tracker's journaled inputs fed back)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import anyio
import sleap_io as sio

from sleapflow.errors import ConfigError, StageError, VideoDecodeError
from sleapflow.logs import get_logger
from sleapflow.options.frames import SpanSequence
from sleapflow.outputs.journal import (
    JournalWriter,
    ResumedFrames,
    ResumeState,
    fingerprint,
    journal_path,
    load_for_resume,
)
from sleapflow.runtime import GraphStats, RunSpec

__all__ = ("check_journal", "run_journaled")


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
            if stages.link is not None:
                stages.link.push(out)  # frames it lets go were written before
            fed += 1
    finally:
        for reader in readers.values():
            reader.close()
    return fed


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
    from sleapflow.inputs.expand import ManyPlan
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
    expected = fingerprint(run.cfg, graph=run.graph_name,
                           model_paths=[m.path for m in run.ctx.models.values()],
                           source_path=run.plan.source_path)
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

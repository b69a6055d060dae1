"""A journaled run and ``--resume``: the graph as ``run_to_file`` builds it, with the writer's
frames journaled, and, when resuming, the journal's frames and tracker window restored first."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

import structlog

from sleapflow.errors import ConfigError, StageError, VideoDecodeError
from sleapflow.frame_ranges import SpanSequence
from sleapflow.journal import (
    JournalWriter,
    ResumeState,
    _arr,
    _unarr,
    fingerprint,
    journal_path,
    load_for_resume,
)

log = structlog.get_logger(__name__)


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


def tracker_resumable(run: Any) -> bool:
    """Whether the tracker's whole state can be restored from the journal: the fixed-window
    tracker without optical flow (whose window holds images) and without the streaming
    post-tracking clean-up or gap linking; motion trackers keep other state)."""
    track = run.track_stage
    if track is None:
        return True
    tracker = track.tracker
    return (getattr(tracker, "_fixed", None) is not None and not tracker.config.use_flow
            and not run.track_cleanup and not run.track_gap_linking)


def _journal_tracker(track: Any, journal: JournalWriter) -> None:
    """Journal each record the fixed-window tracker keeps (its window is rebuilt from them)."""
    last: list[Any] = [None]

    def on_tracked(seq: int, tracker: Any) -> None:
        fixed = tracker._fixed
        record = fixed.records[-1] if fixed.records else None
        if record is None or record is last[0]:
            return  # nothing kept for this frame
        last[0] = record
        journal.add_tracker_record({
            "seq": seq, "p": _arr(record.points), "ids": list(record.track_ids),
            "sc": [None if s is None else float(s) for s in record.tracking_scores],
            "i": record.frame_idx, "n": fixed.next_id})

    track.on_tracked = on_tracked


def _restore_tracker(track: Any, records: list[dict[str, Any]]) -> None:
    from sleapflow.tracking import features as feats
    from sleapflow.tracking.candidates import FrameRecord

    tracker = track.tracker
    fixed = tracker._fixed
    window = fixed.records.maxlen
    rebuilt = []
    for rec in records[-window:] if window else records:
        pts = _unarr(rec["p"])
        rebuilt.append(FrameRecord(pts, feats.compute(tracker.config.features, pts, None),
                                   feats.valid_point_counts(pts), list(rec["ids"]),
                                   list(rec["sc"]), rec["i"], None))
    fixed.records = deque(rebuilt, maxlen=window)
    if records:
        fixed.next_id = records[-1]["n"]


def check_journal(output_path: str, *, resume: bool) -> None:
    """Before any model loads: a leftover journal needs --resume (or removing)."""
    path = journal_path(output_path)
    if path.exists() and not resume:
        raise ConfigError(f"an interrupted run's journal exists at {str(path)!r}: add "
                          "--resume to continue it, or remove it to start over")


async def run_journaled(run: Any, *, output_path: str, resume: bool,
                        on_frame: Callable[[int], None] | None = None,
                        on_journal: Callable[[str], None] | None = None) -> Any:
    """``run_to_file`` for the command line, journaled; with ``resume``, continue a journal."""
    from sleapflow.graphs.build import build_graph, make_source, make_writer
    from sleapflow.io.many import ManyPlan
    from sleapflow.pipeline import RunResult
    from sleapflow.runtime import run_graph

    if isinstance(run.plan, ManyPlan):
        raise ConfigError("a journaled run writes one output; several inputs are run with "
                          "sleapflow.many.run_many")
    writer = make_writer(run, output_path=output_path, on_frame=on_frame)
    source = make_source(run)
    spec = build_graph(run, source=source, sink=writer)  # sets run.track_stage for the journal
    path = journal_path(output_path)
    journaled = run.graph_name != "track_only"  # track-only re-tracks a .slp: fast, no journal
    expected = fingerprint(run.cfg, graph=run.graph_name,
                           model_paths=[m.path for m in run.ctx.models.values()],
                           source_path=run.plan.source_path)
    state: ResumeState | None = None
    if journaled and path.exists():
        if not resume:
            raise ConfigError(f"an interrupted run's journal exists at {str(path)!r}: add "
                              "--resume to continue it, or remove it to start over")
        if not tracker_resumable(run):
            log.warning("this tracker's state cannot be restored from the journal (local "
                        "queues, optical flow or track clean-up): starting over")
        else:
            state = load_for_resume(path, expected)
    elif resume and journaled:
        log.info("--resume: no journal to continue; starting from the first frame",
                 journal=str(path))
    journal: JournalWriter | None = None
    if journaled:
        if state is not None and state.frames:
            start = _position_after(run.plan.items, state.frames[-1].video_id,
                                    state.frames[-1].frame_idx)
            source.start, source.start_seq = start, state.next_seq
            failures = run.decode_failures
            failures.restore([f for f in state.failures
                              if _position_after(run.plan.items, *f) <= start])
            writer.resumed = state.frames
            track = run.track_stage
            if track is not None:
                _restore_tracker(track, state.tracker)
            log.info("resuming", frames_done=len(state.frames), from_position=start,
                     journal=str(path))
            journal = JournalWriter(path, None, keep=state.intact_bytes)
        else:
            journal = JournalWriter(path, {**expected})
        writer.journal = journal
        run.decode_failures.on_add = journal.add_failure
        track = run.track_stage
        if track is not None and getattr(track.tracker, "_fixed", None) is not None:
            _journal_tracker(track, journal)
        if on_journal is not None:
            on_journal(str(path))
    try:
        stats = await run_graph(spec)
    except BaseException as exc:
        if writer.journal is not None:
            writer.journal.close()  # kept on a crash, a full disk or Ctrl-C: --resume goes on
            root = exc.__cause__ if isinstance(exc, StageError) else exc
            if isinstance(root, (VideoDecodeError, ConfigError)):
                # The input or the options are at fault: resuming would fail the same way.
                writer.journal.path.unlink(missing_ok=True)
        raise
    assert writer.result is not None
    return RunResult(labels=writer.result, stats=stats, output_path=output_path)

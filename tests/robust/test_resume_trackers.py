"""Every tracker kind resumes exactly: a journaled top-down run that crashes partway, resumed,
gives the tracks (names and scores) of a run that was never interrupted."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import numpy as np
import pytest
import sleap_io as sio

from sleapflow.errors import StageError
from sleapflow.jobs.job import plan_job, run_job
from sleapflow.options.boundary import build_config
from sleapflow.outputs.journal import journal_path, read_records
from sleapflow.testing import write_synthetic_video

N_FRAMES, CRASH_AFTER = 30, 14

#: One case per kind of tracker state: local queues with the streaming clean-up and gap
#: linking, optical flow (images re-decoded), the motion-model trackers, the classic Kalman shift.
CASES: dict[str, dict[str, Any]] = {
    "local_queues_cleanup_gaps": {"candidates_method": "local_queues", "max_tracks": 2,
                                  "tracking_target_instance_count": 2,
                                  "post_connect_single_breaks": True, "max_gap": 4},
    "flow": {"use_flow": True},
    "sort": {"tracker": "sort"},
    "bytetrack": {"tracker": "bytetrack"},
    "ocsort": {"tracker": "ocsort"},
    "kalman": {"use_kalman": True, "max_tracks": 2},
}


#: Resumed with the in-memory ``Labels`` (as with a second output format): the journaled
#: frames are read back into it, and sleap-io writes the file.
KEEP_LABELS = {"flow"}
#: Crashed again after the first resume, then resumed again.
TWICE = {"bytetrack", "local_queues_cleanup_gaps"}


class Crash(Exception):
    pass


def _run(cfg: Any, out: Path, *, resume: bool = False, crash_after: int | None = None,
         keep_labels: bool = False) -> Any:
    done = [0]

    def on_frame(n: int) -> None:
        done[0] += n
        if crash_after is not None and done[0] >= crash_after:
            raise Crash

    # Another output format keeps the labels in memory (the .slp alone is written from the
    # journal).
    job = plan_job(cfg, output=str(out), journal=True, resume=resume, announce=False,
                   formats=("slp", "csv") if keep_labels else ("slp",))
    return anyio.run(lambda: run_job(job, on_frame=on_frame))


def _tracks(path: Path) -> list[tuple[int, list[tuple[Any, ...]]]]:
    labels = sio.load_slp(str(path))
    # Bytes, so NaN scores (untracked detections) compare equal.
    return [(lf.frame_idx, [(inst.numpy().tobytes(), np.float32(inst.score).tobytes(),
                             inst.track.name if inst.track else None,
                             np.float32(np.nan if inst.tracking_score is None
                                        else inst.tracking_score).tobytes())
                            for inst in lf.instances])
            for lf in sorted(labels, key=lambda lf: lf.frame_idx)]


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_synthetic_video(tmp_path_factory.mktemp("clip") / "clip.mp4",
                                 n_frames=N_FRAMES, height=96, width=96)


@pytest.mark.parametrize("case", list(CASES))
def test_crash_then_resume_gives_uninterrupted_tracks(case: str, clip: Path, assets: Path,
                                                      tmp_path: Path) -> None:
    cfg = build_config(data_path=clip, device="cpu", tracking=True, batch_size=2,
                       model_paths=[assets / "model_ckpts/minimal_instance_centroid",
                                    assets / "model_ckpts/minimal_instance_centered_instance"],
                       **CASES[case])
    whole, out = tmp_path / "whole.slp", tmp_path / "resumed.slp"
    _run(cfg, whole)
    with pytest.raises(StageError) as info:
        _run(cfg, out, crash_after=CRASH_AFTER)
    assert isinstance(info.value.__cause__, Crash)
    journal = journal_path(out)
    kinds = [rec["k"] for rec, _ in read_records(journal)]
    assert kinds.count("f") >= CRASH_AFTER and kinds.count("t") >= CRASH_AFTER
    assert not out.exists()
    if case in TWICE:
        with pytest.raises(StageError):
            _run(cfg, out, resume=True, crash_after=CRASH_AFTER + 8)  # counts resumed frames
        kinds = [rec["k"] for rec, _ in read_records(journal)]
        assert kinds.count("f") >= CRASH_AFTER + 8
    result = _run(cfg, out, resume=True, keep_labels=case in KEEP_LABELS)
    assert (result.labels is not None) == (case in KEEP_LABELS)
    assert not journal.exists()
    a, b = _tracks(whole), _tracks(out)
    assert a == b
    names = {t[2] for _, insts in a for t in insts}
    assert len(names - {None}) >= 2  # the clip's two blobs are found and tracked
    later = [t for f, insts in a if f > CRASH_AFTER for t in insts]
    assert later and all(np.isfinite(np.frombuffer(t[1], np.float32)).all() for t in later)


def test_tracker_inputs_journaled_twice_are_fed_once(tmp_path: Path) -> None:
    """The tracker runs ahead of the writer: a resume cuts the journal after its last frame
    but keeps inputs journaled before it for later frames, which the resumed run journals
    again. Each input is fed once, in order, up to the last frame; failures are deduped."""
    from sleapflow.messages import FramePrediction
    from sleapflow.outputs.journal import JournalWriter, load_for_resume

    def pred(seq: int, x: float = 0.0) -> FramePrediction:
        return FramePrediction(seq=seq, video_id=0, frame_idx=seq,
                               points=np.full((1, 2, 2), x), point_scores=np.ones((1, 2)),
                               instance_scores=np.ones(1))

    path = tmp_path / ".out.slp.journal"
    journal = JournalWriter(path, {"graph": "g"})
    # First run: inputs 0-3, frames 0-1 written, frame 2 failed then seen again, then a crash.
    for rec in ("t0", "t1", "f0", "t2", "t3", "x5", "f1"):
        if rec[0] == "t":
            journal.add_tracker_input(pred(int(rec[1]), x=1.0))
        elif rec[0] == "x":
            journal.add_failure(0, int(rec[1]))
        else:
            journal.add(pred(int(rec[1])))
    journal.close()
    # The resumed run (from seq 2) journals inputs 2 and 3 again, then frames 2-3 and input 4.
    journal = JournalWriter(path, None, keep=load_for_resume(path, {"graph": "g"}).intact_bytes)
    for seq in (2, 3):
        journal.add_tracker_input(pred(seq, x=2.0))
    journal.add_failure(0, 5)
    for seq in (2, 3):
        journal.add(pred(seq))
    journal.add_tracker_input(pred(4, x=2.0))
    journal.close()
    state = load_for_resume(path, {"graph": "g"})
    assert state.n_frames == 4 and state.last is not None and state.last.seq == 3
    fed = list(state.tracker_inputs())
    assert [p.seq for p in fed] == [0, 1, 2, 3]
    assert [float(p.points[0, 0, 0]) for p in fed] == [1.0, 1.0, 1.0, 1.0]  # first journaled
    assert state.failures == [(0, 5)]
    assert [p.seq for p in state.frames()] == [0, 1, 2, 3]

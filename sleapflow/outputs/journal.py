"""Crash-safe incremental output: an append-only, checksummed journal of the writer's frames,
and ``--resume`` from it after a kill -9, a power loss or a full disk.

Layout: ``.<output name>.journal`` beside the output's real file. Records are
``[u32 length][u32 crc32][msgpack payload]``; the first is a header holding the run's
fingerprint (models, input, options), then one record per frame the writer received, one
per frame that failed to decode and, with tracking, one per frame the tracker was fed (its
input, which a resume feeds back through a fresh tracker). A torn last record (the crash)
fails its length or checksum and is dropped with everything after it. The journal is fsync'd
every ``FSYNC_FRAMES`` frames or ``FSYNC_SECONDS`` seconds; the final ``.slp`` is written from
it (:mod:`sleapflow.outputs.slp_stream`), and it is removed once that is in place.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import struct
import threading
import time
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import numpy as np

from sleapflow.errors import ConfigError, OutputWriteError
from sleapflow.messages import FramePrediction
from sleapflow.options.declared import declared, neutral_options
from sleapflow.outputs.files import describe_os_error, resolve_target

__all__ = (
    "FSYNC_FRAMES",
    "FSYNC_SECONDS",
    "VERSION",
    "JournalWriter",
    "ResumeState",
    "ResumedFrames",
    "VideoJournals",
    "decode_frame",
    "encode_frame",
    "fingerprint",
    "journal_frames",
    "journal_path",
    "load_for_resume",
    "read_records",
)


@dataclass(frozen=True)
class ResumedFrames:
    """What a resumed run's writer starts from: the journal's frames (an iterable read once, in a
    worker thread), how many there are, and the last journaled seq."""

    frames: Iterable[FramePrediction]
    count: int
    last_seq: int


#: 2: tracker records hold the tracker's input frames (1 held its fixed window).
VERSION = 2
FSYNC_FRAMES = 256
FSYNC_SECONDS = 5.0
_HEAD = struct.Struct("<II")

#: Options that do not change the predictions: a resume may differ in these (their roles say).
_NEUTRAL_OPTIONS = neutral_options()


def journal_path(output_path: str | Path) -> Path:
    target = resolve_target(output_path)
    return target.parent / f".{target.name}.journal"


def _file_identity(path: str | None) -> dict[str, Any] | None:
    if not path or not Path(path).is_file():
        return None
    st = os.stat(path)
    return {"path": str(Path(path).resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _model_identity(path: str) -> str:
    digest = hashlib.sha256()
    folder = Path(path)
    files = sorted(p for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else [folder]
    for f in files:
        st = f.stat()
        digest.update(f"{f.name}:{st.st_size}:{st.st_mtime_ns};".encode())
    return digest.hexdigest()[:16]


def fingerprint(cfg: Any, *, graph: str, model_paths: list[str], source_path: str | None
                ) -> dict[str, Any]:
    """What a resumed run must share with the journal's run for its frames to be reused."""
    # Through msgpack and back, so tuples compare as the lists a journal header decodes to.
    builtins = msgspec.msgpack.decode(msgspec.msgpack.encode(msgspec.to_builtins(cfg)))
    options = {k: v for k, v in builtins.items() if k not in _NEUTRAL_OPTIONS}
    return {"graph": graph, "input": _file_identity(source_path),
            "models": {str(Path(p).resolve()): _model_identity(p) for p in model_paths},
            "options": options}


def _differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    out = []
    if old.get("graph") != new.get("graph"):
        out.append(f"graph ({old.get('graph')} vs {new.get('graph')})")
    if old.get("input") != new.get("input"):
        out.append("the input file (path, size or modification time)")
    if old.get("models") != new.get("models"):
        out.append("the models")
    o_opts, n_opts = _flat_options(old.get("options", {})), _flat_options(new.get("options", {}))
    changed = sorted(k for k in set(o_opts) | set(n_opts) if o_opts.get(k) != n_opts.get(k))
    if changed:
        out.append("options " + ", ".join(f"{k} ({o_opts.get(k)!r} then, {n_opts.get(k)!r} now)"
                                          for k in changed[:6]))
    return out


def _flat_options(options: dict[str, Any]) -> dict[str, Any]:
    """A fingerprint's options by their command-line spelling, the tracker's sub-config
    flattened (``--max_tracks``, not ``--tracker``)."""
    flags = {(o.within, o.field): o.flag for o in declared()}
    flat: dict[str, Any] = {}
    for key, value in options.items():
        if isinstance(value, dict) and any(within == key for within, _ in flags):
            for inner, v in value.items():
                flat[flags.get((key, inner), f"--{inner}")] = v
        else:
            flat[flags.get((None, key), f"--{key}")] = value
    return flat


def _arr(value: Any) -> Any:
    if value is None:
        return None
    a = np.ascontiguousarray(value)
    return {"d": a.dtype.str, "s": list(a.shape), "b": a.tobytes()}


def _unarr(value: Any) -> Any:
    if value is None:
        return None
    return np.frombuffer(value["b"], dtype=np.dtype(value["d"])).reshape(value["s"]).copy()


def encode_frame(pred: FramePrediction) -> dict[str, Any]:
    return {"k": "f", "seq": pred.seq, "v": pred.video_id, "i": pred.frame_idx,
            "p": _arr(pred.points), "ps": _arr(pred.point_scores),
            "is": _arr(pred.instance_scores),
            "tn": list(pred.track_names) if pred.track_names is not None else None,
            "ts": _arr(pred.tracking_scores), "co": pred.centroid_only}


def decode_frame(rec: dict[str, Any]) -> FramePrediction:
    names = rec["tn"]
    return FramePrediction(seq=rec["seq"], video_id=rec["v"], frame_idx=rec["i"],
                           points=_unarr(rec["p"]), point_scores=_unarr(rec["ps"]),
                           instance_scores=_unarr(rec["is"]),
                           track_names=tuple(names) if names is not None else None,
                           tracking_scores=_unarr(rec["ts"]), centroid_only=rec["co"])


def read_records(path: Path) -> Iterator[tuple[dict[str, Any], int]]:
    """Every intact record with the file offset after it, stopping at the first torn one."""
    decoder = msgspec.msgpack.Decoder()
    offset = 0
    with open(path, "rb") as f:
        while True:
            head = f.read(_HEAD.size)
            if len(head) < _HEAD.size:
                return
            length, crc = _HEAD.unpack(head)
            payload = f.read(length)
            if len(payload) < length or zlib.crc32(payload) != crc:
                return
            try:
                record = decoder.decode(payload)
            except msgspec.DecodeError:
                return
            offset += _HEAD.size + length
            yield record, offset


class JournalWriter:
    """Appends the writer's frames; fsync'd every few hundred frames or few seconds."""

    def __init__(self, path: Path, header: dict[str, Any] | None, *, keep: int = 0) -> None:
        """A new journal with ``header``, or (``header`` None) the existing one, cut after its
        first ``keep`` bytes (its intact records) and appended to."""
        self.path = path
        self._encoder = msgspec.msgpack.Encoder()
        # The decoder (failures), the tracker and the writer append from their own threads.
        self._lock = threading.Lock()
        try:
            if header is None:
                self._f = open(path, "r+b")  # noqa: SIM115 - closed in close()
                self._f.truncate(keep)
                self._f.seek(keep)
            else:
                self._f = open(path, "wb")  # noqa: SIM115
                self._append({"k": "h", "version": VERSION, **header})
                self._sync()
        except OSError as exc:
            raise OutputWriteError(f"cannot write the journal {str(path)!r}: "
                                   f"{describe_os_error(exc)}") from None
        self._unsynced = 0
        self._last_sync = time.monotonic()
        #: Frames this writer appended (a run that failed before its first has nothing to resume).
        self.frames_added = 0

    def _append(self, record: dict[str, Any]) -> None:
        payload = self._encoder.encode(record)
        with self._lock:
            self._f.write(_HEAD.pack(len(payload), zlib.crc32(payload)) + payload)

    def _sync(self) -> None:
        self._f.flush()
        os.fsync(self._f.fileno())

    def add(self, pred: FramePrediction) -> bool:
        """Append one frame; True when an fsync is due (the caller runs :meth:`sync` in a
        worker thread, so the event loop never waits on the disk)."""
        try:
            self._append(encode_frame(pred))
            with self._lock:
                # To the OS at every frame (a kill -9 loses nothing); to the disk at each fsync.
                self._f.flush()
        except OSError as exc:
            raise self._error(exc) from None
        self._unsynced += 1
        self.frames_added += 1
        return (self._unsynced >= FSYNC_FRAMES
                or time.monotonic() - self._last_sync >= FSYNC_SECONDS)

    def sync(self) -> None:
        try:
            with self._lock:
                self._sync()
        except OSError as exc:
            raise self._error(exc) from None
        self._unsynced = 0
        self._last_sync = time.monotonic()

    def _error(self, exc: OSError) -> OutputWriteError:
        return OutputWriteError(f"cannot write the journal {str(self.path)!r}: "
                                f"{describe_os_error(exc)}; the frames journaled so far are "
                                "kept: free some space and rerun the command with --resume")

    def add_tracker_input(self, pred: FramePrediction) -> None:
        """Journal a frame as it enters the tracker: a resume feeds these back through it."""
        with contextlib.suppress(OSError):  # the writer's next frame reports a real problem
            self._append({**encode_frame(pred), "k": "t"})

    def add_failure(self, video_id: int, frame_idx: int) -> None:
        with contextlib.suppress(OSError):  # only provenance; the next frame's write reports
            self._append({"k": "x", "v": video_id, "i": frame_idx})

    def close(self) -> None:
        # On a full disk the last buffered bytes may not make it: that record is torn, and a
        # resume drops it (checksum) and redoes that frame.
        with contextlib.suppress(OSError), self._lock:
            self._sync()
        with contextlib.suppress(OSError):
            self._f.close()


class VideoJournals:
    """The journals of a many-input run: one per video, beside that video's output, each what a
    one-video run of it would journal (video id 0), so ``--resume`` continues it alone.

    A video's journal is created at its first record (a frame, a tracker input or a decode
    failure): videos not reached leave none. The decoder, the tracker and the writer append
    from their own threads.
    """

    def __init__(self, videos: dict[int, tuple[Path, dict[str, Any]]]) -> None:
        """``videos``: the run's video id → (journal path, header) of each video to journal."""
        self._planned = dict(videos)
        self._open: dict[int, JournalWriter] = {}
        self._lock = threading.Lock()

    def _journal(self, video_id: int) -> JournalWriter | None:
        with self._lock:
            journal = self._open.get(video_id)
            if journal is None and video_id in self._planned:
                path, header = self._planned.pop(video_id)
                journal = self._open[video_id] = JournalWriter(path, header)
            return journal

    def add(self, pred: FramePrediction) -> None:
        """Journal a frame the writer received (blocking: the writer's worker thread)."""
        journal = self._journal(pred.video_id)
        if journal is not None and journal.add(msgspec.structs.replace(pred, video_id=0)):
            journal.sync()

    def add_tracker_input(self, pred: FramePrediction) -> None:
        journal = self._journal(pred.video_id)
        if journal is not None:
            journal.add_tracker_input(msgspec.structs.replace(pred, video_id=0))

    def add_failure(self, video_id: int, frame_idx: int) -> None:
        journal = self._journal(video_id)
        if journal is not None:
            journal.add_failure(0, frame_idx)

    def remove(self, video_id: int) -> None:
        """The video's output is written (or it failed for good): its journal goes."""
        with self._lock:
            self._planned.pop(video_id, None)
            journal = self._open.pop(video_id, None)
        if journal is not None:
            journal.close()
            journal.path.unlink(missing_ok=True)

    def close(self) -> None:
        """The run ended or stopped: each open journal is synced and kept for ``--resume``, but
        one of no frame (nothing to resume) is removed."""
        with self._lock:
            journals, self._open, self._planned = list(self._open.values()), {}, {}
        for journal in journals:
            journal.close()
            if journal.frames_added == 0:
                journal.path.unlink(missing_ok=True)


def journal_frames(path: Path, limit: int | None = None) -> Iterator[FramePrediction]:
    """The journal's frames in order (its first ``limit``), read one record at a time."""
    if limit == 0:
        return
    n = 0
    for rec, _ in read_records(path):
        if rec.get("k") == "f":
            yield decode_frame(rec)
            n += 1
            if limit is not None and n >= limit:
                return  # records after it may be appended as this reads


class ResumeState:
    """What a journal holds for ``--resume``: how many frames, the last one, and where to go
    on; the frames themselves are read back from the file when needed (flat memory)."""

    def __init__(self, path: Path, n_frames: int, last: FramePrediction | None,
                 failures: list[tuple[int, int]], intact_bytes: int) -> None:
        self.path = path
        self.n_frames = n_frames
        self.last = last
        self.failures = failures
        self.intact_bytes = intact_bytes

    @property
    def next_seq(self) -> int:
        return self.last.seq + 1 if self.last is not None else 0

    def frames(self) -> Iterator[FramePrediction]:
        """The journaled frames, read back in order."""
        return journal_frames(self.path, self.n_frames)

    def tracker_inputs(self) -> Iterator[FramePrediction]:
        """The frames the tracker was fed, in order, up to the last journaled frame.

        The tracker runs ahead of the writer, so an earlier resume can have left inputs past
        its last frame that its own run then journaled again: a seq already fed is skipped."""
        last = self.last.seq if self.last is not None else -1
        fed = -1
        for rec, _ in read_records(self.path):
            if rec.get("k") == "t" and rec["seq"] > fed:
                if rec["seq"] > last:
                    return
                fed = rec["seq"]
                yield decode_frame(rec)


def load_for_resume(path: Path, expected: dict[str, Any]) -> ResumeState:
    """Read a journal; refuse it (naming what differs) if it is another run's."""
    records = read_records(path)
    first = next(records, None)
    header = first[0] if first is not None else None
    if header is None or header.get("k") != "h" or header.get("version") != VERSION:
        raise ConfigError(f"--resume: {str(path)!r} is not a sleapflow journal of this version; "
                          "remove it to start over")
    diff = _differences(header, expected)
    if diff:
        raise ConfigError(f"--resume: the journal {str(path)!r} is from a different run ("
                          f"{'; '.join(diff)} differ); rerun the same command, or remove the "
                          "journal to start over")
    assert first is not None
    n_frames, last = 0, None
    failures: list[tuple[int, int]] = []
    pending: list[tuple[int, int]] = []
    size = first[1]
    for rec, end in records:
        kind = rec.get("k")
        if kind == "f":
            n_frames += 1
            last_rec = rec
            failures += pending
            pending = []
            # Cut after the last frame: records past it (the tracker and the decoder run ahead
            # of the writer) are redone by the resumed run, so none is written twice.
            size = end
        elif kind == "x":
            pending.append((rec["v"], rec["i"]))
    if n_frames:
        last = decode_frame(last_rec)
    # An earlier resume's run re-decodes (and re-journals) failures past its start.
    return ResumeState(path, n_frames, last, list(dict.fromkeys(failures)), size)

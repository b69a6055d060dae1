"""The end-of-run summary as a JSON file (``track --summary_json PATH``), for scripts and schedulers."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import msgspec

from sleapflow.errors import ConfigError
from sleapflow.inputs.expand import VideoTask
from sleapflow.jobs.guard import check_outputs_apart
from sleapflow.outputs.files import write_atomically

__all__ = ("SUMMARY_VERSION", "check_summary_path", "summary_record", "write_summary_json")

#: Bumped when a field changes meaning or goes away (new fields do not bump it).
SUMMARY_VERSION = 1


def check_summary_path(path: str, *, inputs: Sequence[str] = (), models: Sequence[str] = (),
                       outputs: Sequence[str] = ()) -> None:
    """Refuse, before the run, a summary path that cannot be a file (a folder, a device) or
    that is one of the run's inputs, models or outputs (the summary would replace it)."""
    if path.endswith(("/", "\\")):
        raise ConfigError(f"--summary_json {path!r} names a folder; give a file name "
                          "(e.g. predictions/summary.json)")
    check_outputs_apart([("--summary_json", path)], inputs=inputs, models=models)
    target = os.path.realpath(path)
    if any(os.path.realpath(out) == target for out in outputs):
        raise ConfigError(f"--summary_json {path!r} is one of the run's outputs; give the "
                          "summary a name of its own (e.g. summary.json)")


def summary_record(tasks: list[VideoTask], seconds: float | None = None) -> dict[str, Any]:
    """What the summary table says, as data: the counts, and per input its status, output,
    error, frames and seconds, and what its output holds (``null`` unless written)."""
    videos = []
    for t in tasks:
        summary = t.summary if t.status == "done" else None
        videos.append({
            "input": t.path, "output": t.output, "status": t.status, "error": t.error,
            "frames": t.frames if t.status == "done" else None,
            "seconds": round(t.seconds, 3) if t.status == "done" else None,
            "summary": msgspec.structs.asdict(summary) if summary is not None else None,
        })
    spent = seconds if seconds is not None else sum(t.seconds for t in tasks if t.status == "done")
    return {
        "version": SUMMARY_VERSION,
        "inputs": len(tasks),
        "written": sum(t.status == "done" for t in tasks),
        "skipped": sum(t.status == "skipped" for t in tasks),
        "failed": sum(t.status == "failed" for t in tasks),
        "seconds": round(spent, 3),
        "videos": videos,
    }


def write_summary_json(path: str | Path, tasks: list[VideoTask],
                       seconds: float | None = None) -> None:
    """Write :func:`summary_record` to ``path`` atomically (an existing file is replaced whole
    or left as it was)."""
    text = json.dumps(summary_record(tasks, seconds), indent=2) + "\n"

    def write(tmp: Path) -> None:
        tmp.write_text(text)

    write_atomically(path, write)

"""What ``sleapflow track`` does around a one-output run: the output guard and journal, the
progress display (a bar, or ``--gui`` JSON lines), then the extra output formats and the
``--render`` preview."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import anyio

from sleapflow.jobs.progress import GuiProgress, ProgressBar
from sleapflow.logs import get_logger
from sleapflow.options.config import InferenceConfig
from sleapflow.outputs.export import check_formats, export, format_path

__all__ = ("run_track",)



def run_track(options: dict[str, Any], *, cfg: InferenceConfig | None = None,
              output_path: str | None = None, output_format: tuple[str, ...] = ("slp",),
              render: bool = False, gui: bool = False, stats: bool = False,
              quiet: bool = False, resume: bool = False) -> int:
    """Run ``track`` on one input with its option keywords (or the ``cfg`` already built from
    them, and the output path already chosen); returns the exit code. ``quiet`` leaves out the
    start line (the caller sets how much is logged)."""
    from sleapflow.jobs.guard import OutputGuard
    from sleapflow.jobs.resume import check_journal, run_journaled
    from sleapflow.jobs.run import default_output_path, prepare_job, run_to_file
    from sleapflow.options.boundary import build_config

    log = get_logger("sleapflow")
    formats = check_formats(output_format)
    if cfg is None:
        cfg = build_config(**options)
    out = output_path or options.get("output_path") or default_output_path(cfg)
    prepared = prepare_job(cfg, announce=not quiet)
    guard = OutputGuard(out, n_frames=len(prepared.plan.items))  # before any weights load
    journaled = "slp" in formats and prepared.graph_name != "track_only"
    if journaled:
        check_journal(out, resume=resume)
    log.info("starting", graph=prepared.graph_name, device=prepared.ctx.device,
             runtime=prepared.ctx.runtime.name if prepared.ctx.runtime else None,
             frames=len(prepared.plan.items), output=out)
    label = "Tracking..." if prepared.graph_name == "track_only" else "Predicting..."
    progress_cls = GuiProgress if gui else ProgressBar
    slp_out = out if "slp" in formats else None  # the .slp writer is skipped when not asked for
    others = [f for f in formats if f != "slp"]
    with guard, progress_cls(len(prepared.plan.items), label) as progress:
        if slp_out is not None:
            # Journaled as it runs, so a crash, a full disk or Ctrl-C can be resumed; the .slp
            # is written from the journal (flat memory) unless another output needs Labels.
            result = anyio.run(lambda: run_journaled(prepared, output_path=slp_out, resume=resume,
                                                     on_frame=progress.advance,
                                                     on_journal=guard.set_journal,
                                                     keep_labels=bool(others or render)))
        else:
            result = anyio.run(lambda: run_to_file(cfg, output_path=None,
                                                   on_frame=progress.advance, prepared=prepared))
    written = [Path(out)] if slp_out is not None else []
    if others:
        written += export(result.labels, out, others)
    if render:
        from sleapflow.outputs.render import render as render_labels

        written.append(render_labels(result.labels, format_path(out, "slp").with_suffix(".mp4")))
    wall = result.stats.wall_s
    log.info("done", frames=progress.done, seconds=round(wall, 2),
             fps=round(progress.done / wall, 1) if wall > 0 else None,
             output=", ".join(str(p) for p in written))
    if stats:
        print(result.stats.table(), file=sys.stderr if gui else sys.stdout)
    return 0

"""The cyclopts command line: ``sleapflow track | eval | eval-tracking | graphs | bench | serve``.

The sync front end: it calls ``anyio.run``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import threading
from types import FrameType
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeAlias

import cyclopts
from cyclopts import Parameter

from sleapflow.cli.nwb_options import NwbOptions
from sleapflow.errors import ConfigError, Preempted, SleapflowError, StageError
from sleapflow.jobs.preempt import running_task
from sleapflow.logs import configure_cli_logging, get_logger
from sleapflow.options.declared import cli_options, option_values
from sleapflow.options.help import HELP, canonical_argv, opt
from sleapflow.options.validation import MAX_INT_OPTION, check_range

__all__ = (
    "CsvFormat", "EvalMatchMethod", "GraphsOptions", "MergeOptions", "OutputFormat", "TrackOptions",
    "configure_logging", "demo", "eval_tracking", "evaluate", "export", "graphs", "info", "main",
    "merge", "render", "system", "track",
)


#: The choices of the commands' own enumerated options (cyclopts lists them in help and checks
#: them); the inference options' choices are their declared Literal types.
EvalMatchMethod = Literal["oks", "centroid", "auto"]
OutputFormat = Literal["slp", "analysis_h5", "csv", "nwb"]
CsvFormat = Literal["sleap", "dlc"]

# KeyboardInterrupt must reach main()'s handler (cyclopts would exit 130 silently).
app = cyclopts.App(name="sleapflow", help="Fast streaming inference for SLEAP / sleap-nn models.",
                   version_flags=["--version", "-v"], suppress_keyboard_interrupt=False)


def configure_logging(verbose: bool = False, *, quiet: bool = False) -> None:
    configure_cli_logging(logging.DEBUG if verbose else (logging.ERROR if quiet else logging.INFO))


# The inference options of each command are the declared ones (sleapflow.options.config): track
# takes every option its role offers to "track"; merge and graphs take the few they use. What
# follows each is the command's own (inputs, Ray, output formats, reporting): not inference
# options, so declared here.
if TYPE_CHECKING:
    TrackOptions: TypeAlias = Any
    MergeOptions: TypeAlias = Any
    GraphsOptions: TypeAlias = Any
else:
    TrackOptions = cli_options("track")
    MergeOptions = cli_options("track", class_name="MergeOptions", names=(
        "tracking", "tracking_window_size", "min_new_track_points", "candidates_method",
        "min_match_points", "features", "scoring_method", "scoring_reduction", "track_matching_method",
        "max_tracks", "max_instances", "post_connect_single_breaks", "tracking_target_instance_count"))
    GraphsOptions = cli_options("track", class_name="GraphsOptions", names=(
        "model_paths", "device", "batch_size", "queue_maxsize", "max_instances", "tracking",
        "post_connect_single_breaks", "tracking_clean_instance_count", "filter_overlapping",
        "filter_min_visible_nodes", "filter_min_visible_node_fraction", "filter_min_mean_node_score",
        "filter_min_instance_score", "postprocess_workers", "forward_workers"))


@app.command
def track(
    *,
    # The input is track's own: repeatable, or a list file (run_inference and open_graph name
    # theirs differently), so it is not a declared option.
    data_path: Annotated[tuple[str, ...], opt("data_path", "-i", consume_multiple=True)] = (),
    input_list: Annotated[str | None, opt("input_list",
                                           help="File with one input path per line.")] = None,
    inference: Annotated[TrackOptions, Parameter(name="*")] = TrackOptions(),  # noqa: B008
    overwrite: Annotated[bool, opt("overwrite", help="Rewrite existing outputs (the default).")] = False,
    ray: Annotated[str | None, opt("ray", help="Run on Ray workers: --ray alone starts or joins a "
                                   "local instance, --ray ADDRESS joins a cluster.")] = None,
    ray_workers: Annotated[int | None, opt("ray_workers",
                                           help="Ray workers (default: GPUs, else CPUs/2).")] = None,
    ray_chunk_frames: Annotated[int | None, opt(
        "ray_chunk_frames", help="Ray: split longer videos into chunks of about this many "
        "frames (default: only a video longer than one worker's share of the run).")] = None,
    ray_gpus_per_worker: Annotated[float | None, opt("ray_gpus_per_worker")] = None,
    max_retries: Annotated[int | None, opt("max_retries")] = None,
    summary_json: Annotated[str | None, opt("summary_json")] = None,
    output_format: Annotated[tuple[OutputFormat, ...],
                             opt("output_format")] = ("slp",),
    csv_format: Annotated[CsvFormat, opt("csv_format")] = "sleap",
    nwb: Annotated[NwbOptions, Parameter(name="*")] = NwbOptions(),  # noqa: B008
    render: Annotated[bool, opt("render")] = False,
    gui: Annotated[bool, opt("gui")] = False,
    stats: Annotated[bool, opt("stats")] = False,
    verbose: Annotated[bool, opt("verbose")] = False,
    preempt_signals: Annotated[str, opt(
        "preempt_signals", help="Signals that stop the run as a preemption: journals kept for "
        "--resume, exit 128+signal (143 for TERM, 138 for USR1); comma-separated, or none.")
    ] = "TERM,USR1",
) -> int:
    """Run pose inference on a video or labels file and write a .slp (sleap-nn track compatible)."""
    from sleapflow.lazy import import_sleap_io_media

    import_sleap_io_media()
    options = {"data_path": data_path, **option_values(inference)}
    resume = options.pop("resume")  # the job's, not the config's: plan_job takes it
    model_paths, output_path = options["model_paths"], options["output_path"]
    shard, skip_existing = options["shard"], options["skip_existing"]
    from sleapflow.inputs.expand import (
        expand_inputs,
        output_for,
        output_is_folder,
        parse_shard,
        shard_output_path,
    )
    from sleapflow.inputs.live import live_kind
    from sleapflow.options.boundary import build_config

    configure_logging(verbose)
    from sleapflow.outputs.export import ExportSettings

    export_settings = ExportSettings(csv_format=csv_format, nwb=nwb.metadata())
    for flag, value, low in (("--ray_workers", ray_workers, 1),
                             ("--ray_chunk_frames", ray_chunk_frames, 1),
                             ("--max_retries", max_retries, 0)):
        if value is not None:
            check_range(flag, value, low, MAX_INT_OPTION, whole=True)
    ray_only = {"--ray_workers": ray_workers, "--ray_chunk_frames": ray_chunk_frames,
                "--ray_gpus_per_worker": ray_gpus_per_worker, "--max_retries": max_retries}
    given = [flag for flag, value in ray_only.items() if value is not None]
    if ray is None and given:
        raise ConfigError(f"{', '.join(given)} only apply to --ray runs; add --ray (or --ray "
                          "ADDRESS), or leave them out")
    if ray_gpus_per_worker is not None and not 0 < ray_gpus_per_worker <= 1:
        raise ConfigError("--ray_gpus_per_worker must be more than 0 and at most 1, e.g. 0.5 "
                          f"for two workers per GPU (got {ray_gpus_per_worker})")
    if skip_existing and overwrite:
        raise ConfigError("--skip_existing and --overwrite are opposites; pass one of them")
    paths, many = expand_inputs(data_path, input_list)
    if many and not model_paths:
        raise ConfigError("several inputs need --model_paths/-m: track-only runs (no models) "
                          "re-track one .slp at a time")
    if resume and ray is not None:
        raise ConfigError("--resume continues interrupted runs without --ray; with --ray, rerun "
                          "with --skip_existing to redo only the videos whose output is missing "
                          "or incomplete")
    if resume and many:
        # Continuing a many-input run: its finished videos are not redone.
        if overwrite:
            raise ConfigError("--resume with several inputs skips the finished videos; "
                              "--overwrite would redo them: pass one of them")
        options["skip_existing"] = True
    from sleapflow.jobs.preempt import parse_preempt_signals

    preempt = parse_preempt_signals(preempt_signals)
    options["shard"] = parse_shard(shard)
    options["data_path"] = None if many else paths[0]
    options["inputs"] = tuple(paths) if many or ray is not None else ()
    cfg = build_config(**options)
    if summary_json is not None:
        from sleapflow.jobs.report import check_summary_path

        check_summary_path(summary_json, inputs=paths, models=cfg.model_paths,
                           outputs=[output_for(cfg, p, many=len(paths) > 1) for p in paths])
    if ray is not None:
        from sleapflow.jobs.ray_runner import DEFAULT_MAX_RETRIES, run_config

        if render:
            raise ConfigError("--render draws one run's output beside it; with --ray draw each "
                              "output with sleapflow render")
        return _report(run_config(cfg, address=None if ray == "local" else ray,
                                  workers=ray_workers, chunk_frames=ray_chunk_frames,
                                  formats=output_format, export_settings=export_settings,
                                  max_retries=DEFAULT_MAX_RETRIES if max_retries is None
                                  else max_retries, gpus_per_worker=ray_gpus_per_worker),
                       summary_json=summary_json)
    out = None
    if not many and live_kind(paths[0], cfg.live) and output_path is None:
        raise ConfigError(f"-i {paths[0]!r} is a live source: name the output with -o "
                          "(e.g. -o session.slp)")
    if not many:
        if cfg.shard is not None and cfg.shard[1] > 1 and output_path is not None \
                and not output_is_folder(output_path):
            raise ConfigError(f"--shard {cfg.shard[0]}/{cfg.shard[1]} with -o {output_path!r}: "
                              "every shard of this video would write that one file, each "
                              "replacing the last. Give a folder (-o DIR/) or leave -o out: "
                              "each shard then writes <video>.shard-I-of-N.predictions.slp, "
                              "which sleapflow merge joins")
        if cfg.shard is not None and (output_path is None or output_is_folder(output_path)):
            out = shard_output_path(cfg, cfg.shard)
        else:
            out = output_for(cfg, paths[0], many=False)
    from sleapflow.jobs.job import plan_job, run_job_with_progress

    job = plan_job(cfg, output=out, formats=output_format, export=export_settings, render=render,
                   journal=True, resume=resume)
    result = run_job_with_progress(job, gui=gui, preempt=preempt)
    # --gui keeps stdout for its JSON lines, --publish - for its poses.
    report = sys.stderr if gui or any(t in ("-", "ndjson:-") for t in cfg.publish) else sys.stdout
    if not many and result.summary is not None:
        print(f"{job.shown_output or 'predictions'}: {result.summary.line()}", file=report)
    if stats:
        print(result.stats.table(), file=report)
    if many:
        return _report(result.tasks, result.stats.wall_s, summary_json=summary_json)
    if summary_json is not None:
        from sleapflow.inputs.expand import VideoTask
        from sleapflow.jobs.report import write_summary_json

        s = result.summary
        one = VideoTask(index=0, path=paths[0], output=str(job.shown_output), status="done",
                        frames=s.frames if s else 0, seconds=s.seconds if s else 0.0, summary=s)
        write_summary_json(summary_json, [one])
    return 0


def _report(tasks: list, seconds: float | None = None, *, summary_json: str | None = None) -> int:
    """The per-video summary (and its JSON file); non-zero when any input failed."""
    from sleapflow.jobs.many import summary_table

    print(summary_table(tasks, seconds))
    if summary_json is not None:
        from sleapflow.jobs.report import write_summary_json

        write_summary_json(summary_json, tasks, seconds)
    return 1 if any(t.status == "failed" for t in tasks) else 0


@app.command
def merge(
    shards: Annotated[tuple[str, ...], Parameter(help="The per-shard .slp outputs of one video.",
                                                 negative_iterable=())],
    output_path: Annotated[str, opt("output_path", "-o", help="The merged .slp.")],
    tracker: Annotated[MergeOptions, Parameter(name="*")] = MergeOptions(),  # noqa: B008
    allow_partial: Annotated[bool, opt("allow_partial", help="Merge even when shards of the "
                                       "--shard run are missing (their frames are then absent; "
                                       "by default that is an error naming them).")] = False,
    verbose: Annotated[bool, opt("verbose")] = False,
) -> int:
    """Join the per-shard outputs of one video (``track --shard I/N``) into one .slp; with
    --tracking, track the merged predictions as a single-process run would."""
    options = option_values(tracker)
    tracking = options.pop("tracking")
    from sleapflow.jobs.guard import OutputGuard
    from sleapflow.jobs.merge import merge_command

    configure_logging(verbose)
    with OutputGuard(output_path, n_frames=len(shards)):  # checked and locked, as track's
        labels = merge_command(shards, output_path, tracking=tracking,
                               allow_partial=allow_partial, **options)
    get_logger("sleapflow").info("merged", shards=len(shards),
                                           frames=len(labels.labeled_frames), output=output_path)
    return 0


@app.command(name="eval")
def evaluate(
    *,
    ground_truth_path: Annotated[str, opt("ground_truth_path", "-g")],
    predicted_path: Annotated[str, opt("predicted_path", "-p")],
    save_metrics: Annotated[str | None, opt("save_metrics", "-s")] = None,
    oks_stddev: Annotated[float, opt("oks_stddev")] = 0.025,
    oks_scale: Annotated[float | None, opt("oks_scale")] = None,
    match_threshold: Annotated[float, opt("match_threshold")] = 0.0,
    user_labels_only: Annotated[bool, opt("user_labels_only", negative=True)] = True,
    match_method: Annotated[EvalMatchMethod, opt("match_method")] = "auto",
    anchor_part: Annotated[str | None, opt("anchor_part")] = None,
    verbose: Annotated[bool, opt("verbose")] = False,
) -> int:
    """Evaluate predictions against ground truth with sleap-nn's metrics (OKS mAP, PCK, ...)."""
    from sleapflow.evaluation import format_summary, run_evaluation

    configure_logging(verbose)
    metrics = run_evaluation(ground_truth_path, predicted_path, oks_stddev=oks_stddev,
                             oks_scale=oks_scale, match_threshold=match_threshold,
                             user_labels_only=user_labels_only, save_metrics=save_metrics,
                             match_method=match_method, anchor_part=anchor_part)
    if metrics is None:
        print("No predicted instances: metrics were not computed.")
        return 0
    print(format_summary(metrics))
    return 0


@app.command(name="eval-tracking")
def eval_tracking(
    ground_truth_path: Annotated[str, opt("ground_truth_path", "-g",
                                          help="Tracked ground-truth .slp.")],
    predicted_path: Annotated[str, opt("predicted_path", "-p", help="Tracked predictions .slp.")],
    save_metrics: Annotated[str | None, opt("save_metrics", "-s",
                                             help="Write the metrics as .json.")] = None,
    carrier: Annotated[str, opt("carrier", help="auto or pose (instances); mask is not "
                                "supported.")] = "auto",
    match_threshold: Annotated[float | None, opt(
        "match_threshold", help="Min OKS to match (default 0.5), or max centroid distance in px "
        "for single-node skeletons (default 50).")] = None,
    mt_threshold: Annotated[float, opt("mt_threshold", help="Coverage at/above which a GT "
                                       "trajectory is mostly tracked (identity block).")] = 0.8,
    ml_threshold: Annotated[float, opt("ml_threshold", help="Coverage below which a GT "
                                       "trajectory is mostly lost (identity block).")] = 0.2,
    user_labels_only: Annotated[bool, opt("user_labels_only", negative=True,
                                          help="Drop predicted instances from the ground "
                                          "truth.")] = False,
    global_identity: Annotated[bool, Parameter(
        name=["--global_identity"], negative=["--per_video_identity"],
        help="Track names are identities shared across videos.")] = False,
    oks_stddev: Annotated[float, opt("oks_stddev", help="OKS keypoint spread (> 0).")] = 0.025,
    verbose: Annotated[bool, opt("verbose")] = False,
) -> int:
    """Score identity persistence of a tracked prediction (sleap-nn eval-tracking's metrics)."""
    from sleapflow.evaluation.identity import identity_summary, mot_summary, run_identity_evaluation

    configure_logging(verbose)
    result = run_identity_evaluation(
        ground_truth_path, predicted_path, carrier=carrier, match_threshold=match_threshold,
        mt_threshold=mt_threshold, ml_threshold=ml_threshold, user_labels_only=user_labels_only,
        global_identity=global_identity, save_metrics=save_metrics, oks_stddev=oks_stddev)
    print(f"Identity: {identity_summary(result)}")
    mot = result["mot"]
    print(f"MOT: {mot_summary(mot)}" if "error" not in mot else f"MOT: not computed ({mot['error']})")
    for note in result["notes"]:
        print(f"note: {note}")
    return 0


@app.command
def graphs(
    name: Annotated[str | None, Parameter(help="Show this graph's stages and edges.")] = None,
    /,
    *,
    options: Annotated[GraphsOptions, Parameter(name="*")] = GraphsOptions(),  # noqa: B008
    mermaid: Annotated[bool, opt("mermaid")] = False,
) -> int:
    """List the named graphs, or show the stages and edges one would run with these options.

    The graph is built as ``track`` builds it (a dry build: no input read, no weights loaded);
    the options are ``track``'s, and only those that change the graph's shape are taken here.
    """
    from sleapflow.graphs import GRAPHS
    from sleapflow.graphs.build import dry_spec
    from sleapflow.options.boundary import build_config

    if name is None:
        for key, decl in GRAPHS.items():
            print(f"{key:<30} {', '.join(decl.model_types):<32} {decl.description}")
        return 0
    spec = dry_spec(name, build_config(**option_values(options)))
    print(spec.mermaid() if mermaid else spec.describe())
    return 0


# Registered by import path: cyclopts imports them only when they run (or their help is
# shown), so `track` does not pay for the benchmark harness or the service.
app.command("sleapflow.bench.harness:bench_command", name="bench",
            help="Per-stage throughput of a graph vs a serial loop and the forward-pass limit.")
app.command("sleapflow.serve.command:serve_command", name="serve",
            help="Serve pose estimation over HTTP and websockets, batching frames across clients.")


#: Options whose value may be ``-`` (a stream on stdin / stdout), by each spelling.
_DASH_VALUE = {"-i": "--data_path", "--data_path": "--data_path", "--data-path": "--data_path",
               "--publish": "--publish"}


def _optional_ray_address(argv: list[str]) -> list[str]:
    """``--ray`` may stand alone (a local instance): give it the value ``local`` then. And
    ``track -i -`` (stdin) and ``--publish -`` (stdout) are joined as ``--data_path=-`` and
    ``--publish=-``: the parser would read a lone ``-`` as the start of another option."""
    out = list(argv)
    for i, token in enumerate(out):
        if token == "--ray" and (i + 1 == len(out) or out[i + 1].startswith("-")):
            out[i] = "--ray=local"
    joined: list[str] = []
    for token in out:
        if token == "-" and joined and joined[-1] in _DASH_VALUE and out[:1] == ["track"]:
            joined[-1] = f"{_DASH_VALUE[joined[-1]]}=-"
        else:
            joined.append(token)
    return joined


@app.command
def render(
    predictions: Annotated[str, Parameter(help=HELP["predictions"])],
    /,
    *,
    output: Annotated[str | None, opt("output", "-o")] = None,
    frames: Annotated[str, opt("frames", help="Video frames to draw, e.g. '0-100' (default: "
                               "every predicted frame).")] = "",
    fps: Annotated[float | None, opt("fps")] = None,
    scale: Annotated[float, opt("scale")] = 1.0,
    marker_size: Annotated[float, opt("marker_size")] = 4.0,
    line_width: Annotated[float, opt("line_width")] = 2.0,
    color_by: Annotated[Literal["auto", "track", "instance", "node"], opt("color_by")] = "auto",
    palette: Annotated[Literal["standard", "distinct", "rainbow", "warm", "cool", "pastel",
                               "seaborn", "tableau10", "viridis"], opt("palette")] = "standard",
    trail_length: Annotated[int, opt("trail_length")] = 0,
    show_names: Annotated[bool, opt("show_names", negative=True)] = True,
) -> int:
    """Draw predictions over their video: an .mp4 to watch, or one frame as a .png."""
    from sleapflow.options.config import parse_frames
    from sleapflow.options.frames import as_spans, iter_spans
    from sleapflow.outputs.render import render as render_labels

    selection = parse_frames(frames)  # indices and inclusive ranges
    inds = None if selection is None else list(iter_spans(as_spans(selection)))
    out = render_labels(predictions, output, frames=inds, fps=fps, scale=scale,
                        marker_size=marker_size, line_width=line_width, color_by=color_by,
                        palette=palette, trail_length=trail_length, show_names=show_names,
                        show_progress=sys.stderr.isatty())
    print(f"Wrote {out}")
    return 0


@app.command
def export(
    model_paths: Annotated[tuple[str, ...], Parameter(
        help="Checkpoint folder(s): one model, or a centroid and a centered_instance model "
        "(exported as one top-down graph).", negative_iterable=())],
    /,
    *,
    output: Annotated[str, opt("output", "-o", help="The export folder to write (new or empty; "
                                                    "see --force).")],
    format: Annotated[Literal["onnx", "tensorrt"], opt(
        "format", help="onnx (runs anywhere) or tensorrt (adds model.trt for this GPU).")] = "onnx",
    precision: Annotated[Literal["fp32", "fp16"], opt(
        "precision", help="TensorRT engine precision (ONNX exports are fp32).")] = "fp32",
    batch: Annotated[int, opt("batch", help="Largest batch recorded as max_batch_size (and the "
                                            "TensorRT profile's).")] = 8,
    input_size: Annotated[str | None, opt(
        "input_size", help="Frame size HxW the graphs are traced and checked at (default: the "
        "config's max_height x max_width, else 512x512); other sizes still run.")] = None,
    max_instances: Annotated[int, opt("max_instances", help="Centroid slots per frame in the "
                                                            "graph (centroid, top-down).")] = 20,
    peak_threshold: Annotated[float, opt("peak_threshold", help="Peak threshold baked into "
                                                                "the graph.")] = 0.2,
    force: Annotated[bool, opt("force", help="Replace an earlier export in a non-empty -o "
                                             "folder (any other content is refused).")] = False,
) -> int:
    """Write sleap-nn's exported-model folder (model.onnx + export_metadata.json), which
    ``sleap-nn predict --runtime onnx`` and ``sleapflow track -m DIR`` run."""
    from sleapflow.backends.export_writer import export_model

    out = export_model(model_paths, output, fmt=format, precision=precision, batch=batch,
                       input_size=input_size, max_instances=max_instances,
                       peak_threshold=peak_threshold, force=force)
    print(f"Wrote {out}")
    return 0


@app.command
def info(
    model_dirs: Annotated[tuple[str, ...], Parameter(help=HELP["model_dirs"])],
    /,
    *,
    json: Annotated[bool, opt("json")] = False,
) -> int:
    """What a model folder is: model type, skeleton, input size, heads, training."""
    import json as json_module

    from sleapflow.cli.reports import format_info, model_info

    infos = [model_info(d) for d in model_dirs]
    if json:
        print(json_module.dumps(infos if len(infos) > 1 else infos[0], indent=2))
    else:
        print("\n\n".join(format_info(i) for i in infos))
    return 0


@app.command
def system(*, json: Annotated[bool, opt("json")] = False) -> int:
    """Versions of Python and the packages sleapflow uses, and the devices it can run on."""
    import json as json_module

    from sleapflow.cli.reports import format_system, system_report

    report = system_report()
    print(json_module.dumps(report, indent=2) if json else format_system(report))
    return 0


@app.command
def demo(
    *,
    out_dir: Annotated[str, opt("out_dir", "-o")] = "sleapflow-demo",
    device: Annotated[str, opt("device", "-d")] = "auto",
) -> int:
    """Predict on a generated clip with the embedded model, and draw the result: no data needed."""
    from sleapflow.demo.run import run_demo

    run_demo(out_dir, device=device)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point: errors print one ``Error:`` line, never a traceback, and exit 2 for a user
    error or 1 for a run-time failure (:attr:`~sleapflow.errors.SleapflowError.exit_code`)."""
    code = _main(argv)
    from sleapflow.outputs import files as io_safety

    if code == 130 and argv is None:
        # Interrupted: the cleanup has run and the line is printed. The interpreter's own exit
        # (joining worker threads, tearing down torch) takes a while, and Python resets SIGINT
        # to its default early in it, so another Ctrl-C then would kill the process by signal.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    if io_safety.HDF5_POISONED and argv is None:  # the process's own entry point only
        # A save failed inside HDF5 (a full disk): its leftover handles segfault at interpreter
        # exit, so end here, after the error line, without that teardown.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


class _CtrlC:
    """SIGINT while a command runs. The first cancels the run as asyncio's runner does (its
    cleanup keeps the journal for ``--resume``); a second one must not land inside that cleanup
    as a KeyboardInterrupt (a torn journal, a lock never released, a hang), so it only gives the
    cleanup :attr:`GRACE` seconds before exiting 130 with the interrupted line."""

    GRACE = 3.0

    def __init__(self) -> None:
        self.count = 0
        self.timer: threading.Timer | None = None
        #: The first Ctrl-C ended live streams rather than cancelling the run.
        self.live = False

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        self.count += 1
        if self.count == 1 or (self.count == 2 and self.live):
            task = running_task()
            if task is None:  # not inside an event loop: an ordinary KeyboardInterrupt
                raise KeyboardInterrupt
            if self.count == 1 and _live_sources_running():
                # A live source ends its stream instead: the graph drains and the output is
                # written whole. A second Ctrl-C cancels as usual (the journal is kept).
                self.live = True
                task.get_loop().call_soon_threadsafe(_stop_live_sources)
                return
            task.cancel()
            task.get_loop().call_soon_threadsafe(lambda: None)  # wake a loop blocked in select()
        elif self.timer is None:
            self.timer = threading.Timer(self.GRACE, _exit_interrupted)
            self.timer.daemon = True
            self.timer.start()

    def stop(self) -> None:
        if self.timer is not None:
            self.timer.cancel()


def _live_sources_running() -> bool:
    from sleapflow.inputs.live import live_sources_running

    return live_sources_running()


def _stop_live_sources() -> None:
    from sleapflow.inputs.live import stop_live_sources

    if stop_live_sources():
        print("Stopping the live source: writing what was predicted (Ctrl-C again to "
              "interrupt)", file=sys.stderr)


def _exit_interrupted(*_: object) -> None:
    from sleapflow.jobs.guard import interrupted_message

    print(interrupted_message(), file=sys.stderr)
    sys.stderr.flush()
    sys.stdout.flush()
    os._exit(130)


def _main(argv: list[str] | None) -> int:
    configure_logging()
    argv = _optional_ray_address(argv if argv is not None else sys.argv[1:])
    ctrl_c = _CtrlC()
    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGINT, ctrl_c) if main_thread else None
    try:
        return _run_app(argv, ctrl_c)
    finally:
        ctrl_c.stop()
        if main_thread:
            # After the interrupted line, the process's own run ends at another Ctrl-C at once
            # (a forward pass still in a worker thread would hold up the interpreter's exit).
            interrupted = ctrl_c.count > 0 and previous is signal.default_int_handler
            signal.signal(signal.SIGINT, _exit_130 if interrupted else previous)


def _exit_130(*_: object) -> None:
    sys.stderr.flush()
    os._exit(130)


def _run_app(argv: list[str], ctrl_c: _CtrlC) -> int:
    try:
        result = app(canonical_argv(argv), exit_on_error=False,
                     print_error=False, result_action="return_value")
    except asyncio.CancelledError:
        if not ctrl_c.count:
            raise
        return _interrupted(ctrl_c)  # the runner's main task, cancelled by the first Ctrl-C
    except cyclopts.CycloptsError as exc:
        print(f"Error: {_one_line(exc)} (see --help)", file=sys.stderr)
        return 2
    except Preempted as exc:  # a stop to requeue, not a failure: no "Error:"
        print(str(exc), file=sys.stderr)
        return exc.status
    except SleapflowError as exc:
        # A stage that raised one of ours is reported as that error, not as "stage X failed".
        cause = exc.__cause__
        shown = cause if isinstance(exc, StageError) and isinstance(cause, SleapflowError) else exc
        print(f"Error: {_one_line(shown)}", file=sys.stderr)
        return shown.exit_code
    except KeyboardInterrupt:
        return _interrupted(ctrl_c)
    return result if isinstance(result, int) else 0


def _interrupted(ctrl_c: _CtrlC) -> int:
    from sleapflow.jobs.guard import interrupted_message

    ctrl_c.stop()
    print(interrupted_message(), file=sys.stderr)
    return 130


if __name__ == "__main__":
    sys.exit(main())

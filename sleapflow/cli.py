"""The cyclopts command line: ``sleapflow track | eval | graphs | bench``; the only anyio.run."""

from __future__ import annotations

import logging
import sys
from typing import Annotated, Any

import anyio
import cyclopts
import structlog
from cyclopts import Parameter

from sleapflow.bench import bench_command
from sleapflow.errors import ConfigError, SleapflowError, StageError

app = cyclopts.App(name="sleapflow", help="Fast streaming inference for SLEAP / sleap-nn models.",
                   version_flags=["--version", "-v"])


def opt(name: str, *short: str, help: str = "", negative: bool = False) -> Parameter:
    """An option spelled as sleap-nn spells it (underscores), with a hyphenated alias."""
    names = [f"--{name}"]
    if "_" in name:
        names.append(f"--{name.replace('_', '-')}")
    names.extend(short)
    neg: Any = ()
    if negative:
        neg = [f"--no-{name}"] + ([f"--no-{name.replace('_', '-')}"] if "_" in name else [])
    return Parameter(name=names, help=help, negative=neg)


class _CurrentStderr:
    """Writes to whatever ``sys.stderr`` is now (it may be replaced after logging is set up)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


def configure_logging(verbose: bool = False, *, quiet: bool = False) -> None:
    level = logging.DEBUG if verbose else (logging.ERROR if quiet else logging.INFO)
    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(file=_CurrentStderr()),
        processors=[structlog.processors.add_log_level,
                    structlog.processors.TimeStamper(fmt="%H:%M:%S"),
                    structlog.dev.ConsoleRenderer(colors=False)],
        cache_logger_on_first_use=False,
    )


class _Progress:
    """A rich progress bar with frames/s on a terminal; a log line per 10% elsewhere."""

    def __init__(self, total: int, label: str) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TaskProgressColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.total = total
        self.done = 0
        self._interactive = sys.stderr.isatty()
        self._progress = Progress(
            TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(),
            MofNCompleteColumn(), TextColumn("ETA:"), TimeRemainingColumn(),
            TextColumn("Elapsed:"), TimeElapsedColumn(),
            TextColumn("{task.fields[fps]:.1f} FPS"), disable=not self._interactive,
            refresh_per_second=4,
        )
        self._task = self._progress.add_task(label, total=total, fps=0.0)
        self._next_log = 0.1

    def __enter__(self) -> _Progress:
        self._progress.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.__exit__(*exc)

    def advance(self, n: int) -> None:
        self.done += n
        task = self._progress.tasks[0]
        elapsed = task.elapsed or 0.0
        fps = self.done / elapsed if elapsed > 0 else 0.0
        self._progress.update(self._task, advance=n, fps=fps)
        if not self._interactive and self.total and self.done / self.total >= self._next_log:
            self._next_log += 0.1
            structlog.get_logger("sleapflow").info("progress", frames=self.done, total=self.total,
                                                   fps=round(fps, 1))


@app.command
def track(
    data_path: Annotated[str, opt("data_path", "-i", help="Video, .slp, HDF5 or image folder.")],
    model_paths: Annotated[tuple[str, ...], opt("model_paths", "-m",
                                                 help="Model folder; repeat for top-down.")] = (),
    output_path: Annotated[str | None, opt("output_path", "-o",
                                            help="Output .slp (default: INPUT.predictions.slp).")] = None,
    device: Annotated[str, opt("device", "-d", help="auto, cpu, cuda, cuda:N or mps.")] = "auto",
    batch_size: Annotated[int, opt("batch_size", "-b")] = 4,
    max_instances: Annotated[int | None, opt("max_instances", "-n")] = None,
    backbone_ckpt_path: Annotated[str | None, opt("backbone_ckpt_path")] = None,
    head_ckpt_path: Annotated[str | None, opt("head_ckpt_path")] = None,
    max_height: Annotated[int | None, opt("max_height")] = None,
    max_width: Annotated[int | None, opt("max_width")] = None,
    input_scale: Annotated[float | None, opt("input_scale")] = None,
    ensure_rgb: Annotated[bool | None, opt("ensure_rgb", negative=True)] = None,
    ensure_grayscale: Annotated[bool | None, opt("ensure_grayscale", negative=True)] = None,
    anchor_part: Annotated[str | None, opt("anchor_part")] = None,
    only_labeled_frames: Annotated[bool, opt("only_labeled_frames")] = False,
    only_suggested_frames: Annotated[bool, opt("only_suggested_frames")] = False,
    exclude_user_labeled: Annotated[bool, opt("exclude_user_labeled")] = False,
    only_predicted_frames: Annotated[bool, opt("only_predicted_frames")] = False,
    no_empty_frames: Annotated[bool, opt("no_empty_frames")] = False,
    video_index: Annotated[int | None, opt("video_index")] = None,
    video_dataset: Annotated[str | None, opt("video_dataset")] = None,
    video_input_format: Annotated[str, opt("video_input_format")] = "channels_last",
    frames: Annotated[str, opt("frames", help="e.g. '0-100,200-300' or '1,5,9'.")] = "",
    integral_patch_size: Annotated[int, opt("integral_patch_size")] = 5,
    max_edge_length_ratio: Annotated[float, opt("max_edge_length_ratio")] = 0.25,
    dist_penalty_weight: Annotated[float, opt("dist_penalty_weight")] = 1.0,
    n_points: Annotated[int, opt("n_points")] = 10,
    min_instance_peaks: Annotated[float, opt("min_instance_peaks")] = 0,
    min_line_scores: Annotated[float, opt("min_line_scores")] = 0.25,
    queue_maxsize: Annotated[int, opt("queue_maxsize")] = 32,
    crop_size: Annotated[int | None, opt("crop_size")] = None,
    peak_threshold: Annotated[float, opt("peak_threshold")] = 0.2,
    filter_overlapping: Annotated[bool, opt("filter_overlapping")] = False,
    filter_overlapping_method: Annotated[str, opt("filter_overlapping_method")] = "iou",
    filter_overlapping_threshold: Annotated[float, opt("filter_overlapping_threshold")] = 0.8,
    filter_min_visible_nodes: Annotated[int, opt("filter_min_visible_nodes")] = 0,
    filter_min_visible_node_fraction: Annotated[float, opt("filter_min_visible_node_fraction")] = 0.0,
    filter_min_mean_node_score: Annotated[float, opt("filter_min_mean_node_score")] = 0.0,
    filter_min_instance_score: Annotated[float, opt("filter_min_instance_score")] = 0.0,
    integral_refinement: Annotated[str, opt("integral_refinement",
                                            help="'integral' or 'none'.")] = "integral",
    tracking: Annotated[bool, opt("tracking", "-t", help="Track instances across frames.")] = False,
    tracking_window_size: Annotated[int, opt("tracking_window_size")] = 5,
    min_new_track_points: Annotated[int, opt("min_new_track_points")] = 0,
    candidates_method: Annotated[str, opt("candidates_method",
                                          help="fixed_window or local_queues.")] = "fixed_window",
    min_match_points: Annotated[int, opt("min_match_points")] = 0,
    features: Annotated[str, opt("features",
                                 help="keypoints, centroids, bboxes or image.")] = "keypoints",
    scoring_method: Annotated[str, opt("scoring_method",
                                       help="oks, cosine_sim, iou or euclidean_dist.")] = "oks",
    scoring_reduction: Annotated[str, opt("scoring_reduction",
                                          help="mean, max or robust_quantile.")] = "mean",
    robust_best_instance: Annotated[float, opt("robust_best_instance")] = 1.0,
    track_matching_method: Annotated[str, opt("track_matching_method",
                                              help="hungarian or greedy.")] = "hungarian",
    max_tracks: Annotated[int | None, opt("max_tracks")] = None,
    use_flow: Annotated[bool, opt("use_flow")] = False,
    of_img_scale: Annotated[float, opt("of_img_scale")] = 1.0,
    of_window_size: Annotated[int, opt("of_window_size")] = 21,
    of_max_levels: Annotated[int, opt("of_max_levels")] = 3,
    oks_stddev: Annotated[float | None, opt("oks_stddev")] = None,
    use_kalman: Annotated[bool, opt("use_kalman")] = False,
    post_connect_single_breaks: Annotated[bool, opt("post_connect_single_breaks")] = False,
    tracking_target_instance_count: Annotated[int | None, opt("tracking_target_instance_count")] = None,
    tracking_pre_cull_to_target: Annotated[int, opt("tracking_pre_cull_to_target")] = 0,
    tracking_pre_cull_iou_threshold: Annotated[float, opt("tracking_pre_cull_iou_threshold")] = 0.0,
    tracking_clean_instance_count: Annotated[int, opt("tracking_clean_instance_count")] = 0,
    tracking_clean_iou_threshold: Annotated[float, opt("tracking_clean_iou_threshold")] = 0.0,
    graph: Annotated[str | None, opt("graph", help="Force a named graph (see `graphs`).")] = None,
    postprocess_workers: Annotated[int, opt("postprocess_workers",
                                            help="Threads for bottom-up grouping.")] = 1,
    torch_threads: Annotated[int | None, opt("torch_threads",
                                             help="CPU threads for the network.")] = None,
    forward_workers: Annotated[int | None, opt("forward_workers",
                                               help="Batches in flight per model (CPU).")] = None,
    channels_last: Annotated[bool, opt("channels_last",
                                       help="Faster CPU convolutions; not bit-identical.")] = False,
    runtime: Annotated[str, opt("runtime", help="Network runtime: auto (fastest verified for the "
                                                "device), torch, onnx or tensorrt.")] = "auto",
    precision: Annotated[str, opt("precision", help="fp32, or fp16/bf16 on CUDA.")] = "fp32",
    stats: Annotated[bool, opt("stats", help="Print the per-stage table at the end.")] = False,
    verbose: Annotated[bool, opt("verbose")] = False,
) -> int:
    """Run pose inference on a video or labels file and write a .slp (sleap-nn track compatible)."""
    from sleapflow.config import InferenceConfig, parse_frames
    from sleapflow.pipeline import default_output_path, prepare, run_to_file
    from sleapflow.tracking import TrackerConfig

    configure_logging(verbose)
    log = structlog.get_logger("sleapflow")
    refinement = None if integral_refinement.lower() in ("none", "null", "") else integral_refinement
    tracker = TrackerConfig(
        window_size=tracking_window_size, min_new_track_points=min_new_track_points,
        candidates_method=candidates_method, min_match_points=min_match_points, features=features,
        scoring_method=scoring_method, scoring_reduction=scoring_reduction,
        robust_best_instance=robust_best_instance, track_matching_method=track_matching_method,
        max_tracks=max_tracks, use_flow=use_flow, of_img_scale=of_img_scale,
        of_window_size=of_window_size, of_max_levels=of_max_levels, oks_stddev=oks_stddev,
        use_kalman=use_kalman, post_connect_single_breaks=post_connect_single_breaks,
        tracking_target_instance_count=tracking_target_instance_count,
        tracking_pre_cull_to_target=tracking_pre_cull_to_target,
        tracking_pre_cull_iou_threshold=tracking_pre_cull_iou_threshold,
        tracking_clean_instance_count=tracking_clean_instance_count,
        tracking_clean_iou_threshold=tracking_clean_iou_threshold,
    )
    cfg = InferenceConfig(
        tracking=tracking, tracker=tracker,
        data_path=data_path, model_paths=tuple(model_paths), output_path=output_path, device=device,
        batch_size=batch_size, queue_maxsize=queue_maxsize, peak_threshold=peak_threshold,
        integral_refinement=refinement, integral_patch_size=integral_patch_size,
        max_instances=max_instances, max_height=max_height, max_width=max_width,
        input_scale=input_scale, ensure_rgb=ensure_rgb, ensure_grayscale=ensure_grayscale,
        crop_size=crop_size, anchor_part=anchor_part, backbone_ckpt_path=backbone_ckpt_path,
        head_ckpt_path=head_ckpt_path, frames=parse_frames(frames), video_index=video_index,
        video_dataset=video_dataset, video_input_format=video_input_format,
        only_labeled_frames=only_labeled_frames, only_suggested_frames=only_suggested_frames,
        exclude_user_labeled=exclude_user_labeled, only_predicted_frames=only_predicted_frames,
        no_empty_frames=no_empty_frames, max_edge_length_ratio=max_edge_length_ratio,
        dist_penalty_weight=dist_penalty_weight, n_points=n_points,
        min_instance_peaks=min_instance_peaks, min_line_scores=min_line_scores,
        filter_overlapping=filter_overlapping, filter_overlapping_method=filter_overlapping_method,
        filter_overlapping_threshold=filter_overlapping_threshold,
        filter_min_visible_nodes=filter_min_visible_nodes,
        filter_min_visible_node_fraction=filter_min_visible_node_fraction,
        filter_min_mean_node_score=filter_min_mean_node_score,
        filter_min_instance_score=filter_min_instance_score, graph=graph,
        postprocess_workers=postprocess_workers, torch_threads=torch_threads,
        forward_workers=forward_workers,
        channels_last=channels_last, runtime=runtime, precision=precision,
    )
    out = output_path or default_output_path(cfg)
    prepared = prepare(cfg)
    log.info("starting", graph=prepared.graph_name, device=prepared.ctx.device,
             runtime=prepared.ctx.runtime.name if prepared.ctx.runtime else None,
             frames=len(prepared.plan.items), output=out)
    label = "Tracking..." if prepared.graph_name == "track_only" else "Predicting..."
    with _Progress(len(prepared.plan.items), label) as progress:
        result = anyio.run(lambda: run_to_file(cfg, output_path=out, on_frame=progress.advance,
                                               prepared=prepared))
    wall = result.stats.wall_s
    log.info("done", frames=progress.done, seconds=round(wall, 2),
             fps=round(progress.done / wall, 1) if wall > 0 else None, output=out)
    if stats:
        print(result.stats.table())
    return 0


@app.command(name="eval")
def evaluate(
    ground_truth_path: Annotated[str, opt("ground_truth_path", "-g", help="Ground-truth .slp.")],
    predicted_path: Annotated[str, opt("predicted_path", "-p", help="Predictions .slp.")],
    save_metrics: Annotated[str | None, opt("save_metrics", "-s",
                                             help="Write metrics .npz (+ .json).")] = None,
    oks_stddev: Annotated[float, opt("oks_stddev")] = 0.025,
    oks_scale: Annotated[float | None, opt("oks_scale")] = None,
    match_threshold: Annotated[float, opt("match_threshold")] = 0.0,
    user_labels_only: Annotated[bool, opt("user_labels_only", negative=True)] = True,
    match_method: Annotated[str, opt("match_method", help="oks, centroid or auto.")] = "auto",
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


@app.command
def graphs(name: Annotated[str | None, Parameter(help="Show this graph's stages and edges.")] = None
           ) -> int:
    """List the named graphs, or show one graph's stages and edges."""
    from sleapflow.graphs import GRAPHS
    from sleapflow.graphs.describe import describe_graph

    if name is None:
        for key, decl in GRAPHS.items():
            print(f"{key:<30} {', '.join(decl.model_types):<32} {decl.description}")
        return 0
    if name not in GRAPHS:
        raise ConfigError(f"unknown graph {name!r}; known graphs: {', '.join(GRAPHS)}")
    print(describe_graph(name))
    return 0


app.command(bench_command, name="bench")


def main(argv: list[str] | None = None) -> int:
    """Entry point: user errors print one line and exit 2, never a traceback."""
    configure_logging()
    try:
        result = app(argv if argv is not None else sys.argv[1:], exit_on_error=False,
                     print_error=True, result_action="return_value")
    except cyclopts.CycloptsError:
        return 2
    except StageError as exc:
        cause = exc.__cause__
        if isinstance(cause, SleapflowError):
            print(f"Error: {cause}", file=sys.stderr)
            return 2
        print(f"Error: {exc}", file=sys.stderr)
        return 1
    except SleapflowError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("Interrupted.", file=sys.stderr)
        return 130
    return result if isinstance(result, int) else 0


if __name__ == "__main__":
    sys.exit(main())

"""Each inference option is declared once (its config field) and every front end offers what the
declaration says: ``track``'s parsed parameters, ``run_inference``'s signature, ``serve``'s model
options and the config's fields; an option added to the config reaches them with no other edit."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Annotated, Any

import cyclopts
import pytest
from cyclopts import Parameter

from sleapflow.cli.app import app, main
from sleapflow.errors import ConfigError
from sleapflow.options.boundary import build_config
from sleapflow.options.config import (
    ExecutionOptions,
    FilterOptions,
    GroupingOptions,
    InferenceConfig,
    InputOptions,
    OutputOptions,
    PeakOptions,
    PreprocessingOptions,
    TrackingOptions,
)
from sleapflow.options.declared import (
    cli_options,
    declared,
    front_options,
    keyword_signature,
    neutral_options,
    option_values,
    provenance_keys,
)
from sleapflow.options.role import Role
from sleapflow.options.spelling import canonical_argv, opt
from sleapflow.options.tracker import TrackerConfig
from sleapflow.predict import arun_inference, run_inference

#: What each command takes besides the inference options: its own, declared by hand.
TRACK_OWN = {"data_path", "input_list", "overwrite", "ray", "ray_workers", "ray_chunk_frames",
             "ray_gpus_per_worker", "max_retries", "summary_json", "output_format", "csv_format",
             "render", "gui", "stats", "verbose", "preempt_signals",
             *(f"nwb_{k}" for k in ("metadata", "subject_id", "species", "sex", "age",
                                   "session_description", "session_start_time", "experimenter",
                                   "lab", "institution", "frame_rate"))}
SERVE_OWN = {"host", "port", "token", "insecure", "max_pending", "queue_wait_ms", "stream_inflight",
             "max_body_mb", "max_connections", "max_frame_side", "video_root", "graceful_timeout_s",
             "verbose", "max_image_pixels", "request_timeout_s", "idle_timeout_s"}
RUN_INFERENCE_OWN = {"data_path", "input_labels", "input_video", "return_confmaps", "return_pafs",
                     "return_paf_graph", "return_class_maps", "return_class_vectors", "make_labels",
                     "gui"}


def _cli_arguments(command: str) -> dict[str, Any]:
    """The options cyclopts actually parses for ``command``: name -> its Argument."""
    return {a.field_info.name: a for a in app[command].assemble_argument_collection()
            if not a.children}


def _keywords(front: str, config: type = InferenceConfig) -> dict[str, Any]:
    return {o.keyword: o.default_for(front) for o in front_options(front, config)}


# --------------------------------------------------------------------------------------------
# Every front end offers exactly its declared options, with the declared defaults
# --------------------------------------------------------------------------------------------


def test_track_parses_exactly_the_declared_options() -> None:
    args = _cli_arguments("track")
    declared_track = _keywords("track")
    assert set(args) - TRACK_OWN == set(declared_track)
    for o in front_options("track"):
        arg = args[o.keyword]
        assert o.flag in arg.names, o.keyword
        assert arg.field_info.default == o.default_for("track"), o.keyword
        assert (arg.parameter.help or "").strip(), o.keyword
    # The user-visible contract, independent of how it is derived.
    assert "--max_batch_delay_ms" not in {n for a in args.values() for n in a.names}
    assert {"-i", "-m", "-o", "-d", "-b", "-n", "-t"} <= {n for a in args.values() for n in a.names}
    assert "--tracker" in args["tracker_name"].names and "--no-ensure_rgb" in args["ensure_rgb"].negatives
    assert (args["batch_size"].field_info.default, args["queue_maxsize"].field_info.default,
            args["tracking_window_size"].field_info.default) == (4, 32, 5)


def test_serve_parses_exactly_the_declared_model_options() -> None:
    args = _cli_arguments("serve")
    assert set(args) - SERVE_OWN == set(_keywords("serve"))
    for o in front_options("serve"):
        assert args[o.keyword].field_info.default == o.default_for("serve"), o.keyword
    # serve batches small and waits briefly, on purpose, where track does not.
    assert {k: args[k].field_info.default for k in ("batch_size", "queue_maxsize",
                                                    "max_batch_delay_ms")} == \
        {"batch_size": 8, "queue_maxsize": 16, "max_batch_delay_ms": 5.0}


def test_run_inference_signature_is_the_declared_options_in_sleap_nn_order() -> None:
    params = inspect.signature(run_inference).parameters
    options = [k for k in params if k not in RUN_INFERENCE_OWN]
    assert options == list(_keywords("run_inference"))  # same names, declaration order
    for name, default in _keywords("run_inference").items():
        assert params[name].default == default, name
    # sleap-nn's order and defaults where positional calls and old callers depend on them.
    names = list(params)
    assert names[:7] == ["data_path", "input_labels", "input_video", "model_paths",
                         "backbone_ckpt_path", "head_ckpt_path", "max_instances"]
    assert names[names.index("integral_patch_size") + 1] == "return_confmaps"
    assert names[-3:] == ["gui", "runtime", "precision"]
    assert (params["model_paths"].default, params["queue_maxsize"].default,
            params["make_labels"].default) == (None, 32, True)
    assert not {"max_batch_delay_ms", "resume", "skip_existing", "shard", "inputs"} & set(params)


def test_the_config_fields_are_the_declared_options() -> None:
    top = {o.field for o in declared() if o.within is None}
    # The input (each front end names it its own way) and the tracker sub-config are not options.
    assert set(InferenceConfig.__struct_fields__) == top | {"data_path", "inputs", "tracker"}
    assert set(TrackerConfig.__struct_fields__) == {o.field for o in declared() if o.within == "tracker"}


def test_each_sub_config_holds_its_group() -> None:
    views = {"input": InputOptions, "preprocessing": PreprocessingOptions, "peaks": PeakOptions,
             "grouping": GroupingOptions, "filters": FilterOptions, "tracking": TrackingOptions,
             "output": OutputOptions, "execution": ExecutionOptions}
    extra = {"input": {"data_path", "inputs"}, "tracking": {"tracker"}}
    for group, view in views.items():
        fields = {o.field for o in declared() if o.within is None and o.role.group == group}
        assert set(view.__struct_fields__) == fields | extra.get(group, set()), group


@pytest.mark.parametrize("front", ["track", "run_inference", "serve", "open_graph"])
def test_each_front_ends_defaults_build_the_config_they_declare(front: str) -> None:
    cfg = build_config(**_keywords(front))
    for o in front_options(front):
        value = getattr(cfg.tracker if o.within == "tracker" else cfg, o.field)
        expected = o.default_for(front)
        assert value == (() if expected is None and o.field == "model_paths" else expected), o.keyword


def test_provenance_and_resume_keep_their_keys() -> None:
    """The provenance record's keys and order, and what a resume may change, are unchanged."""
    assert provenance_keys() == (
        "peak_threshold", "filter_overlapping", "filter_overlapping_method",
        "filter_overlapping_threshold", "filter_min_visible_nodes", "filter_min_visible_node_fraction",
        "filter_min_mean_node_score", "filter_min_instance_score", "integral_refinement",
        "integral_patch_size", "batch_size", "max_instances", "crop_size", "input_scale", "anchor_part",
        "queue_maxsize", "runtime", "precision")
    assert neutral_options() == {"output_path", "queue_maxsize", "postprocess_workers", "torch_threads",
                                 "forward_workers", "device", "max_failed_frames", "resume",
                                 "skip_existing", "stream_timeout", "publish"}


def test_every_declared_flag_has_a_hyphenated_spelling() -> None:
    for o in declared():
        hyphenated = "--" + o.flag[2:].replace("_", "-")
        assert canonical_argv([hyphenated, "1"]) == [o.flag, "1"]


# --------------------------------------------------------------------------------------------
# What the front ends parse reaches the config
# --------------------------------------------------------------------------------------------


def test_track_command_line_reaches_the_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sleapflow.jobs.job as jobs_job

    seen: dict[str, Any] = {}

    def fake_plan_job(cfg: InferenceConfig, **kwargs: Any) -> str:
        seen.update(cfg=cfg, kwargs=kwargs)
        return "planned"

    def fake_run(job: Any, **kwargs: Any) -> Any:
        assert job == "planned"
        return jobs_job.JobResult(labels=None, stats=None)  # type: ignore[arg-type]

    monkeypatch.setattr(jobs_job, "plan_job", fake_plan_job)
    monkeypatch.setattr(jobs_job, "run_job_with_progress", fake_run)
    video = tmp_path / "clip.mp4"
    video.write_bytes(b"")
    assert main(["track", "-i", str(video), "-m", "model", "--batch-size", "7", "-n", "2",
                 "--tracking_window_size", "9", "--frames", "0-3,8", "--integral_refinement", "none",
                 "--kf_node_indices", "0,1", "--no-ensure_rgb", "--tracker", "sort", "--resume",
                 "--peak_threshold", "0.3", "--video_input_format", "channels_first"]) == 0
    cfg = seen["cfg"]
    assert (cfg.batch_size, cfg.max_instances, cfg.tracker.window_size, cfg.frames) == (7, 2, 9, ((0, 3), 8))
    assert (cfg.integral_refinement, cfg.tracker.kf_node_indices, cfg.ensure_rgb) == (None, (0, 1), False)
    assert (cfg.tracker.tracker, cfg.peak_threshold, cfg.model_paths) == ("sort", 0.3, ("model",))
    assert cfg.video_input_format == "channels_first" and cfg.queue_maxsize == 32
    assert seen["kwargs"]["resume"] is True and cfg.resume is False  # the job's, not the config's


def test_run_inference_keywords_reach_the_config(monkeypatch: pytest.MonkeyPatch) -> None:
    import sleapflow.predict as predict

    async def fake_execute(call: Any) -> Any:
        return call

    monkeypatch.setattr(predict, "_execute", fake_execute)
    call: Any = run_inference(data_path="clip.mp4", model_paths=["m"], batch_size=7,
                              tracking_window_size=9, frames=[0, (2, 4)], peak_threshold=[0.1, 0.4])
    assert (call.cfg.batch_size, call.cfg.tracker.window_size, call.cfg.frames) == (7, 9, (0, (2, 4)))
    assert call.cfg.peak_threshold == (0.1, 0.4) and call.cfg.model_paths == ("m",)
    positional: Any = run_inference("clip.mp4", None, None, ["m"], None, None, 3)  # sleap-nn's order
    assert positional.cfg.max_instances == 3 and positional.cfg.data_path == "clip.mp4"


def test_unknown_keywords_are_config_errors() -> None:
    with pytest.raises(ConfigError, match=r"unknown argument.*max_batch_delay_ms"):
        run_inference(data_path="clip.mp4", model_paths=["m"], max_batch_delay_ms=5.0)
    with pytest.raises(ConfigError, match=r"run_inference: .*multiple values"):
        run_inference("clip.mp4", data_path="clip.mp4")


@pytest.mark.anyio
async def test_async_unknown_keywords_are_config_errors() -> None:
    with pytest.raises(ConfigError, match=r"unknown argument.*batchsize"):
        await arun_inference(data_path="clip.mp4", model_paths=["m"], batchsize=2)


# --------------------------------------------------------------------------------------------
# A new option: declared on the config, it reaches every front end's derivation
# --------------------------------------------------------------------------------------------


class _Extended(InferenceConfig, frozen=True, forbid_unknown_fields=True, kw_only=True):
    smoothing: Annotated[int, opt("smoothing_window", help="Frames averaged per point."),
                         Role("filters", fronts=frozenset({"track", "run_inference"}),
                              defaults={"run_inference": 1})] = 3


_ExtendedOptions: Any = cli_options("track", config=_Extended)


def _toy_track(*, options: Annotated[_ExtendedOptions, Parameter(name="*")] = _ExtendedOptions()) -> Any:  # noqa: B008
    return option_values(options)


def test_a_new_option_reaches_the_command_line_and_the_signature() -> None:
    toy = cyclopts.App(result_action="return_value")
    toy.default(_toy_track)
    parsed = toy(["--smoothing_window", "5", "--batch_size", "2"], exit_on_error=False)
    assert parsed["smoothing_window"] == 5 and parsed["batch_size"] == 2
    assert toy([], exit_on_error=False)["smoothing_window"] == 3

    sig = keyword_signature("run_inference", config=_Extended).parameters
    assert sig["smoothing_window"].default == 1 and list(sig)[-1] == "smoothing_window"
    assert "smoothing_window" not in _keywords("serve", _Extended)
    assert "smoothing_window" not in _keywords("track")  # the real config is untouched
    assert provenance_keys(_Extended) == provenance_keys()
    assert "smoothing" not in neutral_options(_Extended)

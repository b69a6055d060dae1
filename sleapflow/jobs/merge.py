"""``sleapflow merge``: join the per-shard outputs of one video into one ``.slp``, then track it."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import sleap_io as sio

from sleapflow.errors import ConfigError
from sleapflow.logs import get_logger
from sleapflow.outputs.provenance import add_seed_names
from sleapflow.outputs.slp_read import read_slp
from sleapflow.tracking.track_only import copy_instance

__all__ = ("check_shard_set", "merge_command", "merge_shards", "merged_provenance")


log = get_logger(__name__)


def check_shard_set(paths: Sequence[str], shards: Sequence[sio.Labels], *,
                    allow_partial: bool = False) -> None:
    """Shards made by ``track --shard I/N`` record ``[I, N]``: they must be one set (the same N,
    no shard twice) and, unless ``allow_partial``, a whole one. Outputs that do not record it
    (Ray's chunks, older files) are not checked."""
    recorded = [(path, (labels.provenance or {}).get("shard")) for path, labels in zip(paths, shards)]
    marks = [(path, tuple(mark)) for path, mark in recorded if mark is not None]
    if not marks:
        return
    if len(marks) < len(recorded):
        unmarked = next(path for path, mark in recorded if mark is None)
        raise ConfigError(f"{unmarked!r} is not a --shard output, but {marks[0][0]!r} is; merge "
                          "the shards of one --shard run")
    counts = {n for _, (_, n) in marks}
    if len(counts) > 1:
        raise ConfigError(f"the shards come from runs with different --shard N ({sorted(counts)}); "
                          "merge the shards of one run")
    n = counts.pop()
    seen: dict[int, str] = {}
    for path, (i, _) in marks:
        if i in seen:
            if Path(path).resolve() == Path(seen[i]).resolve():
                raise ConfigError(f"{path!r} is given twice; give each shard once")
            raise ConfigError(f"{path!r} and {seen[i]!r} are both shard {i} of {n}; give each "
                              "shard once")
        seen[i] = path
    missing = [i for i in range(1, n + 1) if i not in seen]
    if missing and not allow_partial:
        raise ConfigError(f"shard(s) {', '.join(map(str, missing))} of {n} are missing: the "
                          "merged output would lack their frames. Give every shard, or pass "
                          "--allow_partial to merge these anyway")
    if missing:
        log.warning("merging an incomplete set of shards", missing=missing, of=n)


def merge_shards(paths: Sequence[str], *, allow_partial: bool = False) -> sio.Labels:
    """One ``Labels`` with every frame of the shards, in frame order, on the first shard's
    video and skeleton. The shards must be outputs for the same video with disjoint frames,
    and every shard of their run unless ``allow_partial``."""
    if not paths:
        raise ConfigError("sleapflow merge needs the shard outputs to join")
    shards = [read_slp(p, "shard output") for p in paths]
    base = shards[0]
    if len(base.videos) != 1:
        raise ConfigError(f"{paths[0]!r} has {len(base.videos)} videos; merge joins the shards "
                          "of one video")
    video, skeleton = base.videos[0], base.skeletons[0]
    tracks: dict[str, sio.Track] = {}
    frames: dict[int, sio.LabeledFrame] = {}
    processed = 0
    for path, labels in zip(paths, shards):
        if len(labels.videos) != 1 or Path(str(labels.videos[0].filename)).name != \
                Path(str(video.filename)).name:
            raise ConfigError(f"{path!r} is not an output for the video of {paths[0]!r} "
                              f"({Path(str(video.filename)).name}); merge the shards of one video")
        if [n.name for n in labels.skeletons[0].nodes] != [n.name for n in skeleton.nodes]:
            raise ConfigError(f"{path!r} has another skeleton than {paths[0]!r}")
    check_shard_set(paths, shards, allow_partial=allow_partial)
    for path, labels in zip(paths, shards):
        selection = (labels.provenance or {}).get("frame_selection") or {}
        processed += int(selection.get("frames_processed", len(labels.labeled_frames)))
        for lf in labels.labeled_frames:
            if lf.frame_idx in frames:
                raise ConfigError(f"frame {lf.frame_idx} is in {path!r} and in another shard; "
                                  "the shards overlap (were they made with the same --shard N?)")
            instances = []
            for inst in lf.instances:
                inst = copy_instance(inst)
                inst.skeleton = skeleton
                if inst.track is not None:
                    name = inst.track.name
                    inst.track = tracks.setdefault(name, sio.Track(name=name))
                instances.append(inst)
            frames[lf.frame_idx] = sio.LabeledFrame(video=video, frame_idx=lf.frame_idx,
                                                    instances=instances)
    merged = sio.Labels(labeled_frames=[frames[f] for f in sorted(frames)], videos=[video],
                        skeletons=[skeleton], tracks=list(tracks.values()))
    merged.provenance = merged_provenance(shards, paths, merged, frames_processed=processed)
    return merged


def merged_provenance(shards: Sequence[sio.Labels], paths: Sequence[str], merged: sio.Labels, *,
                      frames_processed: int) -> dict[str, Any]:
    """The provenance of the whole video from its shards': the first shard's settings, the run
    spanning all of them (first start, last end, summed run time), every shard's frames and
    decode failures counted, and the shards' paths under ``merged_from``. The seed's top-level
    names are derived again from these, so the keys are those of a single run of the video."""
    provs = [dict(s.provenance or {}) for s in shards]
    # sleap-io adds "filename" on saving; "shard" names one shard, and this is the whole video.
    out = {k: v for k, v in provs[0].items() if k not in ("filename", "shard")}
    out["merged_from"] = [str(p) for p in paths]
    if "frame_selection" in out:
        out["frame_selection"] = {**out["frame_selection"], "frames_processed": frames_processed}
    starts = [p["inference_start_timestamp"] for p in provs if "inference_start_timestamp" in p]
    ends = [p["inference_end_timestamp"] for p in provs if "inference_end_timestamp" in p]
    if starts and ends:
        out["inference_start_timestamp"], out["inference_end_timestamp"] = min(starts), max(ends)
        out["inference_runtime_seconds"] = sum(float(p.get("inference_runtime_seconds") or 0.0)
                                               for p in provs)
    if any("frames_failed" in p for p in provs):
        out["frames_failed"] = sum(int(p.get("frames_failed") or 0) for p in provs)
        out["frames_failed_indices"] = sorted({int(f) for p in provs
                                               for f in p.get("frames_failed_indices") or []})
    return add_seed_names(out, merged)


def merge_command(paths: Sequence[str], output_path: str, *, tracking: bool = False,
                  allow_partial: bool = False, **tracker_options: Any) -> sio.Labels:
    """Merge ``paths`` into ``output_path``; with ``tracking``, track the merged predictions
    with the ``track_only`` graph (the same tracker a single-process run uses)."""
    import anyio

    from sleapflow.jobs.job import plan_job, run_job
    from sleapflow.options.boundary import build_config
    from sleapflow.outputs.files import check_output_path, save_slp_safely

    for p in paths:
        check_output_path(output_path, input_path=p)
    merged = merge_shards(paths, allow_partial=allow_partial)

    if not tracking:
        save_slp_safely(merged, output_path)
        return merged
    cfg = build_config(tracking=True, output_path=output_path, **tracker_options)
    job = plan_job(cfg, input_labels=merged)  # tracked in memory; saved below with the shards'
    result = anyio.run(run_job, job)          # provenance
    tracked = result.labels
    tracker = job.run.ctx.tracker
    assert tracked is not None and tracker is not None
    # The output is the video's inference output, tracked: its provenance is the shards',
    # merged, with the tracker that ran (the keys of a single tracked run).
    tracked.provenance = add_seed_names(
        {**merged.provenance, "tracking_config": dict(tracker.legacy_provenance())},
        tracked)
    save_slp_safely(tracked, output_path)
    return tracked

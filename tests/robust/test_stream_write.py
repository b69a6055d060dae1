"""The ``.slp`` written from the journal in slices equals, table for table, the one sleap-io
writes from the in-memory ``Labels`` of the same run (top-down with tracking, bottom-up)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
import sleap_io as sio

from sleapflow.cli.app import main

#: Provenance keys that hold the run's own clock.
TIMING = {"inference_start_timestamp", "inference_end_timestamp", "inference_runtime_seconds",
          "timestamp_start", "timestamp_end", "runtime_sec"}


def _untimed(text: str | bytes) -> Any:
    doc = json.loads(text)
    prov = doc.get("provenance", doc)
    for key in TIMING:
        prov.pop(key, None)
    return doc


def contents(path: Path) -> dict[str, Any]:
    """Every group and dataset: dtype, shape, layout, attributes and data (provenance JSON
    without its timestamps)."""
    out: dict[str, Any] = {}
    with h5py.File(path, "r") as f:
        def visit(name: str, obj: Any) -> None:
            attrs = {k: (_untimed(v) if k == "json" else v) for k, v in obj.attrs.items()}
            if isinstance(obj, h5py.Dataset):
                data, dtype = obj[()], str(obj.dtype)
                if name == "provenance_json":
                    # Its string type's length follows the timestamps' digits.
                    data, dtype = _untimed(data), obj.dtype.kind
                elif obj.dtype.kind != "O":
                    data = data.tobytes()
                else:
                    data = list(data)
                out[name] = (dtype, obj.shape, obj.chunks, obj.compression, attrs, data)
            else:
                out[name] = ("group", attrs)
        visit("/", f)
        f.visititems(visit)
    return out


CASES = {
    "topdown_tracking": (["-m", "model_ckpts/minimal_instance_centroid",
                          "-m", "model_ckpts/minimal_instance_centered_instance",
                          "--tracking", "--frames", "0-11"], "centered_pair_small.mp4"),
    "bottomup_no_empty": (["-m", "model_ckpts/minimal_instance_bottomup", "--frames", "0-5",
                           "--no_empty_frames"], "small_robot.mp4"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_streamed_slp_equals_in_memory_slp(case: str, assets: Path, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from sleapflow.outputs import slp_stream

    # Small slices, so the tables are written in several (by frames and by instances).
    monkeypatch.setattr(slp_stream, "CHUNK_FRAMES", 5)
    monkeypatch.setattr(slp_stream, "CHUNK_INSTANCES", 7)
    opts, clip = CASES[case]
    opts = [a if not a.startswith("model_ckpts/") else str(assets / a) for a in opts]
    args = ["track", "-i", str(assets / "datasets" / clip), *opts, "--device", "cpu"]
    streamed, in_memory = tmp_path / "streamed.slp", tmp_path / "in_memory.slp"
    assert main([*args, "-o", str(streamed)]) == 0
    # A second format needs the Labels, so this run builds them and sleap-io writes the .slp.
    assert main([*args, "-o", str(in_memory), "--output_format", "slp",
                 "--output_format", "csv"]) == 0
    a, b = contents(streamed), contents(in_memory)
    assert sorted(a) == sorted(b)
    for name in a:
        assert a[name] == b[name], name
    labels = sio.load_slp(str(streamed))
    n_instances = sum(len(lf.instances) for lf in labels)
    assert len(labels) > 0 and n_instances > 0
    assert all(np.isfinite(inst.score) for lf in labels for inst in lf.instances)
    if case == "topdown_tracking":
        assert len(labels.tracks) >= 2
        assert all(inst.track is not None for lf in labels for inst in lf.instances)
    else:
        assert all(len(lf.instances) > 0 for lf in labels)
    assert not any(p.name.endswith(".journal") or ".tmp" in p.name for p in tmp_path.iterdir())


def _predictions() -> list[Any]:
    """Frames with every case the tables distinguish: empty frames, an all-NaN instance (not
    written), NaN nodes, instances with and without tracks and tracking scores, two videos."""
    from sleapflow.messages import FramePrediction

    rng = np.random.default_rng(3)
    preds = []
    for seq in range(12):
        n = [2, 0, 3, 1, 0, 2][seq % 6]
        points = rng.uniform(0, 90, (n, 2, 2))
        if n >= 3:
            points[1] = np.nan  # every node missing: the instance is dropped
        if n >= 2:
            points[0, 1] = np.nan
        names = tuple(["track_b", None, "track_a"][i % 3] for i in range(n)) if seq > 2 else None
        scores = rng.uniform(0, 1, n)
        if n:
            scores[-1] = np.nan
        preds.append(FramePrediction(
            seq=seq, video_id=seq % 2, frame_idx=seq // 2, points=points,
            point_scores=rng.uniform(0, 1, (n, 2)), instance_scores=rng.uniform(0, 1, n),
            track_names=names, tracking_scores=scores if names is not None else None))
    return preds


@pytest.mark.parametrize(("keep_empty", "no_empty"), [(True, False), (True, True), (False, False)])
def test_streamed_tables_cover_empty_frames_dropped_instances_and_tracks(
        keep_empty: bool, no_empty: bool, assets: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    from sleapflow.outputs import slp_stream
    from sleapflow.outputs.journal import JournalWriter
    from sleapflow.stages.write import LabelsBuilder, SlpWriter

    videos = [sio.Video.from_filename(str(assets / "datasets" / name))
              for name in ("small_robot.mp4", "centered_pair_small.mp4")]
    skeleton = sio.Skeleton(["head", "tail"])
    monkeypatch.setattr(slp_stream, "CHUNK_FRAMES", 4)
    monkeypatch.setattr(slp_stream, "CHUNK_INSTANCES", 3)
    outputs = {}
    for mode in ("in_memory", "streamed"):
        builder = LabelsBuilder(videos, skeleton, keep_empty_frames=keep_empty,
                                track_order=("track_unused", "track_a"))
        out = tmp_path / f"{mode}.slp"
        streamed = mode == "streamed"
        journal = JournalWriter(tmp_path / f".{out.name}.journal", {"graph": "t"}) if streamed else None
        writer = SlpWriter(builder, output_path=out, no_empty_frames=no_empty, journal=journal,
                           stream=streamed)
        for pred in _predictions():
            if mode == "streamed":
                writer.journal.add(pred)
                builder.count(pred)
            else:
                builder.add(pred)
        result = writer.finish()
        assert (result is None) == (mode == "streamed")  # only the in-memory path has Labels
        outputs[mode] = out
    a, b = contents(outputs["streamed"]), contents(outputs["in_memory"])
    assert sorted(a) == sorted(b)
    for name in a:
        assert a[name] == b[name], name
    labels = sio.load_slp(str(outputs["streamed"]))
    assert [t.name for t in labels.tracks] == ["track_a", "track_b"]  # used ones, in order
    empty = sum(1 for lf in labels if not lf.instances)
    assert (empty > 0) == (keep_empty and not no_empty)
    assert not (tmp_path / ".streamed.slp.journal").exists()

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

from sleapflow.cli import main

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
    from sleapflow import slp_stream

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

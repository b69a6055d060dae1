"""Frame ranges, peak caps and crop parts: bounded work whatever the input asks for."""

from __future__ import annotations

from pathlib import Path

import anyio
import numpy as np
import pytest
import torch

from sleapflow.errors import ConfigError
from sleapflow.ops import caps as limits
from sleapflow.options.frames import SpanSequence, parse_frames, unique_spans
from sleapflow.outputs.journal import JournalWriter, read_records


def test_parse_frames_holds_ranges() -> None:
    assert parse_frames("0-99999999,5,7-7") == ((0, 99999999), 5, 7)
    with pytest.raises(ConfigError, match="too large"):
        parse_frames("1" * 400)


def test_unique_spans_keep_order_drop_repeats_and_clip() -> None:
    spans, repeats, outside = unique_spans(((10, 19), (0, 4), (15, 24), 3), limit=22)
    assert spans == [(10, 20), (0, 5), (20, 22)]
    assert repeats == 5 + 1 and outside == 3
    seq = SpanSequence(spans, int)
    assert len(seq) == 17 and list(seq[8:13]) == [18, 19, 0, 1, 2] and seq[-1] == 21


def test_cap_peaks_keeps_the_highest_per_group_in_raster_order() -> None:
    gen = torch.Generator().manual_seed(0)
    n = 50
    vals = torch.rand(n, generator=gen)
    samples = torch.tensor([0] * 30 + [1] * 20, dtype=torch.int32)
    channels = torch.tensor([0, 1] * 25, dtype=torch.int32)
    points = torch.arange(n, dtype=torch.float32)[:, None].repeat(1, 2)
    p, v, _, _ = limits.cap_peaks(points, vals, samples, channels, 4, n_channels=2, what="test")
    expected = []
    for group in range(4):
        mine = [i for i in range(n) if samples[i] * 2 + channels[i] == group]
        top = sorted(mine, key=lambda i: -float(vals[i]))[:4]
        expected.extend(top)
    assert p[:, 0].long().tolist() == sorted(expected)  # original (raster) order kept
    assert torch.equal(v, vals[sorted(expected)])


def test_crop_parts_give_the_same_predictions(assets: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Splitting every frame's crops into parts of one changes nothing in the output."""
    from sleapflow.jobs.job import plan_job, run_job
    from sleapflow.options.config import InferenceConfig
    from sleapflow.stages import topdown

    cfg = InferenceConfig(
        data_path=str(assets / "datasets/centered_pair_small.mp4"), device="cpu",
        model_paths=(str(assets / "model_ckpts/minimal_instance_centroid"),
                     str(assets / "model_ckpts/minimal_instance_centered_instance")),
        frames=((0, 3),))

    def points() -> list[np.ndarray]:
        labels = anyio.run(run_job, plan_job(cfg)).labels
        return [inst.numpy() for lf in labels for inst in lf.instances]

    whole = points()
    monkeypatch.setattr(topdown, "MAX_CROPS_PER_PART", 1)
    parts = points()
    assert len(whole) == len(parts) >= 4
    for a, b in zip(whole, parts, strict=True):
        np.testing.assert_array_equal(a, b)


def test_torn_journal_tail_is_dropped(tmp_path: Path) -> None:
    from sleapflow.messages import FramePrediction

    path = tmp_path / "j"
    journal = JournalWriter(path, {"graph": "g"})
    for i in range(3):
        journal.add(FramePrediction(seq=i, video_id=0, frame_idx=i, points=np.zeros((1, 2, 2)),
                                    point_scores=np.zeros((1, 2)), instance_scores=np.zeros(1)))
    journal.close()
    data = path.read_bytes()
    path.write_bytes(data[:-5])  # a kill -9 in the middle of the last record
    kinds = [rec["k"] for rec, _ in read_records(path)]
    assert kinds == ["h", "f", "f"]


@pytest.mark.parametrize(("options", "accepted"), [
    ({"crop_size": 32768}, False), ({"input_scale": 30.0}, False),
    ({"max_height": 8192, "max_width": 8192}, False), ({"crop_size": 2048}, True),
])
def test_network_inputs_are_sized_from_the_frames_before_any_weights_load(
        assets: Path, options: dict, accepted: bool) -> None:
    from sleapflow.graphs.build import MAX_NETWORK_PIXELS, prepare
    from sleapflow.options.boundary import build_config

    cfg = build_config(
        data_path=str(assets / "datasets/centered_pair_small.mp4"), frames=((0, 1),),
        model_paths=(str(assets / "model_ckpts/minimal_instance_centroid"),
                     str(assets / "model_ckpts/minimal_instance_centered_instance")),
        device="cpu", **options)
    if accepted:
        run = prepare(cfg)
        assert run.graph.name == "topdown"
        return
    with pytest.raises(ConfigError, match="network input") as info:
        prepare(cfg)
    sides = [int(v) for v in str(info.value).split("network input ")[1].split(" pixels")[0].split(" x ")]
    assert sides[0] * sides[1] > MAX_NETWORK_PIXELS

"""Numpy PAF line scoring (ops.host_paf) and the bottom-up peak stage on numpy maps, against torch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from sleapflow.messages import FrameInfo, ModelInput, ModelOutput
from sleapflow.ops import host_paf, host_peaks, paf
from sleapflow.ops.paf import PafScores
from sleapflow.stages.bottomup import PafGrouping, PafPeaks
from sleapflow.stages.peaks import PeakSettings

_INDEX_FIELDS = ("sample_inds", "edge_inds", "src_inds", "dst_inds", "src_ranks", "dst_ranks")


def _both(pafs: np.ndarray, points: np.ndarray, samples: np.ndarray, channels: np.ndarray,
          edges: list[tuple[int, int]], **kwargs: float) -> tuple[PafScores, PafScores]:
    got = host_paf.score_paf_lines(pafs, points, samples, channels, edges, **kwargs)
    ref = paf.score_paf_lines(torch.from_numpy(pafs), torch.from_numpy(points),
                              torch.from_numpy(samples), torch.from_numpy(channels), edges,
                              **kwargs).to_numpy()
    return got, ref


def _assert_same(got: PafScores, ref: PafScores) -> None:
    """Same candidates in the same order; scores within 1e-6, bit for bit on AVX2 CPUs (the
    summation order the numpy form reproduces)."""
    assert len(got) == len(ref)
    for name in _INDEX_FIELDS:
        g, r = getattr(got, name), getattr(ref, name)
        assert isinstance(g, np.ndarray) and g.dtype == np.int64
        np.testing.assert_array_equal(g, r, err_msg=name)
    assert got.line_scores.dtype == np.float32
    np.testing.assert_allclose(got.line_scores, ref.line_scores, atol=1e-6, rtol=0)
    if torch.backends.cpu.get_cpu_capability() == "AVX2":
        np.testing.assert_array_equal(got.line_scores, ref.line_scores)


@pytest.mark.parametrize(("n_points", "stride", "ratio"), [(10, 4, 0.25), (5, 2, 0.02), (13, 8, 0.25)])
def test_numpy_scores_equal_torch_on_random_peaks(n_points: int, stride: int, ratio: float) -> None:
    rng = np.random.default_rng(n_points)
    edges = [(0, 1), (1, 2), (0, 3), (3, 4)]  # node 5 has peaks but no edge
    n_frames, height, width = 3, 24, 32
    pafs = rng.standard_normal((n_frames, 2 * len(edges), height, width)).astype(np.float32)
    n = 160
    # Some points past the map's far edge: their samples clamp to the border.
    points = (rng.random((n, 2), dtype=np.float32) * [width * stride * 1.1, height * stride * 1.1]
              ).astype(np.float32)
    samples = np.sort(rng.choice([0, 2], n)).astype(np.int32)  # frame 1 has no peaks
    channels = rng.integers(0, 6, n).astype(np.int32)
    points[3] = points[4]  # a zero-length line (if the nodes pair up): NaN score
    channels[3], channels[4], samples[3], samples[4] = 0, 1, 0, 0
    points[7] = np.nan  # a refinement patch that summed to zero
    got, ref = _both(pafs, points, samples, channels, edges, pafs_stride=stride,
                     n_points=n_points, max_edge_length_ratio=ratio, dist_penalty_weight=1.5)
    assert len(got) > 1000 and 1 not in got.sample_inds.tolist()
    assert np.isnan(got.line_scores).any() and (got.line_scores < -1).any()  # penalised lines
    _assert_same(got, ref)


def test_line_sample_positions_are_torchs_linspace() -> None:
    """Where a line's samples fall decides which PAF pixel they read: a last-bit difference
    from torch's float32 linspace could move a sample across a rounding boundary."""
    for n in range(1, 65):
        np.testing.assert_array_equal(host_paf._linspace01(n),
                                      torch.linspace(0, 1, n, dtype=torch.float32).numpy())


def test_numpy_scores_without_candidates_are_empty_like_torch() -> None:
    pafs = np.zeros((2, 2, 8, 8), np.float32)
    points = np.array([[1.0, 2.0], [3.0, 4.0]], np.float32)
    for samples, channels in ((np.array([0, 1]), np.array([0, 1])), (np.zeros(0), np.zeros(0))):
        got, ref = _both(pafs, points[: len(samples)], samples.astype(np.int32),
                         channels.astype(np.int32), [(0, 1)], pafs_stride=2)
        assert len(got) == len(ref) == 0
    with pytest.raises(ValueError, match="channels"):
        host_paf.score_paf_lines(pafs, points, np.array([0, 0]), np.array([0, 1]),
                                 [(0, 1), (1, 0)], pafs_stride=2)


@pytest.fixture(scope="module")
def real_maps(assets: Path) -> dict[str, np.ndarray]:
    """The shared bottom-up model's torch maps on two frames of its video."""
    import sleap_io as sio

    from sleapflow.backends.runners import TorchRunner
    from sleapflow.models import load_model

    video = sio.load_video(str(assets / "datasets" / "centered_pair_small.mp4"))
    frames = np.stack([np.asarray(video[i]) for i in (0, 40)]).transpose(0, 3, 1, 2)
    model = load_model(assets / "model_ckpts" / "minimal_instance_bottomup")
    heads = TorchRunner(model.module, torch.device("cpu"))(torch.from_numpy(np.ascontiguousarray(frames)))
    return {name: maps.numpy() for name, maps in heads.items()}


def test_numpy_scores_equal_torch_on_real_maps(real_maps: dict[str, np.ndarray]) -> None:
    cms, pafs = real_maps["MultiInstanceConfmapsHead"], real_maps["PartAffinityFieldsHead"]
    points, _, samples, channels = host_peaks.find_local_peaks(cms, 0.05)
    got, ref = _both(pafs, points * np.float32(2), samples, channels, [(0, 1)], pafs_stride=4)
    assert len(got) >= 4 and set(got.sample_inds.tolist()) == {0, 1}
    _assert_same(got, ref)


def _output(heads: dict[str, object]) -> ModelOutput:
    frames = tuple(FrameInfo(seq=i, video_id=0, frame_idx=i, height=384, width=384) for i in range(2))
    return ModelOutput(seq=0, heads=heads, input=ModelInput(seq=0, frames=frames, tensor=None,
                                                            eff_scale=np.ones(2)))


def test_bottomup_stages_on_numpy_maps_give_the_torch_maps_poses(
        real_maps: dict[str, np.ndarray]) -> None:
    """The stage reads numpy maps without torch and finds the same peaks, candidates and
    instances as on torch tensors (peaks within the refinement's summation order)."""
    edges = [(0, 1)]
    peaks = PafPeaks("MultiInstanceConfmapsHead", "PartAffinityFieldsHead", 2, 4, edges,
                     PeakSettings(0.2, "integral", 5), n_points=10, max_edge_length_ratio=0.25,
                     dist_penalty_weight=1.0)
    grouping = PafGrouping(edges, 2, 1.0, min_line_scores=0.25, min_instance_peaks=0,
                           max_instances=None)
    host = peaks(_output(dict(real_maps)))
    ref = peaks(_output({k: torch.from_numpy(v) for k, v in real_maps.items()}))
    assert isinstance(host.scores.line_scores, np.ndarray)
    np.testing.assert_allclose(host.points, ref.points, atol=1e-4, rtol=0)
    for name in ("vals", "sample_inds", "channel_inds"):
        np.testing.assert_array_equal(getattr(host, name), getattr(ref, name))
    for name in _INDEX_FIELDS:
        np.testing.assert_array_equal(getattr(host.scores, name), getattr(ref.scores, name))
    np.testing.assert_allclose(host.scores.line_scores, ref.scores.line_scores, atol=1e-5, rtol=0)
    got, want = grouping(host), grouping(ref)
    assert [len(p.instance_scores) for p in got] == [len(p.instance_scores) for p in want] == [2, 2]
    for g, w in zip(got, want):
        np.testing.assert_allclose(g.points, w.points, atol=1e-4, rtol=0)
        np.testing.assert_allclose(g.instance_scores, w.instance_scores, atol=1e-5, rtol=0)

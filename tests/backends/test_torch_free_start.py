"""A warm-cache ONNX Runtime run on the CPU never imports torch, and its export key is the bytes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import sleap_io as sio

from sleapflow.backends.cache import ExportCache, checkpoint_digest
from sleapflow.backends.numpy_onnx import NumpyOnnxRunner, model_files
from sleapflow.ops import host_peaks
from sleapflow.testing import write_synthetic_model, write_synthetic_video

ROOT = Path(__file__).resolve().parents[2]

#: Runs the CLI in-process, then reports whether torch was ever imported.
_WRAPPER = ("import sys\nfrom sleapflow.cli.app import main\nrc = main(sys.argv[1:])\n"
            "print('TORCH_LOADED=' + str('torch' in sys.modules))\n"
            "print('SCIPY_OPTIMIZE_LOADED=' + str('scipy.optimize' in sys.modules))\nsys.exit(rc)\n")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("torchfree")
    model = write_synthetic_model(root / "model", "single_instance", n_nodes=3, filters=4,
                                  filters_rate=1.5, max_stride=8, scale=1.0, seed=3)
    clip = write_synthetic_video(root / "clip.mp4", n_frames=3, height=64, width=96)
    return {"root": root, "model": model, "clip": clip}


def _track(inputs: list[str], runtime: str, out: Path) -> None:
    from sleapflow.cli.app import main

    assert main(["track", *inputs, "--runtime", runtime, "--device", "cpu", "-o", str(out)]) == 0


def _warm_subprocess(inputs: list[str], out: Path, cache: Path) -> str:
    env = {**os.environ, "SLEAPFLOW_CACHE_DIR": str(cache), "PYTHONPATH": str(ROOT),
           "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, "-c", _WRAPPER, "track", *inputs, "--runtime", "onnx", "--device", "cpu",
         "-o", str(out)], capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def _points(path: Path) -> np.ndarray:
    labels = sio.load_slp(str(path))
    return np.stack([np.stack([i.numpy() for i in lf.instances]) for lf in labels.labeled_frames])


@pytest.mark.parametrize("graph", ["single_instance", "topdown", "bottomup"])
def test_warm_cache_onnx_track_never_imports_torch_and_matches_torch(
        graph: str, tiny: dict[str, Path], assets: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    ckpts = assets / "model_ckpts"
    if graph == "single_instance":
        # The shared model resizes its input (max size 320 x 560, then scale 0.5): the numpy
        # copy of torch's resize kernel is on the path too.
        inputs = ["-i", str(tiny["clip"]), "-m", str(ckpts / "minimal_instance_single_instance")]
        shape, entries = (3, 1, 2, 2), 1
    elif graph == "topdown":
        # Each of these frames has a centroid within 1e-3 px of a crop-rounding boundary (on
        # an AVX2 CPU), so a constant 1e-3 margin sent them to torch; their own margins do not.
        inputs = ["-i", str(assets / "datasets" / "centered_pair_small.mp4"), "--frames", "626,751",
                  "-m", str(ckpts / "minimal_instance_centroid"),
                  "-m", str(ckpts / "minimal_instance_centered_instance")]
        shape, entries = (2, 2, 2, 2), 2
    else:
        # Frames at the parity tests' shape, in the session's cache: the export they need
        # anyway is made once (by whichever runs first), not once more for this test alone.
        inputs = ["-i", str(assets / "datasets" / "centered_pair_small.mp4"), "--frames", "0-1",
                  "-m", str(ckpts / "minimal_instance_bottomup")]
        shape, entries = (2, 2, 2, 2), None
    cache = tmp_path / "cache" if entries is not None else Path(os.environ["SLEAPFLOW_CACHE_DIR"])
    monkeypatch.setenv("SLEAPFLOW_CACHE_DIR", str(cache))
    # The cold run here (this process has torch already) exports and fills the cache.
    _track(inputs, "onnx", tmp_path / "cold.slp")
    if entries is not None:
        assert len(list((cache / "onnx").iterdir())) == entries
    warm = _warm_subprocess(inputs, tmp_path / "warm.slp", cache)
    assert "TORCH_LOADED=False" in warm
    # Bottom-up's frames have two animals to match: small assignments never load SciPy's
    # optimizer (0.6 s) either.
    assert "SCIPY_OPTIMIZE_LOADED=False" in warm
    _track(inputs, "torch", tmp_path / "torch.slp")
    got, ref = _points(tmp_path / "warm.slp"), _points(tmp_path / "torch.slp")
    assert got.shape == ref.shape == shape
    assert not np.isnan(ref).any()
    # The ONNX-vs-torch tolerance of test_runtime_agreement: keypoints within 1e-3 px.
    np.testing.assert_allclose(got, ref, atol=1e-3, rtol=0)
    np.testing.assert_array_equal(_points(tmp_path / "cold.slp"), got)
    prov = sio.load_slp(str(tmp_path / "warm.slp")).provenance
    assert prov["system_info"]["pytorch_version"] and prov["system_info"]["accelerator"] == "cpu"


def _copy_model(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def test_the_byte_key_changes_with_every_file_and_option(tiny: dict[str, Path],
                                                         tmp_path: Path) -> None:
    model = _copy_model(tiny["model"], tmp_path / "m")
    files = model_files(model)
    assert files == {"weights": model / "best.ckpt", "config": model / "training_config.yaml"}
    base = checkpoint_digest(files)
    # The same bytes in another folder share the digest: the key is content, not a path.
    assert checkpoint_digest(model_files(_copy_model(model, tmp_path / "m2"))) == base
    runner = NumpyOnnxRunner(files, lambda: None, threads=1, cache=ExportCache("onnx", tmp_path))
    key = runner.key((1, 64, 96))
    assert runner.key((1, 64, 96)) == key
    assert runner.key((1, 64, 104)) != key and runner.key((3, 64, 96)) != key
    # Overrides are other files in other roles.
    with_head = checkpoint_digest(model_files(model, head_ckpt_path=model))
    with_backbone = checkpoint_digest(model_files(model, backbone_ckpt_path=model))
    assert len({base, with_head, with_backbone}) == 3
    # One flipped byte of the weights, or an edit of the config, gives another digest.
    ckpt = bytearray((model / "best.ckpt").read_bytes())
    ckpt[-10] ^= 1
    (model / "best.ckpt").write_bytes(bytes(ckpt))
    flipped = checkpoint_digest(files)
    assert flipped != base
    config = model / "training_config.yaml"
    config.write_text(config.read_text().replace("sigma: 2.5", "sigma: 2.0"))
    assert checkpoint_digest(files) not in (base, flipped)


def test_the_key_parts_name_runtime_precision_and_exporter(tiny: dict[str, Path],
                                                          tmp_path: Path) -> None:
    runner = NumpyOnnxRunner(model_files(tiny["model"]), lambda: None, threads=1,
                             cache=ExportCache("onnx", tmp_path))
    from sleapflow.backends.cache import entry_key, export_key_parts

    parts = export_key_parts(runner.digest, (1, 64, 96), runtime="onnx", runtime_version="x",
                             precision="fp32")
    assert {"model", "shape", "runtime", "runtime_version", "torch", "opset",
            "precision"} <= set(parts)
    keys = {entry_key({**parts, name: "other"}) for name in
            ("runtime", "runtime_version", "torch", "opset", "precision")}
    assert len(keys) == 5 and entry_key(parts) not in keys


def test_a_warm_entry_is_the_one_the_torch_exporter_wrote(tiny: dict[str, Path],
                                                          tmp_path: Path) -> None:
    from sleapflow.models import load_model

    cache = ExportCache("onnx", tmp_path)
    loads = []

    def load() -> object:
        loads.append(1)
        return load_model(tiny["model"])

    x = np.random.default_rng(0).integers(0, 256, (2, 1, 64, 96), dtype=np.uint8)
    cold = NumpyOnnxRunner(model_files(tiny["model"]), load, threads=1, cache=cache)
    first = cold(x)
    assert loads == [1] and cold.exports[(1, 64, 96)][1] is True
    warm = NumpyOnnxRunner(model_files(tiny["model"]), load, threads=1, cache=cache)
    again = warm(x[:1])
    assert loads == [1] and warm.exports[(1, 64, 96)] == (cold.exports[(1, 64, 96)][0], False)
    for name, maps in first.items():
        assert isinstance(maps, np.ndarray) and maps.dtype == np.float32
        np.testing.assert_array_equal(again[name], maps[:1])
    record = json.loads((cache.entry_dir(warm.exports[(1, 64, 96)][0]) / "entry.json").read_text())
    assert record["parts"]["model"] == warm.digest
    # Prefetching opens the cached shapes before any batch; another model's entries are left.
    other = NumpyOnnxRunner({"weights": tiny["clip"]}, load, threads=1, cache=cache)
    other.prefetch().join()
    assert other.exports == {}
    early = NumpyOnnxRunner(model_files(tiny["model"]), load, threads=1, cache=cache)
    early.prefetch().join()
    assert early.exports == {(1, 64, 96): warm.exports[(1, 64, 96)]}
    np.testing.assert_array_equal(early(x[:1])[next(iter(first))], again[next(iter(first))])
    assert loads == [1]


def test_numpy_global_peaks_equal_the_torch_form() -> None:
    import torch

    from sleapflow.ops.peaks import find_global_peaks

    rng = np.random.default_rng(1)
    cms = rng.random((3, 4, 12, 16), dtype=np.float32)
    cms[0, 1] = 0.05  # below the threshold: NaN point, value 0
    cms[1, 2, :, 0] = 2.0  # a peak on the border: the zero padding counts
    for refinement in ("integral", None):
        got_p, got_v = host_peaks.find_global_peaks(cms, 0.2, refinement=refinement)
        ref_p, ref_v = find_global_peaks(torch.from_numpy(cms), 0.2, refinement=refinement)
        np.testing.assert_allclose(got_p, ref_p.numpy(), atol=1e-6, rtol=0)
        np.testing.assert_array_equal(got_v, ref_v.numpy())
        assert np.isnan(got_p[0, 1]).all() and got_v[0, 1] == 0


@pytest.mark.parametrize(("shape", "size"), [
    ((2, 1, 320, 560), (160, 280)), ((1, 3, 50, 70), (37, 61)), ((1, 1, 33, 47), (80, 47)),
    ((1, 1, 40, 9), (40, 1)),
    # Integer-ratio downscales (the phase-split fast path, for blocks past 2^14 values): odd
    # and even sizes, batches of 3 channels, ratios 2, 3, 4 and 8, and a size where the
    # border outputs are most of the axis.
    ((4, 3, 64, 96), (32, 48)), ((6, 1, 66, 90), (33, 45)), ((4, 3, 81, 57), (27, 19)),
    ((6, 1, 100, 132), (25, 33)), ((4, 3, 64, 216), (8, 27)), ((1024, 1, 6, 6), (3, 3)),
    # Small blocks of those ratios (matrix bands), one axis only, 1-pixel outputs.
    ((1, 2, 12, 20), (12, 10)), ((1, 1, 30, 7), (15, 7)), ((1, 1, 8, 12), (4, 6)),
    ((1, 1, 4, 6), (2, 3)), ((1, 1, 2, 10), (1, 5)),
    ((1, 1, 3, 4096), (3, 4)),  # sums past 2^24: float64
    # Other ratios (bands of a matrix product): several bands per axis, down and up.
    ((2, 3, 90, 130), (70, 100)), ((1, 1, 20, 30), (45, 77))])
def test_numpy_resize_is_torchs_uint8_kernel_bit_for_bit(shape: tuple[int, ...],
                                                         size: tuple[int, int]) -> None:
    import torch
    import torch.nn.functional as F

    from sleapflow.ops.host_resize import resize_uint8

    x = np.random.default_rng(sum(shape)).integers(0, 256, shape, dtype=np.uint8)
    x[..., :3, :] = 255  # saturated rows: the clamp between passes matters
    x[..., :2] = 255  # and saturated columns at the left border
    ref = F.interpolate(torch.from_numpy(x), size=size, mode="bilinear", antialias=True,
                        align_corners=False).numpy()
    got = resize_uint8(x, size)
    assert got.flags.c_contiguous and got.dtype == np.uint8
    np.testing.assert_array_equal(got, ref)
    # The preprocessor's batches are channels-last frames seen as NCHW: the same bytes.
    nhwc = np.ascontiguousarray(x.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
    np.testing.assert_array_equal(resize_uint8(nhwc, size), ref)


def test_numpy_resize_fast_path_covers_the_interior_and_stays_exact_at_large_ratios(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from sleapflow.ops import host_resize

    # Both passes of a large enough halving split their input into phases; a small one
    # takes the matrix bands (so each path is among the bit-for-bit cases above).
    splits: list[int] = []
    split = host_resize._split
    monkeypatch.setattr(host_resize, "_split",
                        lambda src, phases: (splits.append(phases.shape[0]), split(src, phases)))
    host_resize.resize_uint8(np.zeros((4, 3, 64, 96), np.uint8), (32, 48))
    assert splits == [2, 2]
    host_resize.resize_uint8(np.zeros((1, 1, 8, 12), np.uint8), (4, 6))
    assert splits == [2, 2]

    # The interior of a halving is one strided run read from the phases; only the borders
    # are gathered (so the fast path is the one the bit-for-bit cases above exercise).
    plan = host_resize._axis(560, 280)
    assert (plan.ratio, plan.start, plan.count) == (2, 1, 278)
    assert plan.rest.tolist() == [0, 279] and plan.dtype is np.float32
    # Ratios that are not integers have no run: matrix bands cover every output.
    other = host_resize._axis(130, 100)
    assert other.ratio == 0 and other.count == 0 and len(other.rest) == 0
    assert [(o0, o1) for o0, o1, *_ in other.bands] == [(0, 32), (32, 64), (64, 96), (96, 100)]
    # An empty batch keeps its shape; huge downscales leave float32's exact range.
    assert host_resize.resize_uint8(np.zeros((0, 3, 8, 6), np.uint8), (4, 3)).shape == (0, 3, 4, 3)
    assert host_resize._axis(4096, 4).dtype is np.float64


def test_numpy_preprocessing_equals_torchs_and_hands_over_past_the_budget(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from sleapflow.messages import Frame, FrameBatch
    from sleapflow.stages import preprocess
    from sleapflow.stages.preprocess import Preprocessor, PreprocessPlan

    rng = np.random.default_rng(4)
    plans = [PreprocessPlan(max_height=100, max_width=90, scale=0.75, max_stride=16),
             PreprocessPlan(ensure_rgb=True, max_height=64, max_width=128, max_stride=8),
             PreprocessPlan(scale=0.5, max_stride=32)]
    for plan in plans:
        frames = tuple(Frame(seq=i, video_id=0, frame_idx=i,
                             image=rng.integers(0, 256, (50, 70, 1), dtype=np.uint8))
                       for i in range(2))
        batch = FrameBatch(seq=0, frames=frames)
        ref = Preprocessor(plan, keep_raw=True)(batch)
        host = Preprocessor(plan, keep_raw=True, numpy=True)
        monkeypatch.setattr(preprocess, "NUMPY_RESIZE_BUDGET", 1)
        for _ in range(2):  # the numpy kernel first, then torch's once the budget is spent
            got = host(batch)
            assert isinstance(got.tensor, np.ndarray) and got.tensor.flags.c_contiguous
            np.testing.assert_array_equal(got.tensor, ref.tensor.numpy())
            np.testing.assert_array_equal(got.raw, ref.raw.contiguous().numpy())
            np.testing.assert_array_equal(got.eff_scale, ref.eff_scale)
        monkeypatch.undo()


def test_numpy_topdown_ops_equal_the_torch_forms() -> None:
    import torch

    from sleapflow.ops import crops, host_crops
    from sleapflow.ops.caps import cap_host_peaks, cap_peaks
    from sleapflow.ops.peaks import find_local_peaks

    rng = np.random.default_rng(5)
    cms = rng.random((3, 2, 24, 20), dtype=np.float32) ** 4
    cms[2] = 0.0  # a frame without peaks
    got = host_peaks.find_local_peaks(cms, 0.3)
    ref = [t.numpy() for t in find_local_peaks(torch.from_numpy(cms), 0.3)]
    assert got[0].shape[0] > 4
    np.testing.assert_allclose(got[0], ref[0], atol=1e-5, rtol=0)  # sums in another order
    for g, r in zip(got[1:], ref[1:]):
        np.testing.assert_array_equal(g, r)
    capped = cap_host_peaks(*got, 2, n_channels=2, what="test peaks")
    ref_capped = cap_peaks(*(torch.from_numpy(a) for a in got), 2, n_channels=2, what="test peaks")
    assert capped[0].shape[0] < got[0].shape[0]
    for g, r in zip(capped, ref_capped):
        np.testing.assert_array_equal(g, r.numpy())
    points, vals, samples = got[0][got[3] == 0], got[1][got[3] == 0], got[2][got[3] == 0]
    for limit in (None, 1):
        slots = host_crops.centroid_slots(points, vals, samples, 3, limit)
        ref_slots = crops.centroid_slots(torch.from_numpy(points), torch.from_numpy(vals),
                                         torch.from_numpy(samples), 3, limit)
        for g, r in zip(slots, ref_slots):
            np.testing.assert_array_equal(g, r.numpy())
    centres = (rng.random((5, 2), dtype=np.float32) * 60).astype(np.float32)
    centres[0] = [30.4999, 20.0]
    for g, r in zip(host_crops.crop_windows(centres, 16), crops.crop_windows(torch.from_numpy(centres), 16)):
        np.testing.assert_array_equal(g, r.numpy())
    np.testing.assert_array_equal(host_crops.near_crop_boundary(centres, 16, 1e-3),
                                  crops.near_crop_boundary(torch.from_numpy(centres), 16, 1e-3).numpy())
    frames = rng.integers(0, 256, (2, 1, 40, 50), dtype=np.uint8)
    inds = np.array([0, 1, 1, 0, 1])
    origins = host_crops.crop_windows(centres, 16)[1]
    np.testing.assert_array_equal(
        host_crops.extract_crops(frames, inds, origins, 16),
        crops.extract_crops(torch.from_numpy(frames), torch.from_numpy(inds),
                            torch.from_numpy(origins), 16).numpy())


def _peak_map(x: float, y: float, *, ring: float = 0.0, size: int = 200) -> np.ndarray:
    """A (size, size) float32 map with a Gaussian peak at (x, y); ``ring`` subtracts a wider
    Gaussian, so the refinement patch nearly cancels out (an ill-defined peak)."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    d2 = (xx - x) ** 2 + (yy - y) ** 2
    return (np.exp(-d2 / (2 * 1.5**2)) - ring * np.exp(-d2 / (2 * 3.0**2))).astype(np.float32)


def _peak_at(target_x: float, y: float, *, ring: float = 0.0) -> np.ndarray:
    """A map whose refined peak lies at ``target_x`` (to float32 precision): the Gaussian's
    centre is searched by bisection, as the refined x grows with it."""
    from sleapflow.ops import host_peaks

    def refined(centre: float) -> float:
        cms = _peak_map(centre, y, ring=ring)[None, None]
        points = host_peaks.find_local_peaks(cms, 0.2)[0]
        return float(points[0, 0])

    lo, hi = target_x - 0.5, target_x + 0.5
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if refined(mid) < target_x else (lo, mid)
    return _peak_map(hi, y, ring=ring)


def test_refinement_spread_bounds_how_far_a_refined_peak_moves() -> None:
    from sleapflow.ops import host_peaks

    rng = np.random.default_rng(7)
    for ring in (0.0, 0.33, 0.5):
        cms = _peak_map(50.3, 40.7, ring=ring, size=96)[None, None]
        points, _, samples, channels, spread = host_peaks.find_local_peaks_and_spread(cms, 0.2)
        assert points.shape == (1, 2) and np.isfinite(spread).all()
        xs, ys = np.array([50]), np.array([41])
        base = host_peaks.integral_refine(cms.astype(np.float64), samples, channels, xs, ys)
        delta = 1e-4
        moved = []
        for _ in range(200):
            noisy = cms.astype(np.float64) + rng.uniform(-delta, delta, cms.shape)
            moved.append(np.abs(host_peaks.integral_refine(noisy, samples, channels, xs, ys) - base)[0])
        worst = np.max(moved, axis=0)
        # A bound, and not a loose one: random noise reaches a good part of it.
        assert (worst <= spread[0] * delta * 1.01).all()
        assert (worst >= spread[0] * delta * 0.05).all()
    # The ring makes the patch sum small: the same noise moves that peak further.
    spreads = [host_peaks.find_local_peaks_and_spread(_peak_map(50.3, 40.7, ring=r, size=96)[None, None],
                                                      0.2)[4][0, 0] for r in (0.0, 0.5)]
    assert spreads[1] > 5 * spreads[0]
    flat = np.zeros((1, 1, 9, 9), dtype=np.float32)
    flat[0, 0, 4, 4], flat[0, 0, 4, 3] = 1.0, -1.0  # a patch that sums to zero
    assert np.isinf(host_peaks.refinement_spread(flat, np.array([0]), np.array([0]), np.array([4]),
                                                 np.array([4]))).all()
    without = host_peaks.find_local_peaks_and_spread(cms, 0.2, refinement=None)[4]
    assert (without == 0).all()


def test_host_arrays_recheck_centroids_within_their_own_margin_only() -> None:
    """Each centroid's margin grows with how ill-defined its peak is: of two peaks the same
    3e-4 px from a rounding boundary, only the one whose patch nearly cancels out is found
    again from the exact maps, as is a clean one 1e-5 px from the boundary."""
    from sleapflow.messages import FrameInfo, ModelInput, ModelOutput
    from sleapflow.ops.host_crops import crop_windows
    from sleapflow.stages.peaks import PeakSettings
    from sleapflow.stages.topdown import CentroidCrops, CentroidFinder

    boundary, crop = 100.0, 97  # an odd crop's origin moves where x is a whole number
    maps = np.stack([_peak_at(boundary + 3e-4, 60.3), _peak_at(boundary + 3e-4, 60.3, ring=0.5),
                     _peak_at(boundary + 1e-5, 60.3)])[:, None]
    # The exact maps put every centroid just on the other side of the boundary.
    exact_maps = np.stack([_peak_at(boundary - 3e-4, 60.3), _peak_at(boundary - 3e-4, 60.3, ring=0.5),
                           _peak_at(boundary - 1e-5, 60.3)])[:, None]
    frames = tuple(FrameInfo(seq=i, video_id=0, frame_idx=i, height=200, width=200) for i in range(3))
    steps = np.arange(200, dtype=np.uint8)
    raw = np.stack([np.broadcast_to(steps[None, :], (200, 200)), np.broadcast_to(steps[:, None], (200, 200))])
    batch = ModelInput(seq=0, frames=frames, tensor=np.arange(3, dtype=np.uint8)[:, None],
                       eff_scale=np.ones(3), raw=np.repeat(raw[None], 3, axis=0))
    asked: list[list[int]] = []

    def exact(tensor: np.ndarray) -> dict[str, np.ndarray]:
        rows = tensor[:, 0].astype(int).tolist()
        asked.append(rows)
        return {"c": exact_maps[rows]}

    finder = CentroidFinder("c", 1, 1.0, PeakSettings(0.2, "integral", 5), None)
    found, _ = finder(ModelOutput(seq=0, heads={"c": maps}, input=batch))
    again, _ = finder(ModelOutput(seq=0, heads={"c": exact_maps}, input=batch))
    assert (crop_windows(found[:, 0], crop)[1] != crop_windows(again[:, 0], crop)[1]).any(axis=1).all()
    sets = CentroidCrops(finder, crop, exact=exact)(ModelOutput(seq=0, heads={"c": maps}, input=batch))
    assert asked == [[1, 2]]
    assert all(isinstance(s.crops, np.ndarray) for s in sets)
    cut = [s.crops[0, :, 0, 0].tolist() for s in sets]  # (column, row) of each crop's corner
    expected = np.concatenate([found[:1, 0], again[1:, 0]])
    assert cut == crop_windows(expected, crop)[1].tolist()

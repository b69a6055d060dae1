"""Peaks inside the runtime: the exported network-plus-peaks graph finds the peaks the torch path
finds, per model type, and its cache entries are keyed by the fusion's parameters."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import sleap_io as sio
import torch

from sleapflow.backends.cache import ExportCache, entry_key
from sleapflow.backends.fused import FusedPeaks, PeakHead, local_peak_list, split_outputs
from sleapflow.backends.runners import OnnxRunner, TorchRunner
from sleapflow.backends.select import RuntimeChoice
from sleapflow.models import load_model
from sleapflow.ops.peaks import find_global_peaks, find_local_peaks
from sleapflow.stages.forward import ModelForward

CKPT = "model_ckpts/minimal_instance_"
CPU = torch.device("cpu")

MICE = "datasets/minimal_instance.pkg.slp"
ROBOT = "datasets/small_robot_minimal.slp"

#: Model → (confidence-map head, local peaks?, labeled frames, input (H, W) cut around the
#: first animal, the model's input scale, its confidence-map stride, a peak threshold): whole
#: frames for the frame models, a crop of the crop size for the centered-instance ones. The
#: multi-class instance model is barely trained (its maps peak near 0.04), hence its threshold.
MODELS = {
    "single_instance": ("SingleInstanceConfmapsHead", False, ROBOT, (320, 560), 0.5, 4, 0.1),
    "centroid": ("CentroidConfmapsHead", True, MICE, (384, 384), 1.0, 4, 0.1),
    "centered_instance": ("CenteredInstanceConfmapsHead", False, MICE, (96, 96), 1.0, 2, 0.1),
    "multiclass_centered_instance": ("CenteredInstanceConfmapsHead", False, MICE, (128, 128), 1.0, 2,
                                     0.01),
    "bottomup": ("MultiInstanceConfmapsHead", True, MICE, (384, 384), 1.0, 2, 0.1),
    "multiclass_bottomup": ("MultiInstanceConfmapsHead", True, MICE, (384, 384), 0.5, 2, 0.1),
}
K = 32


def _frames(assets: Path, data: str, size: tuple[int, int], scale: float) -> torch.Tensor:
    """Two real frames (a labeled one and its mirror image), cut to ``size`` around the
    first animal and subsampled to the model's input scale: (2, C, H, W) uint8."""
    frame = sio.load_slp(str(assets / data))[0]
    image = frame.image
    cy, cx = (int(v) for v in np.nanmean(frame[0].numpy(), axis=0)[::-1])
    h, w = size
    top = min(max(cy - h // 2, 0), image.shape[0] - h)
    left = min(max(cx - w // 2, 0), image.shape[1] - w)
    step = round(1 / scale)
    crop = image[top:top + h:step, left:left + w:step]
    return torch.from_numpy(np.stack([crop, crop[:, ::-1]]).copy()).permute(0, 3, 1, 2).contiguous()


def _torch_peaks(maps: torch.Tensor, spec: PeakHead) -> tuple[torch.Tensor, ...]:
    if spec.local:
        points, vals, samples, channels = find_local_peaks(maps, spec.threshold,
                                                           refinement=spec.refinement,
                                                           patch_size=spec.patch_size)
        return points * spec.output_stride / spec.input_scale, vals, samples, channels
    points, vals = find_global_peaks(maps, spec.threshold, refinement=spec.refinement,
                                     patch_size=spec.patch_size)
    return points * spec.output_stride / spec.input_scale, vals


@pytest.fixture(scope="module")
def export_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One export cache for this file: the fallback test reuses a parity test's export."""
    return tmp_path_factory.mktemp("fused-exports")


@pytest.mark.parametrize("model", sorted(MODELS))
def test_fused_graph_gives_the_torch_paths_peaks(model: str, assets: Path, export_root: Path) -> None:
    head, local, data, size, scale, stride, threshold = MODELS[model]
    module = load_model(assets / f"{CKPT}{model}").module
    x = _frames(assets, data, size, scale)
    spec = PeakHead(head=head, local=local, threshold=threshold, refinement="integral",
                    patch_size=5, output_stride=stride, input_scale=scale, k=K)
    maps = TorchRunner(module, CPU)(x)
    runner = OnnxRunner(module, CPU, threads=1, precision="fp32",
                        cache=ExportCache("onnx", export_root), fuse=FusedPeaks((spec,)))
    out = runner(x)
    rest, peaks = split_outputs(runner.fuse, out)
    # The fused head comes back as peaks only; the other heads (PAFs, classes) as maps.
    assert head not in rest and set(rest) == set(maps) - {head}
    for name, tensor in rest.items():
        torch.testing.assert_close(tensor, maps[name], rtol=1e-3, atol=1e-4)
    found = peaks[head]
    want = _torch_peaks(maps[head], spec)
    if local:
        points, vals, samples, channels = local_peak_list(found)
        assert int(found.counts.max()) <= spec.k  # every peak is in the top-k
        assert len(points) == len(want[0]) >= 4  # several peaks: order and mapping are tested
        np.testing.assert_array_equal(samples, want[2].numpy())
        np.testing.assert_array_equal(channels, want[3].numpy())
    else:
        points, vals = found.points, found.vals
        assert points.shape == (2, maps[head].shape[1], 2)
    want_points = want[0].numpy()
    np.testing.assert_array_equal(np.isnan(points), np.isnan(want_points))
    # A weak peak's refinement can throw it far outside the input, where 1e-5 of map difference
    # moves it by pixels (see runners._worst_difference); inside, the two agree.
    extent = np.array([x.shape[-1], x.shape[-2]]) / scale
    inside = ((want_points >= 0) & (want_points <= extent)).all(axis=-1)
    assert inside.sum() >= 3
    # Weak peaks inside still differ by ~1e-3 px (ONNX Runtime's maps differ by ~1e-5).
    np.testing.assert_allclose(points[inside], want_points[inside], atol=1e-2, rtol=0)
    strong = inside & (vals > 0.5)
    np.testing.assert_allclose(points[strong], want_points[strong], atol=1e-3, rtol=0)
    np.testing.assert_allclose(vals, want[1].numpy(), atol=1e-4, rtol=0)


def test_cache_key_carries_the_fusion_and_its_parameters(assets: Path, tmp_path: Path) -> None:
    module = load_model(assets / f"{CKPT}centroid").module
    base = PeakHead(head="CentroidConfmapsHead", local=True, threshold=0.2, refinement="integral",
                    patch_size=5, output_stride=4, k=16)
    variants = [base, PeakHead(**{**_fields(base), "threshold": 0.3}),
                PeakHead(**{**_fields(base), "refinement": None}),
                PeakHead(**{**_fields(base), "patch_size": 3}),
                PeakHead(**{**_fields(base), "k": 8}),
                PeakHead(**{**_fields(base), "input_scale": 0.5})]
    cache = ExportCache("onnx", tmp_path)
    runners = [OnnxRunner(module, CPU, threads=1, precision="fp32", cache=cache,
                          fuse=FusedPeaks((v,))) for v in variants]
    plain = OnnxRunner(module, CPU, threads=1, precision="fp32", cache=cache)
    shape = (1, 64, 64)
    fused_keys = {entry_key(r._key_parts(shape, True)) for r in runners}
    assert len(fused_keys) == len(variants)
    maps_key = entry_key(plain._key_parts(shape))
    assert maps_key not in fused_keys
    # A fused runner's maps export (its overflow fallback) is the plain runner's entry.
    assert {entry_key(r._key_parts(shape, False)) for r in runners} == {maps_key}


def _fields(spec: PeakHead) -> dict[str, object]:
    return {f: getattr(spec, f) for f in spec.__struct_fields__}


def test_overflowing_top_k_falls_back_to_maps(assets: Path, export_root: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """A channel with more local peaks than the graph's top-k: the forward stage hands on that
    batch's maps instead, so no peak is lost; within k it hands on the peaks."""
    monkeypatch.setenv("SLEAPFLOW_CACHE_DIR", str(export_root))
    head, _, data, size, scale, stride, threshold = MODELS["centroid"]
    x = _frames(assets, data, size, scale)

    def forward(k: int) -> ModelForward:
        # k=K is the parity test's export (a cache hit when it ran first).
        spec = PeakHead(head=head, local=True, threshold=threshold, refinement="integral",
                        patch_size=5, output_stride=stride, input_scale=scale, k=k)
        fwd = ModelForward(lambda: load_model(assets / f"{CKPT}centroid"), device="cpu",
                           runtime=RuntimeChoice("onnx", "onnx", "test"), fuse=FusedPeaks((spec,)))
        fwd.setup()
        return fwd

    class Batch:
        seq = 0
        tensor = x

    roomy = forward(K)(Batch())
    assert roomy.peaks is not None and head not in roomy.heads
    counts = roomy.peaks[head].counts
    assert int(counts.max()) == 2  # two animals: one peak too many for a top-1
    tight = forward(1)(Batch())
    assert tight.peaks is None
    want = TorchRunner(load_model(assets / f"{CKPT}centroid").module, CPU)(x)[head]
    torch.testing.assert_close(tight.heads[head], want, rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize(("models", "fused"), [
    (("centroid", "multiclass_centered_instance"),
     {"centroid_forward": (True, 2), "instance_forward": (False, 1)}),
    (("bottomup",), {"forward": (True, 32)}),
    (("multiclass_bottomup",), {"forward": (True, 32)}),
])
def test_graphs_offer_their_peak_finding_unless_host_peaks(models: tuple[str, ...],
                                                           fused: dict[str, tuple[bool, int]],
                                                           assets: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """Each graph hands its forward stages the peak stage's own parameters (local or global,
    the top-k: max_instances for centroids, else the default); --host_peaks hands none."""
    from sleapflow.graphs import common
    from sleapflow.graphs.build import prepare
    from sleapflow.graphs.common import is_forward
    from sleapflow.options.config import InferenceConfig

    # fp32 ONNX Runtime on the CPU keeps host-array models on numpy (no export to fuse into);
    # with none of them, the graphs take the exporting path they take on other devices.
    monkeypatch.setattr(common, "HOST_ARRAY_MODELS", ())

    def offers(host_peaks: bool) -> dict[str, FusedPeaks | None]:
        cfg = InferenceConfig(data_path=str(assets / MICE), device="cpu", runtime="onnx",
                              model_paths=tuple(str(assets / f"{CKPT}{m}") for m in models),
                              max_instances=2, peak_threshold=0.3, host_peaks=host_peaks)
        run = prepare(cfg)
        return {s.name: s.fn.fuse for s in run.graph.build(run.ctx, None) if is_forward(s)}

    got = offers(False)
    assert set(got) == set(fused)
    for name, (local, k) in fused.items():
        spec = got[name]
        assert spec is not None and len(spec.heads) == 1
        head = spec.heads[0]
        assert (head.local, head.k, head.threshold) == (local, k, 0.3)
    assert set(offers(True).values()) == {None}

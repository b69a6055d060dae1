"""Writing an export folder (``sleapflow export``): sleap-nn's layout and baked ONNX graph, plus
sleapflow's own networks; see :mod:`sleapflow.models.export_folder` for what the folder holds.

The baked ``model.onnx`` keeps sleap-nn's contract (input ``image`` uint8, its output names and
shapes per model type) but does the work as sleapflow does: the same strict local-peak rule,
integral refinement (sleap-nn's exports leave it out), crops cut on the integer window sleapflow
cuts, and its uint8 antialiased resize reproduced bit for bit. So ``sleap-nn predict --runtime
onnx`` on the folder gives sleapflow's points.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import shutil
import uuid
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from sleapflow.backends.cache import file_sha256
from sleapflow.backends.runners import HeadMaps
from sleapflow.errors import BackendError, ConfigError, OutputWriteError
from sleapflow.logs import get_logger
from sleapflow.models.export_folder import (
    FORMAT_VERSION,
    METADATA_FILE,
    NETWORK_CONFIG,
    NETWORK_FILE,
    NETWORKS_DIR,
    ONNX_FILE,
    TRT_FILE,
    is_exported_folder,
)
from sleapflow.models.schema import ModelConfig
from sleapflow.ops.fused_peaks import global_peaks, top_local_peaks

__all__ = ("EXPORT_FORMATS", "EXPORT_PRECISIONS", "export_model")

log = get_logger(__name__)

EXPORT_FORMATS = ("onnx", "tensorrt")
EXPORT_PRECISIONS = ("fp32", "fp16")
_OPSET = 17
#: Largest map / point difference accepted between ONNX Runtime and torch when checking an export.
_TOLERANCE = 1e-3
_PATCH = 5  # integral refinement patch, sleapflow's (and the reference's) default

#: The baked graph's outputs per exported model type (sleap-nn's names, in its order).
_OUTPUTS = {
    "single_instance": ("peaks", "peak_vals"),
    "centered_instance": ("peaks", "peak_vals"),
    "centroid": ("centroids", "centroid_vals", "instance_valid"),
    "topdown": ("centroids", "centroid_vals", "peaks", "peak_vals", "instance_valid"),
    "bottomup": ("peaks", "peak_vals", "peak_mask", "line_scores", "candidate_mask"),
}
#: The reference's line interpolation divides by 1 + float32 epsilon (exact in float32).
_INTERP_DENOM = 1.0 + float(np.finfo(np.float32).eps)
#: Peaks per node the bottom-up graph keeps (sleap-nn's ``--max-peaks-per-node`` default).
_MAX_PEAKS_PER_NODE = 20



# --------------------------------------------------------------------------------------------
# The baked graph (sleap-nn's contract), sleapflow's own peak rule and refinement
# --------------------------------------------------------------------------------------------


def _aa_weights(size_in: int, size_out: int) -> tuple[torch.Tensor, int]:
    """torch's antialiased-bilinear uint8 weights for one axis: an integer matrix (out, in) and
    its fixed-point precision (the triangle filter widened by the scale, normalised per output,
    then rounded to int16 with as many fraction bits as the largest weight allows)."""
    scale = size_in / size_out
    support = max(scale, 1.0)
    inv = 1.0 / support
    rows = np.zeros((size_out, size_in), dtype=np.float64)
    for i in range(size_out):
        center = scale * (i + 0.5)
        lo = max(int(center - support + 0.5), 0)
        hi = min(int(center + support + 0.5), size_in)
        taps = np.array([max(0.0, 1.0 - abs((j + lo - center + 0.5) * inv)) for j in range(hi - lo)])
        rows[i, lo:hi] = taps / taps.sum() if taps.sum() else taps
    precision = 0
    while precision < 22 and int(0.5 + rows.max() * (1 << (precision + 1))) < (1 << 15):
        precision += 1
    scaled = rows * (1 << precision)
    ints = np.where(scaled < 0, np.trunc(scaled - 0.5), np.trunc(scaled + 0.5))
    return torch.from_numpy(ints), precision


class _ExactResize(nn.Module):
    """The antialiased bilinear resize sleapflow's preprocessing runs (torch's uint8 kernel:
    int16 fixed-point weights, a horizontal then a vertical pass, each rounded to uint8),
    reproduced bit for bit for one input size with matrix products in float64. ONNX Runtime's
    own antialiased Resize differs from it by up to 2 grey levels."""

    def __init__(self, size_in: tuple[int, int], scale: float) -> None:
        super().__init__()
        out = (int(size_in[0] * scale), int(size_in[1] * scale))
        wy, self.py = _aa_weights(size_in[0], out[0])
        wx, self.px = _aa_weights(size_in[1], out[1])
        self.register_buffer("wy", wy, persistent=False)
        self.register_buffer("wxt", wx.T.contiguous(), persistent=False)
        self.size_in = size_in

    @staticmethod
    def _fixed(acc: torch.Tensor, precision: int) -> torch.Tensor:
        return torch.floor((acc + float(1 << (precision - 1))) / float(1 << precision)).clamp(0, 255)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.double()
        if self.wxt.shape[0] != self.wxt.shape[1]:
            x = self._fixed(torch.matmul(x, self.wxt), self.px)
        if self.wy.shape[0] != self.wy.shape[1]:
            x = self._fixed(torch.matmul(self.wy, x), self.py)
        return x.float()


def _pad_to(x: torch.Tensor, stride: int) -> torch.Tensor:
    # Bottom/right zero padding moves no coordinate; the network needs multiples of its stride.
    height, width = x.shape[-2:]
    return F.pad(x, [0, (stride - width % stride) % stride, 0, (stride - height % stride) % stride])


class _Network(nn.Module):
    """One trained network with the preprocessing sleapflow gives it, in-graph."""

    def __init__(self, module: nn.Module, config: ModelConfig, scale: float,
                 size: tuple[int, int] | None) -> None:
        super().__init__()
        self.net = module
        self.config = config
        self.scale = scale
        # Resizing models take one input size (``size``): the exact resize is built for it.
        self.resize = _ExactResize(size, scale) if scale != 1.0 and size is not None else None
        self.stride = config.max_stride
        self.head = config.head_names[0]
        self.output_stride = config.confmaps.output_stride

    def maps(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        """uint8-valued (B, C, H, W) → every head's maps."""
        x = image.float() if self.resize is None else self.resize(image.float())
        return self.net(_pad_to(x, self.stride) / 255.0)

    def confmaps(self, image: torch.Tensor) -> torch.Tensor:
        """uint8-valued (B, C, H, W) → the confidence maps of the first head."""
        return self.maps(image)[self.head]

    def to_image(self, points: torch.Tensor) -> torch.Tensor:
        return points * (self.output_stride / self.scale)


class _SingleGraph(nn.Module):
    """single_instance / centered_instance: one refined global peak per node."""

    def __init__(self, net: _Network, threshold: float) -> None:
        super().__init__()
        self.net = self.frame_net = net
        self.threshold = threshold

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        points, vals = global_peaks(self.net.confmaps(image), self.threshold, patch_size=_PATCH)
        return self.net.to_image(points), vals


class _CentroidGraph(nn.Module):
    """centroid: up to ``max_instances`` refined local peaks per frame, zero-filled past them."""

    def __init__(self, net: _Network, max_instances: int, threshold: float) -> None:
        super().__init__()
        self.net = self.frame_net = net
        self.k = max_instances
        self.threshold = threshold

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, ...]:
        points, vals, valid, _, _ = top_local_peaks(self.net.confmaps(image), self.k, self.threshold,
                                                    patch_size=_PATCH)
        points, vals, valid = points[:, 0], vals[:, 0], valid[:, 0]
        points = torch.where(valid[..., None], self.net.to_image(points), torch.zeros_like(points))
        return points, torch.where(valid, vals, torch.zeros_like(vals)), valid


class _TopDownGraph(nn.Module):
    """centroid + centered_instance: crops cut as sleapflow cuts them (an integer window around
    each centroid, points offset by its float corner), one refined global peak per node each."""

    def __init__(self, centroid: _Network, instance: _Network, crop: int, max_instances: int,
                 threshold: float) -> None:
        super().__init__()
        self.centroid = _CentroidGraph(centroid, max_instances, threshold)
        self.frame_net = centroid
        self.instance = instance
        self.n_nodes = len(instance.config.skeleton.node_names)
        self.crop = crop
        self.threshold = threshold

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, ...]:
        centroids, centroid_vals, valid = self.centroid(image)
        channels = image.shape[1]  # static; the batch and frame size stay dynamic
        k, crop = centroids.shape[1], self.crop
        top_left = centroids - crop / 2 + 0.5
        # trunc toward zero, written with floor (ONNX opset 17 has no Trunc).
        shifted = top_left + crop // 2
        origins = (torch.sign(shifted) * torch.floor(shifted.abs())).long() - crop // 2
        padded = F.pad(image.float(), [crop, crop, crop, crop])
        size = torch._shape_as_tensor(padded)
        steps = torch.arange(crop, device=image.device)
        rows = torch.minimum((origins[..., 1, None] + steps + crop).clamp(min=0), size[-2] - 1)
        cols = torch.minimum((origins[..., 0, None] + steps + crop).clamp(min=0), size[-1] - 1)
        index = (rows[..., :, None] * size[-1] + cols[..., None, :]).flatten(1)[:, None]
        crops = torch.gather(padded.flatten(2), -1, index.expand(-1, channels, -1))
        crops = crops.reshape(-1, channels, k, crop, crop).transpose(1, 2)
        crops = crops.reshape(-1, channels, crop, crop)
        points, vals = global_peaks(self.instance.confmaps(crops), self.threshold,
                                    patch_size=_PATCH)
        points = self.instance.to_image(points).reshape(-1, k, self.n_nodes, 2) + top_left[:, :, None]
        vals = vals.reshape(-1, k, self.n_nodes)
        points = torch.where(valid[..., None, None], points, torch.zeros_like(points))
        vals = torch.where(valid[..., None], vals, torch.zeros_like(vals))
        return centroids, centroid_vals, points, vals, valid


class _BottomUpGraph(nn.Module):
    """bottomup: the ``k`` best refined local peaks per node and the PAF line score of every
    src x dst candidate of every edge, as sleapflow scores them (``ops.paf.score_paf_lines``:
    points sampled at rounded PAF pixels, the reference's interpolation denominator, its
    ``max(2E, Hp, Wp)`` length penalty). Grouping is left to the reader, as sleap-nn's is."""

    def __init__(self, net: _Network, k: int, threshold: float, *, n_points: int = 10,
                 max_edge_length_ratio: float = 0.25, dist_penalty_weight: float = 1.0) -> None:
        super().__init__()
        cfg = net.config
        assert cfg.pafs is not None
        self.net = self.frame_net = net
        self.k = k
        self.threshold = threshold
        nodes = list(cfg.skeleton.node_names)
        edges = [(nodes.index(a), nodes.index(b)) for a, b in cfg.pafs.edges]
        self.n_edges = len(edges)
        self.register_buffer("src", torch.tensor([a for a, _ in edges]), persistent=False)
        self.register_buffer("dst", torch.tensor([b for _, b in edges]), persistent=False)
        self.register_buffer("t", torch.linspace(0, 1, n_points), persistent=False)
        self.cms_head, self.paf_head = cfg.head_names[0], cfg.head_names[1]
        self.cms_stride = cfg.confmaps.output_stride
        self.paf_stride = cfg.pafs.output_stride
        self.ratio = max_edge_length_ratio
        self.weight = dist_penalty_weight

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, ...]:
        maps = self.net.maps(image)
        peaks, vals, valid, _, _ = top_local_peaks(maps[self.cms_head], self.k, self.threshold,
                                                   patch_size=_PATCH)
        peaks = peaks * self.cms_stride  # scaled-input pixels, as sleap-nn's reader expects
        pafs = maps[self.paf_head]
        size = torch._shape_as_tensor(pafs)
        k, n_edges = self.k, self.n_edges
        a = peaks[:, self.src][:, :, :, None].expand(-1, -1, -1, k, -1).flatten(2, 3)
        b = peaks[:, self.dst][:, :, None].expand(-1, -1, k, -1, -1).flatten(2, 3)
        candidate = (valid[:, self.src][:, :, :, None] & valid[:, self.dst][:, :, None]).flatten(2)
        slope = (b - a) / _INTERP_DENOM
        line = a[..., None] + slope[..., None] * self.t  # (B, E, k*k, 2, P)
        sub = torch.round(line / self.paf_stride)
        col = torch.minimum(sub[..., 0, :].clamp(min=0), size[-1] - 1).long()
        row = torch.minimum(sub[..., 1, :].clamp(min=0), size[-2] - 1).long()
        index = (row * size[-1] + col).flatten(2)[:, :, None].expand(-1, -1, 2, -1)
        per_edge = pafs.reshape(pafs.shape[0], n_edges, 2, -1)
        samples = torch.gather(per_edge, -1, index).reshape(*index.shape[:3], k * k, -1)
        vec = b - a
        length = torch.norm(vec, dim=-1)
        unit = vec / length[..., None]
        per_point = samples[:, :, 0] * unit[..., 0, None] + samples[:, :, 1] * unit[..., 1, None]
        longest = torch.maximum(size[-1], size[-2]).clamp(min=2 * n_edges)
        max_length = self.ratio * longest.float() * self.paf_stride
        penalty = torch.clamp(max_length / length - 1, max=0) * self.weight
        scores = torch.where(candidate, per_point.mean(-1) + penalty,
                             torch.full_like(length, -2.0))
        peaks = torch.where(valid[..., None], peaks, torch.zeros_like(peaks))
        return peaks, torch.where(valid, vals, torch.zeros_like(vals)), valid, scores, candidate


# --------------------------------------------------------------------------------------------
# Writing a folder
# --------------------------------------------------------------------------------------------


def _sleapflow_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("sleapflow")
    except PackageNotFoundError:
        return "unknown"


def _plan(model_paths: Sequence[str | Path]) -> tuple[str, dict[str, Path]]:
    """(exported model type, {model type: checkpoint folder}) of the models to export."""
    from sleapflow.models.loader import read_model_config, resolve_model_dir

    if not model_paths:
        raise ConfigError("give the model folder(s) to export")
    models: dict[str, Path] = {}
    for raw in model_paths:
        if is_exported_folder(raw):
            raise ConfigError(f"{str(raw)!r} is already an export folder; pass the checkpoint "
                              "folder (best.ckpt + training_config.yaml) it was made from")
        folder = resolve_model_dir(raw)
        cfg = read_model_config(folder)
        if cfg.is_legacy:
            raise ConfigError(f"{str(folder)!r} is a SLEAP <= 1.4 model (best_model.h5): export "
                              "takes sleap-nn checkpoint folders; run it with `sleapflow track`")
        if cfg.model_type in models:
            raise ConfigError(f"two {cfg.model_type} models given; pass one per model type")
        models[cfg.model_type] = folder
    kinds = set(models)
    if kinds == {"centroid", "centered_instance"}:
        return "topdown", models
    if len(kinds) == 1 and next(iter(kinds)) in _OUTPUTS:
        return next(iter(kinds)), models
    raise ConfigError(
        f"cannot export {' + '.join(sorted(kinds))}: sleapflow export writes single_instance, "
        "centroid, centered_instance, bottomup, or centroid + centered_instance (top-down) "
        "models; run the others with `sleapflow track` (multi-class exports are not written "
        "yet)")


def _check_target(out_dir: Path, model_dirs: Sequence[Path], force: bool) -> None:
    """The folder may not be a file or special file, sit inside a model folder or hold one, and
    may be non-empty only with ``force`` when it is an earlier export (then it is replaced)."""
    real = Path(os.path.realpath(out_dir))
    for model in model_dirs:
        root = Path(os.path.realpath(model))
        if real == root or real.is_relative_to(root):
            raise ConfigError(f"-o {str(out_dir)!r} is inside the model folder {str(model)!r}; "
                              "write the export outside it, so the model's files are never "
                              "replaced")
        if root.is_relative_to(real):
            raise ConfigError(f"-o {str(out_dir)!r} holds the model {str(model)!r}; choose a "
                              "new folder for the export")
    if out_dir.exists() or out_dir.is_symlink():
        if not out_dir.is_dir():
            raise ConfigError(f"-o {str(out_dir)!r} exists and is not a folder; give a new or "
                              "empty folder for the export")
        if any(out_dir.iterdir()):
            if not force:
                raise ConfigError(f"-o {str(out_dir)!r} is not empty; give a new or empty folder, "
                                  "or --force to replace an earlier export there")
            if not is_exported_folder(out_dir):
                raise ConfigError(f"-o {str(out_dir)!r} is not empty and is not an export "
                                  "folder; --force replaces only an earlier export: choose a "
                                  "new or empty folder")


def _check_format(fmt: str, precision: str) -> None:
    if fmt not in EXPORT_FORMATS:
        raise ConfigError(f"--format {fmt!r}: use one of {', '.join(EXPORT_FORMATS)}")
    if precision not in EXPORT_PRECISIONS:
        raise ConfigError(f"--precision {precision!r}: use one of {', '.join(EXPORT_PRECISIONS)}")
    if fmt == "onnx" and precision != "fp32":
        raise ConfigError(f"--precision {precision} applies to --format tensorrt; ONNX exports "
                          "are fp32")
    if fmt == "tensorrt":
        import importlib.util

        if not torch.cuda.is_available():
            raise ConfigError("--format tensorrt builds an engine for this machine's NVIDIA GPU, "
                              "and CUDA is not available here; use --format onnx (the folder "
                              "runs anywhere), or export on the GPU machine")
        if importlib.util.find_spec("tensorrt") is None:
            raise ConfigError("--format tensorrt needs TensorRT: pip install 'sleapflow[tensorrt]'")


def _parse_size(input_size: str | Sequence[int] | None) -> tuple[int, int] | None:
    """``HxW`` (or one number for a square) → (height, width)."""
    if input_size is None:
        return None
    parts = (input_size.lower().split("x") if isinstance(input_size, str)
             else [str(v) for v in input_size])
    try:
        values = [int(p) for p in parts]
    except ValueError:
        values = []
    if len(values) == 1:
        values = values * 2
    if len(values) != 2 or not all(8 <= v <= 16384 for v in values):
        raise ConfigError(f"--input_size {input_size!r}: give HEIGHTxWIDTH (e.g. 384x384) or one "
                          "number for a square, each between 8 and 16384")
    return values[0], values[1]


@contextlib.contextmanager
def _staging(out_dir: Path) -> Iterator[Path]:
    """A scratch folder beside ``out_dir``, renamed into its place only when complete."""
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_dir.parent / f".{out_dir.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp-export"
    tmp.mkdir()
    try:
        yield tmp
        old = None
        if out_dir.exists():
            old = out_dir.parent / f".{out_dir.name}.{uuid.uuid4().hex[:8]}.old-export"
            os.rename(out_dir, old)
        try:
            os.rename(tmp, out_dir)
        except OSError:
            if old is not None:  # the earlier export goes back where it was
                os.rename(old, out_dir)
            raise
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _trace(module: nn.Module, example: torch.Tensor, path: Path, input_name: str,
           output_names: Sequence[str], dynamic: dict[str, dict[int, str]]) -> None:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(module.eval(), (example,), str(path), dynamo=False,
                              input_names=[input_name], output_names=list(output_names),
                              dynamic_axes=dynamic, opset_version=_OPSET,
                              do_constant_folding=True)
    except Exception as exc:  # torch.onnx raises many types
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise BackendError(f"cannot export this model to ONNX (opset {_OPSET}): "
                           f"{type(exc).__name__}: {first}") from exc


def _session(path: Path) -> Any:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def _worst(got: Sequence[np.ndarray], want: Sequence[torch.Tensor]) -> float:
    worst = 0.0
    for g, w in zip(got, want):
        a = np.asarray(g, dtype=np.float64)
        b = w.detach().double().numpy()
        both = ~(np.isnan(a) | np.isnan(b))
        if (np.isnan(a) != np.isnan(b)).any():
            return float("inf")
        if both.any():
            worst = max(worst, float(np.abs(a[both] - b[both]).max()))
    return worst


def _export_network(module: nn.Module, cfg: ModelConfig, folder: Path, size: tuple[int, int],
                    source: Path) -> None:
    """``network.onnx`` (float maps before final activations, dynamic batch and size) and the
    training config, checked against torch at the export size and at another size."""
    folder.mkdir(parents=True)
    names = list(cfg.head_names)
    stride = cfg.max_stride
    h = -(-size[0] // stride) * stride
    w = -(-size[1] // stride) * stride
    gen = torch.Generator().manual_seed(0)
    example = torch.rand(1, cfg.in_channels, h, w, generator=gen)
    wrapped = HeadMaps(module, names)
    axes = {"x": {0: "batch", 2: "height", 3: "width"},
            **{n: {0: "batch", 2: f"{n}_height", 3: f"{n}_width"} for n in names}}
    _trace(wrapped, example, folder / NETWORK_FILE, "x", names, axes)
    sess = _session(folder / NETWORK_FILE)
    for shape in ((1, cfg.in_channels, h, w), (2, cfg.in_channels, h + stride, w + 2 * stride)):
        x = torch.rand(*shape, generator=gen)
        with torch.inference_mode():
            want = wrapped(x)
        worst = _worst(sess.run(names, {"x": x.numpy()}), want)
        if worst > _TOLERANCE:
            raise BackendError(f"the ONNX export of {str(source)!r} differs from torch by "
                               f"{worst:.2e} on a {shape[2]}x{shape[3]} input (limit "
                               f"{_TOLERANCE}); this backbone does not export, run the "
                               "checkpoint with `sleapflow track`")
    shutil.copyfile(source / "training_config.yaml", folder / NETWORK_CONFIG)


def _export_baked(graph: nn.Module, outputs: Sequence[str], channels: int, size: tuple[int, int],
                  path: Path, batch: int) -> None:
    """``model.onnx``: the baked graph, checked against torch on a frame batch."""
    gen = torch.Generator().manual_seed(1)
    # Smooth frames with bright blobs, so peaks exist and the check compares real points.
    example = (torch.rand(1, channels, size[0], size[1], generator=gen) * 255).round()
    example = F.avg_pool2d(example, 9, stride=1, padding=4).round()
    dynamic = {"image": {0: "batch", 2: "height", 3: "width"},
               **{n: {0: "batch"} for n in outputs}}
    if graph.frame_net.resize is not None:  # type: ignore[union-attr]
        dynamic["image"] = {0: "batch"}  # built for this frame size: see _ExactResize
    _trace(graph, example.to(torch.uint8), path, "image", outputs, dynamic)
    sess = _session(path)
    checks = [example.repeat(min(2, batch), 1, 1, 1)]
    if "height" in dynamic["image"].values():
        # Another frame size, off the backbone's stride: the graph must not have baked the first.
        other = torch.rand(1, channels, size[0] + 13, size[1] + 7, generator=gen) * 255
        checks.append(F.avg_pool2d(other, 9, stride=1, padding=4).round())
    for x in checks:
        x = x.to(torch.uint8)
        with torch.inference_mode():
            want = graph(x)
        worst = _worst(sess.run(list(outputs), {"image": x.numpy()}), want)
        if worst > _TOLERANCE * 10:
            raise BackendError(f"the baked ONNX graph differs from torch by {worst:.2e} on "
                               f"{tuple(x.shape[2:])} frames (limit {_TOLERANCE * 10}); run the "
                               "checkpoint with `sleapflow track`")


def _metadata(kind: str, configs: dict[str, ModelConfig], folders: dict[str, Path], *, fmt: str,
              precision: str, batch: int, max_instances: int, threshold: float,
              config_hash: str) -> dict[str, Any]:
    main = configs["centered_instance"] if kind == "topdown" else configs[kind]
    frame = configs["centroid"] if kind == "topdown" else main
    nodes = list(main.skeleton.node_names)
    # Bottom-up line scores come in PAF channel order, which readers take from ``edge_inds``.
    pairs = main.pafs.edges if kind == "bottomup" and main.pafs is not None else main.skeleton.edges
    edges = [[nodes.index(a), nodes.index(b)] for a, b in pairs]
    crop = main.preprocessing.crop_size if kind in ("topdown", "centered_instance") else None
    uses_centroid = kind in ("centroid", "topdown")
    # The models that centre a crop record its anchor and how the centre is found.
    centred = configs["centroid"] if uses_centroid else main
    has_centre = kind in ("centroid", "topdown", "centered_instance")
    anchor = centred.confmaps.anchor_part if has_centre else None
    order = [t for t in ("centroid", "centered_instance", kind) if t in configs]
    order = list(dict.fromkeys(order))
    meta: dict[str, Any] = {
        "anchor_part": anchor,
        "backbone": ";".join(f"{t}:{configs[t].backbone_type}" for t in order)
        if kind == "topdown" else main.backbone_type,
        "backbone_source": None,
        "background_fill": None,
        "burn_in": None,
        "centroid_method": (None if not has_centre else
                            "anchor" if anchor is not None else "center_of_mass"),
        "checkpoint_path": ";".join(f"{t}:{folders[t] / 'best.ckpt'}" for t in order)
        if kind == "topdown" else str(folders[kind] / "best.ckpt"),
        "class_names": None,
        "crop_centering": None,
        "crop_size": [crop, crop] if crop else None,
        "edge_inds": edges,
        "embedding_dim": None,
        "export_format": fmt,
        "export_timestamp": datetime.datetime.now().isoformat(),
        "input_channels": frame.in_channels,
        "input_dtype": "uint8",
        "input_scale": frame.preprocessing.scale,
        "max_batch_size": batch,
        "max_height": None,
        "max_instances": max_instances if uses_centroid else None,
        "max_peaks_per_node": _MAX_PEAKS_PER_NODE if kind == "bottomup" else None,
        "max_width": None,
        "model_name": "+".join(folders[t].name for t in order) if kind == "topdown"
        else folders[kind].name,
        "model_type": kind,
        "n_classes": None,
        "n_edges": len(edges),
        "n_nodes": len(nodes),
        "node_names": nodes,
        "normalization": "0_to_1",
        "normalize": None,
        "output_stride": main.confmaps.output_stride,
        "peak_threshold": threshold,
        "precision": precision,
        "sleap_nn_version": FORMAT_VERSION,
        "training_config_embedded": True,
        "training_config_hash": config_hash,
    }
    # sleapflow's own fields (sleap-nn's reader ignores keys it does not know).
    meta["sleapflow"] = {
        "version": _sleapflow_version(),
        "networks": [f"{NETWORKS_DIR}/{t}/{NETWORK_FILE}" for t in order],
        "refinement": "integral",
        "integral_patch_size": _PATCH,
    }
    return meta


def export_model(model_paths: Sequence[str | Path], out_dir: str | Path, *, fmt: str = "onnx",
                 precision: str = "fp32", batch: int = 8,
                 input_size: str | Sequence[int] | None = None, max_instances: int = 20,
                 peak_threshold: float = 0.2, force: bool = False) -> Path:
    """Write the export folder of ``model_paths`` (one model, or centroid + centered_instance)
    to ``out_dir``, built beside it and renamed into place whole; returns the folder.

    ``input_size`` (HxW) is the frame size the graphs are traced and checked at (default: the
    training config's ``max_height``/``max_width``, else 512); every size still runs. ``batch``
    is recorded as ``max_batch_size`` and bounds the TensorRT profile.
    """
    from sleapflow.models.loader import load_model, read_model_config

    _check_format(fmt, precision)
    if not 1 <= batch <= 4096:
        raise ConfigError(f"--batch must be between 1 and 4096 (got {batch})")
    if not 1 <= max_instances <= 1000:
        raise ConfigError(f"--max_instances must be between 1 and 1000 (got {max_instances})")
    if not 0.0 <= peak_threshold <= 1.0:
        raise ConfigError(f"--peak_threshold must be between 0 and 1 (got {peak_threshold})")
    kind, folders = _plan(model_paths)
    out = Path(out_dir).expanduser()
    _check_target(out, list(folders.values()), force)
    configs = {t: read_model_config(f) for t, f in folders.items()}
    frame_cfg = configs["centroid"] if kind == "topdown" else configs[kind]
    size = _parse_size(input_size)
    if size is None:
        pre = frame_cfg.preprocessing
        crop = pre.crop_size if kind == "centered_instance" else None
        size = (crop, crop) if crop else (pre.max_height or 512, pre.max_width or 512)
    if kind == "topdown" and not configs["centered_instance"].preprocessing.crop_size:
        raise ConfigError("the centered_instance model's config has no crop_size; a top-down "
                          "export needs it")

    loaded = {t: load_model(f, "cpu") for t, f in folders.items()}
    crop = configs["centered_instance"].preprocessing.crop_size if kind == "topdown" else None
    nets = {t: _Network(m.module, m.config, m.config.preprocessing.scale,
                        (crop, crop) if crop and t == "centered_instance" else size)
            for t, m in loaded.items()}
    if kind == "topdown":
        graph: nn.Module = _TopDownGraph(nets["centroid"], nets["centered_instance"],
                                         crop or 0,
                                         max_instances, peak_threshold)
    elif kind == "centroid":
        graph = _CentroidGraph(nets[kind], max_instances, peak_threshold)
    elif kind == "bottomup":
        graph = _BottomUpGraph(nets[kind], _MAX_PEAKS_PER_NODE, peak_threshold)
    else:
        graph = _SingleGraph(nets[kind], peak_threshold)

    try:
        _write_folder(out, kind, folders, configs, loaded, graph, size, fmt=fmt,
                      precision=precision, batch=batch, max_instances=max_instances,
                      peak_threshold=peak_threshold)
    except OSError as exc:  # a full disk, a read-only or vanished folder: nothing was replaced
        raise OutputWriteError(f"cannot write the export folder {str(out)!r}: "
                               f"{exc.strerror or exc}; an earlier folder there is unchanged") \
            from exc
    log.info("exported", models=[str(f) for f in folders.values()], model_type=kind,
             output=str(out), format=fmt)
    return out


def _write_folder(out: Path, kind: str, folders: dict[str, Path], configs: dict[str, ModelConfig],
                  loaded: dict[str, Any], graph: nn.Module, size: tuple[int, int], *, fmt: str,
                  precision: str, batch: int, max_instances: int, peak_threshold: float) -> None:
    frame_cfg = configs["centroid"] if kind == "topdown" else configs[kind]
    with _staging(out) as tmp:
        for t, m in loaded.items():
            _export_network(m.module, m.config, tmp / NETWORKS_DIR / t, size, folders[t])
        _export_baked(graph, _OUTPUTS[kind], frame_cfg.in_channels, size, tmp / ONNX_FILE, batch)
        if kind == "topdown":
            copies = {t: tmp / f"training_config_{t}.yaml" for t in ("centroid", "centered_instance")}
        else:
            copies = {kind: tmp / "training_config.yaml"}
        for t, dest in copies.items():
            shutil.copyfile(folders[t] / "training_config.yaml", dest)
        if kind == "topdown":
            config_hash = ";".join(f"{t}:{file_sha256(p)}" for t, p in copies.items())
            config_text = json.dumps({t: p.read_text(encoding="utf-8") for t, p in copies.items()})
        else:
            config_hash = file_sha256(copies[kind])
            config_text = copies[kind].read_text(encoding="utf-8")
        meta = _metadata(kind, configs, folders, fmt="onnx", precision="fp32", batch=batch,
                         max_instances=max_instances, threshold=peak_threshold,
                         config_hash=config_hash)
        _embed(tmp / ONNX_FILE, meta, config_text)
        (tmp / METADATA_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True),
                                         encoding="utf-8")
        if fmt == "tensorrt":
            _build_engine(tmp / ONNX_FILE, tmp / TRT_FILE, precision, batch,
                          (frame_cfg.in_channels, *size),
                          any_size=graph.frame_net.resize is None)  # type: ignore[union-attr]
            trt_meta = {**meta, "export_format": "tensorrt", "precision": precision}
            (tmp / f"{TRT_FILE}.metadata.json").write_text(
                json.dumps(trt_meta, indent=2, sort_keys=True), encoding="utf-8")


def _embed(path: Path, meta: dict[str, Any], config_text: str) -> None:
    """sleap-nn's metadata props inside the ONNX file (readers that get only the file use them)."""
    import onnx

    model = onnx.load(str(path))
    for key, value in (("sleap_nn_metadata", json.dumps(meta)), ("training_config", config_text)):
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(model, str(path))


def _build_engine(onnx_path: Path, engine_path: Path, precision: str, batch: int,
                  chw: tuple[int, int, int], *, any_size: bool) -> None:
    """A TensorRT engine of the baked graph: batch 1..``batch``, frames up to twice the export
    size (sleap-nn's profile) when the graph takes ``any_size``, else that size only. Not run in
    this project yet (no GPU lent)."""
    import tensorrt as trt

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise BackendError(f"TensorRT cannot parse the exported graph: {errors}")
    config = builder.create_builder_config()
    if precision == "fp16":
        config.set_flag(trt.BuilderFlag.FP16)
    c, h, w = chw
    profile = builder.create_optimization_profile()
    largest = (batch, c, 2 * h, 2 * w) if any_size else (batch, c, h, w)
    profile.set_shape("image", (1, c, h, w), (batch, c, h, w), largest)
    config.add_optimization_profile(profile)
    engine = builder.build_serialized_network(network, config)
    if engine is None:
        raise BackendError("TensorRT failed to build an engine for the exported graph")
    engine_path.write_bytes(bytes(engine))

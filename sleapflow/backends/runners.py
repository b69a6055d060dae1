"""Network runners: uint8 (B, C, H, W) batch in, head maps (float32, on the model's device) out."""

from __future__ import annotations

import copy
import threading
import warnings
from typing import Any, Protocol

import torch

from sleapflow.backends.cache import (
    OPSET,
    CorruptEntry,
    ExportCache,
    entry_key,
    export_key_parts,
    module_digest,
)
from sleapflow.backends.fused import FusedPeaks, PeakHead
from sleapflow.backends.select import RuntimeChoice
from sleapflow.errors import BackendError, ConfigError
from sleapflow.logs import get_logger
from sleapflow.models.inference_opt import prepare_for_inference
from sleapflow.ops.fused_peaks import global_peaks, top_local_peaks
from sleapflow.ops.preprocess import normalize

__all__ = (
    "EXPORT_TOLERANCE", "OPSET", "POINT_TOLERANCE", "FusedHeads", "HeadMaps", "HostStaging",
    "Int8OnnxRunner", "NetworkRunner", "NoopRunner", "OnnxRunner", "TensorRTRunner", "TorchRunner",
    "apply_activations", "export_onnx", "head_activations", "make_runner", "pre_activation_maps",
)


log = get_logger(__name__)

#: Largest absolute map difference accepted between a fresh export and torch on its example batch.
EXPORT_TOLERANCE = 1e-3

_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}


class NetworkRunner(Protocol):
    """What the forward stage calls; safe to call from several worker threads at once."""

    name: str

    def __call__(self, x: torch.Tensor) -> dict[str, torch.Tensor]: ...


class HostStaging:
    """Reusable pinned host buffers for uint8 batches bound for a GPU, one per batch shape.

    A page-locked source lets ``copy_(non_blocking=True)`` overlap with the host, and reusing
    the buffer avoids pinning fresh memory (slow) for every batch. Safe because each runner
    synchronises its stream before returning, so a buffer is never refilled while its previous
    copy is in flight. Only used when the device is CUDA.
    """

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self._buffers: dict[tuple[int, ...], torch.Tensor] = {}
        self._lock = threading.Lock()

    def to_device(self, x: torch.Tensor) -> torch.Tensor:
        if x.device.type != "cpu" or self.device.type != "cuda":
            return x.to(self.device, non_blocking=True)
        shape = tuple(x.shape)
        with self._lock:
            buf = self._buffers.get(shape)
            if buf is None or buf.dtype != x.dtype:
                buf = torch.empty(shape, dtype=x.dtype, pin_memory=True)
                self._buffers[shape] = buf
        buf.copy_(x)
        return buf.to(self.device, non_blocking=True)


def _sync(device: torch.device) -> None:
    # The stage's busy time must be the real forward time, and the staging buffer free again.
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class TorchRunner:
    """Today's path: the module itself, NCHW float32 (bit-identical to the reference on CPU).

    On CUDA the batch goes through a pinned buffer, is normalised on the device, and with
    ``precision`` fp16/bf16 runs under autocast (maps come back as float32). On the CPU, bf16
    converts the module's weights to bf16 in channels-last memory, so oneDNN runs it on the
    CPU's bf16 units (AMX / AVX512-BF16; 2-2.5x ONNX Runtime's fp32 on a Sapphire Rapids core),
    and the heads' final activations run in fp32 on its float32 maps.
    """

    name = "torch"

    def __init__(self, module: torch.nn.Module, device: torch.device, *,
                 channels_last: bool = False, precision: str = "fp32") -> None:
        self.cpu_bf16 = device.type == "cpu" and precision == "bf16"
        if self.cpu_bf16:
            # A bf16 copy: the loaded fp32 module stays as it was for anything else using it
            # (the forward limits of other runtimes, an export).
            module = copy.deepcopy(module)
        self.module = module
        self.device = device
        self.precision = precision
        self.channels_last = (channels_last or self.cpu_bf16) and device.type == "cpu"
        self.staging = HostStaging(device)
        prepare_for_inference(module, device, channels_last=self.channels_last)
        self.activations = head_activations(module) if self.cpu_bf16 else {}
        if self.cpu_bf16:
            module.to(torch.bfloat16)

    def __call__(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        with torch.inference_mode():
            x = normalize(self.staging.to_device(x))
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            if self.cpu_bf16:
                raw = pre_activation_maps(self.module, x.to(torch.bfloat16), self.activations)
                heads = apply_activations(self.activations,
                                          {k: v.float().contiguous() for k, v in raw.items()})
            elif self.precision in _DTYPES:
                with torch.autocast(self.device.type, dtype=_DTYPES[self.precision]):
                    heads = self.module(x)
                heads = {k: v.float() for k, v in heads.items()}
            else:
                heads = self.module(x)
            _sync(self.device)
        return heads


def head_activations(module: torch.nn.Module) -> dict[str, torch.nn.Module]:
    """The heads' final activations, which exported graphs leave to torch (see
    ``PoseNetwork.forward``); none for a module that does not declare them."""
    declared = getattr(module, "head_activations", None)
    return declared() if callable(declared) else {}


def pre_activation_maps(module: torch.nn.Module, x: torch.Tensor,
                        activations: dict[str, torch.nn.Module]) -> dict[str, torch.Tensor]:
    """The module's head maps before the final ``activations`` (its :func:`head_activations`)."""
    return module(x, activations=False) if activations else module(x)


def apply_activations(activations: dict[str, torch.nn.Module],
                      heads: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The heads' final activations applied to pre-activation maps (others pass through)."""
    if not activations:
        return heads
    return {k: activations[k](v) if k in activations else v for k, v in heads.items()}


class HeadMaps(torch.nn.Module):
    """The module's pre-activation head maps as a tuple in a fixed head order (for export)."""

    def __init__(self, module: torch.nn.Module, names: list[str]) -> None:
        super().__init__()
        self.module = module
        self.names = names
        self.activations = head_activations(module)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = pre_activation_maps(self.module, x, self.activations)
        return tuple(out[k] for k in self.names)


def _head_peaks(maps: torch.Tensor, spec: PeakHead) -> list[torch.Tensor]:
    """One head's fused outputs, all float32 (see :func:`sleapflow.backends.fused.split_outputs`);
    empty top-k slots are zeroed (index -1), so their contents never depend on how a runtime
    orders ties among non-peaks."""
    if not spec.local:
        points, vals = global_peaks(maps, spec.threshold, refinement=spec.refinement,
                                    patch_size=spec.patch_size)
        return [points * spec.output_stride / spec.input_scale, vals]
    # The export pins the map size (it is in the cache key), so k can be clamped to it here.
    k = min(spec.k, int(maps.shape[-2]) * int(maps.shape[-1]))
    points, vals, valid, index, counts = top_local_peaks(
        maps, k, spec.threshold, refinement=spec.refinement, patch_size=spec.patch_size)
    points = points * spec.output_stride / spec.input_scale
    points = torch.where(valid[..., None], points, torch.zeros_like(points))
    vals = torch.where(valid, vals, torch.zeros_like(vals))
    index = torch.where(valid, index, torch.full_like(index, -1))
    return [points, vals, valid.float(), index.float(), counts.float()]


class FusedHeads(torch.nn.Module):
    """The module's heads with peak finding fused in (for export): a fused head gives its
    peaks (:meth:`FusedPeaks.output_names` lists the outputs), any other head its
    pre-activation maps, as :class:`HeadMaps`."""

    def __init__(self, module: torch.nn.Module, names: list[str], fuse: FusedPeaks) -> None:
        super().__init__()
        self.module = module
        self.names = names
        self.fuse = fuse
        self.activations = head_activations(module)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = pre_activation_maps(self.module, x, self.activations)
        result: list[torch.Tensor] = []
        for name in self.names:
            spec = self.fuse.head(name)
            if spec is None:
                result.append(out[name])
                continue
            maps = self.activations[name](out[name]) if name in self.activations else out[name]
            result += _head_peaks(maps, spec)
        return tuple(result)


def export_onnx(module: torch.nn.Module, example: torch.Tensor, names: list[str], path: Any,
                fuse: FusedPeaks | None = None) -> None:
    """``torch.onnx.export`` with a dynamic batch axis; the tracer's shape warnings are expected
    (padding is computed from H, W, which the cache key pins) and silenced. With ``fuse`` the
    graph ends in those heads' peak finding (:class:`FusedHeads`).

    Raises :class:`BackendError` when torch cannot export the module (an operator without an
    ONNX form, a tracer failure): the model still runs under torch.
    """
    outputs = fuse.output_names(names) if fuse is not None else names
    wrapper = FusedHeads(module, names, fuse) if fuse is not None else HeadMaps(module, names)
    axes = {"x": {0: "batch"}, **{n: {0: "batch"} for n in outputs}}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(wrapper.eval(), (example,), str(path), dynamo=False,
                              input_names=["x"], output_names=outputs, dynamic_axes=axes,
                              opset_version=OPSET, do_constant_folding=True)
    except Exception as exc:  # torch.onnx raises many types (its own, RuntimeError, TypeError...)
        raise BackendError(
            f"cannot export this model to ONNX (opset {OPSET}): {type(exc).__name__}: "
            f"{_first_line(exc)}; run it with --runtime torch") from exc


def _first_line(exc: BaseException) -> str:
    # torch.onnx errors carry whole graph dumps after their first line; the message goes on
    # after it, so its closing full stop goes.
    text = str(exc).strip()
    return text.splitlines()[0].rstrip(" .") if text else type(exc).__name__


class _Exported:
    """One input shape class's export: its head names and per-head output shape at batch 1."""

    def __init__(self, path: Any, names: list[str], out_shapes: dict[str, tuple[int, ...]]) -> None:
        self.path = path
        self.names = names
        self.out_shapes = out_shapes


class _ExportingRunner:
    """Shared by the ONNX Runtime and TensorRT runners: one cached export per input shape.

    The first batch of a new (C, H, W) exports the torch module (or reuses the cached export),
    checks the exported graph against torch on that very batch, and builds the session; later
    batches of that shape go straight to it. A lock keeps concurrent workers from exporting twice.

    With ``fuse`` the export ends in those heads' peak finding (:class:`FusedHeads`): a call
    returns their peaks (named ``head/points`` ...) instead of their maps; :meth:`maps` still
    gives whole maps (a second export, built only when asked for).
    """

    name = "exporting"

    def __init__(self, module: torch.nn.Module, device: torch.device, *, threads: int | None,
                 precision: str, cache: ExportCache | None, fuse: FusedPeaks | None = None,
                 model_key: str | None = None) -> None:
        self.module = module
        self.device = device
        self.threads = threads
        self.precision = precision
        self.cache = cache or ExportCache("onnx")
        self.fuse = fuse
        self.staging = HostStaging(device)
        prepare_for_inference(module, device)
        # A checkpoint_digest from the caller keys entries by file bytes, so a later run finds
        # them without loading torch; a bare module is keyed by its weights.
        self.digest = model_key or module_digest(module)
        self.activations = head_activations(module)
        self._sessions: dict[tuple[bool, tuple[int, ...]], Any] = {}
        self._lock = threading.Lock()
        #: Per shape class: the key and whether this process built the entry (tests, logs); for
        #: the runner's own outputs (fused when ``fuse`` is given).
        self.exports: dict[tuple[int, ...], tuple[str, bool]] = {}
        #: The same for the maps exports a fused runner builds on demand (:meth:`maps`).
        self.maps_exports: dict[tuple[int, ...], tuple[str, bool]] = {}

    def runtime_version(self) -> str:
        raise NotImplementedError

    def _key_parts(self, shape: tuple[int, ...], fused: bool = False) -> dict[str, Any]:
        parts = export_key_parts(self.digest, shape, runtime=self.name,
                                 runtime_version=self.runtime_version(), precision=self.precision)
        if fused and self.fuse is not None:
            # Threshold, refinement, patch, k, strides and scale all shape the graph.
            parts["fused_peaks"] = self.fuse.key_parts()
        return parts

    def _record(self, fused: bool) -> dict[tuple[int, ...], tuple[str, bool]]:
        return self.exports if fused == (self.fuse is not None) else self.maps_exports

    def _open_cached(self, shape: tuple[int, ...], fused: bool = False) -> Any:
        """A session on a verified cache entry for ``shape``, or None on a miss.

        Such an entry was checked against torch when it was built, and its checksum pins it, so
        a hit skips the torch reference forward (the slowest part of a warm start). An entry
        whose record lacks its heads, or that the runtime cannot load, is discarded: rebuilt,
        never trusted."""
        key = entry_key(self._key_parts(shape, fused))
        # No onnx.checker here: the checksum already proves this is the artifact that passed it,
        # and importing onnx (0.6 s, holding the GIL) would stall the decoder at start-up.
        hit = self.cache.lookup(key, "model.onnx")
        if hit is None:
            return None
        path, record = hit
        names, out_shapes = record.get("heads"), record.get("out_shapes")
        try:
            if not isinstance(names, list) or not isinstance(out_shapes, dict):
                raise CorruptEntry("its record names no heads")
            session = self._open(_Exported(path, names,
                                           {k: tuple(v) for k, v in out_shapes.items()}))
        except Exception as exc:
            log.warning("export cache entry does not load; rebuilding", key=key, reason=str(exc))
            self.cache.discard(key)
            return None
        self._record(fused)[shape] = (key, False)
        log.info("onnx export", shape=shape, key=key, cached=True, fused=fused)
        return session

    def _open_checked(self, x: torch.Tensor, fused: bool = False) -> Any:
        """Export (or reuse a concurrent builder's entry) and check it against torch on ``x``."""
        shape = tuple(x.shape[1:])
        exported, ref = self._export(x, fused)
        session = self._open(exported)
        got = apply_activations(self.activations, session(x))
        worst = max(_worst_difference(got[k].float(), ref[k].float(), self._points_units(k, x))
                    for k in ref)
        if worst > EXPORT_TOLERANCE:
            # Cache hits trust an entry without this check, so a failing one must go.
            self.cache.discard(self._record(fused)[shape][0])
            raise BackendError(
                f"the {self.name} export of this model differs from torch by {worst:.2e} on "
                f"its first batch (limit {EXPORT_TOLERANCE}); use --runtime torch")
        return session

    def _export(self, x: torch.Tensor, fused: bool = False
                ) -> tuple[_Exported, dict[str, torch.Tensor]]:
        shape = tuple(x.shape[1:])
        fuse = self.fuse if fused else None
        with torch.inference_mode():
            maps = self.module(x)
            names = list(maps)
            if fuse is None:
                ref = maps
            else:
                outs = FusedHeads(self.module, names, fuse)(x)
                ref = apply_activations(self.activations,
                                        dict(zip(fuse.output_names(names), outs, strict=True)))
        out_shapes = {k: tuple(v.shape[1:]) for k, v in ref.items()}
        key = entry_key(self._key_parts(shape, fused))
        path, built = self.cache.get_or_build(
            key, "model.onnx", lambda p: export_onnx(self.module, x, names, p, fuse),
            meta={"parts": self._key_parts(shape, fused), "heads": list(ref),
                  "out_shapes": {k: list(v) for k, v in out_shapes.items()}},
            check=self._check_onnx)
        self._record(fused)[shape] = (key, built)
        log.info("onnx export", shape=shape, key=key, cached=not built, fused=fused)
        return _Exported(path, list(ref), out_shapes), ref

    def _points_units(self, output: str, x: torch.Tensor) -> tuple[float, float, float] | None:
        """For a fused head's points output: the input's (width, height) in the points' units,
        and one map pixel in them; None for any other output."""
        spec = self.fuse.head(output.rsplit("/", 1)[0]) if self.fuse is not None else None
        if spec is None or not output.endswith("/points"):
            return None
        return (x.shape[-1] / spec.input_scale, x.shape[-2] / spec.input_scale,
                spec.output_stride / spec.input_scale)

    @staticmethod
    def _check_onnx(path: Any) -> None:
        import onnx

        onnx.checker.check_model(str(path))

    def _session_for(self, x: torch.Tensor, fused: bool = False) -> Any:
        slot = (fused, tuple(x.shape[1:]))
        session = self._sessions.get(slot)
        if session is not None:
            return session
        with self._lock:
            session = self._sessions.get(slot)
            if session is None:
                session = self._open_cached(slot[1], fused)
                if session is None:
                    session = self._open_checked(x, fused)
                self._sessions[slot] = session
        return session

    def _open(self, exported: _Exported) -> Any:
        raise NotImplementedError

    def _run(self, x: torch.Tensor, fused: bool) -> dict[str, torch.Tensor]:
        with torch.inference_mode():
            xf = normalize(self.staging.to_device(x)).contiguous()
            if xf.shape[0] == 0:
                return {}
            return apply_activations(self.activations, self._session_for(xf, fused)(xf))

    def __call__(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return self._run(x, self.fuse is not None)

    def maps(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Every head's maps, also on a fused runner (for a batch whose peaks overflow k)."""
        return self._run(x, False)


#: Largest fused-point difference accepted by the export check, in map pixels (scaled to
#: EXPORT_TOLERANCE in the worst-difference figure): the same peak, refined alike.
POINT_TOLERANCE = 0.05


def _worst_difference(got: torch.Tensor, ref: torch.Tensor,
                      points: tuple[float, float, float] | None = None) -> float:
    """Largest absolute difference; NaN matches NaN (a fused graph's below-threshold points),
    and NaN against a number is a mismatch.

    With ``points`` (fused points: the input's width and height, one map pixel) points are
    compared in map pixels against POINT_TOLERANCE, and only inside the input. Integral
    refinement divides by its patch's sum, which on a weak peak with negative neighbours is
    near 0: a map difference of 1e-5 then moves the point by 1e-3 px or far more (and throws
    it outside the frame), in the torch path on another runtime's maps as much as here."""
    if got.numel() == 0:
        return 0.0
    both = torch.isnan(got) & torch.isnan(ref)
    diff = torch.where(both, torch.zeros_like(got), (got - ref).abs())
    if points is not None:
        width, height, pixel = points
        limit = torch.tensor([width, height], dtype=ref.dtype)
        outside = ((ref < -1) | (ref > limit + 1)).any(dim=-1, keepdim=True)
        diff = torch.where(outside & ~torch.isnan(diff), torch.zeros_like(diff), diff)
        diff = diff / pixel * (EXPORT_TOLERANCE / POINT_TOLERANCE)
    return float(torch.nan_to_num(diff, nan=float("inf")).max())


class _OrtSession:
    """An ONNX Runtime session plus how to feed it torch tensors on the runner's device."""

    def __init__(self, session: Any, exported: _Exported, device: torch.device) -> None:
        self.session = session
        self.exported = exported
        self.device = device

    def __call__(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        names = self.exported.names
        if self.device.type == "cpu":
            try:
                outs = self.session.run(names, {"x": x.numpy()})
            except Exception as exc:  # onnxruntime's own exception types
                raise BackendError(f"ONNX Runtime failed on a batch of shape {tuple(x.shape)}: "
                                   f"{_first_line(exc)}; use --runtime torch") from exc
            return {k: torch.from_numpy(v) for k, v in zip(names, outs)}
        # CUDA: bind torch's device memory in and out, so the maps never visit the host.
        batch = x.shape[0]
        out = {k: torch.empty((batch, *s), dtype=torch.float32, device=self.device)
               for k, s in self.exported.out_shapes.items()}
        binding = self.session.io_binding()
        index = self.device.index or 0
        binding.bind_input("x", "cuda", index, _np_float32(), tuple(x.shape), x.data_ptr())
        for k, t in out.items():
            binding.bind_output(k, "cuda", index, _np_float32(), tuple(t.shape), t.data_ptr())
        torch.cuda.current_stream(self.device).synchronize()  # x is ready before ORT reads it
        try:
            self.session.run_with_iobinding(binding)
        except Exception as exc:  # onnxruntime's own exception types
            raise BackendError(f"ONNX Runtime (CUDA) failed on a batch of shape {tuple(x.shape)}: "
                               f"{_first_line(exc)}; use --runtime torch") from exc
        return out


def _np_float32() -> Any:
    import numpy as np

    return np.float32


class OnnxRunner(_ExportingRunner):
    """ONNX Runtime: the CPU execution provider, or CUDA's (onnxruntime-gpu) on a GPU.

    Threads are sized like the torch path: ``threads`` intra-op threads per session, and the
    stage's workers call one session concurrently (each call runs on its caller's thread plus
    ``threads - 1`` pool threads), so workers x threads is the core share. Spinning pool threads
    are turned off: on a shared CPU they burn the cores the other stages need.
    """

    name = "onnx"

    def runtime_version(self) -> str:
        import onnxruntime

        return onnxruntime.__version__ + ("-cuda" if self.device.type == "cuda" else "-cpu")

    def _open(self, exported: _Exported) -> _OrtSession:
        import onnxruntime as ort

        from sleapflow.backends.ort import session_options

        opts = session_options(self.threads)
        if self.device.type == "cuda":
            providers: list[Any] = [("CUDAExecutionProvider", {"device_id": self.device.index or 0}),
                                    "CPUExecutionProvider"]
        else:
            providers = ["CPUExecutionProvider"]
        try:
            session = ort.InferenceSession(str(exported.path), opts, providers=providers)
        except Exception as exc:  # onnxruntime's own exception types
            raise BackendError(f"ONNX Runtime cannot load the export {str(exported.path)!r}: "
                               f"{_first_line(exc)}; use --runtime torch") from exc
        return _OrtSession(session, exported, self.device)


class Int8OnnxRunner(OnnxRunner):
    """ONNX Runtime on the CPU running an int8 (QDQ) quantization of the fp32 export.

    Each input shape class is quantized once, calibrated on real network inputs of that shape
    (:meth:`calibrate`: the run's first frames or crops, or a calibration set). The fp32 export
    is the same cache entry an fp32 ONNX run uses, checked against torch as usual; the
    quantized network is a second entry (cache kind ``onnx-int8``) keyed by that entry, the
    calibration inputs' digest and the quantization settings, so another calibration source
    makes another entry. A batch of a shape nobody calibrated is quantized on itself alone
    (with a warning): correct, but calibrated on few inputs.
    """

    name = "onnx"

    def __init__(self, module: torch.nn.Module, device: torch.device, *, threads: int | None,
                 cache: ExportCache | None) -> None:
        from sleapflow.backends.quantize import cpu_has_int8_dot, warn_without_int8_dot

        if device.type != "cpu":
            raise ConfigError(f"--precision int8 runs on the CPU only (got {device})")
        super().__init__(module, device, threads=threads, precision="int8", cache=cache)
        self.quantized = ExportCache("onnx-int8", self.cache.dir.parent)
        #: Without int8 dot-product instructions, 7-bit weights avoid ONNX Runtime's
        #: 16-bit accumulation overflow (see quantize_network).
        self.reduce_range = not cpu_has_int8_dot()
        warn_without_int8_dot()
        #: Per shape class: the int8 entry's key and whether this process built it.
        self.int8_exports: dict[tuple[int, ...], tuple[str, bool]] = {}

    def _key_parts(self, shape: tuple[int, ...], fused: bool = False) -> dict[str, Any]:
        # The fp32 export is shared with fp32 ONNX runs: only the quantized entry is int8's.
        return {**super()._key_parts(shape, fused), "precision": "fp32"}

    def int8_key(self, fp32_key: str, digest: str) -> str:
        """The quantized entry's key: the fp32 entry, the calibration inputs, the settings."""
        from sleapflow.backends.quantize import QUANTIZATION

        return entry_key({"onnx_entry": fp32_key, "calibration": digest,
                          "quantization": QUANTIZATION, "reduce_range": self.reduce_range,
                          "runtime_version": self.runtime_version()})

    def calibrated(self, shape: tuple[int, ...]) -> bool:
        """Whether inputs of (C, H, W) ``shape`` already have their int8 network."""
        return shape in self._sessions

    def calibrate(self, batches: list[torch.Tensor]) -> None:
        """Quantize each shape class among ``batches`` (normalised float32, as the network is
        fed) that has no int8 network yet, calibrated on that class's batches."""
        groups: dict[tuple[int, ...], list[torch.Tensor]] = {}
        for batch in batches:
            if batch.shape[0]:
                groups.setdefault(tuple(batch.shape[1:]), []).append(batch.contiguous())
        with self._lock:
            for shape, group in groups.items():
                if shape not in self._sessions:
                    self._sessions[shape] = self._quantize(shape, group)

    def _quantize(self, shape: tuple[int, ...], group: list[torch.Tensor]) -> _OrtSession:
        from sleapflow.backends.quantize import calibration_digest, quantize_network

        fp32 = self._open_checked(group[0])
        samples = [b.numpy() for b in group]
        key = self.int8_key(self.exports[shape][0], calibration_digest(samples))
        source = fp32.exported
        path, built = self.quantized.get_or_build(
            key, "model.onnx",
            lambda p: quantize_network(source.path, p, samples, reduce_range=self.reduce_range),
            meta={"onnx_entry": self.exports[shape][0], "calibration_inputs":
                  sum(int(b.shape[0]) for b in group), "reduce_range": self.reduce_range})
        self.int8_exports[shape] = (key, built)
        log.info("int8 quantization", shape=shape, key=key, cached=not built,
                 calibration_inputs=sum(int(b.shape[0]) for b in group))
        return self._open(_Exported(path, source.names, source.out_shapes))

    def _session_for(self, x: torch.Tensor, fused: bool = False) -> Any:
        # int8 never fuses peaks (make_runner offers it none): one session per input shape.
        shape = tuple(x.shape[1:])
        session = self._sessions.get(shape)
        if session is None:
            log.warning("int8: no calibration inputs of this shape; calibrating on this batch "
                        "alone", shape=shape, inputs=int(x.shape[0]))
            self.calibrate([x])
            session = self._sessions[shape]
        return session


class TensorRTRunner(_ExportingRunner):
    """TensorRT engines built from the cached ONNX export, themselves cached per GPU and precision.

    The optimisation profile covers batches 1..``max_batch``; fp16 sets TensorRT's FP16 flag
    (layers it keeps in fp32 stay so). Inputs and outputs are torch CUDA tensors bound by address
    and run on torch's current stream. Not run on a GPU in this project yet (no device lent).
    """

    name = "tensorrt"

    def __init__(self, module: torch.nn.Module, device: torch.device, *, threads: int | None,
                 precision: str, cache: ExportCache | None, max_batch: int,
                 fuse: FusedPeaks | None = None) -> None:
        super().__init__(module, device, threads=threads, precision=precision, cache=cache,
                         fuse=fuse)
        self.max_batch = max(1, max_batch)
        self.engines = ExportCache("tensorrt", self.cache.dir.parent)

    def runtime_version(self) -> str:
        import tensorrt

        return tensorrt.__version__

    def _key_parts(self, shape: tuple[int, ...], fused: bool = False) -> dict[str, Any]:
        parts = super()._key_parts(shape, fused)
        # The ONNX export is device-independent; engines are not.
        return {**parts, "runtime": "onnx-for-tensorrt", "precision": "fp32"}

    def _open(self, exported: _Exported) -> Any:
        import tensorrt as trt

        gpu = torch.cuda.get_device_name(self.device)
        capability = torch.cuda.get_device_capability(self.device)
        # The ONNX entry's folder name is its key: it pins model, shape and exporter.
        key = entry_key({"onnx_entry": exported.path.parent.name, "gpu": gpu,
                         "capability": list(capability), "tensorrt": trt.__version__,
                         "precision": self.precision, "max_batch": self.max_batch,
                         "digest": self.digest})
        trt_logger = trt.Logger(trt.Logger.WARNING)

        def build(path: Any) -> None:
            builder = trt.Builder(trt_logger)
            network = builder.create_network(0)
            parser = trt.OnnxParser(network, trt_logger)
            if not parser.parse_from_file(str(exported.path)):
                errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
                raise BackendError(f"TensorRT cannot parse the ONNX export of this model: {errors}; "
                                   "use --runtime onnx or --runtime torch")
            config = builder.create_builder_config()
            if self.precision == "fp16":
                config.set_flag(trt.BuilderFlag.FP16)
            shape = tuple(network.get_input(0).shape)[1:]
            profile = builder.create_optimization_profile()
            profile.set_shape("x", (1, *shape), (self.max_batch, *shape), (self.max_batch, *shape))
            config.add_optimization_profile(profile)
            engine = builder.build_serialized_network(network, config)
            if engine is None:
                raise BackendError("TensorRT failed to build an engine for this model (its log above "
                                   "says why); use --runtime onnx or --runtime torch")
            with open(path, "wb") as f:
                f.write(bytes(engine))

        path, _ = self.engines.get_or_build(key, "model.engine", build,
                                            meta={"gpu": gpu, "precision": self.precision})
        runtime = trt.Runtime(trt_logger)
        with open(path, "rb") as f:
            engine = runtime.deserialize_cuda_engine(f.read())
        if engine is None:
            raise BackendError(f"TensorRT cannot load the cached engine {str(path)!r}; delete its "
                               "folder (it is rebuilt on the next run), or use --runtime torch")
        return _TrtSession(engine, exported, self.device, self.max_batch)


class _TrtSession:
    def __init__(self, engine: Any, exported: _Exported, device: torch.device, max_batch: int) -> None:
        self.engine = engine
        self.context = engine.create_execution_context()
        self.exported = exported
        self.device = device
        self.max_batch = max_batch
        self._lock = threading.Lock()  # one execution context: one batch at a time

    def __call__(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        if x.shape[0] > self.max_batch:
            parts = [self(chunk) for chunk in x.split(self.max_batch)]
            return {k: torch.cat([p[k] for p in parts]) for k in parts[0]}
        batch = x.shape[0]
        out = {k: torch.empty((batch, *s), dtype=torch.float32, device=self.device)
               for k, s in self.exported.out_shapes.items()}
        stream = torch.cuda.current_stream(self.device)
        with self._lock:
            self.context.set_input_shape("x", tuple(x.shape))
            self.context.set_tensor_address("x", x.data_ptr())
            for k, t in out.items():
                self.context.set_tensor_address(k, t.data_ptr())
            if not self.context.execute_async_v3(stream.cuda_stream):
                raise BackendError(f"TensorRT failed to run a batch of shape {tuple(x.shape)}; "
                                   "use --runtime torch")
            stream.synchronize()
        return out


class NoopRunner:
    """A forward pass at no cost, for benchmarks: the real maps of the first batch of each shape,
    replayed for every later batch (so peaks, grouping and writing still do real work). Shows
    what the rest of a graph sustains when the network runs at accelerator speed."""

    name = "noop"

    def __init__(self, module: torch.nn.Module, device: torch.device) -> None:
        self.inner = TorchRunner(module, device)
        self._maps: dict[tuple[int, ...], dict[str, torch.Tensor]] = {}
        self._lock = threading.Lock()

    def __call__(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        shape = tuple(x.shape[1:])
        with self._lock:
            maps = self._maps.get(shape)
            if maps is None:
                maps = self._maps[shape] = self.inner(x[:1])
        return {k: v.expand(x.shape[0], *v.shape[1:]) for k, v in maps.items()}


def make_runner(choice: RuntimeChoice, module: torch.nn.Module, device: torch.device | str, *,
                threads: int | None = None, channels_last: bool = False, max_batch: int = 4,
                cache: ExportCache | None = None, fuse: FusedPeaks | None = None) -> NetworkRunner:
    """The runner for ``choice`` around a loaded (eval-mode, on ``device``) module. ``fuse``
    (peak finding inside the graph) applies to the exporting runtimes (onnx, tensorrt); the
    others return maps whatever it says."""
    dev = torch.device(device)
    if getattr(module, "runs_itself", False):
        # An export folder's network is already on ONNX Runtime: the module is called as it is.
        if choice.name == "tensorrt" or choice.precision != "fp32":
            raise ConfigError(f"--runtime {choice.name} --precision {choice.precision}: an export "
                              "folder's networks run on ONNX Runtime in fp32; use --runtime auto "
                              "or onnx, or pass the checkpoint folder")
        return TorchRunner(module, dev)
    if choice.name == "torch":
        return TorchRunner(module, dev, channels_last=channels_last, precision=choice.precision)
    if choice.name == "onnx" and choice.precision == "int8":
        return Int8OnnxRunner(module, dev, threads=threads, cache=cache)
    if choice.name == "onnx":
        return OnnxRunner(module, dev, threads=threads, precision=choice.precision, cache=cache,
                          fuse=fuse)
    if choice.name == "noop":
        return NoopRunner(module, dev)
    if choice.name == "tensorrt":
        return TensorRTRunner(module, dev, threads=threads, precision=choice.precision,
                              cache=cache, max_batch=max_batch, fuse=fuse)
    raise ConfigError(f"unknown runtime {choice.name!r}; choose torch, onnx or tensorrt")

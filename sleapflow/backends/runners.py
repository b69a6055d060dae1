"""Network runners: uint8 (B, C, H, W) batch in, head maps (float32, on the model's device) out."""

from __future__ import annotations

import copy
import threading
import warnings
from typing import Any, Protocol

import torch

from sleapflow.backends.cache import CorruptEntry, ExportCache, entry_key, module_digest
from sleapflow.backends.select import RuntimeChoice
from sleapflow.errors import BackendError, ConfigError
from sleapflow.logs import get_logger
from sleapflow.models.inference_opt import prepare_for_inference
from sleapflow.ops.preprocess import normalize

__all__ = (
    "EXPORT_TOLERANCE", "OPSET", "HeadMaps", "HostStaging", "Int8OnnxRunner", "NetworkRunner", "NoopRunner",
    "OnnxRunner", "TensorRTRunner", "TorchRunner", "apply_activations", "export_onnx", "head_activations",
    "make_runner", "pre_activation_maps",
)


log = get_logger(__name__)

#: ONNX opset of the export (part of the cache key through the export format).
OPSET = 17
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


def export_onnx(module: torch.nn.Module, example: torch.Tensor, names: list[str], path: Any) -> None:
    """``torch.onnx.export`` with a dynamic batch axis; the tracer's shape warnings are expected
    (padding is computed from H, W, which the cache key pins) and silenced.

    Raises :class:`BackendError` when torch cannot export the module (an operator without an
    ONNX form, a tracer failure): the model still runs under torch.
    """
    axes = {"x": {0: "batch"}, **{n: {0: "batch"} for n in names}}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(HeadMaps(module, names).eval(), (example,), str(path), dynamo=False,
                              input_names=["x"], output_names=names, dynamic_axes=axes,
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
    """

    name = "exporting"

    def __init__(self, module: torch.nn.Module, device: torch.device, *, threads: int | None,
                 precision: str, cache: ExportCache | None) -> None:
        self.module = module
        self.device = device
        self.threads = threads
        self.precision = precision
        self.cache = cache or ExportCache("onnx")
        self.staging = HostStaging(device)
        prepare_for_inference(module, device)
        self.digest = module_digest(module)
        self.activations = head_activations(module)
        self._sessions: dict[tuple[int, ...], Any] = {}
        self._lock = threading.Lock()
        #: Per shape class: the key and whether this process built the entry (tests, logs).
        self.exports: dict[tuple[int, ...], tuple[str, bool]] = {}

    def runtime_version(self) -> str:
        raise NotImplementedError

    def _key_parts(self, shape: tuple[int, ...]) -> dict[str, Any]:
        return {"model": self.digest, "shape": list(shape), "runtime": self.name,
                "runtime_version": self.runtime_version(), "torch": torch.__version__,
                "opset": OPSET, "precision": self.precision,
                # Exports leave the heads' final activations to torch (see head_activations).
                "activations": "torch"}

    def _open_cached(self, shape: tuple[int, ...]) -> Any:
        """A session on a verified cache entry for ``shape``, or None on a miss.

        Such an entry was checked against torch when it was built, and its checksum pins it, so
        a hit skips the torch reference forward (the slowest part of a warm start). An entry
        whose record lacks its heads, or that the runtime cannot load, is discarded: rebuilt,
        never trusted."""
        key = entry_key(self._key_parts(shape))
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
        self.exports[shape] = (key, False)
        log.info("onnx export", shape=shape, key=key, cached=True)
        return session

    def _open_checked(self, x: torch.Tensor) -> Any:
        """Export (or reuse a concurrent builder's entry) and check it against torch on ``x``."""
        shape = tuple(x.shape[1:])
        exported, ref = self._export(x)
        session = self._open(exported)
        got = apply_activations(self.activations, session(x))
        worst = max(float((got[k].float() - ref[k].float()).abs().max()) for k in ref)
        if worst > EXPORT_TOLERANCE:
            # Cache hits trust an entry without this check, so a failing one must go.
            self.cache.discard(self.exports[shape][0])
            raise BackendError(
                f"the {self.name} export of this model differs from torch by {worst:.2e} on "
                f"its first batch (limit {EXPORT_TOLERANCE}); use --runtime torch")
        return session

    def _export(self, x: torch.Tensor) -> tuple[_Exported, dict[str, torch.Tensor]]:
        shape = tuple(x.shape[1:])
        with torch.inference_mode():
            ref = self.module(x)
        names = list(ref)
        out_shapes = {k: tuple(v.shape[1:]) for k, v in ref.items()}
        key = entry_key(self._key_parts(shape))
        path, built = self.cache.get_or_build(
            key, "model.onnx", lambda p: export_onnx(self.module, x, names, p),
            meta={"parts": self._key_parts(shape), "heads": names,
                  "out_shapes": {k: list(v) for k, v in out_shapes.items()}},
            check=self._check_onnx)
        self.exports[shape] = (key, built)
        log.info("onnx export", shape=shape, key=key, cached=not built)
        return _Exported(path, names, out_shapes), ref

    @staticmethod
    def _check_onnx(path: Any) -> None:
        import onnx

        onnx.checker.check_model(str(path))

    def _session_for(self, x: torch.Tensor) -> Any:
        shape = tuple(x.shape[1:])
        session = self._sessions.get(shape)
        if session is not None:
            return session
        with self._lock:
            session = self._sessions.get(shape)
            if session is None:
                session = self._open_cached(shape)
                if session is None:
                    session = self._open_checked(x)
                self._sessions[shape] = session
        return session

    def _open(self, exported: _Exported) -> Any:
        raise NotImplementedError

    def __call__(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        with torch.inference_mode():
            xf = normalize(self.staging.to_device(x)).contiguous()
            if xf.shape[0] == 0:
                return {}
            return apply_activations(self.activations, self._session_for(xf)(xf))


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

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = max(1, self.threads or 1)
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        opts.log_severity_level = 3
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

    def _key_parts(self, shape: tuple[int, ...]) -> dict[str, Any]:
        # The fp32 export is shared with fp32 ONNX runs: only the quantized entry is int8's.
        return {**super()._key_parts(shape), "precision": "fp32"}

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

    def _session_for(self, x: torch.Tensor) -> Any:
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
                 precision: str, cache: ExportCache | None, max_batch: int) -> None:
        super().__init__(module, device, threads=threads, precision=precision, cache=cache)
        self.max_batch = max(1, max_batch)
        self.engines = ExportCache("tensorrt", self.cache.dir.parent)

    def runtime_version(self) -> str:
        import tensorrt

        return tensorrt.__version__

    def _key_parts(self, shape: tuple[int, ...]) -> dict[str, Any]:
        parts = super()._key_parts(shape)
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
                cache: ExportCache | None = None) -> NetworkRunner:
    """The runner for ``choice`` around a loaded (eval-mode, on ``device``) module."""
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
        return OnnxRunner(module, dev, threads=threads, precision=choice.precision, cache=cache)
    if choice.name == "noop":
        return NoopRunner(module, dev)
    if choice.name == "tensorrt":
        return TensorRTRunner(module, dev, threads=threads, precision=choice.precision,
                              cache=cache, max_batch=max_batch)
    raise ConfigError(f"unknown runtime {choice.name!r}; choose torch, onnx or tensorrt")

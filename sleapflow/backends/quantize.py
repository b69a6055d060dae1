"""int8 static quantization of an exported network with ONNX Runtime, calibrated on real inputs."""

from __future__ import annotations

import hashlib
import logging
import warnings
from collections.abc import Iterator, Sequence
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from sleapflow.errors import BackendError
from sleapflow.logs import get_logger

__all__ = ("CALIBRATION_FRAMES", "QUANTIZATION", "calibration_digest", "cpu_has_int8_dot",
           "edge_convolutions", "quantize_network", "warn_without_int8_dot")


log = get_logger(__name__)

#: Network inputs (frames, or top-down crops) a quantization is calibrated on: the first ones
#: of the run, or of ``--calibration_frames``. 32 covers the value ranges of a clip's animals
#: and poses while keeping the wait before the first batch short (one forward pass each).
CALIBRATION_FRAMES = 32

#: How the network is quantized (part of the cache key): QDQ format, int8 activations and
#: weights, per output channel for the convolutions (their channels' ranges differ widely),
#: MinMax ranges from the calibration inputs. The convolutions that read the image and the
#: heads' last ones stay fp32: they are a few percent of the work, and quantizing the heads
#: flipped near-threshold peaks (the tiny top-down test model kept the same centroid count in
#: 21 % of frames with them int8, 100 % without; benchmarks/RESULTS.md, "int8").
QUANTIZATION = {"format": "qdq", "activations": "int8", "weights": "int8", "per_channel": True,
                "calibration": "minmax", "fp32": "input and head convolutions"}

# CPU flags of instructions that multiply int8 vectors without widening first: without them
# ONNX Runtime's int8 kernels are no faster than its fp32 ones (and weights lose a bit).
_INT8_DOT_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8", "asimddp", "i8mm")


@cache
def cpu_has_int8_dot() -> bool:
    """Whether this CPU has int8 dot-product instructions (AVX-VNNI, AVX512-VNNI, AMX-INT8; on
    ARM the dot-product extensions), read from ``/proc/cpuinfo``; False where it cannot say."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    flags = set()
    for line in text.splitlines():
        if line.startswith(("flags", "Features")):
            flags.update(line.split(":", 1)[-1].split())
    return any(f in flags for f in _INT8_DOT_FLAGS)


@cache
def warn_without_int8_dot() -> None:
    """Say once per process that int8 will not be faster on this CPU."""
    if not cpu_has_int8_dot():
        log.warning("--precision int8: this CPU has no int8 dot-product instructions (VNNI / "
                    "AMX), so int8 is unlikely to be faster than fp32 here; weights use 7-bit "
                    "ranges to avoid overflow in its int8 kernels")


def calibration_digest(samples: Sequence[np.ndarray]) -> str:
    """SHA-256 over the calibration inputs' shapes, types and bytes (the cache key's part)."""
    h = hashlib.sha256()
    for a in samples:
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype}:{a.shape};".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def _reader(samples: Sequence[np.ndarray], input_name: str) -> Any:
    from onnxruntime.quantization import CalibrationDataReader

    class _Batches(CalibrationDataReader):  # type: ignore[misc]
        """The calibration batches, one feed each."""

        def __init__(self) -> None:
            self._it: Iterator[np.ndarray] = iter(samples)

        def get_next(self) -> dict[str, np.ndarray] | None:
            batch = next(self._it, None)
            return None if batch is None else {input_name: batch}

    return _Batches()


def edge_convolutions(path: Path, *, walk: int = 4) -> list[str]:
    """Names of the convolutions that read the network's input, and of the last convolution
    before each output (looking back through at most ``walk`` other nodes)."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    inputs = {i.name for i in graph.input}
    producer = {out: node for node in graph.node for out in node.output}
    names = [n.name for n in graph.node if n.op_type == "Conv" and inputs & set(n.input)]
    for output in graph.output:
        node = producer.get(output.name)
        for _ in range(walk):
            if node is None or node.op_type == "Conv":
                break
            node = next((producer[i] for i in node.input if i in producer), None)
        if node is not None and node.op_type == "Conv" and node.name not in names:
            names.append(node.name)
    return names


def quantize_network(src: Path, dst: Path, samples: Sequence[np.ndarray], *,
                     reduce_range: bool, input_name: str = "x") -> None:
    """Write the int8 (QDQ) form of the fp32 ONNX network ``src`` to ``dst``, with activation
    ranges from ``samples`` (normalised float32 batches, as the network is fed).

    ``reduce_range`` quantizes weights to 7 bits: on CPUs without VNNI, ONNX Runtime's int8
    kernels add pairs of products in 16 bits, which full-range weights can overflow.
    """
    if not samples:
        raise BackendError("int8 quantization needs at least one calibration input")
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    # The quantizer logs advice (run its pre-processing first) on the root logger: not ours to show.
    quiet = _DropAdvice()
    root = logging.getLogger()
    root.addFilter(quiet)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            quantize_static(str(src), str(dst), _reader(samples, input_name),
                            quant_format=QuantFormat.QDQ, per_channel=True,
                            reduce_range=reduce_range, activation_type=QuantType.QInt8,
                            nodes_to_exclude=edge_convolutions(src),
                            weight_type=QuantType.QInt8, calibrate_method=CalibrationMethod.MinMax,
                            extra_options={"ActivationSymmetric": False,
                                           "WeightSymmetric": True})
    except Exception as exc:  # the quantizer raises many types (onnx, numpy, its own)
        text = str(exc).strip().splitlines()
        raise BackendError(f"ONNX Runtime cannot quantize this network to int8: "
                           f"{type(exc).__name__}: {text[0] if text else ''}; use --precision "
                           "fp32") from exc
    finally:
        root.removeFilter(quiet)


class _DropAdvice(logging.Filter):
    """Drops the quantizer's pre-processing advice from the root logger."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "pre-processing" not in record.getMessage()

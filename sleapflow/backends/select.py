"""Which runtime runs the forward pass: validation of ``--runtime`` and what ``auto`` picks, and why."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from functools import cache

from sleapflow.errors import ConfigError
from sleapflow.options.config import PRECISIONS, RUNTIMES

__all__ = (
    "AUTO_EXCLUDE", "AUTO_ORDER", "RuntimeChoice", "cpu_has_bf16", "installed_runtimes", "parse_label",
    "resolve_runtime",
)


#: What ``auto`` may choose per device kind, fastest first. A runtime is listed only once the
#: whole parity suite passed with it on that device (benchmarks/RESULTS.md, "Parity per
#: runtime"). ONNX Runtime passed on CPU; nothing but torch has been checked on a GPU yet, so
#: the CUDA entry stays torch-only until the GPU parity tests pass with onnx/tensorrt there.
AUTO_ORDER: dict[str, tuple[str, ...]] = {
    "cpu": ("onnx", "torch"),
    "cuda": ("torch",),
    "mps": ("torch",),
}

#: (device kind, graph) → runtimes ``auto`` must skip there, with the reason (the parity
#: figures that failed, docs/COMPATIBILITY.md). ``legacy_<graph>`` is a graph run with SLEAP <= 1.4
#: (.h5) models. Empty: every reference case passes under ONNX Runtime on CPU since top-down crops
#: on a rounding boundary are decided from torch's maps (the one case that failed before).
AUTO_EXCLUDE: dict[tuple[str, str], dict[str, str]] = {}


@dataclass(frozen=True)
class RuntimeChoice:
    """The runtime a run uses, what was asked for, and a one-line reason (logged, in provenance)."""

    name: str
    requested: str
    reason: str
    precision: str = "fp32"

    def as_dict(self) -> dict[str, str]:
        return {"name": self.name, "requested": self.requested, "reason": self.reason,
                "precision": self.precision}

    @property
    def label(self) -> str:
        """How benchmarks name it: ``onnx``, ``torch``, ``torch-bf16`` (fp32 goes unsaid)."""
        return self.name if self.precision == "fp32" else f"{self.name}-{self.precision}"


def parse_label(label: str) -> tuple[str, str]:
    """(runtime, precision) of a benchmark label such as ``torch-bf16`` (see ``label``)."""
    name, _, precision = label.partition("-")
    return name, precision or "fp32"


@cache
def _has(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


@cache
def _ort_providers() -> tuple[str, ...]:
    if not _has("onnxruntime"):
        return ()
    import onnxruntime

    return tuple(onnxruntime.get_available_providers())


def installed_runtimes(device_kind: str) -> list[str]:
    """Runtimes that can run on ``device_kind`` (cpu, cuda, mps) with what is installed here."""
    out = ["torch"]
    providers = _ort_providers()
    if device_kind == "cpu" and "CPUExecutionProvider" in providers:
        out.append("onnx")
    if device_kind == "cuda":
        if "CUDAExecutionProvider" in providers:
            out.append("onnx")
        if _has("tensorrt"):
            out.append("tensorrt")
    return out


@cache
def cpu_has_bf16() -> bool:
    """Whether this CPU has bf16 instructions oneDNN uses (AVX512-BF16, AMX), so torch's bf16
    convolutions are faster than fp32 rather than emulated."""
    import torch

    return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())


def _cpu_bf16(requested: str) -> RuntimeChoice:
    if requested not in ("auto", "torch"):
        raise ConfigError(f"--precision bf16 on the CPU runs through --runtime torch (got --runtime "
                          f"{requested}); use --runtime auto or torch, or --precision fp32")
    if not cpu_has_bf16():
        raise ConfigError("--precision bf16: this CPU has no bf16 instructions (AVX512-BF16 or AMX), "
                          "so bf16 would be slower than fp32; use --precision fp32")
    why = ("asked for" if requested == "torch" else
           "bf16 on the CPU runs through torch's oneDNN kernels (AMX / AVX512-BF16)")
    return RuntimeChoice("torch", requested, why, "bf16")


def _cpu_int8(requested: str, kind: str, channels_last: bool) -> RuntimeChoice:
    """int8 is ONNX Runtime's static quantization on the CPU, asked for by name: ``auto`` with
    int8 means ONNX Runtime (no other runtime runs int8 here), and ``auto`` never picks int8."""
    if kind != "cpu":
        raise ConfigError(f"--precision int8 runs on the CPU (ONNX Runtime) only (got --device "
                          f"{kind}); use --device cpu, or --precision fp16 on a GPU")
    if requested not in ("auto", "onnx"):
        raise ConfigError(f"--precision int8 runs through --runtime onnx (ONNX Runtime's static "
                          f"quantization; got --runtime {requested}); use --runtime auto or onnx, "
                          "or --precision fp32")
    if channels_last:
        raise ConfigError("--channels_last is a torch memory layout; --precision int8 runs on "
                          "ONNX Runtime: leave one of them out")
    if "onnx" not in installed_runtimes("cpu"):
        raise ConfigError("--precision int8 needs onnxruntime: pip install onnxruntime")
    why = ("asked for" if requested == "onnx" else
           "int8 runs through ONNX Runtime's static quantization on the CPU")
    return RuntimeChoice("onnx", requested, why, "int8")


def resolve_runtime(requested: str, device: str, *, precision: str = "fp32",
                    channels_last: bool = False, graph: str | None = None) -> RuntimeChoice:
    """Check ``requested`` against the device and what is installed; resolve ``auto``.

    ``auto`` takes the first runtime of :data:`AUTO_ORDER` for the device that is installed and
    not excluded for ``graph`` by :data:`AUTO_EXCLUDE`; the reason says which and why.
    """
    if requested not in RUNTIMES:
        raise ConfigError(f"--runtime: unknown runtime {requested!r}; use one of {', '.join(RUNTIMES)}")
    if precision not in PRECISIONS:
        raise ConfigError(f"--precision: unknown precision {precision!r}; use one of "
                          f"{', '.join(PRECISIONS)}")
    kind = device.split(":", 1)[0]
    if precision == "int8":
        return _cpu_int8(requested, kind, channels_last)
    if precision == "bf16" and kind == "cpu":
        return _cpu_bf16(requested)
    if precision != "fp32" and kind != "cuda":
        hint = " or --precision bf16" if kind == "cpu" and cpu_has_bf16() else ""
        raise ConfigError(f"--precision {precision} needs a CUDA device (got --device {device}); "
                          f"use --precision fp32{hint} on the CPU")
    have = installed_runtimes(kind)
    if requested == "auto":
        if channels_last:
            return RuntimeChoice("torch", "auto", "--channels_last is a torch memory layout",
                                 precision)
        if precision != "fp32":
            # Reduced precision is torch autocast unless TensorRT is asked for by name.
            return RuntimeChoice("torch", "auto", f"{precision} runs under torch autocast", precision)
        excluded = AUTO_EXCLUDE.get((kind, graph or ""), {})
        skipped: list[str] = []
        for name in AUTO_ORDER.get(kind, ("torch",)):
            if name not in have:
                continue
            if name in excluded:
                skipped.append(excluded[name])
                continue
            if name != "torch":
                why = f"fastest installed runtime on {kind} that passes the parity suite"
            elif skipped:
                why = "; ".join(skipped)
            else:
                why = (f"no faster runtime verified for {kind} is installed "
                       f"(installed: {', '.join(have)})")
            return RuntimeChoice(name, "auto", why, precision)
        return RuntimeChoice("torch", "auto", "fallback", precision)
    if requested == "torch":
        return RuntimeChoice("torch", requested, "asked for", precision)
    if channels_last:
        raise ConfigError(f"--channels_last applies to --runtime torch only (got --runtime {requested})")
    if requested == "onnx":
        if kind == "mps":
            raise ConfigError("--runtime onnx runs on cpu or cuda; use --runtime torch on mps")
        if not _ort_providers():
            raise ConfigError("--runtime onnx needs onnxruntime: pip install onnxruntime "
                              "(onnxruntime-gpu for CUDA)")
        if "onnx" not in have:
            raise ConfigError(f"--runtime onnx on {device}: this onnxruntime has no CUDA provider "
                              f"(providers: {', '.join(_ort_providers())}); pip install "
                              "onnxruntime-gpu, or use --runtime torch")
        if precision != "fp32":
            raise ConfigError(f"--precision {precision} is not supported with --runtime onnx; use "
                              "--runtime torch (autocast) or --runtime tensorrt (fp16)")
        return RuntimeChoice("onnx", requested, "asked for", precision)
    # tensorrt
    if kind != "cuda":
        raise ConfigError(f"--runtime tensorrt needs an NVIDIA GPU (got --device {device})")
    if not _has("tensorrt"):
        raise ConfigError("--runtime tensorrt needs TensorRT: pip install 'sleapflow[tensorrt]'")
    if precision == "bf16":
        raise ConfigError("--precision bf16 is not supported with --runtime tensorrt; use fp16")
    return RuntimeChoice("tensorrt", requested, "asked for", precision)

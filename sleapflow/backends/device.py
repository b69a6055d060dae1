"""Which torch device a run uses: ``auto`` resolved, and a named device checked to exist here."""

from __future__ import annotations

import importlib.util
import os
import platform
import re
import sys
from functools import cache
from pathlib import Path

from sleapflow.errors import ConfigError
from sleapflow.lazy import lazy_module

# torch loads on first use: a run on ONNX Runtime with a warm export cache never needs it.
torch = lazy_module("torch")

__all__ = ("accelerator_possible", "resolve_device", "torch_build")

#: Device nodes and driver files that exist wherever a CUDA (NVIDIA, WSL) or ROCm GPU can be used.
_GPU_NODES = ("/proc/driver/nvidia/version", "/dev/nvidiactl", "/dev/nvidia0", "/dev/kfd", "/dev/dxg")
_BUILD = re.compile(r"^(__version__|cuda|hip)\s*(?::[^=]*)?=\s*(?:'([^']*)'|None)\s*$", re.MULTILINE)


@cache
def torch_build() -> dict[str, str | None]:
    """torch's version and the CUDA / HIP versions it was built for, read from its generated
    ``torch/version.py`` without importing torch (1.3-1.7 s); from torch itself once loaded."""
    loaded = sys.modules.get("torch")
    if loaded is not None:
        version = loaded.version
        return {"version": loaded.__version__, "cuda": version.cuda, "hip": version.hip}
    facts: dict[str, str | None] = {"version": None, "cuda": None, "hip": None}
    spec = importlib.util.find_spec("torch")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        try:
            text = (Path(folder) / "version.py").read_text()
        except OSError:
            continue
        for name, value in _BUILD.findall(text):
            facts["version" if name == "__version__" else name] = value or None
        break
    return facts


def accelerator_possible() -> bool:
    """False only when this machine certainly has no GPU torch could use: a torch built for
    neither CUDA nor ROCm on anything but a Mac, or a Linux machine without GPU device nodes.
    Then ``auto`` is the CPU without importing torch to ask."""
    if platform.system() == "Darwin":
        return True  # MPS: only torch can say
    build = torch_build()
    if build["version"] is not None and build["cuda"] is None and build["hip"] is None:
        return False
    if platform.system() == "Linux":
        return any(os.path.exists(node) for node in _GPU_NODES)
    return True



def resolve_device(device: str) -> str:
    """``auto`` → cuda, mps or cpu; otherwise check the device exists here."""
    if device == "auto":
        if not accelerator_possible():
            return "cpu"
        if torch.cuda.is_available():
            return "cuda"
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return "mps"
        return "cpu"
    match = re.fullmatch(r"(cpu|cuda|mps)(:(\d+))?", device)
    if not match:
        raise ConfigError(f"--device: unknown device {device!r}; use auto, cpu, cuda, cuda:N or mps")
    kind = match[1]
    if kind == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"--device {device}: CUDA is not available on this machine; use cpu")
        if match[3] is not None and int(match[3]) >= torch.cuda.device_count():
            raise ConfigError(f"--device {device}: only {torch.cuda.device_count()} CUDA device(s)")
    if kind == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise ConfigError(f"--device {device}: MPS is not available on this machine; use cpu")
    return device
